"""SharedPromptCache against a real redis-server: one process's prefixes warm another's estimate."""

from __future__ import annotations

import asyncio

import pytest

from features.prefix import boundary_prefix_keys
from serving.prompt_cache import PromptCacheEstimate
from serving.prompt_cache_share import SharedPromptCache, decode_entries, encode_entries
from switchyard_cli.redis_server import RedisServer

KEYS = boundary_prefix_keys(["You are a careful assistant. " * 40, "What is the capital of France? " * 10])
LONGEST_TOKENS = KEYS[-1][0] * 16  # features.prefix.BLOCK_TOKENS


def test_a_message_round_trips_and_a_malformed_one_is_refused():
    entries = [
        ("claude-haiku-4-5", "us", KEYS[0][1], 1_700_000_000.25),
        ("claude-opus-4-5", "eu", KEYS[1][1], 2.0),
    ]
    sender, decoded = decode_entries(encode_entries(b"12345678", entries))
    assert sender == b"12345678" and decoded == entries
    with pytest.raises(ValueError):
        decode_entries(encode_entries(b"12345678", entries) + b"x")


async def _eventually(predicate, seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def _pair(url: str, changes: list[tuple[str, bool]]) -> tuple[SharedPromptCache, SharedPromptCache]:
    def share(name: str) -> SharedPromptCache:
        return SharedPromptCache.connect(
            url,
            PromptCacheEstimate(ttl_s=300.0),
            timeout_s=0.5,
            period_s=0.05,
            on_shared=lambda shared: changes.append((name, shared)),
        )

    return share("a"), share("b")


def test_a_prefix_served_through_one_process_counts_as_cached_in_another():
    async def run() -> None:
        server = RedisServer()
        server.start()
        changes: list[tuple[str, bool]] = []
        a, b = _pair(server.url, changes)
        try:
            a.start(), b.start()
            assert await _eventually(lambda: a.shared and b.shared)
            now = asyncio.get_running_loop().time()
            assert b.cached_tokens("claude-haiku-4-5", "us", KEYS, now) == 0
            a.observe("claude-haiku-4-5", "us", KEYS, a._clock())
            assert await _eventually(lambda: b.cached_tokens("claude-haiku-4-5", "us", KEYS, b._clock()) > 0)
            assert b.cached_tokens("claude-haiku-4-5", "us", KEYS, b._clock()) == LONGEST_TOKENS
            # only that deployment: the same prompt at another SKU or region is still cold
            assert b.cached_tokens("claude-haiku-4-5", "eu", KEYS, b._clock()) == 0
            assert b.cached_tokens("claude-opus-4-5", "us", KEYS, b._clock()) == 0
            assert a.stats().applied == 0  # a process ignores its own messages
            assert b.stats().applied == len(KEYS)

            server.stop()  # Redis gone: each keeps its own view, nothing raises
            a.observe("claude-opus-4-5", "us", KEYS, a._clock())
            assert await _eventually(lambda: not a.shared and not b.shared)
            assert a.cached_tokens("claude-opus-4-5", "us", KEYS, a._clock()) == LONGEST_TOKENS
            assert await _eventually(lambda: a.stats().dropped >= len(KEYS))

            server.start()  # back: both subscribe again and replication resumes
            assert await _eventually(lambda: a.shared and b.shared, seconds=10.0)
            a.observe("claude-sonnet-4-5", "us", KEYS, a._clock())
            assert await _eventually(lambda: b.cached_tokens("claude-sonnet-4-5", "us", KEYS, b._clock()) > 0)
        finally:
            await a.aclose()
            await b.aclose()
            server.stop()
        assert ("a", False) in changes and changes.count(("b", True)) == 2

    asyncio.run(run())
