"""The simulated worker's /v1/chat/completions through the official openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from features.tokens import estimate_tokens
from simulator.worker import WorkerConfig, running_worker

MODEL = "claude-sonnet-4-5"
MESSAGES = [
    {"role": "system", "content": "You are the OpenAI-format test. " * 10},
    {"role": "user", "content": "Explain tides. [[sim out=33]]"},
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_worker(WorkerConfig(skus=(MODEL,), time_scale=0.01)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="test", max_retries=0, timeout=10) as sdk:
        yield sdk


def test_non_streaming_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.system_fingerprint and completion.model == MODEL
    [choice] = completion.choices
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == 33 == estimate_tokens(choice.message.content or "")
    assert usage.prompt_tokens == sum(estimate_tokens(m["content"]) for m in MESSAGES)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_with_include_usage_and_cached_tokens(client: openai.OpenAI) -> None:
    texts = []
    for _ in range(2):
        stream = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-2].choices[0].finish_reason == "stop"
        usage_chunk = chunks[-1]
        assert usage_chunk.choices == [] and usage_chunk.usage is not None
        assert all(chunk.usage is None for chunk in chunks[:-1])
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
        assert usage_chunk.usage.completion_tokens == 33 == estimate_tokens(text)
        texts.append(text)
    assert texts[0] == texts[1]
    details = usage_chunk.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens and details.cached_tokens > 0


def test_length_finish_and_stop(client: openai.OpenAI) -> None:
    capped = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=5)
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 5  # type: ignore[union-attr]
    full = client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content or ""
    stop = full.split()[10]
    cut = client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)]


def test_raw_stream_ends_with_done(base_url: str) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=10)
    frames = response.text.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    for frame in frames[:-2]:
        assert frame.startswith("data: ")
        assert "usage" not in json.loads(frame[6:])  # only with include_usage


def test_errors_are_openai_shaped(client: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    response = httpx.post(f"{base_url}/v1/chat/completions", content=b"{", timeout=10)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["type"] == "invalid_request_error"
