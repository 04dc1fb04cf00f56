"""The OpenAI Chat Completions API on the wire (as vLLM serves it): validation, responses, chunks.

The prompt segments are the Anthropic ones of the same conversation: the system and developer
messages joined by newlines first, then one segment per other message.

Usage follows OpenAI: ``prompt_tokens`` is the whole prompt and
``prompt_tokens_details.cached_tokens`` the part served from the prefix cache (Anthropic's
``input_tokens`` is the uncached part only). Streams end with ``data: [DONE]``; with
``stream_options.include_usage`` every chunk carries ``"usage":null`` and one extra chunk with
empty ``choices`` carries the usage, as OpenAI documents.
"""

from __future__ import annotations

from collections.abc import Mapping

from features.catalog import Sku
from features.request import content_text
from features.wire import (
    WireError,
    check_block,
    invalid,
    optional_bool,
    optional_int,
    optional_number,
    parse_json_object,
    string_list,
)
from simulator.wire_common import ChatRequest, json_text

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
ERROR_CODES = {
    400: None,
    404: "model_not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    529: "overloaded",
}


def _content_text(content: object, where: str) -> str:
    """Validated message text, read the way ``features.request.content_text`` reads it."""
    if content is None:
        return ""
    if isinstance(content, list):
        for j, part in enumerate(content):
            check_block(part, f"{where}.{j}")
    elif not isinstance(content, str):
        raise invalid(f"{where}: Input should be a valid string or a list of content parts", "messages")
    return content_text(content)


def parse_chat_request(body: bytes, served: Mapping[str, Sku]) -> ChatRequest:
    """Validate a ``POST /v1/chat/completions`` body against the SKUs this worker serves."""
    document = parse_json_object(body)
    model = document.get("model")
    if not isinstance(model, str):
        raise invalid("model: Field required (a string)", "model")
    messages = document.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: a non-empty list of messages is required", "messages")
    system_parts: list[str] = []
    texts: list[str] = []
    last_user_text = ""
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary", "messages")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"{where}.role: Input should be one of {', '.join(ROLES)}", "messages")
        text = _content_text(message.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            system_parts.append(text)
            continue
        texts.append(text)
        if role == "user":
            last_user_text = text
    max_tokens = optional_int(document, "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = optional_int(document, "max_tokens", minimum=1)
    n = optional_int(document, "n", minimum=1)
    if n is not None and n != 1:
        raise invalid("n: only n=1 is supported", "n")
    stop = string_list(document.get("stop"), "stop")
    temperature = optional_number(document, "temperature", 0.0, 2.0)
    stream = optional_bool(document, "stream")
    stream_options = document.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise invalid("stream_options: Input should be a valid dictionary", "stream_options")
    include_usage = optional_bool(stream_options, "include_usage")
    sku = served.get(model)
    if sku is None:
        raise WireError(404, "not_found_error", f"The model `{model}` does not exist.", param="model")
    if max_tokens is not None and max_tokens > sku.max_output_tokens:
        raise invalid(
            f"max_tokens: {max_tokens} > {sku.max_output_tokens}, the maximum number of output tokens of {model}",
            "max_tokens",
        )
    return ChatRequest(
        model=model,
        max_tokens=max_tokens,
        segments=("\n".join(system_parts), *texts),
        last_user_text=last_user_text,
        stop_sequences=stop,
        stream=stream,
        include_usage=include_usage,
        temperature=temperature,
    )


def _usage(prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> str:
    return (
        f'{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens},'
        f'"total_tokens":{prompt_tokens + completion_tokens},'
        f'"prompt_tokens_details":{{"cached_tokens":{cached_tokens}}}}}'
    )


def render_completion(
    completion_id: str,
    created: int,
    model: str,
    fingerprint: str,
    text: str,
    stop_reason: str,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
) -> bytes:
    """A non-streaming ``chat.completion`` body."""
    return (
        f'{{"id":"{completion_id}","object":"chat.completion","created":{created},"model":"{model}",'
        f'"system_fingerprint":"{fingerprint}","choices":[{{"index":0,"message":{{"role":"assistant",'
        f'"content":"{text}"}},"logprobs":null,"finish_reason":"{FINISH_REASONS[stop_reason]}"}}],'
        f'"usage":{_usage(prompt_tokens, cached_tokens, completion_tokens)}}}'
    ).encode()


class ChunkFramer:
    """Frames the ``chat.completion.chunk`` events of one streamed completion."""

    __slots__ = ("_prefix", "_suffix")

    def __init__(self, completion_id: str, created: int, model: str, fingerprint: str, include_usage: bool):
        self._prefix = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":"{model}","system_fingerprint":"{fingerprint}","choices":'
        )
        self._suffix = ',"usage":null}\n\n' if include_usage else "}\n\n"

    def role(self) -> bytes:
        return (
            f'{self._prefix}[{{"index":0,"delta":{{"role":"assistant","content":""}},'
            f'"logprobs":null,"finish_reason":null}}]{self._suffix}'
        ).encode()

    def text(self, text: str) -> bytes:
        return (
            f'{self._prefix}[{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,'
            f'"finish_reason":null}}]{self._suffix}'
        ).encode()

    def finish(self, stop_reason: str) -> bytes:
        return (
            f'{self._prefix}[{{"index":0,"delta":{{}},"logprobs":null,'
            f'"finish_reason":"{FINISH_REASONS[stop_reason]}"}}]{self._suffix}'
        ).encode()

    def usage(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> bytes:
        return f'{self._prefix}[],"usage":{_usage(prompt_tokens, cached_tokens, completion_tokens)}}}\n\n'.encode()


DONE = b"data: [DONE]\n\n"


def render_error(status: int, error_type: str, message: str, param: str | None = None) -> bytes:
    """OpenAI's error body: ``{"error":{"message","type","param","code"}}``."""
    openai_type = {
        "invalid_request_error": "invalid_request_error",
        "not_found_error": "invalid_request_error",
        "request_too_large": "invalid_request_error",
        "rate_limit_error": "rate_limit_error",
        "overloaded_error": "server_error",
        "api_error": "server_error",
    }.get(error_type, error_type)
    return json_text(
        {"error": {"message": message, "type": openai_type, "param": param, "code": ERROR_CODES.get(status)}}
    ).encode()
