"""Errors as values the client understands: the Anthropic Messages API error model.

Every failure the gateway reports is an :class:`ApiError` — an HTTP status, an Anthropic
error ``type`` and a message written for the caller — raised or returned by the pure stages
(authentication, admission, policy, routing) and turned into bytes only at the edge:

- :func:`error_body` → the JSON body the Anthropic API sends,
  ``{"type":"error","error":{"type":…,"message":…},"request_id":…}``;
- :func:`error_headers` → ``retry-after`` (whole seconds, rounded up, as RFC 9110 wants) and
  ``retry-after-ms`` (the precise value; the official SDKs read it first), plus
  ``x-should-retry`` so SDKs do not retry errors that cannot succeed on retry;
- :func:`sse_error_event` → ``event: error`` for a failure after a stream has started.

Messages never carry exception text or stack traces: :func:`internal_error` takes no
exception on purpose (log the exception with the request id; send the client the id).
"""

from __future__ import annotations

import json
import math
from typing import Final, Literal

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
]

STATUS_BY_TYPE: Final[dict[ErrorType, int]] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_RETRYABLE: Final[frozenset[ErrorType]] = frozenset({"rate_limit_error", "api_error", "overloaded_error"})


class ApiError(Exception):
    """An error the client sees: ``status``, Anthropic ``error_type``, ``message``, optional ``retry_after_s``.

    It is both a value (compare, inspect, return it) and an exception (raise it from deep in
    the request path; the edge catches ``ApiError`` and renders it).
    """

    __slots__ = ("error_type", "message", "retry_after_s", "status")

    def __init__(self, error_type: ErrorType, message: str, *, retry_after_s: float | None = None) -> None:
        if error_type not in STATUS_BY_TYPE:
            raise ValueError(f"unknown Anthropic error type {error_type!r}")
        if retry_after_s is not None and not retry_after_s >= 0:
            raise ValueError("retry_after_s must be a non-negative number of seconds")
        super().__init__(message)
        self.error_type: ErrorType = error_type
        self.status: int = STATUS_BY_TYPE[error_type]
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again can succeed (rate limits, overload, server faults)."""
        return self.error_type in _RETRYABLE

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiError):
            return NotImplemented
        return (self.error_type, self.message, self.retry_after_s) == (
            other.error_type,
            other.message,
            other.retry_after_s,
        )

    def __hash__(self) -> int:
        return hash((self.error_type, self.message, self.retry_after_s))

    def __repr__(self) -> str:
        retry = f", retry_after_s={self.retry_after_s!r}" if self.retry_after_s is not None else ""
        return f"ApiError({self.status} {self.error_type}: {self.message!r}{retry})"


def invalid_request(message: str) -> ApiError:
    """400: the request is malformed or asks for something the API does not do."""
    return ApiError("invalid_request_error", message)


def authentication_failed(message: str = "invalid x-api-key") -> ApiError:
    """401: no API key, or one that matches no tenant."""
    return ApiError("authentication_error", message)


def permission_denied(message: str) -> ApiError:
    """403: the key is valid but may not do this (blocked tenant, model not allowed, region)."""
    return ApiError("permission_error", message)


def not_found(message: str) -> ApiError:
    """404: e.g. an unknown model name."""
    return ApiError("not_found_error", message)


def request_too_large(message: str = "Request exceeds the maximum allowed number of bytes.") -> ApiError:
    """413: the body is larger than the gateway accepts."""
    return ApiError("request_too_large", message)


def rate_limited(message: str, *, retry_after_s: float) -> ApiError:
    """429: a per-tenant quota is exhausted; ``retry_after_s`` is when it will have room again."""
    return ApiError("rate_limit_error", message, retry_after_s=retry_after_s)


def internal_error(message: str = "Internal server error") -> ApiError:
    """500: a fault on our side. Never put exception text in ``message``."""
    return ApiError("api_error", message)


def overloaded(message: str = "Overloaded", *, retry_after_s: float | None = None) -> ApiError:
    """529: the gateway (or every candidate worker) is saturated; shed, try again later."""
    return ApiError("overloaded_error", message, retry_after_s=retry_after_s)


def _dumps(document: dict[str, object]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_document(error: ApiError, request_id: str | None = None) -> dict[str, object]:
    """The error as the Anthropic JSON document (``request_id`` omitted when None)."""
    document: dict[str, object] = {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
    }
    if request_id is not None:
        document["request_id"] = request_id
    return document


def error_body(error: ApiError, request_id: str | None) -> bytes:
    """The compact UTF-8 JSON body of an error response, as the Anthropic API sends it."""
    return _dumps(error_document(error, request_id))


def error_headers(error: ApiError) -> dict[str, str]:
    """Response headers that belong to the error: retry timing and whether a retry can help."""
    headers = {"x-should-retry": "true" if error.retryable else "false"}
    if error.retry_after_s is not None:
        headers["retry-after"] = str(math.ceil(error.retry_after_s))
        headers["retry-after-ms"] = str(math.ceil(error.retry_after_s * 1000))
    return headers


def sse_error_event(error: ApiError, request_id: str | None = None) -> bytes:
    """The SSE event that ends a stream which fails after its first byte reached the client."""
    return b"event: error\ndata: " + _dumps(error_document(error, request_id)) + b"\n\n"
