"""The Anthropic Messages API request: validation of a ``POST /v1/messages`` body.

One validator for every server that accepts the Messages API -- the gateway and the
simulated worker -- so a body one of them accepts the other accepts too, with the same error
wording (``messages.0.role: Field required``). It checks the shape the real API checks:
``model`` and ``max_tokens`` present, ``messages`` non-empty and alternating starting with
``user``, content as a string or blocks, ``system`` as a string or text blocks,
``stop_sequences``, ``temperature`` in [0, 1], ``stream``, and ``metadata``/``tools`` of the
right JSON type. Whether ``model`` names something servable, and its output-token limit, is
the caller's decision (the worker serves its SKUs; the gateway also accepts ``auto``).
"""

from __future__ import annotations

from dataclasses import dataclass

from features.request import content_text
from features.wire import (
    check_block,
    invalid,
    optional_bool,
    optional_number,
    parse_json_object,
    require_int,
    string_list,
)

ROLES = ("user", "assistant")


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """The fields of a valid Messages request that servers act on; ``document`` is the whole body."""

    document: dict
    model: str
    max_tokens: int
    last_user_text: str
    stop_sequences: tuple[str, ...]
    stream: bool
    temperature: float | None


def check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or a list of text blocks", "system")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"system.{index}.type: Input should be 'text'", "system")
        if not isinstance(block.get("text"), str):
            raise invalid(f"system.{index}.text: Field required", "system")


def check_messages(messages: object) -> str:
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


def validate_messages_document(document: dict) -> MessagesRequest:
    """Check a decoded Messages body; raises ``features.wire.WireError`` (400) naming the field."""
    model = document.get("model")
    if model is None:
        raise invalid("model: Field required", "model")
    if not isinstance(model, str):
        raise invalid("model: Input should be a valid string", "model")
    max_tokens = require_int(document, "max_tokens", minimum=1)
    last_user_text = check_messages(document.get("messages"))
    check_system(document.get("system"))
    stop_sequences = string_list(document.get("stop_sequences"), "stop_sequences")
    temperature = optional_number(document, "temperature", 0.0, 1.0)
    stream = optional_bool(document, "stream")
    for key, kind in (("metadata", dict), ("tools", list)):
        if document.get(key) is not None and not isinstance(document[key], kind):
            raise invalid(
                f"{key}: Input should be a valid {kind.__name__.replace('dict', 'dictionary')}", key
            )
    return MessagesRequest(
        document=document,
        model=model,
        max_tokens=max_tokens,
        last_user_text=last_user_text,
        stop_sequences=stop_sequences,
        stream=stream,
        temperature=temperature,
    )


def parse_messages_body(body: bytes) -> MessagesRequest:
    """Decode and validate a ``POST /v1/messages`` body."""
    return validate_messages_document(parse_json_object(body))
