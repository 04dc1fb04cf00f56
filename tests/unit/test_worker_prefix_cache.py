"""The worker's prefix cache (LRU of chained block hashes) and its memoized hasher."""

from __future__ import annotations

import random

import pytest

from features.prefix import BLOCK_BYTES, PrefixHasher, prefix_block_hashes
from simulator.prefix_cache import PrefixCache


def test_longest_cached_prefix_counts_leading_blocks_only() -> None:
    cache = PrefixCache(capacity_blocks=100)
    cache.insert([1, 2, 3])
    assert cache.cached_prefix_blocks([1, 2, 3, 4]) == 3
    assert cache.cached_prefix_blocks([1, 2, 9, 3]) == 2
    assert cache.cached_prefix_blocks([9, 1, 2]) == 0
    assert cache.cached_prefix_blocks([]) == 0


def test_lru_eviction_takes_the_tail_of_the_oldest_prompt_first() -> None:
    cache = PrefixCache(capacity_blocks=4)
    cache.insert([1, 2, 3])
    assert cache.insert([10, 11]) == 1  # one block over capacity
    assert 3 not in cache and 1 in cache and 2 in cache  # prompt 1 lost its last block
    cache.cached_prefix_blocks([1, 2])  # touching makes prompt 1 recent again
    cache.insert([20])
    assert len(cache) == 4
    assert 11 not in cache and 10 in cache


def test_running_sequences_reserve_room() -> None:
    cache = PrefixCache(capacity_blocks=10)
    cache.insert(list(range(8)))
    assert cache.insert([100], reserved_blocks=6) == 5
    assert len(cache) == 4


def test_capacity_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        PrefixCache(-1)


def random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefgh é\n") for _ in range(size))


def test_memoized_hasher_equals_features_prefix_on_random_prompts() -> None:
    rng = random.Random(3)
    hasher = PrefixHasher(capacity=64)
    systems = [random_text(rng, rng.randint(0, 5 * BLOCK_BYTES)) for _ in range(3)]
    for _ in range(200):
        segments = [rng.choice(systems)] + [
            random_text(rng, rng.randint(0, 3 * BLOCK_BYTES)) for _ in range(rng.randint(0, 4))
        ]
        assert list(hasher.block_hashes(segments)) == prefix_block_hashes(segments)
        # the conversation continues: the memoized prefix is resumed
        longer = [*segments, random_text(rng, rng.randint(0, 2 * BLOCK_BYTES))]
        assert list(hasher.block_hashes(longer)) == prefix_block_hashes(longer)


def test_hasher_memo_stays_bounded() -> None:
    hasher = PrefixHasher(capacity=8)
    for index in range(50):
        hasher.block_hashes([f"system {index}" * 20, "user"])
    assert len(hasher._states) <= 8


def test_prompt_fingerprint_depends_on_the_whole_prompt() -> None:
    hasher = PrefixHasher()
    base = "x" * (3 * BLOCK_BYTES)
    assert hasher.chain([base, "a"]).prompt_fingerprint() != hasher.chain([base, "b"]).prompt_fingerprint()
    assert (
        hasher.chain([base, "a"]).prompt_fingerprint()
        == PrefixHasher().chain([base, "a"]).prompt_fingerprint()
    )
