"""The gateway's client to the model workers: one pooled aiohttp session, replicas, breakers, timeouts.

A :class:`WorkerPool` is built once at start-up from the deployment map (endpoints per
(sku, region)) and speaks the Anthropic Messages API to vLLM-compatible workers at
``<endpoint>/v1/messages``:

- :meth:`WorkerPool.complete` — a non-streamed attempt → :class:`WorkerReply` (body bytes,
  usage, stop reason, timings);
- :meth:`WorkerPool.open_stream` — a streamed attempt, returned once the response is 200
  *and* the worker's ``message_start`` arrived → :class:`~serving.worker_stream.WorkerStream`.

Every failure before that point raises :class:`~serving.worker_errors.WorkerAttemptError`
(nothing reached the client, so the gateway may try its next candidate when ``retryable``);
failures after it end ``WorkerStream.iter_raw`` with ``WorkerStreamBroken``.

Replica choice within (sku, region) is the pure :func:`least_in_flight` (swappable: pass
``choose=``). Each endpoint has a circuit breaker (``serving.breaker``); attempts report
verdicts classified in ``serving.worker_errors``; :meth:`WorkerPool.available` tells routing
whether a SKU has an endpoint whose circuit lets a request through. Timeouts and limits come
from :class:`serving.settings.WorkerSettings`; ``deadline`` arguments are absolute
``time.monotonic()`` seconds.

The HTTP client is aiohttp rather than httpx: on this gateway's hot path httpx cost several
ms of CPU per request (its pool scans every pooled connection on each request), aiohttp
under 1 ms. Its session is made on first use, inside the running event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from features.deployment import DEFAULT_DEPLOYMENT_PATH, DeploymentMap, load_deployment
from serving.breaker import BreakerPolicy, BreakerStore, InProcessBreakers, Verdict
from serving.settings import WorkerSettings
from serving.worker_errors import (
    PROTOCOL_ERROR,
    Failure,
    WorkerAttemptError,
    classify_http_status,
    classify_in_band,
    classify_timeout,
    classify_transport,
    retry_after_s,
    worker_error,
)
from serving.worker_stream import (
    SseProtocolError,
    StreamProgress,
    WorkerStream,
    WorkerStreamBroken,
    WorkerUsage,
)

__all__ = [
    "EndpointSnapshot",
    "WorkerAttemptError",
    "WorkerPool",
    "WorkerReply",
    "WorkerStream",
    "WorkerStreamBroken",
    "WorkerUsage",
    "breaker_policy",
    "least_in_flight",
]

ReplicaChooser = Callable[[Sequence[int], Sequence[bool], int], int | None]


def least_in_flight(in_flight: Sequence[int], permitted: Sequence[bool], start: int) -> int | None:
    """The permitted replica with the fewest requests in flight; ties go to the first from ``start`` on.

    The pool moves ``start`` past each choice, which makes ties round-robin. None when no
    replica is permitted.
    """
    count = len(in_flight)
    best: int | None = None
    for offset in range(count):
        index = (start + offset) % count
        if permitted[index] and (best is None or in_flight[index] < in_flight[best]):
            best = index
    return best


def breaker_policy(settings: WorkerSettings) -> BreakerPolicy:
    return BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        cooldown_s=settings.breaker_cooldown_s,
        probe_timeout_s=settings.breaker_probe_timeout_s,
    )


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """A worker's 200 answer to a non-streamed request."""

    sku: str
    region: str
    replica: str
    body: bytes  # the worker's JSON, as received
    usage: WorkerUsage
    stop_reason: str | None
    e2e_ms: float
    ttft_ms: float | None = None  # a non-streamed answer shows no first token: None on purpose


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    sku: str
    region: str
    url: str
    in_flight: int
    breaker_state: str
    consecutive_failures: int


@dataclass(eq=False, slots=True)
class _Endpoint:
    sku: str
    region: str
    url: str
    in_flight: int = 0

    @property
    def key(self) -> str:
        """The breaker key."""
        return f"{self.region}/{self.sku}/{self.url}"


@dataclass(frozen=True, slots=True)
class _Attempt:
    endpoint: _Endpoint
    started: float
    limit: float  # started + the per-attempt timeout
    deadline: float  # the caller's
    waited_for_pool: bool  # every connection of the pool was in use when it started

    def fail(
        self, failure: Failure, message: str, http_status: int | None = None, retry_after: float | None = None
    ) -> WorkerAttemptError:
        e = self.endpoint
        elapsed_ms = (time.monotonic() - self.started) * 1000.0
        return WorkerAttemptError(
            failure, message, sku=e.sku, region=e.region, replica=e.url, elapsed_ms=elapsed_ms,
            http_status=http_status, retry_after_s=retry_after,
        )  # fmt: skip

    def timed_out(self, label: str) -> WorkerAttemptError:
        deadline_bound = self.deadline <= self.limit
        message = "the deadline passed" if deadline_bound else "the worker did not answer in time"
        return self.fail(classify_timeout(deadline_bound, label), message)

    def transport(self, error: aiohttp.ClientError) -> WorkerAttemptError:
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return self.fail(classify_transport(error, waited_for_pool=self.waited_for_pool), message)

    def status(self, response: aiohttp.ClientResponse, raw: bytes) -> WorkerAttemptError:
        error_type, message = worker_error(raw)
        failure = classify_http_status(response.status, error_type)
        return self.fail(failure, message, response.status, retry_after_s(response.headers))


class WorkerPool:
    """HTTP client to every worker endpoint of a deployment map; build it in the app's lifespan."""

    def __init__(
        self,
        deployment: DeploymentMap,
        settings: WorkerSettings,
        *,
        breakers: BreakerStore | None = None,
        choose: ReplicaChooser = least_in_flight,
    ) -> None:
        self.deployment = deployment
        self.settings = settings
        self.breakers: BreakerStore = breakers or InProcessBreakers(breaker_policy(settings))
        self._choose = choose
        self._endpoints = {
            (d.sku, d.region): tuple(_Endpoint(d.sku, d.region, url.rstrip("/")) for url in d.endpoints)
            for d in deployment.deployments
        }
        self._cursor = dict.fromkeys(self._endpoints, 0)
        self._in_flight = 0  # over every endpoint: each attempt holds at most one connection
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> WorkerPool:
        """Read the deployment map the settings name (``DeploymentError`` if bad) and build the pool."""
        return cls(load_deployment(settings.deployment_file or DEFAULT_DEPLOYMENT_PATH), settings)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp binds it to the running event loop)."""
        if self._session is None:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            settings = self.settings
            keep_alive = settings.keepalive_expiry_s > 0
            connector = aiohttp.TCPConnector(
                limit=settings.max_connections,
                limit_per_host=0,
                keepalive_timeout=settings.keepalive_expiry_s if keep_alive else None,
                force_close=not keep_alive,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None,  # reads are bounded by the first-event / idle / response timeouts
                    connect=settings.pool_timeout_s + settings.connect_timeout_s,  # pool wait + connect
                    sock_connect=settings.connect_timeout_s,
                ),
                trust_env=False,  # never route worker traffic through an environment proxy
                auto_decompress=False,  # the raw bytes go to the client as they are
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def available(self, sku: str, region: str) -> bool:
        """Whether some endpoint of ``sku`` in ``region`` would take a request now."""
        return any(self.breakers.permits(e.key) for e in self._endpoints.get((sku, region), ()))

    def snapshot(self) -> list[EndpointSnapshot]:
        """Per endpoint: requests in flight and breaker state (for /readyz and /metrics)."""
        rows = []
        for endpoints in self._endpoints.values():
            for e in endpoints:
                record = self.breakers.get(e.key)
                state, failures = record.state.value, record.consecutive_failures
                rows.append(EndpointSnapshot(e.sku, e.region, e.url, e.in_flight, state, failures))
        return rows

    async def complete(
        self,
        sku: str,
        region: str,
        body: bytes,
        *,
        deadline: float,
        attempt_timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> WorkerReply:
        """POST a non-streamed request (``body`` already names ``sku``) to one replica.

        ``attempt_timeout_s`` overrides ``response_timeout_s``. Raises ``WorkerAttemptError``.
        """
        attempt = self._start(sku, region, deadline, attempt_timeout_s or self.settings.response_timeout_s)
        try:
            reply = await self._complete(attempt, body, request_id)
        except WorkerAttemptError as error:
            self._release(attempt.endpoint, error.failure.verdict)
            raise
        except BaseException:
            self._release(attempt.endpoint, Verdict.NEUTRAL)
            raise
        self._release(attempt.endpoint, Verdict.SUCCESS)
        return reply

    async def open_stream(
        self,
        sku: str,
        region: str,
        body: bytes,
        *,
        deadline: float,
        attempt_timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> WorkerStream:
        """POST a streamed request; return once the answer is 200 and ``message_start`` has arrived.

        ``attempt_timeout_s`` overrides ``first_event_timeout_s``. Raises ``WorkerAttemptError``.
        The stream holds its endpoint until closed: use ``async with`` or ``aclose()``.
        """
        limit = attempt_timeout_s or self.settings.first_event_timeout_s
        attempt = self._start(sku, region, deadline, limit)
        try:
            stream = await self._open(attempt, body, request_id)
        except WorkerAttemptError as error:
            self._release(attempt.endpoint, error.failure.verdict)
            raise
        except BaseException:
            self._release(attempt.endpoint, Verdict.NEUTRAL)
            raise
        self.breakers.record(attempt.endpoint.key, Verdict.SUCCESS)
        return stream

    def _start(self, sku: str, region: str, deadline: float, attempt_timeout_s: float) -> _Attempt:
        """Choose a replica and claim it (in-flight count, breaker probe), or refuse without sending."""
        now = time.monotonic()

        def refused(failure: Failure, message: str) -> WorkerAttemptError:
            return WorkerAttemptError(failure, message, sku=sku, region=region, replica=None, elapsed_ms=0.0)

        if deadline <= now:
            raise refused(classify_timeout(True, ""), "the deadline has passed")
        endpoints = self._endpoints.get((sku, region), ())
        if not endpoints:
            raise refused(
                Failure("error", "not_deployed", True, Verdict.NEUTRAL), f"not deployed in {region}"
            )
        permitted = [self.breakers.permits(e.key) for e in endpoints]
        while True:
            index = self._choose([e.in_flight for e in endpoints], permitted, self._cursor[sku, region])
            if index is None:
                failure = Failure("overloaded", "circuit_open", True, Verdict.NEUTRAL)
                raise refused(failure, "every endpoint's circuit is open")
            endpoint = endpoints[index]
            if self.breakers.acquire(endpoint.key):
                break
            permitted[index] = False  # another request holds the half-open probe
        self._cursor[sku, region] = (index + 1) % len(endpoints)
        endpoint.in_flight += 1
        waited_for_pool = self._in_flight >= self.settings.max_connections
        self._in_flight += 1
        return _Attempt(endpoint, now, now + attempt_timeout_s, deadline, waited_for_pool)

    def _release(self, endpoint: _Endpoint, verdict: Verdict) -> None:
        endpoint.in_flight -= 1
        self._in_flight -= 1
        self.breakers.record(endpoint.key, verdict)

    async def _post(
        self, attempt: _Attempt, body: bytes, request_id: str | None, stream: bool
    ) -> aiohttp.ClientResponse:
        """Send the request; the response's head has arrived, its body not yet read."""
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "accept-encoding": "identity",  # the raw bytes go to the client as they are
        }
        if request_id is not None:
            headers["x-request-id"] = request_id
        url = attempt.endpoint.url + "/v1/messages"
        return await self._client().post(url, data=body, headers=headers, allow_redirects=False)

    async def _complete(self, attempt: _Attempt, body: bytes, request_id: str | None) -> WorkerReply:
        try:
            async with asyncio.timeout(min(attempt.limit, attempt.deadline) - time.monotonic()):
                response = await self._post(attempt, body, request_id, stream=False)
                try:
                    raw = await response.read()
                finally:
                    response.close()  # pooled again if the body was read to its end, else dropped
        except aiohttp.ClientError as error:  # first: aiohttp's own timeouts are TimeoutErrors too
            raise attempt.transport(error) from None
        except TimeoutError:
            raise attempt.timed_out("response_timeout") from None
        if response.status != 200:
            raise attempt.status(response, raw)
        try:
            document = json.loads(raw)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("type") != "message":
            raise attempt.fail(PROTOCOL_ERROR, "a 200 answer that is not a Messages API message")
        stop_reason = document.get("stop_reason")
        endpoint = attempt.endpoint
        return WorkerReply(
            sku=endpoint.sku,
            region=endpoint.region,
            replica=endpoint.url,
            body=raw,
            usage=WorkerUsage().updated(document.get("usage")),
            stop_reason=stop_reason if isinstance(stop_reason, str) else None,
            e2e_ms=(time.monotonic() - attempt.started) * 1000.0,
        )

    async def _open(self, attempt: _Attempt, body: bytes, request_id: str | None) -> WorkerStream:
        progress = StreamProgress(attempt.started)
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(min(attempt.limit, attempt.deadline) - time.monotonic()):
                response = await self._post(attempt, body, request_id, stream=True)
                if response.status != 200:
                    raise attempt.status(response, await response.read())
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise attempt.fail(PROTOCOL_ERROR, "a 200 answer to a stream that is not an event stream")
                chunks = response.content.iter_any()
                received = bytearray()
                while progress.message_start is None:
                    chunk = await anext(chunks, None)
                    if chunk is None:
                        raise attempt.fail(PROTOCOL_ERROR, "the stream ended before message_start")
                    received += chunk
                    progress.feed(chunk, time.monotonic())
                    if progress.message_start is None and progress.error_type is not None:
                        failure = classify_in_band(progress.error_type)
                        raise attempt.fail(failure, progress.error_message or "")
        except BaseException as error:
            if response is not None:
                response.close()  # pooled again if the body was read to its end, else dropped
            if isinstance(error, aiohttp.ClientError):  # first: aiohttp's timeouts are TimeoutErrors too
                raise attempt.transport(error) from None
            if isinstance(error, TimeoutError):
                raise attempt.timed_out("first_event_timeout") from None
            if isinstance(error, SseProtocolError):
                raise attempt.fail(PROTOCOL_ERROR, str(error)) from None
            raise
        endpoint = attempt.endpoint
        return WorkerStream(
            sku=endpoint.sku,
            region=endpoint.region,
            replica=endpoint.url,
            response=response,
            chunks=chunks,
            progress=progress,
            buffered=bytes(received[progress.message_start_end :]),
            idle_timeout_s=self.settings.idle_timeout_s,
            deadline=attempt.deadline,
            on_close=lambda verdict: self._release(endpoint, verdict),
        )
