"""Replica choice inside a SKU: prefix affinity by rendezvous hashing, bounded load, least-loaded."""

from __future__ import annotations

import collections
import random

import pytest

from features.prefix import boundary_prefix_keys
from serving.replica_choice import (
    ReplicaLoad,
    affinity_key,
    choose_replica,
    least_loaded,
    load_bound,
    rendezvous_order,
)

URLS = [f"http://127.0.0.1:{8200 + i}" for i in range(4)]


def idle(urls=URLS) -> list[ReplicaLoad]:
    return [ReplicaLoad(url, 0) for url in urls]


def key(n: int) -> bytes:
    return random.Random(n).randbytes(16)


def test_least_loaded_counts_waiting_and_skips_refused_replicas() -> None:
    loads = [ReplicaLoad("a", 3), ReplicaLoad("b", 1), ReplicaLoad("c", 2)]
    assert least_loaded(loads, 0) == 1
    loads[1] = ReplicaLoad("b", 1, waiting=5)
    assert least_loaded(loads, 0) == 2
    loads[2] = ReplicaLoad("c", 2, permitted=False)
    assert least_loaded(loads, 0) == 0
    assert choose_replica([ReplicaLoad("a", 0, permitted=False)], key(1)) is None
    assert choose_replica([], None) is None


def test_without_a_key_ties_go_round_robin_as_the_start_advances() -> None:
    loads, chosen, start = idle(URLS[:3]), [], 0
    for _ in range(6):
        index = choose_replica(loads, None, start)
        assert index is not None
        chosen.append(index)
        start = index + 1
    assert chosen == [0, 1, 2, 0, 1, 2]


def test_the_same_key_always_goes_to_the_same_idle_replica_and_keys_spread() -> None:
    first = {n: choose_replica(idle(), key(n)) for n in range(400)}
    assert all(choose_replica(idle(), key(n), start=n % 4) == first[n] for n in range(400))
    counts = collections.Counter(first.values())
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 60  # ~100 each


def test_removing_a_replica_moves_only_the_keys_that_ranked_it_first() -> None:
    before = {n: URLS[choose_replica(idle(), key(n))] for n in range(400)}
    after = {n: URLS[choose_replica(idle(URLS[:3]), key(n))] for n in range(400)}
    moved = [n for n in range(400) if before[n] != after[n]]
    assert moved and all(before[n] == URLS[3] for n in moved)


def test_the_order_is_the_same_in_every_process() -> None:
    # rendezvous weights are keyed blake2b over the URL: no per-process salt, no shared state
    assert rendezvous_order(b"k" * 16, URLS) == rendezvous_order(b"k" * 16, list(URLS))
    assert sorted(rendezvous_order(b"k" * 16, URLS)) == [0, 1, 2, 3]


def test_an_unpermitted_preferred_replica_hands_over_to_the_next_in_the_key_order() -> None:
    k = key(7)
    order = rendezvous_order(k, URLS)
    loads = idle()
    loads[order[0]] = ReplicaLoad(URLS[order[0]], 0, permitted=False)
    assert choose_replica(loads, k) == order[1]


def test_bounded_load_spills_a_hot_key_and_caps_every_replica() -> None:
    k = key(3)
    preferred = choose_replica(idle(), k)
    in_flight = [0, 0, 0, 0]
    for _ in range(40):  # one hot prefix, requests that never finish
        loads = [ReplicaLoad(url, n) for url, n in zip(URLS, in_flight, strict=True)]
        index = choose_replica(loads, k, load_factor=1.25)
        assert index is not None
        bound = load_bound(loads, 1.25)
        assert in_flight[index] < bound
        in_flight[index] += 1
    assert in_flight[preferred] == max(in_flight)
    assert max(in_flight) <= 1.25 * 40 / 4 + 1  # never far above the mean
    assert min(in_flight) > 0  # the overflow went everywhere


def test_affinity_holds_while_the_preferred_replica_is_within_the_bound() -> None:
    k = key(11)
    preferred = choose_replica(idle(), k)
    loads = [ReplicaLoad(url, 2) for url in URLS]
    loads[preferred] = ReplicaLoad(URLS[preferred], 2, waiting=0.5)  # a bit busier: still chosen
    assert choose_replica(loads, k) == preferred
    loads[preferred] = ReplicaLoad(URLS[preferred], 2, waiting=6)  # far busier: spills
    assert choose_replica(loads, k) != preferred


def test_load_factor_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        choose_replica(idle(), key(1), load_factor=0.9)


def test_affinity_key_is_the_first_whole_segment_prefix() -> None:
    system = "You are the support bot of a shop. " * 10
    turn_1 = boundary_prefix_keys([system, "Where is my parcel?"])
    turn_2 = boundary_prefix_keys([system, "Where is my parcel?", "It left today.", "Thanks, when?"])
    other = boundary_prefix_keys([system, "Something else entirely"])
    assert affinity_key(turn_1) == affinity_key(turn_2) == affinity_key(other) is not None
    assert affinity_key(boundary_prefix_keys(["Other system. " * 10, "Where is my parcel?"])) != affinity_key(
        turn_1
    )
    assert affinity_key(boundary_prefix_keys(["", "hi"])) is None  # shorter than one block: no key
    assert affinity_key(()) is None
