"""The request path's small parts: request ids, worker bodies, conversation keys, the ASGI layer."""

import asyncio
import json

from serving.messages_endpoint import read_body, request_headers
from serving.request_parts import conversation_key, encode_json, new_request_id


def test_request_ids_are_unique_and_anthropic_shaped():
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("req_") and len(i) == 28 and int(i[4:], 16) >= 0 for i in ids)


def test_worker_bodies_round_trip_what_json_accepted():
    document = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": 'héllo ☃ \u2028 "quoted" \\ back'}],
        "metadata": {"user_id": "u-1"},
        "temperature": 0.25,
    }
    assert json.loads(encode_json(document)) == document
    # what orjson refuses but json.loads accepted from a client: huge integers, lone surrogates
    odd = json.loads('{"n": 123456789012345678901234567890, "s": "\\ud800x"}')
    assert json.loads(encode_json(odd)) == odd


def test_conversation_key_follows_the_first_user_turn_and_the_tenant():
    first = {"messages": [{"role": "user", "content": "plan a trip"}]}
    later = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "plan a trip"}]},
            {"role": "assistant", "content": "where to?"},
            {"role": "user", "content": "Lisbon"},
        ]
    }
    other = {"messages": [{"role": "user", "content": "write a poem"}]}
    assert conversation_key("t1", first) == conversation_key("t1", later)
    assert conversation_key("t1", first) != conversation_key("t2", first)
    assert conversation_key("t1", first) != conversation_key("t1", other)


def _receiver(messages):
    queue = list(messages)

    async def receive():
        return queue.pop(0)

    return receive


def test_read_body_joins_chunks_and_keeps_at_most_the_limit():
    chunks = [{"type": "http.request", "body": b"abc", "more_body": True}] * 3
    last = {"type": "http.request", "body": b"xyz", "more_body": False}
    assert asyncio.run(read_body(_receiver([*chunks, last]), 100)) == b"abcabcabcxyz"
    assert asyncio.run(read_body(_receiver([*chunks, last]), 7)) == b"abcabca"
    assert asyncio.run(read_body(_receiver([chunks[0], {"type": "http.disconnect"}]), 100)) is None


def test_request_headers_are_lower_case_and_first_value_wins():
    scope = {
        "headers": [(b"X-Api-Key", b"k1"), (b"x-api-key", b"k2"), (b"content-type", b"application/json")]
    }
    assert request_headers(scope) == {"x-api-key": "k1", "content-type": "application/json"}
