"""The budget pacer shared by every gateway process: one λ from the cluster-wide blended cost.

:class:`ClusterPacer` has the surface the gateway uses of
:class:`~serving.router_runtime.BudgetPacer` — ``cost_multiplier`` read per request (a plain
attribute read, no I/O), ``observe(cost_usd)`` per outcome (two additions and the local EWMA),
``budget_usd``, ``observed_cost_usd`` — and a background :meth:`ClusterPacer.run` loop that syncs
with Redis every ``sync_period_s``.

**One round trip per sync.** One Lua script call (:data:`_SYNC`) per sync:

1. adds this process's cost sum and request count since its last sync into the current time
   bucket of the cluster window (bucket index = the Redis server's ``TIME`` // ``bucket_s``);
2. sums the window: the current bucket and the ``window_buckets − 1`` before it, every request
   weighted equally (cost per request = Σ cost / Σ requests over the window, so the window spans
   between ``(window_buckets − 1)·bucket_s`` and ``window_buckets·bucket_s`` seconds);
3. applies this process's *proposed* controller step if one is due (below);
4. returns λ, the step count, and the window's cost sum and request count.

**One controller step per period, cluster-wide.** The control law is
:func:`router_model.policy.pace_cost_multiplier`, run in Python only. After each sync a process
holding at least ``min_requests`` requests in the window computes the next λ from what it just
read, ``pace_cost_multiplier(λ, window cost per request, budget)``, and sends it with its next
sync together with the step count it was computed from. The script applies a proposal only when
the step count is unchanged (compare-and-set: the step is taken from the λ it was computed on)
and the step is due by the server's clock; the first proposal to arrive after the due time wins
and the others are discarded. Steps sit on a grid of ``period_s`` by the server clock (the next
step is due ``period_s`` after the previous due time, or ``period_s`` after now when more than a
period was missed), so the fleet steps λ once per period however many processes sync, and
process clocks never enter into it. The window read behind a proposal is one sync old.

**Keys** (one ``{name}`` hash tag, so both sit in one Redis Cluster slot):
``switchyard:pacer:{<name>}:s`` — hash ``l`` (λ), ``seq`` (steps taken), ``ts`` (due time of
the last step, server seconds); expires ``state_ttl_s`` after the last sync.
``switchyard:pacer:{<name>}:w`` — the window as a ring of ``window_buckets`` slots, fields
``b<i>`` (bucket index), ``c<i>`` (cost sum), ``n<i>`` (requests); a slot whose bucket left the
window is overwritten by the next write, and the hash expires one window after the last write.
A missing state hash is created with λ = the creating process's current λ (``initial_lambda`` on
a fresh cluster; after a Redis restart, the λ the process was pacing with while degraded).

Costs are counted at most once: a process drops its pending sums when a sync fails or times out
(a timed-out script may have been applied). They are already in its local EWMA.

**Degraded mode.** A sync that fails or takes longer than ``timeout_s`` switches this process to
its local :class:`~serving.router_runtime.BudgetPacer` (fed every outcome all along, its λ set to
the cluster λ at every good sync): λ is then paced on this process's own EWMA, as a single
process does, starting from the last cluster λ. The switch is logged once per transition and
exposed as the ``switchyard_pacer_degraded`` gauge (and ``switchyard_pacer_sync_failures_total``).
The loop keeps syncing every ``sync_period_s``; the first good sync ends the mode. Requests never
wait on Redis either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from router_model.policy import pace_cost_multiplier
from serving.router_runtime import BudgetPacer

log = logging.getLogger(__name__)

_KEY_PREFIX = "switchyard:pacer:"
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)

# KEYS: state hash, window hash. ARGV: bucket_s, window_buckets, cost sum, request count,
# λ to create the state with, proposed λ ('' = none), step count it was computed from, period_s,
# state TTL in ms. Returns {λ, steps, window cost sum, window requests, 1 if the proposal was applied}.
_SYNC = """
local bucket_s, width = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local period = tonumber(ARGV[8])
local function fmt(x) return string.format('%.17g', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local bucket = math.floor(now / bucket_s)
if count > 0 then
  local slot = string.format('%d', bucket % width)
  if tonumber(redis.call('HGET', KEYS[2], 'b' .. slot)) == bucket then
    redis.call('HINCRBYFLOAT', KEYS[2], 'c' .. slot, fmt(cost))
    redis.call('HINCRBY', KEYS[2], 'n' .. slot, count)
  else
    redis.call('HSET', KEYS[2], 'b' .. slot, string.format('%d', bucket), 'c' .. slot, fmt(cost),
      'n' .. slot, count)
  end
  redis.call('PEXPIRE', KEYS[2], math.ceil((width + 1) * bucket_s * 1000))
end
local sum_c, sum_n = 0, 0
local fields = redis.call('HGETALL', KEYS[2])
local ring = {}
for i = 1, #fields, 2 do ring[fields[i]] = tonumber(fields[i + 1]) end
for i = 0, width - 1 do
  local at = ring['b' .. i]
  if at and at > bucket - width and at <= bucket then
    sum_c = sum_c + (ring['c' .. i] or 0)
    sum_n = sum_n + (ring['n' .. i] or 0)
  end
end
local s = redis.call('HMGET', KEYS[1], 'l', 'seq', 'ts')
local lam, seq, due = s[1], tonumber(s[2]), tonumber(s[3])
if not seq then
  lam, seq, due = ARGV[5], 0, now
  redis.call('HSET', KEYS[1], 'l', lam, 'seq', 0, 'ts', fmt(now))
end
local stepped = 0
if ARGV[6] ~= '' and tonumber(ARGV[7]) == seq and now - due >= period then
  if now - due >= 2 * period then due = now else due = due + period end
  lam, seq, stepped = ARGV[6], seq + 1, 1
  redis.call('HSET', KEYS[1], 'l', lam, 'seq', seq, 'ts', fmt(due))
end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return {lam, seq, fmt(sum_c), sum_n, stepped}
"""


@dataclass(frozen=True)
class ClusterPacerConfig:
    """Where the shared λ lives, how often this process syncs, and the controller's timing."""

    url: str
    name: str = "default"
    timeout_s: float = 0.05
    sync_period_s: float = 1.0
    period_s: float = 5.0
    bucket_s: float = 1.0
    window_buckets: int = 10
    min_requests: int = 50
    state_ttl_s: float = 86_400.0
    half_life_requests: float = 2_000.0  # of the local EWMA used while degraded

    def __post_init__(self) -> None:
        positive = (self.timeout_s, self.sync_period_s, self.period_s, self.bucket_s, self.state_ttl_s)
        if min(positive) <= 0 or self.half_life_requests <= 0:
            raise ValueError(
                "timeouts, periods, bucket_s, state_ttl_s and half_life_requests must be positive"
            )
        if self.window_buckets < 1 or self.min_requests < 1:
            raise ValueError("window_buckets and min_requests must be at least 1")

    @property
    def window_s(self) -> float:
        return self.window_buckets * self.bucket_s


def pacer_keys(name: str) -> tuple[str, str]:
    """The state hash and the window hash; the ``{name}`` hash tag puts both in one cluster slot."""
    base = f"{_KEY_PREFIX}{{{name}}}"
    return f"{base}:s", f"{base}:w"


@dataclass(frozen=True, slots=True)
class ClusterReading:
    """What one sync read back: the cluster's λ, its step count and the window's totals."""

    cost_multiplier: float
    steps: int
    window_cost_usd: float
    window_requests: int
    stepped: bool  # this sync applied this process's proposal

    @property
    def cost_per_request(self) -> float | None:
        return self.window_cost_usd / self.window_requests if self.window_requests else None


def parse_reading(reply: list) -> ClusterReading:
    lam, steps, cost, requests, stepped = reply
    return ClusterReading(float(lam), int(steps), float(cost), int(requests), bool(int(stepped)))


def next_proposal(reading: ClusterReading, budget_usd: float, min_requests: int) -> float | None:
    """The λ this process proposes for the next step, or None while the window is too thin."""
    if reading.window_requests < min_requests:
        return None
    return pace_cost_multiplier(reading.cost_multiplier, reading.cost_per_request, budget_usd)  # type: ignore[arg-type]


class PacerMetrics:
    """The pacer's own gauges, registered on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.degraded = Gauge(
            "switchyard_pacer_degraded",
            "1 while the shared (Redis) budget pacer is unavailable and this process paces on its own cost",
            registry=registry,
        )
        self.sync_failures = Counter(
            "switchyard_pacer_sync_failures_total",
            "Pacer syncs with Redis that failed or timed out",
            registry=registry,
        )
        self.cluster_cost = Gauge(
            "switchyard_pacer_cluster_cost_per_request_usd",
            "Serving cost per request over the cluster window, as last read",
            registry=registry,
        )
        self.cluster_requests = Gauge(
            "switchyard_pacer_cluster_window_requests",
            "Requests in the cluster window, as last read",
            registry=registry,
        )


class ClusterPacer:
    """λ shared through Redis; falls back to this process's own :class:`BudgetPacer` while Redis is away."""

    def __init__(
        self,
        client: aioredis.Redis,
        config: ClusterPacerConfig,
        budget_usd: float,
        *,
        initial_lambda: float = 0.25,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.budget_usd = budget_usd
        self.period_s = config.period_s
        self._client = client
        self._script = client.register_script(_SYNC)
        self._keys = pacer_keys(config.name)
        self._metrics = PacerMetrics(registry) if registry is not None else None
        self._local = BudgetPacer(
            budget_usd,
            initial_lambda=initial_lambda,
            period_s=config.period_s,
            half_life_requests=config.half_life_requests,
            min_requests=config.min_requests,
            clock=clock,
        )
        self._cluster_lambda = initial_lambda
        self._pending_cost = 0.0
        self._pending_requests = 0
        self._proposal: tuple[float, int] | None = None  # (λ, the step count it was computed from)
        self.reading: ClusterReading | None = None
        self.degraded = False
        self.sync_failures = 0

    @classmethod
    def connect(cls, config: ClusterPacerConfig, budget_usd: float, **kwargs) -> ClusterPacer:
        """A client for ``config.url`` that fails fast: the timeout bounds connect and reply, no retries."""
        client = aioredis.Redis.from_url(
            config.url,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, config, budget_usd, **kwargs)

    @property
    def cost_multiplier(self) -> float:
        return self._local.cost_multiplier if self.degraded else self._cluster_lambda

    @property
    def observed_cost_usd(self) -> float | None:
        """The cluster window's cost per request; this process's EWMA while degraded or before any data."""
        cluster = None if self.reading is None else self.reading.cost_per_request
        return self._local.observed_cost_usd if self.degraded or cluster is None else cluster

    @property
    def steps(self) -> int | None:
        """Controller steps the cluster has taken, as last read (None before the first good sync)."""
        return None if self.reading is None else self.reading.steps

    def observe(self, cost_usd: float) -> None:
        self._pending_cost += cost_usd
        self._pending_requests += 1
        self._local.observe(cost_usd)

    async def sync(self) -> bool:
        """One round trip: push the pending sums, maybe step, read λ back. False (degraded) on failure."""
        cost, requests = self._pending_cost, self._pending_requests
        self._pending_cost, self._pending_requests = 0.0, 0
        proposal, self._proposal = self._proposal, None
        args = [
            repr(self.config.bucket_s),
            str(self.config.window_buckets),
            repr(cost),
            str(requests),
            repr(self.cost_multiplier),
            "" if proposal is None else repr(proposal[0]),
            "-1" if proposal is None else str(proposal[1]),
            repr(self.config.period_s),
            str(max(1, round(self.config.state_ttl_s * 1000))),
        ]
        try:
            async with asyncio.timeout(self.config.timeout_s):
                reply = await self._script(keys=self._keys, args=args)
            reading = parse_reading(reply)
        except (*_FAILURES, ValueError, TypeError) as exc:
            self._fail(exc)
            return False
        self.reading = reading
        self._cluster_lambda = reading.cost_multiplier
        self._local.cost_multiplier = reading.cost_multiplier
        proposed = next_proposal(reading, self.budget_usd, self.config.min_requests)
        self._proposal = None if proposed is None else (proposed, reading.steps)
        if self._metrics is not None:
            self._metrics.cluster_requests.set(reading.window_requests)
            if reading.cost_per_request is not None:
                self._metrics.cluster_cost.set(reading.cost_per_request)
        self._recover()
        return True

    async def run(self) -> None:
        """Sync every ``sync_period_s`` forever (cancel to stop); never raises on Redis trouble."""
        while True:
            await self.sync()
            await asyncio.sleep(self.config.sync_period_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _fail(self, exc: BaseException) -> None:
        self.sync_failures += 1
        if self._metrics is not None:
            self._metrics.sync_failures.inc()
        if self.degraded:
            return
        self.degraded = True
        self._local.cost_multiplier = self._cluster_lambda
        if self._metrics is not None:
            self._metrics.degraded.set(1)
        log.warning(
            "pacer: Redis unavailable (%s); pacing λ=%.4g on this process's own serving cost",
            type(exc).__name__,
            self._cluster_lambda,
        )

    def _recover(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        if self._metrics is not None:
            self._metrics.degraded.set(0)
        log.warning("pacer: Redis answers again; λ=%.4g is the cluster's again", self._cluster_lambda)


def build_pacer(
    budget_usd: float,
    *,
    initial_lambda: float = 0.25,
    redis_url: str | None = None,
    timeout_s: float = 0.05,
    sync_period_s: float = 1.0,
    period_s: float = 5.0,
    window_s: float = 10.0,
    registry: CollectorRegistry | None = None,
) -> BudgetPacer | ClusterPacer:
    """This process's own :class:`BudgetPacer` without a Redis URL, else a :class:`ClusterPacer` (1 s buckets)."""
    if not redis_url:
        return BudgetPacer(budget_usd, initial_lambda=initial_lambda, period_s=period_s)
    bucket_s = min(1.0, window_s)
    config = ClusterPacerConfig(
        url=redis_url,
        timeout_s=timeout_s,
        sync_period_s=sync_period_s,
        period_s=period_s,
        bucket_s=bucket_s,
        window_buckets=max(1, round(window_s / bucket_s)),
    )
    return ClusterPacer.connect(config, budget_usd, initial_lambda=initial_lambda, registry=registry)
