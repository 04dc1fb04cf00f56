"""One attempt of the worker client: a POST to ``<endpoint>/v1/messages`` and what came back.

:func:`complete_attempt` reads a non-streamed answer whole; :func:`open_attempt` reads a
stream up to its ``message_start`` and hands it over as a
:class:`~serving.worker_stream.WorkerStream`. Every failure before that point is a
:class:`~serving.worker_errors.WorkerAttemptError` classified by ``serving.worker_errors``.
Which endpoint, claiming it and releasing it are the pool's business (``serving.workers``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from serving.breaker import Verdict
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
from serving.worker_http import WorkerHttpClient, WorkerResponse
from serving.worker_stream import SseProtocolError, StreamProgress, WorkerStream, WorkerUsage


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
    earlier_failures: tuple[WorkerAttemptError, ...] = ()  # other replicas of the SKU that failed first


@dataclass(eq=False, slots=True)
class PoolEndpoint:
    """One endpoint of the pool, with this gateway's requests in flight there."""

    sku: str
    region: str
    url: str
    kind: str = "simulated"
    in_flight: int = 0
    key: str = field(init=False, repr=False)  # the breaker key, ``region/sku/url``

    def __post_init__(self) -> None:
        self.key = f"{self.region}/{self.sku}/{self.url}"  # read several times per request


@dataclass(frozen=True, slots=True)
class Attempt:
    """One claimed call to one endpoint, and its time limits; makes its own failure values."""

    endpoint: PoolEndpoint
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

    def status(self, response: WorkerResponse, raw: bytes) -> WorkerAttemptError:
        error_type, message = worker_error(raw)
        failure = classify_http_status(response.status, error_type)
        return self.fail(failure, message, response.status, retry_after_s(response.headers))


async def post_messages(
    client: WorkerHttpClient, attempt: Attempt, body: bytes, request_id: str | None, stream: bool
) -> WorkerResponse:
    """Send the request; the response's head has arrived, its body not yet read."""
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
        "accept-encoding": "identity",  # the raw bytes go to the client as they are
    }
    if request_id is not None:
        headers["x-request-id"] = request_id
    url = attempt.endpoint.url + "/v1/messages"
    return await client.post(url, body, headers)


async def complete_attempt(
    client: WorkerHttpClient, attempt: Attempt, body: bytes, request_id: str | None
) -> WorkerReply:
    """A non-streamed attempt: the worker's whole 200 answer, or ``WorkerAttemptError``."""
    try:
        async with asyncio.timeout(min(attempt.limit, attempt.deadline) - time.monotonic()):
            response = await post_messages(client, attempt, body, request_id, stream=False)
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
        document = _decoded(raw)
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


async def open_attempt(
    client: WorkerHttpClient,
    attempt: Attempt,
    body: bytes,
    request_id: str | None,
    idle_timeout_s: float,
    release: Callable[[PoolEndpoint, Verdict], None],
) -> WorkerStream:
    """A streamed attempt, returned at its ``message_start``; ``release`` runs when it closes."""
    progress = StreamProgress(attempt.started)
    response: WorkerResponse | None = None
    try:
        async with asyncio.timeout(min(attempt.limit, attempt.deadline) - time.monotonic()):
            response = await post_messages(client, attempt, body, request_id, stream=True)
            if response.status != 200:
                raise attempt.status(response, await response.read())
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise attempt.fail(PROTOCOL_ERROR, "a 200 answer to a stream that is not an event stream")
            chunks = response.iter_any()
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
        idle_timeout_s=idle_timeout_s,
        deadline=attempt.deadline,
        on_close=lambda verdict: release(endpoint, verdict),
    )


def _decoded(raw: bytes) -> object:
    """The reply's JSON. orjson (~3x faster than ``json`` on a 10 KB reply) reads integers
    beyond 64 bits as floats, which cannot matter here: of the reply only its type, stop reason
    and token counts are read, and the client gets the bytes as they came. What orjson refuses
    (NaN, lone surrogates) ``json`` decides."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
