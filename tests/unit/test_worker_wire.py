"""Request validation and response framing of the worker's two wire formats (pure functions)."""

from __future__ import annotations

import json

import pytest

from features.catalog import load_catalog
from features.prefix import PrefixHasher
from features.request import prompt_segments
from features.tokens import estimate_tokens
from features.wire import WireError
from simulator import wire_anthropic, wire_openai
from simulator.generation import plan_generation
from simulator.text import TextTape
from simulator.wire_common import ChatRequest

CATALOG = load_catalog()
SERVED = {name: CATALOG.get(name) for name in ("claude-haiku-4-5", "claude-opus-4-5")}
MODEL = "claude-haiku-4-5"


def body(**fields: object) -> bytes:
    document = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def anthropic_error(raw: bytes) -> WireError:
    with pytest.raises(WireError) as caught:
        wire_anthropic.parse_messages_request(raw, SERVED)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "status", "error_type", "message"),
    [
        (body(max_tokens=None), 400, "invalid_request_error", "max_tokens: Field required"),
        (
            body(max_tokens=0),
            400,
            "invalid_request_error",
            "max_tokens: Input should be greater than or equal to 1",
        ),
        (body(max_tokens="ten"), 400, "invalid_request_error", "max_tokens: Input should be a valid integer"),
        (body(messages=None), 400, "invalid_request_error", "messages: Field required"),
        (body(model=None), 400, "invalid_request_error", "model: Field required"),
        (body(model="claude-nope"), 404, "not_found_error", "model: claude-nope"),
        (
            body(temperature=1.5),
            400,
            "invalid_request_error",
            "temperature: Input should be less than or equal to 1",
        ),
        (
            body(max_tokens=100_000),
            400,
            "invalid_request_error",
            "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5",
        ),
    ],
)
def test_anthropic_validation_errors(raw: bytes, status: int, error_type: str, message: str) -> None:
    error = anthropic_error(raw)
    assert (error.status, error.error_type, error.message) == (status, error_type, message)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b"",
        body(messages=[]),
        body(messages=[{"role": "assistant", "content": "hi"}]),
        body(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
        body(messages=[{"role": "system", "content": "a"}]),
        body(messages=[{"role": "user"}]),
        body(messages=[{"role": "user", "content": [{"text": "no type"}]}]),
        body(messages=[{"role": "user", "content": 42}]),
        body(system=[{"type": "image"}]),
        body(stop_sequences="STOP", stream="yes"),
        body(metadata="m"),
    ],
)
def test_anthropic_bad_requests_are_400_invalid_request(raw: bytes) -> None:
    error = anthropic_error(raw)
    assert (error.status, error.error_type) == (400, "invalid_request_error")


def test_anthropic_request_segments_are_the_router_features_segments() -> None:
    document = {
        "model": MODEL,
        "max_tokens": 50,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Q1"}, {"type": "image", "source": {}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "42"}]},
        ],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "metadata": {"user_id": "u"},
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    }
    request = wire_anthropic.parse_messages_request(json.dumps(document).encode(), SERVED)
    assert list(request.segments) == prompt_segments(document)
    assert request.last_user_text == "42"
    assert request.stop_sequences == ("END",)


def test_anthropic_message_and_stream_frames_are_valid_json() -> None:
    message = json.loads(
        wire_anthropic.render_message("msg_1", MODEL, "abc def", "stop_sequence", 'q"x', 5, 32, 2)
    )
    assert message["content"] == [{"type": "text", "text": "abc def"}]
    assert message["stop_sequence"] == 'q"x'
    assert message["usage"] == {
        "input_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 32,
        "output_tokens": 2,
    }
    stream = (
        wire_anthropic.sse_head("msg_1", MODEL, 5, 32)
        + wire_anthropic.sse_text_delta("abc ")
        + wire_anthropic.sse_tail("end_turn", None, 5, 32, 1)
    ).decode()
    frames = stream.split("\n\n")
    assert frames[-1] == ""
    names = []
    for frame in frames[:-1]:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
        names.append(name)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_openai_request_and_errors() -> None:
    document = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "S1"},
            {"role": "developer", "content": "S2"},
            {"role": "user", "content": [{"type": "text", "text": "hello [[sim out=3]]"}]},
        ],
        "stop": "END",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = wire_openai.parse_chat_request(json.dumps(document).encode(), SERVED)
    assert request.segments == ("S1\nS2", "hello [[sim out=3]]")
    assert request.max_tokens is None
    assert request.include_usage and request.stream and request.stop_sequences == ("END",)
    with pytest.raises(WireError) as caught:
        wire_openai.parse_chat_request(json.dumps({**document, "model": "x"}).encode(), SERVED)
    assert caught.value.status == 404
    error = json.loads(wire_openai.render_error(404, "not_found_error", caught.value.message, "model"))
    assert error == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    with pytest.raises(WireError):
        wire_openai.parse_chat_request(json.dumps({**document, "n": 2}).encode(), SERVED)


def test_openai_chunks_are_valid_json() -> None:
    framer = wire_openai.ChunkFramer("chatcmpl-1", 1, MODEL, "fp_x", include_usage=True)
    for chunk in (framer.role(), framer.text("ab "), framer.finish("max_tokens"), framer.usage(10, 4, 2)):
        text = chunk.decode()
        assert text.startswith("data: ") and text.endswith("\n\n")
        document = json.loads(text.removeprefix("data: "))
        assert document["object"] == "chat.completion.chunk" and "usage" in document
    assert json.loads(framer.finish("max_tokens")[6:])["choices"][0]["finish_reason"] == "length"
    assert json.loads(framer.usage(10, 4, 2)[6:])["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def chat(text: str, max_tokens: int = 1000, stops: tuple[str, ...] = ()) -> ChatRequest:
    return ChatRequest(
        model=MODEL,
        max_tokens=max_tokens,
        segments=("system prompt", text),
        last_user_text=text,
        stop_sequences=stops,
    )


def test_plan_follows_the_sim_hint_and_caps_at_max_tokens() -> None:
    tape, hasher, sku = TextTape(0), PrefixHasher(), SERVED[MODEL]
    plan = plan_generation(chat("go [[sim out=37 task=code]]"), sku, tape, hasher)
    assert (plan.output_tokens, plan.stop_reason) == (37, "end_turn")
    assert estimate_tokens(plan.text) == 37
    assert plan.prompt_tokens == estimate_tokens("system prompt") + estimate_tokens(
        "go [[sim out=37 task=code]]"
    )
    capped = plan_generation(chat("go [[sim out=37]]", max_tokens=10), sku, tape, hasher)
    assert (capped.output_tokens, capped.stop_reason) == (10, "max_tokens")
    assert plan_generation(chat("go [[sim out=37 task=code]]"), sku, tape, hasher) == plan


def test_plan_cuts_at_a_stop_sequence() -> None:
    tape, hasher, sku = TextTape(0), PrefixHasher(), SERVED[MODEL]
    full = plan_generation(chat("go [[sim out=60]]"), sku, tape, hasher)
    stop = full.text.split()[10]
    cut = plan_generation(chat("go [[sim out=60]]", stops=(stop,)), sku, tape, hasher)
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.output_tokens == estimate_tokens(cut.text) < 60


def test_plan_without_max_tokens_fits_the_context_window() -> None:
    sku = SERVED[MODEL]
    long_prompt = "x" * (4 * (sku.context_window - 100))
    request = ChatRequest(
        model=MODEL, max_tokens=None, segments=("", long_prompt), last_user_text="[[sim out=500]]"
    )
    plan = plan_generation(request, sku, TextTape(0), PrefixHasher())
    assert (plan.output_tokens, plan.stop_reason) == (100, "max_tokens")


def test_plan_rejects_prompts_beyond_the_context_window() -> None:
    sku = SERVED[MODEL]
    huge = "x" * (4 * sku.context_window)
    with pytest.raises(WireError) as caught:
        plan_generation(chat(huge), sku, TextTape(0), PrefixHasher())
    assert caught.value.status == 400
    assert "exceed context limit" in caught.value.message
