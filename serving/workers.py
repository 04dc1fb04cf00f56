"""The gateway's client to the model workers: one connection pool, replicas, breakers, timeouts.

A :class:`WorkerPool` is built once at start-up from the deployment map (endpoints per
(sku, region)) and speaks the Anthropic Messages API to vLLM-compatible workers at
``<endpoint>/v1/messages``:

- :meth:`WorkerPool.complete` — a non-streamed attempt → :class:`WorkerReply` (body bytes,
  usage, stop reason, timings); the HTTP exchange of one attempt is ``serving.worker_attempt``;
- :meth:`WorkerPool.open_stream` — a streamed attempt, returned once the response is 200
  *and* the worker's ``message_start`` arrived → :class:`~serving.worker_stream.WorkerStream`.

Every failure before that point raises :class:`~serving.worker_errors.WorkerAttemptError`
(nothing reached the client, so the gateway may try its next candidate when ``retryable``);
failures after it end ``WorkerStream.iter_raw`` with ``WorkerStreamBroken``.

Replica choice within (sku, region) is the pure :func:`serving.replica_choice.choose_replica`
(swappable: pass ``choose=``): prefix-cache affinity on the request's leading prompt blocks
(``prefix_keys``) with bounded load, load being this gateway's in-flight requests plus the
replica's own queue as scraped by :class:`~serving.worker_probe.WorkerProbe`. A replica that
failed its health check or whose circuit is open is never chosen. A call that fails on one
replica before anything was received (refused, reset, 5xx, 529) is retried on another replica
of the same SKU, up to ``replica_attempts`` replicas; the failures before the answer travel
with it (``earlier_failures``) so the caller can record every attempt. Each endpoint has a
circuit breaker (``serving.breaker``); attempts report verdicts classified in
``serving.worker_errors``; :meth:`WorkerPool.available` tells routing whether a SKU has an
endpoint that would take a request. Timeouts and limits come from
:class:`serving.settings.WorkerSettings`; ``deadline`` arguments are absolute
``time.monotonic()`` seconds.

The probe starts with :meth:`WorkerPool.start` (which waits for its first round: start-up
readiness), or else with the HTTP client on first use.

The HTTP client is ``serving.worker_http`` (keep-alive HTTP/1.1 over asyncio, httptools
parsing), made on first use inside the running event loop. General clients cost more CPU per
call than the rest of the worker call: httpx several ms (its pool scans every pooled
connection on each request), aiohttp ~0.3 ms more than this one on the benchmark VM.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from features.deployment import DEFAULT_DEPLOYMENT_PATH, DeploymentMap, load_deployment
from serving.breaker import BreakerPolicy, BreakerStore, InProcessBreakers, Verdict
from serving.replica_choice import ReplicaLoad, affinity_key, choose_replica
from serving.settings import WorkerSettings
from serving.worker_attempt import Attempt, PoolEndpoint, WorkerReply, complete_attempt, open_attempt
from serving.worker_errors import Failure, WorkerAttemptError, classify_timeout
from serving.worker_http import WorkerHttpClient
from serving.worker_probe import ScrapedLoad, WorkerProbe
from serving.worker_stream import WorkerStream, WorkerStreamBroken, WorkerUsage

__all__ = [
    "EndpointSnapshot",
    "SkuLoad",
    "WorkerAttemptError",
    "WorkerPool",
    "WorkerReply",
    "WorkerStream",
    "WorkerStreamBroken",
    "WorkerUsage",
    "breaker_policy",
]

# (replica loads, affinity key or None, round-robin start) -> the chosen index, or None
ReplicaChooser = Callable[[Sequence[ReplicaLoad], bytes | None, int], int | None]

# failures that say nothing against the other replicas' chances, or leave no time to try one
_NOT_FOR_ANOTHER_REPLICA = frozenset(
    {"first_event_timeout", "response_timeout", "deadline_exceeded", "pool_timeout"}
)


def breaker_policy(settings: WorkerSettings) -> BreakerPolicy:
    return BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        cooldown_s=settings.breaker_cooldown_s,
        probe_timeout_s=settings.breaker_probe_timeout_s,
    )


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    sku: str
    region: str
    url: str
    in_flight: int
    breaker_state: str
    consecutive_failures: int
    kind: str = "simulated"
    healthy: bool | None = None  # None: not checked yet (or no probe)
    running: float | None = None  # scraped; None when no recent scrape
    waiting: float | None = None
    kv_cache_usage: float | None = None
    prefix_cache_hit_rate: float | None = None  # since the worker started


@dataclass(frozen=True, slots=True)
class SkuLoad:
    """Scraped load of one SKU in one region, over its replicas (a per-SKU live signal)."""

    sku: str
    region: str
    replicas: int
    healthy_replicas: int
    scraped_replicas: int  # replicas with a recent scrape; the sums below cover only those
    running: float
    waiting: float
    kv_cache_usage: float | None  # mean over scraped replicas
    prefix_cache_hit_rate: float | None  # hits / queries summed over scraped replicas


class WorkerPool:
    """HTTP client to every worker endpoint of a deployment map; build it in the app's lifespan."""

    def __init__(
        self,
        deployment: DeploymentMap,
        settings: WorkerSettings,
        *,
        breakers: BreakerStore | None = None,
        choose: ReplicaChooser | None = None,
    ) -> None:
        self.deployment = deployment
        self.settings = settings
        self.breakers: BreakerStore = breakers or InProcessBreakers(breaker_policy(settings))
        self._choose = choose or functools.partial(choose_replica, load_factor=settings.affinity_load_factor)
        self._endpoints = {
            (d.sku, d.region): tuple(
                PoolEndpoint(d.sku, d.region, e.url.rstrip("/"), e.kind) for e in d.endpoints
            )
            for d in deployment.deployments
        }
        self._cursor = dict.fromkeys(self._endpoints, 0)
        self._in_flight = 0  # over every endpoint: each attempt holds at most one connection
        self._http: WorkerHttpClient | None = None
        self._closed = False
        self.probe: WorkerProbe | None = None
        if settings.probe_interval_s > 0:
            self.probe = WorkerProbe(
                (e.url for endpoints in self._endpoints.values() for e in endpoints),
                interval_s=settings.probe_interval_s,
                timeout_s=settings.probe_timeout_s,
                unhealthy_after=settings.unhealthy_after,
            )

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> WorkerPool:
        """Read the deployment map the settings name (``DeploymentError`` if bad) and build the pool."""
        return cls(load_deployment(settings.deployment_file or DEFAULT_DEPLOYMENT_PATH), settings)

    async def start(self) -> None:
        """Check every endpoint once (start-up readiness), then keep probing in the background."""
        if self.probe is not None:
            await self.probe.start()

    async def aclose(self) -> None:
        self._closed = True
        if self.probe is not None:
            await self.probe.aclose()
        if self._http is not None:
            await self._http.close()

    def _client(self) -> WorkerHttpClient:
        """The HTTP client, made on first use (inside the running event loop)."""
        if self._http is None:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self.probe is not None:
                self.probe.start_background()  # a no-op when start() ran
            settings = self.settings
            self._http = WorkerHttpClient(
                limit=settings.max_connections,
                keepalive_s=settings.keepalive_expiry_s,  # 0: a connection per request
                connect_timeout_s=settings.pool_timeout_s + settings.connect_timeout_s,  # pool wait + connect
                sock_connect_timeout_s=settings.connect_timeout_s,
            )
        return self._http

    def deployed(self, sku: str, region: str) -> bool:
        """Whether ``sku`` has endpoints in ``region``, healthy or not (one dict probe)."""
        return (sku, region) in self._endpoints

    def available(self, sku: str, region: str) -> bool:
        """Whether some endpoint of ``sku`` in ``region`` would take a request now."""
        return any(self._permits(e) for e in self._endpoints.get((sku, region), ()))

    def _healthy(self, endpoint: PoolEndpoint) -> bool:
        return self.probe is None or self.probe.healthy(endpoint.url)

    def _permits(self, endpoint: PoolEndpoint) -> bool:
        return self._healthy(endpoint) and self.breakers.permits(endpoint.key)

    def _scraped(self, endpoint: PoolEndpoint) -> ScrapedLoad | None:
        return None if self.probe is None else self.probe.load(endpoint.url, endpoint.sku)

    def snapshot(self) -> list[EndpointSnapshot]:
        """Per endpoint: in flight, breaker state, health and scraped load (for /readyz and /metrics)."""
        rows = []
        for endpoints in self._endpoints.values():
            for e in endpoints:
                record = self.breakers.get(e.key)
                health = None if self.probe is None else self.probe.endpoints[e.url].healthy
                load = self._scraped(e)
                rows.append(
                    EndpointSnapshot(
                        e.sku, e.region, e.url, e.in_flight, record.state.value, record.consecutive_failures,
                        kind=e.kind,
                        healthy=health,
                        running=None if load is None else load.running,
                        waiting=None if load is None else load.waiting,
                        kv_cache_usage=None if load is None else load.kv_cache_usage,
                        prefix_cache_hit_rate=None if load is None else load.prefix_cache_hit_rate,
                    )
                )  # fmt: skip
        return rows

    def sku_load(self, sku: str, region: str) -> SkuLoad:
        """The scraped load of a SKU's replicas in a region (queue depth, KV use, prefix-cache hits)."""
        endpoints = self._endpoints.get((sku, region), ())
        loads = [load for load in map(self._scraped, endpoints) if load is not None]
        queries = sum(load.prefix_cache_queries for load in loads)
        return SkuLoad(
            sku=sku,
            region=region,
            replicas=len(endpoints),
            healthy_replicas=sum(1 for e in endpoints if self._healthy(e)),
            scraped_replicas=len(loads),
            running=sum(load.running for load in loads),
            waiting=sum(load.waiting for load in loads),
            kv_cache_usage=sum(load.kv_cache_usage for load in loads) / len(loads) if loads else None,
            prefix_cache_hit_rate=sum(load.prefix_cache_hits for load in loads) / queries
            if queries
            else None,
        )

    def scraped_queue_depths(self) -> dict[tuple[str, str], float]:
        """Requests held by each (region, SKU)'s replicas (running + waiting, from their /metrics),
        where every healthy replica has a recent scrape; the live stats' ``sku_queue_depth``."""
        depths = {}
        for sku, region in self._endpoints:
            load = self.sku_load(sku, region)
            if load.scraped_replicas and load.scraped_replicas >= load.healthy_replicas:
                depths[(region, sku)] = load.running + load.waiting
        return depths

    async def complete(
        self,
        sku: str,
        region: str,
        body: bytes,
        *,
        deadline: float,
        attempt_timeout_s: float | None = None,
        request_id: str | None = None,
        prefix_keys: Sequence[tuple[int, bytes]] = (),
    ) -> WorkerReply:
        """POST a non-streamed request (``body`` already names ``sku``) to a replica.

        ``prefix_keys`` (``features.prefix.boundary_prefix_keys`` of the prompt) steer it to the
        replica that holds the prompt's prefix; without them the least-loaded replica serves.
        ``attempt_timeout_s`` overrides ``response_timeout_s``. Raises ``WorkerAttemptError``.
        """
        limit = attempt_timeout_s or self.settings.response_timeout_s

        async def call(attempt: Attempt) -> WorkerReply:
            return await complete_attempt(self._client(), attempt, body, request_id)

        attempt, reply, failed = await self._on_a_replica(sku, region, deadline, limit, prefix_keys, call)
        self._release(attempt.endpoint, Verdict.SUCCESS)
        return reply if not failed else replace(reply, earlier_failures=failed)

    async def open_stream(
        self,
        sku: str,
        region: str,
        body: bytes,
        *,
        deadline: float,
        attempt_timeout_s: float | None = None,
        request_id: str | None = None,
        prefix_keys: Sequence[tuple[int, bytes]] = (),
    ) -> WorkerStream:
        """POST a streamed request; return once the answer is 200 and ``message_start`` has arrived.

        ``prefix_keys`` as for :meth:`complete`. ``attempt_timeout_s`` overrides
        ``first_event_timeout_s``. Raises ``WorkerAttemptError``. The stream holds its
        endpoint until closed: use ``async with`` or ``aclose()``.
        """
        limit = attempt_timeout_s or self.settings.first_event_timeout_s

        async def call(attempt: Attempt) -> WorkerStream:
            idle_s = self.settings.idle_timeout_s
            return await open_attempt(self._client(), attempt, body, request_id, idle_s, self._release)

        attempt, stream, failed = await self._on_a_replica(sku, region, deadline, limit, prefix_keys, call)
        # the stream holds its endpoint until it is closed; only the breaker hears of the success now
        self.breakers.record(attempt.endpoint.key, Verdict.SUCCESS)
        stream.earlier_failures = failed
        return stream

    async def _on_a_replica(self, sku, region, deadline, limit, prefix_keys, call):
        """``call`` on a replica chosen by prefix affinity, on another replica of the SKU after a
        failure that allows it: ``(attempt, answer, earlier failures)``; raises the last failure.
        A failed attempt releases its endpoint with the failure's verdict; the caller releases
        (or hands on) the endpoint of the answer."""
        key = affinity_key(prefix_keys)
        failed: list[WorkerAttemptError] = []
        while True:
            attempt = self._start(sku, region, deadline, limit, key, failed)
            try:
                answer = await call(attempt)
            except WorkerAttemptError as error:
                self._release(attempt.endpoint, error.failure.verdict)
                if self._try_another_replica(attempt.endpoint, error, failed):
                    continue
                raise
            except BaseException:
                self._release(attempt.endpoint, Verdict.NEUTRAL)
                raise
            return attempt, answer, tuple(failed)

    def _try_another_replica(
        self, endpoint: PoolEndpoint, error: WorkerAttemptError, failed: list[WorkerAttemptError]
    ) -> bool:
        """After a failed attempt: whether to try another replica of the SKU (``failed`` grows).

        When not, ``error`` carries the earlier failures and the caller raises it.
        """
        if error.error_type == "connect_error" and self.probe is not None:
            self.probe.check_soon(endpoint.url)
        tried = {f.replica for f in failed} | {endpoint.url}
        another = (
            error.retryable
            and error.error_type not in _NOT_FOR_ANOTHER_REPLICA
            and len(tried) < self.settings.replica_attempts
            and any(
                e.url not in tried and self._permits(e)
                for e in self._endpoints.get((endpoint.sku, endpoint.region), ())
            )
        )
        if another:
            failed.append(error)
        else:
            error.earlier_failures = tuple(failed)
        return another

    def _start(
        self,
        sku: str,
        region: str,
        deadline: float,
        attempt_timeout_s: float,
        key: bytes | None,
        failed: Sequence[WorkerAttemptError] = (),
    ) -> Attempt:
        """Choose a replica and claim it (in-flight count, breaker probe), or refuse without sending."""
        now = time.monotonic()

        def refused(failure: Failure, message: str) -> WorkerAttemptError:
            error = WorkerAttemptError(failure, message, sku=sku, region=region, replica=None, elapsed_ms=0.0)
            error.earlier_failures = tuple(failed)
            return error

        if deadline <= now:
            raise refused(classify_timeout(True, ""), "the deadline has passed")
        endpoints = self._endpoints.get((sku, region), ())
        if not endpoints:
            raise refused(
                Failure("error", "not_deployed", True, Verdict.NEUTRAL), f"not deployed in {region}"
            )
        tried = {f.replica for f in failed}
        loads = [
            ReplicaLoad(
                e.url,
                e.in_flight,
                self.probe.waiting(e.url, sku) if self.probe is not None else 0.0,
                e.url not in tried and self._permits(e),
            )
            for e in endpoints
        ]
        while True:
            index = self._choose(loads, key, self._cursor[sku, region])
            if index is None:
                failure = Failure("overloaded", "circuit_open", True, Verdict.NEUTRAL)
                raise refused(failure, "no endpoint is healthy with its circuit closed")
            endpoint = endpoints[index]
            if self.breakers.acquire(endpoint.key):
                break
            loads[index] = replace(loads[index], permitted=False)  # another request holds the half-open probe
        self._cursor[sku, region] = (index + 1) % len(endpoints)
        endpoint.in_flight += 1
        waited_for_pool = self._in_flight >= self.settings.max_connections
        self._in_flight += 1
        return Attempt(endpoint, now, now + attempt_timeout_s, deadline, waited_for_pool)

    def _release(self, endpoint: PoolEndpoint, verdict: Verdict) -> None:
        endpoint.in_flight -= 1
        self._in_flight -= 1
        self.breakers.record(endpoint.key, verdict)
