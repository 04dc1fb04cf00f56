"""A worker's SSE stream, passed through byte for byte while a scanner watches what it says.

:class:`SseScanner` splits bytes into server-sent events incrementally (events may be cut at
any byte by the network); :class:`StreamProgress` keeps what the gateway needs from them —
the ``message_start`` event, when the first ``content_block_delta`` arrived (TTFT), usage and
``stop_reason`` from ``message_delta``, an in-band ``error`` event, ``message_stop``. Only
``message_start``, ``message_delta`` and ``error`` are JSON-decoded; text deltas are counted
by name alone, so the cost per token event is one line split.

:class:`WorkerStream` is what ``WorkerPool.open_stream`` hands back once the worker's
``message_start`` has arrived: ``buffered`` (raw bytes already read after that event), then
:meth:`WorkerStream.iter_raw` yields the rest exactly as received. A broken connection, a
stall longer than the idle timeout, the caller's deadline or a body that ends without
``message_stop`` end the iteration with :class:`WorkerStreamBroken`.

Line endings ``\\n`` and ``\\r\\n`` are understood (what vLLM and the Anthropic API send);
a bare ``\\r`` is not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp

from serving.breaker import Verdict
from serving.worker_errors import REQUEST_ERROR_TYPES
from serving.worker_http import WorkerResponse

MAX_LINE_BYTES = 8 * 1024 * 1024


class SseProtocolError(ValueError):
    """The bytes are not the Anthropic event stream they should be."""


class SseEvent(NamedTuple):
    name: str  # the ``event:`` field; "message" when absent, as the SSE spec says
    data: bytes  # the ``data:`` lines joined by "\n"
    end: int  # stream offset just past the blank line that ended the event


class SseScanner:
    """Incremental SSE parser: feed chunks as they come, get complete events back."""

    __slots__ = ("_data", "_fed", "_name", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._fed = 0
        self._name: bytes | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._tail + chunk if self._tail else chunk
        base = self._fed - len(self._tail)
        self._fed += len(chunk)
        events: list[SseEvent] = []
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:newline]
            start = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    name = self._name.decode("utf-8", "replace") if self._name else "message"
                    events.append(SseEvent(name, b"\n".join(self._data), base + start))
                self._name, self._data = None, []
            elif line[0] != 0x3A:  # lines starting with ":" are comments
                field, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if field == b"data":
                    self._data.append(value)
                elif field == b"event":
                    self._name = value
        self._tail = buffer[start:]
        if len(self._tail) > MAX_LINE_BYTES:
            raise SseProtocolError(f"an SSE line longer than {MAX_LINE_BYTES} bytes")
        return events


@dataclass(frozen=True, slots=True)
class WorkerUsage:
    """A worker's usage for accounting: prompt tokens computed, prompt tokens read from the cache, output.

    ``input_tokens`` is every prompt token the worker had to compute: Anthropic's
    ``input_tokens`` plus ``cache_creation_input_tokens``. vLLM reports the prompt tokens it
    newly put in its prefix cache as ``cache_creation_input_tokens`` (and leaves them out of
    ``input_tokens``), but automatic prefix caching has no write premium: they cost what any
    computed prompt token costs. ``cache_creation_input_tokens`` keeps vLLM's figure for
    reference. So ``input_tokens + cache_read_input_tokens`` is the whole prompt, which is
    vLLM's ``vllm:prompt_tokens_total`` for the request.
    """

    input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def updated(self, usage: object) -> WorkerUsage:
        """This usage with the integer fields present in an Anthropic ``usage`` object applied.

        A ``usage`` that names ``input_tokens`` sets the computed prompt tokens to it plus its
        ``cache_creation_input_tokens`` (0 when absent).
        """
        if not isinstance(usage, dict):
            return self

        def pick(name: str, current: int) -> int:
            value = usage.get(name)
            return value if isinstance(value, int) else current

        created = pick("cache_creation_input_tokens", 0)
        reported = usage.get("input_tokens")
        return WorkerUsage(
            reported + created if isinstance(reported, int) else self.input_tokens,
            pick("cache_read_input_tokens", self.cache_read_input_tokens),
            pick("output_tokens", self.output_tokens),
            created
            if isinstance(reported, int)
            else pick("cache_creation_input_tokens", self.cache_creation_input_tokens),
        )


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        raise SseProtocolError(f"{what}: data is not JSON") from None
    if not isinstance(document, dict):
        raise SseProtocolError(f"{what}: data is not a JSON object")
    return document


class StreamProgress:
    """What one worker stream has said so far; fed every chunk with its arrival time."""

    __slots__ = (
        "_scanner",
        "bytes_received",
        "completed",
        "error_message",
        "error_type",
        "first_delta_at",
        "message_start",
        "message_start_end",
        "started_at",
        "stop_reason",
        "usage",
    )

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.message_start: dict[str, Any] | None = None
        self.message_start_end = 0  # stream offset just past the message_start event
        self.first_delta_at: float | None = None
        self.usage = WorkerUsage()
        self.stop_reason: str | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.completed = False  # message_stop seen
        self.bytes_received = 0
        self._scanner = SseScanner()

    @property
    def ttft_ms(self) -> float | None:
        """Attempt start → first ``content_block_delta``, in ms (None before it arrives)."""
        if self.first_delta_at is None:
            return None
        return (self.first_delta_at - self.started_at) * 1000.0

    def feed(self, chunk: bytes, now: float) -> None:
        self.bytes_received += len(chunk)
        for event in self._scanner.feed(chunk):
            name = event.name
            if self.message_start is None and name not in ("message_start", "ping", "error"):
                raise SseProtocolError(f"expected message_start first, got {name!r}")
            if name == "content_block_delta":
                if self.first_delta_at is None:
                    self.first_delta_at = now
            elif name == "message_delta":
                document = _json_object(event.data, "message_delta")
                self.usage = self.usage.updated(document.get("usage"))
                delta = document.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                    self.stop_reason = delta["stop_reason"]
            elif name == "message_start":
                if self.message_start is not None:
                    raise SseProtocolError("a second message_start")
                document = _json_object(event.data, "message_start")
                message = document.get("message")
                if not isinstance(message, dict):
                    raise SseProtocolError("message_start without a message")
                self.message_start = document
                self.message_start_end = event.end
                self.usage = self.usage.updated(message.get("usage"))
            elif name == "message_stop":
                self.completed = True
            elif name == "error":
                document = _json_object(event.data, "error")
                error = document.get("error")
                error = error if isinstance(error, dict) else {}
                self.error_type = str(error.get("type") or "api_error")
                self.error_message = str(error.get("message") or "")
                if self.message_start is None:
                    return  # the stream failed before it started; what follows does not matter

    @property
    def worker_fault(self) -> bool:
        """Whether an in-band error blamed the worker rather than the request."""
        return self.error_type is not None and self.error_type not in REQUEST_ERROR_TYPES


class WorkerStreamBroken(Exception):
    """A stream that started (``message_start`` arrived) and then did not finish properly.

    ``reason``: ``connection_lost``, ``idle_timeout``, ``deadline_exceeded``, ``incomplete``
    (the body ended without ``message_stop``) or ``protocol_error``. ``status`` is the
    attempt status for the record (``error`` or ``timeout``); ``progress`` holds what the
    stream said before it broke (bytes, usage, TTFT).
    """

    def __init__(
        self, replica: str, reason: str, message: str, *, elapsed_ms: float, progress: StreamProgress
    ) -> None:
        super().__init__(f"{replica}: {message}")
        self.replica = replica
        self.reason = reason
        self.message = message
        self.status = "timeout" if reason in ("idle_timeout", "deadline_exceeded") else "error"
        self.elapsed_ms = elapsed_ms
        self.progress = progress


class WorkerStream:
    """An open worker stream past its ``message_start``; use ``async with`` or call :meth:`aclose`.

    ``on_close`` is called exactly once, at :meth:`aclose`, with the breaker verdict of what
    happened after the ``message_start`` (the pool releases the endpoint with it).
    """

    def __init__(
        self,
        *,
        sku: str,
        region: str,
        replica: str,
        response: WorkerResponse,
        chunks: AsyncIterator[bytes],
        progress: StreamProgress,
        buffered: bytes,
        idle_timeout_s: float,
        deadline: float,
        on_close: Callable[[Verdict], None],
    ) -> None:
        self.sku = sku
        self.region = region
        self.replica = replica
        self.progress = progress
        self.buffered = buffered  # raw bytes read after message_start, not yet passed on
        self.head_ms = (time.monotonic() - progress.started_at) * 1000.0
        self.ended_at: float | None = None
        self._response = response
        self._chunks = chunks
        self._idle_timeout_s = idle_timeout_s
        self._deadline = deadline
        self._on_close: Callable[[Verdict], None] | None = on_close
        self._verdict = Verdict.NEUTRAL
        self._iterating = False
        # failures on other replicas of the same SKU before this stream opened (set by the pool)
        self.earlier_failures: tuple[Exception, ...] = ()

    @property
    def message_start(self) -> dict[str, Any]:
        """The worker's ``message_start`` event, decoded (``{"type":"message_start","message":{…}}``)."""
        assert self.progress.message_start is not None
        return self.progress.message_start

    @property
    def usage(self) -> WorkerUsage:
        return self.progress.usage

    @property
    def e2e_ms(self) -> float | None:
        """Attempt start → end of the body (None while it is still flowing)."""
        if self.ended_at is None:
            return None
        return (self.ended_at - self.progress.started_at) * 1000.0

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """The rest of the body, chunk by chunk as received; :class:`WorkerStreamBroken` if it breaks."""
        if self._iterating:
            raise RuntimeError("iter_raw() can be called only once")
        self._iterating = True
        progress = self.progress
        while True:
            now = time.monotonic()
            idle_limit = now + self._idle_timeout_s
            try:
                async with asyncio.timeout(min(idle_limit, self._deadline) - now):
                    chunk = await anext(self._chunks)
            except StopAsyncIteration:
                break
            except aiohttp.ClientError as error:  # first: aiohttp's own timeouts are TimeoutErrors too
                raise self._broken("connection_lost", type(error).__name__, Verdict.FAILURE) from None
            except TimeoutError:
                if self._deadline <= idle_limit:
                    raise self._broken(
                        "deadline_exceeded", "the caller's deadline passed", Verdict.NEUTRAL
                    ) from None
                raise self._broken(
                    "idle_timeout", f"no bytes for {self._idle_timeout_s:g} s", Verdict.FAILURE
                ) from None
            try:
                progress.feed(chunk, time.monotonic())
            except SseProtocolError as error:
                raise self._broken("protocol_error", str(error), Verdict.FAILURE) from None
            yield chunk
        self.ended_at = time.monotonic()
        if progress.error_type is not None:
            self._verdict = Verdict.FAILURE if progress.worker_fault else Verdict.NEUTRAL
        elif not progress.completed:
            raise self._broken("incomplete", "the body ended without message_stop", Verdict.FAILURE)

    def _broken(self, reason: str, message: str, verdict: Verdict) -> WorkerStreamBroken:
        self.ended_at = time.monotonic()
        self._verdict = verdict
        return WorkerStreamBroken(
            self.replica,
            reason,
            message,
            elapsed_ms=(self.ended_at - self.progress.started_at) * 1000.0,
            progress=self.progress,
        )

    async def aclose(self) -> None:
        """Release the connection (closed, not pooled, if the body was not read to its end)."""
        on_close, self._on_close = self._on_close, None
        if on_close is None:
            return
        try:
            self._response.close()  # pooled again if the body was read to its end, else dropped
        finally:
            on_close(self._verdict)

    async def __aenter__(self) -> WorkerStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
