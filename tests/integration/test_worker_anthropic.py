"""The simulated worker through the official anthropic SDK and raw HTTP, on a real loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from features.tokens import estimate_tokens
from simulator.worker import WorkerConfig, running_worker

MODEL = "claude-haiku-4-5"
SYSTEM = "You are the Switchyard test assistant. Answer in plain words. " * 8


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    config = WorkerConfig(skus=(MODEL, "claude-opus-4-5"), time_scale=0.01, seed=5, max_body_bytes=200_000)
    with running_worker(config) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="test", max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as raw:
        yield raw


def test_non_streaming_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=500,
        system=SYSTEM,
        extra_body={"temperature": 0.3},  # the v2 SDK no longer has the parameter; the API still does
        metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "Describe a harbour. [[sim out=42 task=creative]]"}],
    )
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    [block] = message.content
    assert block.type == "text"
    assert message.usage.output_tokens == 42 == estimate_tokens(block.text)
    prompt_tokens = estimate_tokens(SYSTEM) + estimate_tokens(
        "Describe a harbour. [[sim out=42 task=creative]]"
    )
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == prompt_tokens
    assert message.usage.cache_creation_input_tokens == 0


def test_multi_turn_with_system_blocks_and_tools(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude-opus-4-5",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}],
        tools=[{"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}}}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "And now? [[sim out=7]]"},
        ],
    )
    assert message.model == "claude-opus-4-5" and message.usage.output_tokens == 7


def test_stream_and_final_message_with_prefix_cache(client: anthropic.Anthropic) -> None:
    request = {
        "model": MODEL,
        "max_tokens": 300,
        "system": "A system prompt no other test uses. " + SYSTEM,
        "messages": [{"role": "user", "content": "Tell me about rivers. [[sim out=120]]"}],
    }
    usages = []
    for _ in range(2):
        with client.messages.stream(**request) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.content[0].text == streamed
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens == 120 == estimate_tokens(streamed)
        usages.append(final.usage)
    first, second = usages
    assert first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens > 0
    assert second.cache_read_input_tokens % 16 == 0
    assert second.input_tokens + second.cache_read_input_tokens == first.input_tokens
    assert second.input_tokens < first.input_tokens


def sse_events(raw: str) -> list[tuple[str, dict]]:
    assert raw.endswith("\n\n")
    events = []
    for frame in raw[:-2].split("\n\n"):
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[len("data: ") :])
        assert data["type"] == event_line[len("event: ") :]
        events.append((data["type"], data))
    return events


def test_raw_sse_event_sequence_is_anthropic_exact(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "Count sheep. [[sim out=40]]"}],
    }
    response = http.post("/v1/messages", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 2
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["type"] == "message" and start["role"] == "assistant"
    assert start["model"] == MODEL and start["content"] == [] and start["stop_reason"] is None
    assert set(start["usage"]) >= {
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens",
    }
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert all(
        data["delta"]["type"] == "text_delta" for name, data in events if name == "content_block_delta"
    )
    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert message_delta["usage"]["output_tokens"] == 40 == estimate_tokens(text)


def test_max_tokens_caps_the_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Go on. [[sim out=500]]"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 10 == estimate_tokens(message.content[0].text)


def test_stop_sequences_cut_the_text(client: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": "Say things. [[sim out=80]]"}]
    full = client.messages.create(model=MODEL, max_tokens=200, messages=messages).content[0].text
    stop = full.split()[20]
    cut = client.messages.create(model=MODEL, max_tokens=200, messages=messages, stop_sequences=["ZZZ", stop])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.content[0].text == full[: full.index(stop)]
    assert cut.usage.output_tokens == estimate_tokens(cut.content[0].text) < 80
    with client.messages.stream(
        model=MODEL, max_tokens=200, messages=messages, stop_sequences=[stop]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop
    assert final.content[0].text == cut.content[0].text


def test_missing_max_tokens_is_an_exact_anthropic_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/messages", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400
    document = response.json()
    assert document["type"] == "error"
    assert document["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


@pytest.mark.parametrize(
    ("content", "status", "error_type"),
    [
        (b"this is not json", 400, "invalid_request_error"),
        (json.dumps({"model": MODEL, "max_tokens": 5}).encode(), 400, "invalid_request_error"),
        (
            json.dumps(
                {"model": MODEL, "max_tokens": 5, "messages": [{"role": "assistant", "content": "first"}]}
            ).encode(),
            400,
            "invalid_request_error",
        ),
        (
            json.dumps(
                {"model": "claude-none", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            404,
            "not_found_error",
        ),
        (b"x" * 300_000, 413, "request_too_large"),
    ],
)
def test_bad_requests_get_anthropic_errors(
    http: httpx.Client, content: bytes, status: int, error_type: str
) -> None:
    response = http.post("/v1/messages", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    document = response.json()
    assert document["type"] == "error" and document["error"]["type"] == error_type
    assert "Traceback" not in response.text


def test_sdk_raises_typed_errors(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as not_found:
        client.messages.create(model="claude-none", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert not_found.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}] * 2)


def test_unknown_route_and_method_are_json(http: httpx.Client) -> None:
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong_method = http.get("/v1/messages")
    assert wrong_method.status_code == 405 and wrong_method.json()["type"] == "error"


def test_models_and_health(http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert {model["id"] for model in models["data"]} == {MODEL, "claude-opus-4-5"}
    assert all(model["object"] == "model" for model in models["data"])
