"""The classification of failed attempts (pure parts of the worker client; replica choice: test_replica_choice)."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict

from features.records import ATTEMPT_STATUSES
from serving.breaker import Verdict
from serving.worker_errors import (
    WorkerAttemptError,
    classify_http_status,
    classify_in_band,
    classify_timeout,
    classify_transport,
    retry_after_s,
    worker_error,
)


@pytest.mark.parametrize(
    ("http_status", "status", "retryable", "verdict"),
    [
        (529, "overloaded", True, Verdict.FAILURE),
        (503, "overloaded", True, Verdict.FAILURE),
        (500, "error", True, Verdict.FAILURE),
        (502, "error", True, Verdict.FAILURE),
        (404, "error", True, Verdict.FAILURE),
        (408, "timeout", True, Verdict.FAILURE),
        (429, "rate_limited", True, Verdict.NEUTRAL),
        (400, "error", False, Verdict.SUCCESS),
        (413, "error", False, Verdict.SUCCESS),
    ],
)
def test_http_status_classification(http_status: int, status: str, retryable: bool, verdict: Verdict) -> None:
    failure = classify_http_status(http_status, None)
    assert (failure.status, failure.retryable, failure.verdict) == (status, retryable, verdict)
    assert failure.status in ATTEMPT_STATUSES
    assert failure.error_type == f"http_{http_status}"
    assert classify_http_status(http_status, "overloaded_error").error_type == "overloaded_error"


def test_transport_timeout_and_in_band_classification() -> None:
    key = ConnectionKey("w", 8000, False, True, None, None, None)
    refused = classify_transport(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused")))
    assert (refused.status, refused.error_type, refused.retryable, refused.verdict) == (
        "error", "connect_error", True, Verdict.FAILURE,
    )  # fmt: skip
    connect = classify_transport(aiohttp.ConnectionTimeoutError("t"))
    assert (connect.status, connect.error_type, connect.verdict) == (
        "timeout",
        "connect_timeout",
        Verdict.FAILURE,
    )
    for cut in (
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("cut"),
        aiohttp.ClientOSError(),
    ):
        assert classify_transport(cut).error_type == "connection_lost"
        assert classify_transport(cut, waited_for_pool=True).error_type == "connection_lost"
    pool = classify_transport(aiohttp.ConnectionTimeoutError("t"), waited_for_pool=True)
    assert (pool.status, pool.error_type, pool.retryable, pool.verdict) == (
        "overloaded", "pool_timeout", False, Verdict.NEUTRAL,
    )  # fmt: skip
    assert classify_timeout(True, "x") == classify_timeout(True, "y")
    assert (
        not classify_timeout(True, "x").retryable and classify_timeout(True, "x").verdict is Verdict.NEUTRAL
    )
    per_attempt = classify_timeout(False, "first_event_timeout")
    assert (per_attempt.error_type, per_attempt.retryable, per_attempt.verdict) == (
        "first_event_timeout", True, Verdict.FAILURE,
    )  # fmt: skip
    assert classify_in_band("overloaded_error").status == "overloaded"
    assert classify_in_band("internal_error").verdict is Verdict.FAILURE
    assert not classify_in_band("invalid_request_error").retryable


def test_worker_error_bodies_and_retry_after() -> None:
    anthropic_body = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
    assert worker_error(anthropic_body) == ("overloaded_error", "busy")
    assert worker_error(b'{"object":"error","message":"m","type":"BadRequestError"}') == (
        "BadRequestError",
        "m",
    )
    assert worker_error(b"<html>bad gateway</html>") == (None, "<html>bad gateway</html>")
    assert retry_after_s(CIMultiDict({"Retry-After": "7"})) == 7.0
    assert retry_after_s(CIMultiDict({"retry-after-ms": "1500", "retry-after": "2"})) == 1.5
    assert retry_after_s(CIMultiDict({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    assert retry_after_s(CIMultiDict()) is None


def test_attempt_errors_become_client_errors() -> None:
    def error(http_status: int, error_type: str | None, retry: float | None = None) -> WorkerAttemptError:
        failure = classify_http_status(http_status, error_type)
        return WorkerAttemptError(
            failure, "msg", sku="s", region="us", replica="http://w", elapsed_ms=1.0,
            http_status=http_status, retry_after_s=retry,
        )  # fmt: skip

    bad = error(400, "invalid_request_error").as_api_error()
    assert (bad.status, bad.error_type, bad.message) == (400, "invalid_request_error", "msg")
    assert error(400, "SomethingElse").as_api_error().error_type == "invalid_request_error"
    busy = error(529, "overloaded_error", 3.0).as_api_error()
    assert (busy.status, busy.retry_after_s) == (529, 3.0)
    assert error(500, "api_error").as_api_error().status == 500
    assert "msg" not in error(500, "api_error").as_api_error().message  # no worker text leaks on 5xx
