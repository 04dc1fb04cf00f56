"""Cluster-wide admission: per-tenant buckets and concurrency in Redis, one Lua script per call.

:class:`RedisAdmission` implements :class:`~serving.admission.Admission` with the same checks,
order and errors as :class:`~serving.admission.InProcessAdmission` (see that module and ADR 0005):

1. **priority shedding** stays local — this replica's in-flight count protects this process;
2. **tenant concurrency** and 3. **request and token buckets** are shared: one round trip per
   admit runs the *check-and-reserve* script (refill by the Redis server's ``TIME``, trim expired
   slots, check concurrency and both buckets, reserve or return the waits), one per release runs
   *release-and-reconcile* (free the slot, refund or charge ``reserved − actual`` tokens).

Keys per tenant: ``switchyard:adm:{<tenant>}:b`` (hash: requests, tokens, refill time) and
``switchyard:adm:{<tenant>}:c`` (sorted set of reservation ids scored by lease deadline). The
``{tenant}`` hash tag keeps both in one Redis Cluster slot. A slot's lease (``slot_lease_s``)
lets a crashed gateway's reservations expire; the bucket hash expires once it would be full.

**Degraded mode.** A Redis call that fails or takes longer than ``timeout_s`` switches this
process to a local :class:`~serving.admission.InProcessAdmission` that enforces its share of
each quota (``quota / expected_processes``, concurrency rounded up), never failing open and never
failing every request. The switch is logged once per transition and exposed as the
``switchyard_admission_degraded`` gauge and the ``switchyard_admission_degraded_decisions_total``
counter. While degraded, at most one request per ``probe_interval_s`` tries Redis again; its
success ends the mode.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass, replace

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

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
from serving.errors import overloaded, rate_limited
from serving.metrics import GatewayMetrics
from serving.settings import AdmissionSettings
from serving.tenants import Quotas, Tenant

log = logging.getLogger(__name__)

_KEY_PREFIX = "switchyard:adm:"
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)

# Shared by both scripts. ARGV[1..4]: request rate, request capacity, token rate, token capacity.
# The bucket hash KEYS[1] holds r (requests), t (tokens), ts (refill time, Redis server seconds);
# a missing hash is a full bucket, so it expires once refill would have filled it.
_BUCKET = """
local req_rate, req_cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_rate, tok_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function refilled(now)
  local s = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
  local r, tk, ts = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  if not r then return req_cap, tok_cap, now end
  local elapsed = now - ts
  if elapsed > 0 then
    r = math.min(req_cap, r + elapsed * req_rate)
    tk = math.min(tok_cap, tk + elapsed * tok_rate)
    ts = now
  end
  return r, tk, ts
end
local function store(r, tk, ts)
  redis.call('HSET', KEYS[1], 'r', string.format('%.17g', r), 't', string.format('%.17g', tk),
    'ts', string.format('%.17g', ts))
  local full_in = math.max((req_cap - r) / req_rate, (tok_cap - tk) / tok_rate)
  redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
end
"""

# KEYS: bucket hash, slot set. ARGV[5..]: tokens to reserve, max concurrency, lease seconds,
# reservation id, request slack, token slack.
# Returns {"ok", now} | {"c"} (concurrency) | {"r", request wait, token wait} (seconds).
_CHECK_AND_RESERVE = (
    _BUCKET
    + """
local est, lease = tonumber(ARGV[5]), tonumber(ARGV[7])
local now = server_now()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {'c'} end
local r, tk, ts = refilled(now)
local need = math.min(est, tok_cap)
if r < 1 - tonumber(ARGV[9]) or tk < need - tonumber(ARGV[10]) then
  local rw = math.max(0, (1 - r) / req_rate)
  local tw = math.max(0, (need - tk) / tok_rate)
  return {'r', string.format('%.17g', rw), string.format('%.17g', tw)}
end
store(r - 1, tk - est, ts)
redis.call('ZADD', KEYS[2], now + lease, ARGV[8])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease * 1000) + 1000)
return {'ok', string.format('%.17g', now)}
"""
)

# KEYS: bucket hash, slot set. ARGV[5..]: reservation id, reserved − actual tokens ('' = usage
# unknown: the reservation stays charged). Returns 1 when the slot was still held, 0 when its
# lease had expired.
_RELEASE_AND_RECONCILE = (
    _BUCKET
    + """
local freed = redis.call('ZREM', KEYS[2], ARGV[5])
if ARGV[6] ~= '' then
  local r, tk, ts = refilled(server_now())
  store(r, math.min(tok_cap, tk + tonumber(ARGV[6])), ts)
end
return freed
"""
)


@dataclass(frozen=True)
class RedisAdmissionConfig:
    """How this process talks to Redis and what it does when Redis does not answer."""

    url: str
    timeout_s: float = 0.05
    expected_processes: int = 1
    probe_interval_s: float = 1.0
    slot_lease_s: float = 600.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.probe_interval_s <= 0 or self.slot_lease_s <= 0:
            raise ValueError("timeout_s, probe_interval_s and slot_lease_s must be positive")
        if self.expected_processes < 1:
            raise ValueError("expected_processes must be at least 1")


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


@dataclass(frozen=True)
class _BucketShape:
    request_rate: float
    request_capacity: float
    token_rate: float
    token_capacity: float

    @classmethod
    def of(cls, quotas: Quotas, limits: AdmissionLimits) -> _BucketShape:
        request_rate = quotas.requests_per_minute / 60.0
        token_rate = quotas.tokens_per_minute / 60.0
        return cls(
            request_rate,
            max(1.0, request_rate * limits.request_burst_s),
            token_rate,
            max(1.0, token_rate * limits.token_burst_s),
        )

    def args(self) -> list[str]:
        return [
            repr(self.request_rate),
            repr(self.request_capacity),
            repr(self.token_rate),
            repr(self.token_capacity),
        ]


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
        shape: _BucketShape,
    ) -> None:
        super().__init__(owner, tenant_id, tier, reserved_tokens, admitted_at)
        self.reservation_id = reservation_id
        self.shape = shape


class RedisAdmission:
    """Cluster-wide quotas in Redis, local shedding, and a local-share fallback while Redis is away."""

    def __init__(
        self,
        client: aioredis.Redis,
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
        self._reserve = client.register_script(_CHECK_AND_RESERVE)
        self._reconcile = client.register_script(_RELEASE_AND_RECONCILE)
        self._local = InProcessAdmission(self.limits, clock=clock)
        self._shares: dict[str, tuple[Quotas, Tenant]] = {}
        self._shapes: dict[str, tuple[Quotas, _BucketShape]] = {}
        self._redis_in_flight = 0
        self.degraded = False
        self._next_probe = 0.0

    @classmethod
    def connect(
        cls, config: RedisAdmissionConfig, limits: AdmissionLimits | None = None, **kwargs
    ) -> RedisAdmission:
        """A client for ``config.url`` that fails fast: the timeout bounds connect and reply, no retries."""
        client = aioredis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, config, limits, **kwargs)

    async def aclose(self) -> None:
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
            reservation_id = uuid.uuid4().hex
            keys = tenant_keys(tenant.tenant_id)
            args = [
                *shape.args(),
                str(estimated_tokens),
                str(tenant.quotas.max_concurrency),
                repr(self.config.slot_lease_s),
                reservation_id,
                repr(_REQUEST_SLACK),
                repr(_TOKEN_SLACK),
            ]
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    reply = await self._reserve(keys=keys, args=args)
            except _FAILURES as exc:
                self._enter_degraded(exc)
            else:
                self._leave_degraded()
                return self._decide(tenant, estimated_tokens, shape, reservation_id, reply)
        if self._metrics is not None:
            self._metrics.admission_degraded_decisions.inc()
        return self._local.admit_now(self._share(tenant), estimated_tokens)

    def _decide(
        self, tenant: Tenant, estimated_tokens: int, shape: _BucketShape, reservation_id: str, reply: list
    ) -> AdmissionTicket:
        verdict = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if verdict == "ok":
            self._redis_in_flight += 1
            return RedisTicket(
                self, tenant.tenant_id, tenant.tier, estimated_tokens, self._clock(), reservation_id, shape
            )
        if verdict == "c":
            raise rate_limited(
                f"Rate limit exceeded: at most {tenant.quotas.max_concurrency} concurrent requests for this tenant.",
                retry_after_s=self.limits.concurrency_retry_after_s,
            )
        raise bucket_rate_error(tenant.quotas, float(reply[1]), float(reply[2]))

    async def release(self, ticket: AdmissionTicket, actual_tokens: int | None = None) -> bool:
        if ticket.owner is self._local:
            return self._local.release_now(ticket, actual_tokens)
        if ticket.owner is not self or not isinstance(ticket, RedisTicket):
            raise ValueError("the ticket was issued by another admission backend")
        if ticket.released:
            return False
        ticket.released = True
        self._redis_in_flight -= 1
        delta = "" if actual_tokens is None else str(ticket.reserved_tokens - actual_tokens)
        shape = ticket.shape
        try:
            async with asyncio.timeout(self.config.timeout_s):
                await self._reconcile(
                    keys=tenant_keys(ticket.tenant_id), args=[*shape.args(), ticket.reservation_id, delta]
                )
        except _FAILURES as exc:  # the slot's lease expires it; the reservation stays charged
            self._enter_degraded(exc)
        return True

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

    def _shape(self, quotas: Quotas) -> _BucketShape:
        key = f"{quotas.requests_per_minute}/{quotas.tokens_per_minute}"
        cached = self._shapes.get(key)
        if cached is None or cached[0] is not quotas:
            cached = self._shapes[key] = (quotas, _BucketShape.of(quotas, self.limits))
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
