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
from features.request import content_text, prompt_segments
from simulator.wire_common import (
    ChatRequest,
    WireError,
    check_block,
    invalid,
    json_text,
    optional_bool,
    optional_number,
    parse_json_object,
    require_int,
    string_list,
)

ROLES = ("user", "assistant")


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or a list of text blocks", "system")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{index}.type: Input should be 'text'", "system")
        if not isinstance(block.get("text"), str):
            raise invalid(f"system.{index}.text: Field required", "system")


def _check_messages(messages: object) -> str:
    """Validate ``messages``; returns the text of the last user message."""
    if messages is None:
        raise invalid("messages: Field required", "messages")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list", "messages")
    if not messages:
        raise invalid("messages: at least one message is required", "messages")
    last_user: object = ""
    previous_role: str | None = None
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary", "messages")
        role = message.get("role")
        if role is None:
            raise invalid(f"{where}.role: Field required", "messages")
        if role not in ROLES:
            raise invalid(f"{where}.role: Input should be 'user' or 'assistant'", "messages")
        if index == 0 and role != "user":
            raise invalid('messages: first message must use the "user" role', "messages")
        if role == previous_role:
            raise invalid(
                f'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row',
                "messages",
            )
        previous_role = role
        content = message.get("content")
        if content is None:
            raise invalid(f"{where}.content: Field required", "messages")
        if isinstance(content, list):
            for j, block in enumerate(content):
                check_block(block, f"{where}.content.{j}")
        elif not isinstance(content, str):
            raise invalid(f"{where}.content: Input should be a valid string or a list of blocks", "messages")
        if role == "user":
            last_user = content
    return content_text(last_user)


def parse_messages_request(body: bytes, served: Mapping[str, Sku]) -> ChatRequest:
    """Validate a ``POST /v1/messages`` body against the SKUs this worker serves."""
    document = parse_json_object(body)
    model = document.get("model")
    if model is None:
        raise invalid("model: Field required", "model")
    if not isinstance(model, str):
        raise invalid("model: Input should be a valid string", "model")
    max_tokens = require_int(document, "max_tokens", minimum=1)
    last_user_text = _check_messages(document.get("messages"))
    _check_system(document.get("system"))
    stop_sequences = string_list(document.get("stop_sequences"), "stop_sequences")
    temperature = optional_number(document, "temperature", 0.0, 1.0)
    stream = optional_bool(document, "stream")
    for key, kind in (("metadata", dict), ("tools", list)):
        if document.get(key) is not None and not isinstance(document[key], kind):
            raise invalid(
                f"{key}: Input should be a valid {kind.__name__.replace('dict', 'dictionary')}", key
            )
    sku = served.get(model)
    if sku is None:
        raise WireError(404, "not_found_error", f"model: {model}", param="model")
    if max_tokens > sku.max_output_tokens:
        raise invalid(
            f"max_tokens: {max_tokens} > {sku.max_output_tokens}, which is the maximum allowed number "
            f"of output tokens for {model}",
            "max_tokens",
        )
    return ChatRequest(
        model=model,
        max_tokens=max_tokens,
        segments=tuple(prompt_segments(document)),
        last_user_text=last_user_text,
        stop_sequences=stop_sequences,
        stream=stream,
        temperature=temperature,
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
