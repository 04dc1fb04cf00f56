"""How a failed worker attempt is classified: record status, retry on another candidate, breaker verdict.

Pure functions over what the wire said (an HTTP status, an aiohttp client error, an in-band
error event, which timeout fired) → a :class:`Failure`. The rules:

=============================  ==============  =========  ========
what happened                  status          retryable  breaker
=============================  ==============  =========  ========
connect refused / unreachable  error           yes        failure
connect timeout                timeout         yes        failure
per-attempt timeout            timeout         yes        failure
caller's deadline passed       timeout         no         neutral
connection lost, bad answer    error           yes        failure
503 / 529                      overloaded      yes        failure
429                            rate_limited    yes        neutral
408                            timeout         yes        failure
404 (the gateway set model)    error           yes        failure
other 5xx                      error           yes        failure
other 4xx (the request)        error           no         success
gateway connection pool full   overloaded      no         neutral
=============================  ==============  =========  ========
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import aiohttp

from serving.breaker import Verdict
from serving.errors import STATUS_BY_TYPE, ApiError, ErrorType, internal_error, overloaded

# in-band error types that blame the request, not the worker
REQUEST_ERROR_TYPES = frozenset({"invalid_request_error", "request_too_large"})


@dataclass(frozen=True, slots=True)
class Failure:
    status: str  # one of features.records.ATTEMPT_STATUSES
    error_type: str  # the worker's Anthropic error type, or a transport label
    retryable: bool  # whether another candidate may be tried
    verdict: Verdict  # what the endpoint's circuit breaker is told


PROTOCOL_ERROR = Failure("error", "protocol_error", True, Verdict.FAILURE)


def classify_http_status(http_status: int, error_type: str | None) -> Failure:
    """A worker's non-200 answer (``error_type`` from its body, if any)."""
    label = error_type or f"http_{http_status}"
    if http_status == 429:
        return Failure("rate_limited", label, True, Verdict.NEUTRAL)
    if http_status in (503, 529):
        return Failure("overloaded", label, True, Verdict.FAILURE)
    if http_status == 408:
        return Failure("timeout", label, True, Verdict.FAILURE)
    if http_status >= 500 or http_status == 404:
        return Failure("error", label, True, Verdict.FAILURE)
    return Failure("error", label, False, Verdict.SUCCESS)  # the request's fault; the worker answered


def classify_transport(error: aiohttp.ClientError, *, waited_for_pool: bool = False) -> Failure:
    """A client-side error of the HTTP exchange; ``waited_for_pool``: every pooled connection was busy.

    aiohttp raises the same ``ConnectionTimeoutError`` whether the wait for a free pooled
    connection or the TCP connect ran out of time, so the pool says which one it was.
    """
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        if waited_for_pool:  # the gateway's own connection budget is spent
            return Failure("overloaded", "pool_timeout", False, Verdict.NEUTRAL)
        return Failure("timeout", "connect_timeout", True, Verdict.FAILURE)
    if isinstance(error, aiohttp.ClientConnectorError):
        return Failure("error", "connect_error", True, Verdict.FAILURE)
    return Failure("error", "connection_lost", True, Verdict.FAILURE)


def classify_timeout(deadline_bound: bool, label: str) -> Failure:
    """A timeout: the caller's deadline (``deadline_bound``) or the per-attempt limit ``label``."""
    if deadline_bound:  # the caller's budget says nothing about the worker's health
        return Failure("timeout", "deadline_exceeded", False, Verdict.NEUTRAL)
    return Failure("timeout", label, True, Verdict.FAILURE)


def classify_in_band(error_type: str) -> Failure:
    """An ``event: error`` before ``message_start`` (nothing reached the client yet)."""
    if error_type in REQUEST_ERROR_TYPES:
        return Failure("error", error_type, False, Verdict.SUCCESS)
    status = {"overloaded_error": "overloaded", "rate_limit_error": "rate_limited"}.get(error_type, "error")
    return Failure(status, error_type, True, Verdict.FAILURE)


def worker_error(raw: bytes) -> tuple[str | None, str]:
    """(type, message) from an Anthropic (or OpenAI-style) error body; (None, its text) otherwise."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            kind = error.get("type")
            return (kind if isinstance(kind, str) else None), error["message"]
    return None, raw[:200].decode("utf-8", "replace")


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds) in seconds; None if absent or a date.

    ``headers`` is case-insensitive (aiohttp's ``CIMultiDictProxy``) or has lower-case names.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


class WorkerAttemptError(Exception):
    """One attempt failed before anything reached the client.

    ``replica`` is the endpoint URL, or None when no request was sent (``not_deployed``,
    ``circuit_open``, or the deadline had passed). ``error_type`` / ``message`` are the
    worker's Anthropic error when it sent one, else a transport label: ``connect_error``,
    ``connect_timeout``, ``first_event_timeout``, ``response_timeout``,
    ``deadline_exceeded``, ``connection_lost``, ``protocol_error``, ``pool_timeout``.
    """

    def __init__(
        self,
        failure: Failure,
        message: str,
        *,
        sku: str,
        region: str,
        replica: str | None,
        elapsed_ms: float,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{sku}/{region} {replica or '-'}: {failure.status} {failure.error_type}: {message}")
        self.failure = failure
        self.message = message
        self.sku, self.region, self.replica = sku, region, replica
        self.elapsed_ms = elapsed_ms
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        # failures on other replicas of the same SKU before this one, within one pool call
        self.earlier_failures: tuple[WorkerAttemptError, ...] = ()

    @property
    def status(self) -> str:
        return self.failure.status

    @property
    def error_type(self) -> str:
        return self.failure.error_type

    @property
    def retryable(self) -> bool:
        return self.failure.retryable

    def as_api_error(self) -> ApiError:
        """What the client should see if this was the last candidate."""
        if not self.retryable and self.failure.verdict is Verdict.SUCCESS:  # the request's fault
            known = self.error_type if self.error_type in STATUS_BY_TYPE else "invalid_request_error"
            return ApiError(cast(ErrorType, known), self.message)
        if self.status in ("overloaded", "rate_limited", "timeout"):
            return overloaded(retry_after_s=self.retry_after_s)
        return internal_error()
