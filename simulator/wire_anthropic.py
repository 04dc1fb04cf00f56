"""The Anthropic Messages API on the wire: request validation, responses, SSE frames, errors.

Pure functions over bytes and plain data. Responses are assembled from precomputed
fragments: the generated text and model names are known to need no JSON escaping (see
``simulator.text``), so only user-supplied strings (a matched stop sequence) go through
``json.dumps``.

The streaming event sequence is Anthropic's::

    message_start, content_block_start, ping, content_block_delta (text_delta)...,
    content_block_stop, message_delta, message_stop

each framed as ``event: <type>\\ndata: <json>\\n\\n``.
"""

from __future__ import annotations

from collections.abc import Mapping

from features.catalog import Sku
from features.messages_request import parse_messages_body
from features.request import prompt_segments
from features.wire import WireError, invalid
from simulator.wire_common import ChatRequest, json_text


def parse_messages_request(body: bytes, served: Mapping[str, Sku]) -> ChatRequest:
    """Validate a ``POST /v1/messages`` body against the SKUs this worker serves."""
    request = parse_messages_body(body)
    sku = served.get(request.model)
    if sku is None:
        raise WireError(404, "not_found_error", f"model: {request.model}", param="model")
    if request.max_tokens > sku.max_output_tokens:
        raise invalid(
            f"max_tokens: {request.max_tokens} > {sku.max_output_tokens}, which is the maximum allowed "
            f"number of output tokens for {request.model}",
            "max_tokens",
        )
    return ChatRequest(
        model=request.model,
        max_tokens=request.max_tokens,
        segments=tuple(prompt_segments(request.document)),
        last_user_text=request.last_user_text,
        stop_sequences=request.stop_sequences,
        stream=request.stream,
        temperature=request.temperature,
    )


def _usage(input_tokens: int, cached_tokens: int, output_tokens: int) -> str:
    return (
        f'{{"input_tokens":{input_tokens},"cache_creation_input_tokens":0,'
        f'"cache_read_input_tokens":{cached_tokens},"output_tokens":{output_tokens}}}'
    )


def _stop_sequence(stop_sequence: str | None) -> str:
    return "null" if stop_sequence is None else json_text(stop_sequence)


def render_message(
    message_id: str,
    model: str,
    text: str,
    stop_reason: str,
    stop_sequence: str | None,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
) -> bytes:
    """A non-streaming Messages API response body."""
    return (
        f'{{"id":"{message_id}","type":"message","role":"assistant","model":"{model}",'
        f'"content":[{{"type":"text","text":"{text}"}}],"stop_reason":"{stop_reason}",'
        f'"stop_sequence":{_stop_sequence(stop_sequence)},'
        f'"usage":{_usage(input_tokens, cached_tokens, output_tokens)}}}'
    ).encode()


_CONTENT_BLOCK_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_CONTENT_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_DELTA_PREFIX = (
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"'
)
SSE_HEAD_EVENTS = 3  # message_start, content_block_start, ping
SSE_TAIL_EVENTS = 3  # content_block_stop, message_delta, message_stop


def sse_head(message_id: str, model: str, input_tokens: int, cached_tokens: int) -> bytes:
    """``message_start``, ``content_block_start`` and ``ping``, sent together at the first token."""
    message_start = (
        f'event: message_start\ndata: {{"type":"message_start","message":{{"id":"{message_id}",'
        f'"type":"message","role":"assistant","model":"{model}","content":[],"stop_reason":null,'
        f'"stop_sequence":null,"usage":{_usage(input_tokens, cached_tokens, 1)}}}}}\n\n'
    )
    return message_start.encode() + _CONTENT_BLOCK_START + _PING


def sse_text_delta(text: str) -> bytes:
    """One ``content_block_delta`` event carrying ``text``."""
    return f'{_DELTA_PREFIX}{text}"}}}}\n\n'.encode()


def sse_tail(
    stop_reason: str, stop_sequence: str | None, input_tokens: int, cached_tokens: int, output_tokens: int
) -> bytes:
    """``content_block_stop``, ``message_delta`` (stop reason, final usage) and ``message_stop``."""
    message_delta = (
        f'event: message_delta\ndata: {{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}",'
        f'"stop_sequence":{_stop_sequence(stop_sequence)}}},'
        f'"usage":{_usage(input_tokens, cached_tokens, output_tokens)}}}\n\n'
    )
    return _CONTENT_BLOCK_STOP + message_delta.encode() + _MESSAGE_STOP


def render_error(error_type: str, message: str, request_id: str | None = None) -> bytes:
    """Anthropic's error body: ``{"type":"error","error":{"type":...,"message":...}}``."""
    document: dict[str, object] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        document["request_id"] = request_id
    return json_text(document).encode()


def sse_error(error_type: str, message: str) -> bytes:
    """An in-band ``error`` event, for failures after the stream has started."""
    return f"event: error\ndata: {render_error(error_type, message).decode()}\n\n".encode()
