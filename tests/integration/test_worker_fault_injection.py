"""Fault injection on a live worker: error statuses, crashes mid-stream, hangs, slow tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from simulator.faults import FaultConfig
from simulator.worker import WorkerConfig, running_worker

MODEL = "claude-haiku-4-5"
OTHER = "claude-haiku-3-5"


def body(out: int = 30, stream: bool = False, model: str = MODEL) -> dict:
    return {
        "model": model,
        "max_tokens": 1000,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Fault test. [[sim out={out}]]"}],
    }


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_worker(WorkerConfig(skus=(MODEL, OTHER), time_scale=0.01, seed=3)) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client
        assert client.post("/admin/faults", json={"reset": True}).status_code == 200


def set_faults(http: httpx.Client, **faults: object) -> dict:
    response = http.post("/admin/faults", json=faults)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("overload_rate", 529, "overloaded_error"),
        ("rate_limit_rate", 429, "rate_limit_error"),
        ("error_rate", 500, "api_error"),
    ],
)
def test_rate_one_faults_answer_with_anthropic_errors(
    http: httpx.Client, fault: str, status: int, error_type: str
) -> None:
    set_faults(http, **{fault: 1.0, "retry_after_s": 7})
    for stream in (False, True):
        response = http.post("/v1/messages", json=body(stream=stream))
        assert response.status_code == status
        assert response.json() == {
            "type": "error",
            "error": {"type": error_type, "message": response.json()["error"]["message"]},
            "request_id": response.headers["request-id"],
        }
        if status == 429:
            assert response.headers["retry-after"] == "7"
    assert f'kind="{fault.removesuffix("_rate")}"' in http.get("/metrics").text


def test_sdk_sees_529_as_overloaded(http: httpx.Client, base_url: str) -> None:
    set_faults(http, overload_rate=1.0)
    with (
        anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0) as client,
        pytest.raises(anthropic.OverloadedError),
    ):
        client.messages.create(**body())


def test_per_model_override_and_admin_validation(http: httpx.Client) -> None:
    state = set_faults(http, model=OTHER, error_rate=1.0)
    assert state["models"][OTHER]["error_rate"] == 1.0 and state["default"]["error_rate"] == 0.0
    assert http.get("/admin/faults").json() == state
    assert http.post("/v1/messages", json=body(model=OTHER)).status_code == 500
    assert http.post("/v1/messages", json=body(model=MODEL)).status_code == 200
    assert http.post("/admin/faults", json={"error_rate": 2}).status_code == 400
    assert http.post("/admin/faults", json={"error_rate": 0.7, "overload_rate": 0.7}).status_code == 400
    assert http.post("/admin/faults", json={"model": "nope"}).status_code == 404


def test_crash_after_tokens_cuts_a_stream(http: httpx.Client) -> None:
    set_faults(http, crash_after_tokens=5)
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/messages", json=body(200, True)) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            received += chunk
    assert b"event: message_start" in received
    assert b"content_block_delta" in received
    assert b"message_stop" not in received
    deltas = received.count(b"event: content_block_delta")
    assert 1 <= deltas <= 5


def test_crash_after_tokens_drops_a_non_streamed_response(http: httpx.Client) -> None:
    set_faults(http, crash_after_tokens=5)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/messages", json=body(200))
    assert http.post("/v1/messages", json=body(3)).status_code == 200  # shorter than the crash point


def test_hang_never_answers_until_the_client_gives_up(http: httpx.Client, base_url: str) -> None:
    set_faults(http, hang_rate=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/messages", json=body(), timeout=0.5)
    assert time.monotonic() - started >= 0.5
    set_faults(http)
    assert http.post("/v1/messages", json=body()).status_code == 200


def test_slow_token_factor_stretches_decoding(http: httpx.Client) -> None:
    def elapsed() -> float:
        started = time.monotonic()
        assert http.post("/v1/messages", json=body(100)).status_code == 200
        return time.monotonic() - started

    normal = min(elapsed() for _ in range(2))
    set_faults(http, slow_token_factor=50.0)
    slow = elapsed()
    # haiku-4-5 decodes at 150 tokens/s: 99 inter-token gaps take 0.66 s, x 0.01 time scale
    # = 6.6 ms, x 50 = 0.33 s. (At x 20 the 0.13 s left a 12 ms margin, which a loaded CI
    # machine ate once.)
    assert slow > normal + 0.25


def test_fault_config_at_start_applies_to_every_request() -> None:
    config = WorkerConfig(skus=(MODEL,), time_scale=0.0, faults=FaultConfig(overload_rate=1.0))
    with running_worker(config) as url:
        assert httpx.post(f"{url}/v1/messages", json=body(), timeout=5).status_code == 529
