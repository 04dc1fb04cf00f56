"""Cluster-wide admission: per-tenant buckets and concurrency in Redis, one Lua script per admit.

:class:`RedisAdmission` implements :class:`~serving.admission.Admission` with the same checks,
order and errors as :class:`~serving.admission.InProcessAdmission` (see that module and ADR 0005):

1. **priority shedding** stays local — this replica's in-flight count protects this process;
2. **tenant concurrency** and 3. **request and token buckets** are shared: each admit is one
   round trip running the *check-and-reserve* script (refill by the Redis server's ``TIME``,
   trim expired slots, check concurrency and both buckets, reserve or return the waits).

**Releases are batched.** A release updates this process's counts at once and queues the slot
and the ``reserved − actual`` tokens. The queue goes out with this process's next admit (in the
same write, ahead of it, so that admit already sees the slots free), or ``release_delay_s``
after its first entry (default 0: on the next event-loop iteration, with every release queued
in this one), or at ``release_batch`` entries, whichever comes first: one
*release-and-reconcile* call per tenant, all in one write. So a slot is free in Redis at most
``release_delay_s`` + one round trip after its release, and each ticket's tokens are reconciled
exactly once (a batch is never resent). A longer delay lets more releases ride with an admit:
at 200 requests/s on one process (bench/process_scaling) 5 ms cut Redis's CPU per request from
~0.23 ms to 0.16–0.21 ms, with the gateway's CPU the same within the VM's noise; the default
stays 0 because another process sees the slot only once it is sent, and a client at its
concurrency cap whose next request lands on another process would get a 429 in that window.
A batch that fails or times out leaves its slots to their lease and its reservations charged,
and switches to degraded mode like a failed admit. :meth:`RedisAdmission.release` returns once
its batch is answered; :meth:`RedisAdmission.release_nowait` only queues. :meth:`aclose` sends
what is queued. The scripts and keys are in :mod:`serving.admission_scripts`; the client is
:mod:`serving.resp_client` (one pipelined connection, deadlines that keep the connection).

**Degraded mode.** A Redis call that fails or takes longer than ``timeout_s`` switches this
process to a local :class:`~serving.admission.InProcessAdmission` that enforces its share of
each quota (``quota / expected_processes``, concurrency rounded up), never failing open and never
failing every request. The switch is logged once per transition and exposed as the
``switchyard_admission_degraded`` gauge and the ``switchyard_admission_degraded_decisions_total``
counter. While degraded, at most one request per ``probe_interval_s`` tries Redis again; its
success ends the mode. Tickets issued while degraded are released locally.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, replace

from features.schema import TENANT_TIERS
from serving.admission import (
    _REQUEST_SLACK,
    _TOKEN_SLACK,
    Admission,
    AdmissionLimits,
    AdmissionTicket,
    Clock,
    InProcessAdmission,
    bucket_rate_error,
)
from serving.admission_scripts import CHECK_AND_RESERVE, RELEASE_AND_RECONCILE, BucketShape
from serving.errors import overloaded, rate_limited
from serving.metrics import GatewayMetrics
from serving.resp_client import RedisReplyError, RespClient
from serving.settings import AdmissionSettings
from serving.tenants import Quotas, Tenant

log = logging.getLogger(__name__)

_KEY_PREFIX = "switchyard:adm:"
_FAILURES = (RedisReplyError, OSError, TimeoutError)
_Call = tuple[tuple[str, str], tuple[str, ...]]  # one script call: keys, args


@dataclass(frozen=True)
class RedisAdmissionConfig:
    """How this process talks to Redis and what it does when Redis does not answer."""

    url: str
    timeout_s: float = 0.05
    expected_processes: int = 1
    probe_interval_s: float = 1.0
    slot_lease_s: float = 600.0
    release_delay_s: float = 0.0
    release_batch: int = 64

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.probe_interval_s <= 0 or self.slot_lease_s <= 0:
            raise ValueError("timeout_s, probe_interval_s and slot_lease_s must be positive")
        if self.expected_processes < 1:
            raise ValueError("expected_processes must be at least 1")
        if self.release_delay_s < 0 or self.release_batch < 1:
            raise ValueError("release_delay_s must not be negative and release_batch must be at least 1")


def tenant_keys(tenant_id: str) -> tuple[str, str]:
    """The tenant's bucket hash and slot set; the ``{tenant}`` hash tag puts both in one cluster slot."""
    base = f"{_KEY_PREFIX}{{{tenant_id}}}"
    return f"{base}:b", f"{base}:c"


def local_share(quotas: Quotas, processes: int) -> Quotas:
    """One process's share of a tenant's quotas (at least 1 of each; concurrency rounded up)."""
    return Quotas(
        requests_per_minute=max(1, quotas.requests_per_minute // processes),
        tokens_per_minute=max(1, quotas.tokens_per_minute // processes),
        max_concurrency=max(1, math.ceil(quotas.max_concurrency / processes)),
    )


class RedisTicket(AdmissionTicket):
    """A ticket whose slot and tokens are held in Redis under ``reservation_id``."""

    __slots__ = ("reservation_id", "shape")

    def __init__(
        self,
        owner: Admission,
        tenant_id: str,
        tier: str,
        reserved_tokens: int,
        admitted_at: float,
        reservation_id: str,
        shape: BucketShape,
    ) -> None:
        super().__init__(owner, tenant_id, tier, reserved_tokens, admitted_at)
        self.reservation_id = reservation_id
        self.shape = shape


class RedisAdmission:
    """Cluster-wide quotas in Redis, local shedding, and a local-share fallback while Redis is away."""

    def __init__(
        self,
        client: RespClient,
        config: RedisAdmissionConfig,
        limits: AdmissionLimits | None = None,
        *,
        metrics: GatewayMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limits = limits or AdmissionLimits()
        self.config = config
        self._client = client
        self._metrics = metrics
        self._clock = clock
        self._shed_at = {tier: self.limits.shed_at(tier) for tier in TENANT_TIERS}
        self._local = InProcessAdmission(self.limits, clock=clock)
        self._shares: dict[str, tuple[Quotas, Tenant]] = {}
        self._shapes: dict[str, tuple[Quotas, BucketShape]] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:12] + ":"
        self._fixed_args = (repr(config.slot_lease_s), repr(_REQUEST_SLACK), repr(_TOKEN_SLACK))
        self._redis_in_flight = 0
        self._pending: list[tuple[RedisTicket, int | None]] = []
        self._pending_done: asyncio.Future[None] | None = None
        self._flush_timer: asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.degraded = False
        self._next_probe = 0.0

    @classmethod
    def connect(
        cls, config: RedisAdmissionConfig, limits: AdmissionLimits | None = None, **kwargs
    ) -> RedisAdmission:
        """A client for ``config.url`` that fails fast: the timeout bounds connect and reply, no retries."""
        client = RespClient(
            config.url, connect_timeout_s=config.timeout_s, stale_after_s=max(1.0, 20 * config.timeout_s)
        )
        return cls(client, config, limits, **kwargs)

    @property
    def client(self) -> RespClient:
        return self._client

    async def aclose(self) -> None:
        """Send the queued releases, wait for the batches in flight, close the connection."""
        if self._pending:
            self._flush()
        while self._sending:
            await asyncio.gather(*self._sending)
        await self._client.aclose()

    @property
    def in_flight(self) -> int:
        return self._redis_in_flight + self._local.in_flight

    async def admit(self, tenant: Tenant, estimated_tokens: int) -> AdmissionTicket:
        if self.in_flight >= self._shed_at[tenant.tier]:
            raise overloaded(
                f"Overloaded: {tenant.tier}-tier traffic is being shed; retry shortly.",
                retry_after_s=self.limits.overload_retry_after_s,
            )
        if self._redis_due():
            shape = self._shape(tenant.quotas)
            reservation_id = f"{self._id_prefix}{next(self._ids)}"
            lease, request_slack, token_slack = self._fixed_args
            args = (
                *shape.args,
                str(estimated_tokens),
                str(tenant.quotas.max_concurrency),
                lease,
                reservation_id,
                request_slack,
                token_slack,
            )
            try:
                reply = await self._reserve(self._tenant_keys(tenant.tenant_id), args)
            except _FAILURES as exc:
                self._enter_degraded(exc)
            else:
                self._leave_degraded()
                return self._decide(tenant, estimated_tokens, shape, reservation_id, reply)
        if self._metrics is not None:
            self._metrics.admission_degraded_decisions.inc()
        return self._local.admit_now(self._share(tenant), estimated_tokens)

    def _decide(
        self, tenant: Tenant, estimated_tokens: int, shape: BucketShape, reservation_id: str, reply: list
    ) -> AdmissionTicket:
        verdict = reply[0]
        if verdict == b"ok":
            self._redis_in_flight += 1
            return RedisTicket(
                self, tenant.tenant_id, tenant.tier, estimated_tokens, self._clock(), reservation_id, shape
            )
        if verdict == b"c":
            raise rate_limited(
                f"Rate limit exceeded: at most {tenant.quotas.max_concurrency} concurrent requests for this tenant.",
                retry_after_s=self.limits.concurrency_retry_after_s,
            )
        raise bucket_rate_error(tenant.quotas, float(reply[1]), float(reply[2]))

    async def release(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        """:meth:`release_nowait`, then wait until the batch holding it is answered (or failed)."""
        if not (isinstance(ticket, RedisTicket) and ticket.owner is self and not ticket.released):
            return self.release_nowait(ticket, actual_tokens)
        done = self._pending_done
        if done is None:
            done = self._pending_done = asyncio.get_running_loop().create_future()
        self.release_nowait(ticket, actual_tokens)  # joins the batch ``done`` belongs to
        await asyncio.shield(done)
        return True

    def release_nowait(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        """Free the ticket here now and queue its Redis release; True the first time, False after."""
        if ticket.owner is self._local:
            return self._local.release_now(ticket, actual_tokens)
        if ticket.owner is not self or not isinstance(ticket, RedisTicket):
            raise ValueError("the ticket was issued by another admission backend")
        if ticket.released:
            return False
        ticket.released = True
        self._redis_in_flight -= 1
        self._pending.append((ticket, actual_tokens))
        if len(self._pending) >= self.config.release_batch:
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.config.release_delay_s, self._flush
            )
        return True

    def _flush(self) -> None:
        calls, done = self._take_pending()
        self._start(self._send(calls, done, None))

    def _take_pending(self) -> tuple[list[_Call], asyncio.Future[None] | None]:
        """The queued releases as one release-and-reconcile call per tenant; the queue is emptied."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        batch, self._pending = self._pending, []
        done, self._pending_done = self._pending_done, None
        groups: dict[tuple[str, BucketShape], tuple[list[str], list[int]]] = {}
        for ticket, actual in batch:
            ids, deltas = groups.setdefault((ticket.tenant_id, ticket.shape), ([], []))
            ids.append(ticket.reservation_id)
            if actual is not None:
                deltas.append(ticket.reserved_tokens - actual)
        calls = [
            (
                self._tenant_keys(tenant_id),
                (*shape.args, str(len(ids)), *ids, str(sum(deltas)) if deltas else ""),
            )
            for (tenant_id, shape), (ids, deltas) in groups.items()
        ]
        return calls, done

    def _start(self, sending: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(sending)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _reserve(self, keys: tuple[str, str], args: tuple[str, ...]) -> list:
        """The check-and-reserve reply; queued releases, if any, go in the same write, before it."""
        client, timeout = self._client, self.config.timeout_s
        if not self._pending or not client.connected:
            return await client.evalsha(CHECK_AND_RESERVE, keys, args, timeout)
        calls, done = self._take_pending()
        packed = [client.pack_evalsha(RELEASE_AND_RECONCILE, k, a) for k, a in calls]
        packed.append(client.pack_evalsha(CHECK_AND_RESERVE, keys, args))
        replies = client.write_now(packed, timeout)
        assert replies is not None  # connected, and nothing awaited since
        self._start(self._send(calls, done, replies[:-1]))
        return await client.settle_evalsha(replies[-1], CHECK_AND_RESERVE, keys, args, timeout)

    async def _send(
        self, calls: list[_Call], done: asyncio.Future[None] | None, written: list[asyncio.Future] | None
    ) -> None:
        """Send ``calls`` (or settle them, ``written`` already), then wake ``release`` callers."""
        client, timeout = self._client, self.config.timeout_s
        try:
            if written is None:
                replies = await client.evalsha_many(RELEASE_AND_RECONCILE, calls, timeout)
            else:
                replies = await client.settle_many(written, RELEASE_AND_RECONCILE, calls, timeout)
        except _FAILURES as exc:  # the slots' leases expire them; the reservations stay charged
            replies = [exc]
        finally:
            if done is not None and not done.done():
                done.set_result(None)
        failed = next((reply for reply in replies if isinstance(reply, BaseException)), None)
        if failed is not None:
            self._enter_degraded(failed)

    def _tenant_keys(self, tenant_id: str) -> tuple[str, str]:
        keys = self._keys.get(tenant_id)
        if keys is None:
            if len(self._keys) >= 100_000:
                self._keys.clear()
            keys = self._keys[tenant_id] = tenant_keys(tenant_id)
        return keys

    def _redis_due(self) -> bool:
        if not self.degraded:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.config.probe_interval_s  # one probe per interval
        return True

    def _enter_degraded(self, exc: BaseException) -> None:
        self._next_probe = self._clock() + self.config.probe_interval_s
        if self.degraded:
            return
        self.degraded = True
        if self._metrics is not None:
            self._metrics.admission_degraded.set(1)
        log.warning(
            "admission: Redis unavailable (%s); enforcing this process's 1/%d share of each quota locally",
            type(exc).__name__,
            self.config.expected_processes,
        )

    def _leave_degraded(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        if self._metrics is not None:
            self._metrics.admission_degraded.set(0)
        log.warning("admission: Redis answers again; quotas are cluster-wide again")

    def _shape(self, quotas: Quotas) -> BucketShape:
        key = f"{quotas.requests_per_minute}/{quotas.tokens_per_minute}"
        cached = self._shapes.get(key)
        if cached is None or cached[0] is not quotas:
            cached = self._shapes[key] = (quotas, BucketShape.of(quotas, self.limits))
        return cached[1]

    def _share(self, tenant: Tenant) -> Tenant:
        cached = self._shares.get(tenant.tenant_id)
        if cached is None or cached[0] is not tenant.quotas:
            shared = replace(tenant, quotas=local_share(tenant.quotas, self.config.expected_processes))
            cached = self._shares[tenant.tenant_id] = (tenant.quotas, shared)
        return cached[1]


def build_admission(settings: AdmissionSettings, metrics: GatewayMetrics | None = None) -> Admission:
    """The backend the settings ask for: Redis when ``redis_url`` is set, else in-process."""
    if not settings.redis_url:
        return InProcessAdmission(settings.limits())
    config = RedisAdmissionConfig(
        url=settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        expected_processes=settings.expected_processes,
        probe_interval_s=settings.redis_probe_interval_s,
        slot_lease_s=settings.redis_slot_lease_s,
    )
    return RedisAdmission.connect(config, settings.limits(), metrics=metrics)
