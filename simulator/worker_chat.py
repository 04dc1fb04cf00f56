"""The chat endpoints (``/v1/messages``, ``/v1/chat/completions``) over the simulated engine.

One request flow serves both wire formats: read and validate the body, plan the answer,
draw a fault, then run the sequence through the SKU's engine and write either one JSON
body or a stream of events. A :class:`ChatFormat` supplies what differs between Anthropic
and OpenAI: parsing, error bodies, the response body and the stream framing.

Streams: the head (Anthropic: ``message_start`` + ``content_block_start`` + ``ping``) goes out
with the first token, at the first-token time; each decode step is one write of one delta
event; the last delta, ``content_block_stop``, ``message_delta`` and ``message_stop`` share the
final write.
"""

from __future__ import annotations

import logging
from typing import Protocol

from features.wire import WireError
from simulator import wire_anthropic, wire_openai
from simulator.faults import FaultKind
from simulator.generation import plan_generation
from simulator.wire_common import ChatRequest
from simulator.worker_engine import SimulatedSequence
from simulator.worker_http import (
    JSON_HEADERS,
    SSE_HEADERS,
    ClientGone,
    Completion,
    Receive,
    Scope,
    Send,
    read_body,
    run_until_disconnect,
    send_body,
    wait_for_disconnect,
)
from simulator.worker_state import WorkerState

logger = logging.getLogger(__name__)

FAULT_ERRORS = {
    FaultKind.ERROR: (500, "api_error", "Internal server error (injected fault)."),
    FaultKind.OVERLOAD: (529, "overloaded_error", "Overloaded (injected fault)."),
    FaultKind.RATE_LIMIT: (429, "rate_limit_error", "Rate limited (injected fault)."),
}


class StreamFramer(Protocol):
    def head(self) -> bytes: ...
    def delta(self, text: str) -> bytes: ...
    def tail(self) -> bytes: ...


class ChatFormat(Protocol):
    def parse(self, body: bytes, state: WorkerState) -> ChatRequest: ...
    def error_body(self, error: WireError, request_id: str) -> bytes: ...
    def response(
        self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str
    ) -> bytes: ...
    def framer(
        self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str
    ) -> StreamFramer: ...


class AnthropicStream:
    __slots__ = ("message_id", "model", "seq")

    def __init__(self, message_id: str, model: str, seq: SimulatedSequence) -> None:
        self.message_id, self.model, self.seq = message_id, model, seq

    def head(self) -> bytes:
        return wire_anthropic.sse_head(
            self.message_id, self.model, self.seq.input_tokens, self.seq.cached_tokens
        )

    def delta(self, text: str) -> bytes:
        return wire_anthropic.sse_text_delta(text)

    def tail(self) -> bytes:
        seq = self.seq
        plan = seq.plan
        return wire_anthropic.sse_tail(
            plan.stop_reason, plan.stop_sequence, seq.input_tokens, seq.cached_tokens, seq.emitted_tokens
        )


class AnthropicFormat:
    def parse(self, body: bytes, state: WorkerState) -> ChatRequest:
        return wire_anthropic.parse_messages_request(body, state.served)

    def error_body(self, error: WireError, request_id: str) -> bytes:
        return wire_anthropic.render_error(error.error_type, error.message, request_id)

    def response(self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str) -> bytes:
        plan = seq.plan
        return wire_anthropic.render_message(
            f"msg_{rid}", request.model, plan.text, plan.stop_reason, plan.stop_sequence,
            seq.input_tokens, seq.cached_tokens, plan.output_tokens,
        )  # fmt: skip

    def framer(
        self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str
    ) -> StreamFramer:
        return AnthropicStream(f"msg_{rid}", request.model, seq)


class OpenAIStream:
    __slots__ = ("chunks", "include_usage", "seq")

    def __init__(self, chunks: wire_openai.ChunkFramer, seq: SimulatedSequence, include_usage: bool) -> None:
        self.chunks, self.seq, self.include_usage = chunks, seq, include_usage

    def head(self) -> bytes:
        return self.chunks.role()

    def delta(self, text: str) -> bytes:
        return self.chunks.text(text)

    def tail(self) -> bytes:
        seq = self.seq
        out = self.chunks.finish(seq.plan.stop_reason)
        if self.include_usage:
            out += self.chunks.usage(seq.plan.prompt_tokens, seq.cached_tokens, seq.emitted_tokens)
        return out + wire_openai.DONE


class OpenAIFormat:
    def parse(self, body: bytes, state: WorkerState) -> ChatRequest:
        return wire_openai.parse_chat_request(body, state.served)

    def error_body(self, error: WireError, request_id: str) -> bytes:
        return wire_openai.render_error(error.status, error.error_type, error.message, error.param)

    def response(self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str) -> bytes:
        plan = seq.plan
        return wire_openai.render_completion(
            f"chatcmpl-{rid}", state.created, request.model, state.fingerprint, plan.text, plan.stop_reason,
            plan.prompt_tokens, seq.cached_tokens, plan.output_tokens,
        )  # fmt: skip

    def framer(
        self, state: WorkerState, request: ChatRequest, seq: SimulatedSequence, rid: str
    ) -> StreamFramer:
        chunks = wire_openai.ChunkFramer(
            f"chatcmpl-{rid}", state.created, request.model, state.fingerprint, request.include_usage
        )
        return OpenAIStream(chunks, seq, request.include_usage)


class ChatEndpoint:
    """ASGI app for one chat wire format over the worker's engines."""

    def __init__(self, state: WorkerState, chat_format: ChatFormat) -> None:
        self.state = state
        self.format = chat_format

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        rid = state.next_id()
        headers = (*JSON_HEADERS, (b"request-id", f"req_{rid}".encode()))
        try:
            body = await read_body(scope, receive, state.max_body_bytes)
            request = self.format.parse(body, state)
            engine = state.engines[request.model]
            plan = plan_generation(request, engine.sku, state.tape, state.hasher)
        except WireError as error:
            await send_body(send, error.status, self.format.error_body(error, f"req_{rid}"), headers)
            return
        except ClientGone:
            return
        except Exception:
            logger.exception("worker failed to parse a request")
            error = WireError(500, "api_error", "Internal server error.")
            await send_body(send, 500, self.format.error_body(error, f"req_{rid}"), headers)
            return

        fault_config, fault = state.faults.draw(request.model)
        if fault is not FaultKind.NONE:
            engine.metrics.count_fault(fault.value)
            if fault is FaultKind.HANG:
                await wait_for_disconnect(receive)
                return
            status, error_type, message = FAULT_ERRORS[fault]
            error_headers = headers
            if fault is not FaultKind.ERROR:
                error_headers = (*headers, (b"retry-after", str(fault_config.retry_after_s).encode()))
            body = self.format.error_body(WireError(status, error_type, message), f"req_{rid}")
            await send_body(send, status, body, error_headers)
            return

        seq = engine.sequence(plan, fault_config.slow_token_factor)
        crash_after = fault_config.crash_after_tokens
        if request.stream:
            framer = self.format.framer(state, request, seq, rid)
            stream_headers = (*SSE_HEADERS, (b"request-id", f"req_{rid}".encode()))

            async def work(completion: Completion) -> None:
                await stream_sequence(seq, framer, send, stream_headers, crash_after, completion)
        else:
            response = self.format

            async def work(completion: Completion) -> None:
                if await decode_sequence(seq, crash_after):
                    completion.finished = True
                    body = response.response(state, request, seq, rid)
                    await send_body(send, 200, body, headers)
                else:
                    await send({"type": "http.response.start", "status": 200, "headers": list(headers)})

        if state.time_scale == 0.0:
            await work(Completion())
        else:
            await run_until_disconnect(work, receive)


async def decode_sequence(seq: SimulatedSequence, crash_after: int | None) -> bool:
    """Run a non-streamed sequence to its end; False if the crash fault cut it first."""
    try:
        await seq.prefill()
        output_tokens = seq.plan.output_tokens
        limit = output_tokens if crash_after is None else min(crash_after, output_tokens)
        while seq.emitted_tokens < limit:
            await seq.next_chunk(limit - seq.emitted_tokens, 0.05)
        if not seq.done:
            seq.engine.metrics.count_fault("crash")
            seq.close(aborted=True)
            return False
        seq.close()
        return True
    finally:
        seq.close(aborted=True)


async def stream_sequence(
    seq: SimulatedSequence,
    framer: StreamFramer,
    send: Send,
    headers: tuple[tuple[bytes, bytes], ...],
    crash_after: int | None,
    completion: Completion,
) -> None:
    """Stream a sequence's events; stop without the final chunk if the crash fault fires."""
    try:
        await seq.prefill()
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        pending = framer.head()
        while True:
            if crash_after is not None and seq.emitted_tokens >= crash_after and not seq.done:
                if pending:
                    await send({"type": "http.response.body", "body": pending, "more_body": True})
                seq.engine.metrics.count_fault("crash")
                seq.close(aborted=True)
                return  # the response is left incomplete: uvicorn closes the connection
            if seq.done:
                seq.close()
                completion.finished = True
                await send(
                    {"type": "http.response.body", "body": pending + framer.tail(), "more_body": False}
                )
                return
            limit = None if crash_after is None else crash_after - seq.emitted_tokens
            text = await seq.next_chunk(limit)
            pending += framer.delta(text)
            if not seq.done:
                await send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = b""
    finally:
        seq.close(aborted=True)
