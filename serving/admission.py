"""Admission: may this request start now? Quotas, concurrency and priority shedding, in microseconds.

:class:`Admission` is the interface the request path uses; :class:`InProcessAdmission` is the
embedded backend (one event loop, no locks: nothing awaits between check and reserve, so
every admit/release is atomic). A shared Redis backend implements the same two coroutines
with one Lua script each (check-and-reserve, release-and-reconcile); see ADR 0005.

Per request, in this order (cheapest and most protective first; a rejection reserves nothing):

1. **priority shedding** — when this replica's in-flight count reaches the tier's high-water
   mark (``shed_fraction[tier] × max_in_flight``: free first, then pro; enterprise and internal
   only at the hard limit), 529 ``overloaded_error`` with a retry-after;
2. **tenant concurrency** — ``quotas.max_concurrency`` in flight → 429;
3. **request and token buckets** — per tenant, refilled continuously at ``rpm/60`` and
   ``tpm/60`` per second up to ``burst`` seconds' worth. A request needs one request token and
   ``prompt_tokens + max_tokens`` tokens (see :func:`token_reservation`); short of either → 429
   with ``retry_after_s`` = the time until both buckets hold enough, rounded up to the
   millisecond. A request larger than the token bucket is admitted when the bucket is full and
   leaves it in debt, so nothing is unadmittable and the long-run rate still holds.

Admitted, it gets an :class:`AdmissionTicket`. Releasing it frees the concurrency slots and
reconciles the token bucket with the actual usage (refund or extra charge); ``None`` usage
(unknown, e.g. a stream that died without a final usage event) keeps the reservation as the
charge. Release is idempotent: the first call returns True, later calls are no-ops returning False.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from features.schema import TENANT_TIERS
from serving.errors import ApiError, overloaded, rate_limited
from serving.tenants import Quotas, Tenant

Clock = Callable[[], float]  # monotonic seconds
# Slack for float round-off in lazy refills (clock differences of ~1e-10 s times large rates):
# a bucket this close to enough counts as enough. Negligible next to one request or token.
_REQUEST_SLACK = 1e-3
_TOKEN_SLACK = 0.5


def token_reservation(prompt_tokens: int, max_tokens: int) -> int:
    """Tokens to reserve at admission: the prompt plus the most the answer may use."""
    return prompt_tokens + max_tokens


@dataclass(frozen=True)
class AdmissionLimits:
    """This replica's limits; per-tenant quotas come from each tenant's :class:`Quotas`."""

    max_in_flight: int = 4096
    shed_fraction: Mapping[str, float] = field(
        default_factory=lambda: {"free": 0.70, "pro": 0.85, "enterprise": 1.0, "internal": 1.0}
    )
    request_burst_s: float = 10.0
    token_burst_s: float = 60.0
    overload_retry_after_s: float = 2.0
    concurrency_retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        missing = [tier for tier in TENANT_TIERS if tier not in self.shed_fraction]
        if missing:
            raise ValueError(f"shed_fraction has no value for tier {missing[0]!r}")
        fractions = [self.shed_fraction[tier] for tier in TENANT_TIERS]
        if not all(0.0 < f <= 1.0 for f in fractions):
            raise ValueError("shed_fraction values must be in (0, 1]")
        if fractions != sorted(fractions):
            raise ValueError(f"shed_fraction must not decrease in tier order {', '.join(TENANT_TIERS)}")
        if min(self.request_burst_s, self.token_burst_s) <= 0:
            raise ValueError("burst seconds must be positive")

    def shed_at(self, tier: str) -> int:
        """In-flight count at which ``tier`` is shed."""
        return max(1, math.floor(self.shed_fraction[tier] * self.max_in_flight))


class AdmissionTicket:
    """Proof of admission; release exactly once (``async with ticket:`` or :meth:`release`)."""

    __slots__ = ("_owner", "actual_tokens", "admitted_at", "released", "reserved_tokens", "tenant_id", "tier")

    def __init__(
        self, owner: Admission, tenant_id: str, tier: str, reserved_tokens: int, admitted_at: float
    ) -> None:
        self._owner = owner
        self.tenant_id = tenant_id
        self.tier = tier
        self.reserved_tokens = reserved_tokens
        self.admitted_at = admitted_at
        self.actual_tokens: int | None = None  # set before leaving ``async with`` to reconcile
        self.released = False

    @property
    def owner(self) -> Admission:
        return self._owner

    async def release(self, actual_tokens: int | None = None) -> bool:
        return await self._owner.release(self, actual_tokens)

    async def __aenter__(self) -> AdmissionTicket:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._owner.release(self, self.actual_tokens)


class Admission(Protocol):
    """What the request path needs from an admission backend (in process, or in Redis)."""

    async def admit(self, tenant: Tenant, estimated_tokens: int) -> AdmissionTicket:
        """A ticket, or raise :class:`~serving.errors.ApiError` (429 rate_limit_error / 529 overloaded_error)."""
        ...

    async def release(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        """Free the ticket's slots and reconcile tokens; True the first time, False after."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet released on this replica."""
        ...

    @property
    def limits(self) -> AdmissionLimits:
        """This replica's limits (the shedding thresholds among them)."""
        ...


class PriorityShedding:
    """Check 1 of admission on its own, for the gateway to ask right after authentication.

    Shedding exists for overload, when every microsecond a refused request costs is taken from
    the requests being served: asked before the body is parsed, the policy checked and the
    candidates placed, a shed request costs the gateway little more than its authentication.
    ``admit`` checks the same threshold again (the count may have moved in between).
    """

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        limits = admission.limits
        self._shed_at = {tier: limits.shed_at(tier) for tier in TENANT_TIERS}
        self._retry_after_s = limits.overload_retry_after_s

    def check(self, tier: str) -> ApiError | None:
        """The 529 to answer when ``tier`` is being shed at this moment, else None."""
        if self._admission.in_flight < self._shed_at[tier]:
            return None
        return overloaded(
            f"Overloaded: {tier}-tier traffic is being shed; retry shortly.",
            retry_after_s=self._retry_after_s,
        )


class _TenantState:
    __slots__ = (
        "in_flight",
        "quotas",
        "request_capacity",
        "request_rate",
        "requests",
        "token_capacity",
        "token_rate",
        "tokens",
        "updated_at",
    )

    def __init__(self, quotas: Quotas, limits: AdmissionLimits, now: float) -> None:
        self.in_flight = 0
        self.updated_at = now
        self.set_quotas(quotas, limits)
        self.requests = self.request_capacity
        self.tokens = self.token_capacity

    def set_quotas(self, quotas: Quotas, limits: AdmissionLimits) -> None:
        self.quotas = quotas
        self.request_rate = quotas.requests_per_minute / 60.0
        self.token_rate = quotas.tokens_per_minute / 60.0
        self.request_capacity = max(1.0, self.request_rate * limits.request_burst_s)
        self.token_capacity = max(1.0, self.token_rate * limits.token_burst_s)

    def refill(self, now: float) -> None:
        elapsed = now - self.updated_at
        if elapsed > 0.0:
            self.requests = min(self.request_capacity, self.requests + elapsed * self.request_rate)
            self.tokens = min(self.token_capacity, self.tokens + elapsed * self.token_rate)
            self.updated_at = now


def _ceil_ms(seconds: float) -> float:
    return math.ceil(seconds * 1000.0) / 1000.0


def bucket_rate_error(quotas: Quotas, request_wait: float, token_wait: float) -> ApiError:
    """The 429 for a tenant short of request or token budget: it names the binding limit and
    retries after the time until both buckets hold enough, rounded up to the millisecond."""
    if request_wait >= token_wait:
        limit = f"{quotas.requests_per_minute} requests per minute"
    else:
        limit = f"{quotas.tokens_per_minute} tokens per minute (prompt + max_tokens)"
    wait = _ceil_ms(max(request_wait, token_wait))
    return rate_limited(
        f"Rate limit exceeded: this tenant is limited to {limit}; retry after {wait:.3f} s.",
        retry_after_s=wait,
    )


class InProcessAdmission:
    """Token buckets, concurrency and shedding in this process; one instance per gateway process."""

    def __init__(self, limits: AdmissionLimits | None = None, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits or AdmissionLimits()
        self._clock = clock
        self._shed_at = {tier: self.limits.shed_at(tier) for tier in TENANT_TIERS}
        self._states: dict[str, _TenantState] = {}
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def tenant_in_flight(self, tenant_id: str) -> int:
        state = self._states.get(tenant_id)
        return state.in_flight if state else 0

    def admit_now(self, tenant: Tenant, estimated_tokens: int) -> AdmissionTicket:
        """Synchronous :meth:`admit` (the whole decision; never awaits)."""
        if self._in_flight >= self._shed_at[tenant.tier]:
            raise overloaded(
                f"Overloaded: {tenant.tier}-tier traffic is being shed; retry shortly.",
                retry_after_s=self.limits.overload_retry_after_s,
            )
        now = self._clock()
        state = self._states.get(tenant.tenant_id)
        if state is None:
            state = self._states[tenant.tenant_id] = _TenantState(tenant.quotas, self.limits, now)
        elif state.quotas is not tenant.quotas:
            state.set_quotas(tenant.quotas, self.limits)
        quotas = state.quotas
        if state.in_flight >= quotas.max_concurrency:
            raise rate_limited(
                f"Rate limit exceeded: at most {quotas.max_concurrency} concurrent requests for this tenant.",
                retry_after_s=self.limits.concurrency_retry_after_s,
            )
        state.refill(now)
        needed_tokens = min(float(estimated_tokens), state.token_capacity)
        if state.requests < 1.0 - _REQUEST_SLACK or state.tokens < needed_tokens - _TOKEN_SLACK:
            raise self._rate_error(state, needed_tokens)
        state.requests -= 1.0
        state.tokens -= estimated_tokens
        state.in_flight += 1
        self._in_flight += 1
        return AdmissionTicket(self, tenant.tenant_id, tenant.tier, estimated_tokens, now)

    def _rate_error(self, state: _TenantState, needed_tokens: float) -> ApiError:
        request_wait = max(0.0, (1.0 - state.requests) / state.request_rate)
        token_wait = max(0.0, (needed_tokens - state.tokens) / state.token_rate)
        return bucket_rate_error(state.quotas, request_wait, token_wait)

    def release_now(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        """Synchronous :meth:`release`."""
        if ticket.owner is not self:
            raise ValueError("the ticket was issued by another admission backend")
        if ticket.released:
            return False
        ticket.released = True
        self._in_flight -= 1
        state = self._states[ticket.tenant_id]
        state.in_flight -= 1
        if actual_tokens is not None:
            state.refill(self._clock())
            state.tokens = min(state.token_capacity, state.tokens + ticket.reserved_tokens - actual_tokens)
        return True

    async def admit(self, tenant: Tenant, estimated_tokens: int) -> AdmissionTicket:
        return self.admit_now(tenant, estimated_tokens)

    async def release(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        return self.release_now(ticket, actual_tokens)
