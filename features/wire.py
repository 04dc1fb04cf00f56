"""Validating JSON request bodies field by field, with the API's error wording.

Shared by every parser of client requests (the gateway's Messages API, the simulated
worker's Anthropic and OpenAI endpoints): each helper reads one field of a decoded JSON
object and raises :class:`WireError` with the status, Anthropic error type and a message
shaped like the real API's (``max_tokens: Field required``), naming the offending field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


class WireError(Exception):
    """A client-visible error: HTTP status, Anthropic error type and message."""

    def __init__(self, status: int, error_type: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.param = param


def invalid(message: str, param: str | None = None) -> WireError:
    return WireError(400, "invalid_request_error", message, param=param)


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says why not."""
    if not body:
        raise invalid("request body is empty; expected a JSON object")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid(f"There was an error parsing the body of your request: {error}") from None
    if not isinstance(document, dict):
        raise invalid("request body must be a JSON object")
    return document


def require_int(document: Mapping, key: str, *, minimum: int | None = None) -> int:
    if key not in document:
        raise invalid(f"{key}: Field required", key)
    return optional_int(document, key, minimum=minimum)  # type: ignore[return-value]


def optional_int(document: Mapping, key: str, *, minimum: int | None = None) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise invalid(f"{key}: Input should be a valid integer", key)
    if minimum is not None and value < minimum:
        raise invalid(f"{key}: Input should be greater than or equal to {minimum}", key)
    return value


def optional_number(document: Mapping, key: str, low: float, high: float) -> float | None:
    value = document.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{key}: Input should be a valid number", key)
    if value < low:
        raise invalid(f"{key}: Input should be greater than or equal to {low:g}", key)
    if value > high:
        raise invalid(f"{key}: Input should be less than or equal to {high:g}", key)
    return float(value)


def optional_bool(document: Mapping, key: str) -> bool:
    value = document.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{key}: Input should be a valid boolean", key)
    return value


def string_list(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise invalid(f"{key}: Input should be a valid list", key)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"{key}.{index}: Input should be a valid string", key)
    return tuple(value)


def check_block(block: object, where: str) -> None:
    """Validate one content block (its text is read by ``features.request.content_text``)."""
    if not isinstance(block, dict):
        raise invalid(f"{where}: Input should be a valid dictionary")
    block_type = block.get("type")
    if block_type is None:
        raise invalid(f"{where}.type: Field required")
    if block_type == "text" and not isinstance(block.get("text"), str):
        raise invalid(f"{where}.text: Input should be a valid string")
    if block_type == "tool_result" and isinstance(block.get("content"), list):
        for index, item in enumerate(block["content"]):
            check_block(item, f"{where}.content.{index}")
