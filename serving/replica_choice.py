"""Which replica of a SKU serves a request: prefix-cache affinity with bounded load.

A vLLM replica reuses the KV blocks of a prompt prefix it has already seen (automatic prefix
caching), so requests sharing a prefix — a tenant's system prompt, the earlier turns of a
conversation — are cheaper and faster on the replica that served the prefix before. The
pure :func:`choose_replica` sends a request with an *affinity key* (a hash of its leading
prompt blocks) to the same replica every time, unless that replica is already carrying more
than its share of the load:

- **Consistent hashing** by rendezvous (highest-random-weight): each replica's rank for a key
  is a hash of (key, replica URL). Every gateway process computes the same order with no
  shared state, and adding or removing a replica moves only the keys that ranked it first.
- **Bounded load** (Mirrokni, Thorup, Zadimoghaddam, 2018): a replica may take the request
  only while its load is below ``ceil(load_factor × (total load + 1) / replicas)``; otherwise
  the next replica in the key's order is tried. With ``load_factor`` 1.25 no replica carries
  more than 25 % over the mean, so a hot prefix spills onto other replicas instead of
  queueing on one.
- **Load** = requests this gateway has in flight there + requests the replica reports
  waiting (``vllm:num_requests_waiting``, scraped), so queues other gateways cause count too.
- A replica that is not permitted (failed its health check, open circuit, already tried for
  this request) is never chosen. No permitted replica: None.

Without a key (a prompt shorter than one block) the request goes to the least-loaded
permitted replica, ties broken round-robin from ``start`` (the pool advances it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LOAD_FACTOR = 1.25


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """What the chooser knows about one replica right now."""

    url: str  # the replica's identity on the hash ring: stable across gateway processes
    in_flight: int  # this gateway's requests there
    waiting: float = 0.0  # queued on the replica by its own account (scraped; 0 when unknown)
    permitted: bool = True  # healthy, circuit closed, not yet tried for this request

    @property
    def load(self) -> float:
        return self.in_flight + self.waiting


def affinity_key(prefix_keys: Sequence[tuple[int, bytes]]) -> bytes | None:
    """The key replica affinity hashes: the shortest whole-segment prefix with at least one block.

    ``prefix_keys`` is ``features.prefix.boundary_prefix_keys(segments)`` (shortest first).
    The first boundary is the system prompt when there is one, else the first user turn:
    every turn of a conversation and every request sharing that system prompt get the same
    key, which is what makes their later blocks land on a replica that already holds them.
    """
    return prefix_keys[0][1] if prefix_keys else None


def rendezvous_order(key: bytes, urls: Sequence[str]) -> list[int]:
    """Replica indexes in the key's preference order (highest hash first)."""
    weights = [
        int.from_bytes(hashlib.blake2b(url.encode(), digest_size=8, key=key[:64]).digest(), "big")
        for url in urls
    ]
    return sorted(range(len(urls)), key=lambda index: (-weights[index], urls[index]))


def load_bound(loads: Sequence[ReplicaLoad], load_factor: float) -> float:
    """The most load a permitted replica may carry and still take one more request."""
    permitted = [r for r in loads if r.permitted]
    total = sum(r.load for r in permitted)
    return math.ceil(load_factor * (total + 1) / len(permitted))


def least_loaded(loads: Sequence[ReplicaLoad], start: int) -> int | None:
    """The permitted replica with the least load; ties go to the first from ``start`` on."""
    count = len(loads)
    best: int | None = None
    for offset in range(count):
        index = (start + offset) % count
        if loads[index].permitted and (best is None or loads[index].load < loads[best].load):
            best = index
    return best


def choose_replica(
    loads: Sequence[ReplicaLoad],
    key: bytes | None,
    start: int = 0,
    *,
    load_factor: float = DEFAULT_LOAD_FACTOR,
) -> int | None:
    """The index of the replica to send the request to, or None if no replica is permitted."""
    if load_factor < 1.0:
        raise ValueError("load_factor must be >= 1")
    if not any(r.permitted for r in loads):
        return None
    if key is None:
        return least_loaded(loads, start)
    bound = load_bound(loads, load_factor)
    order = rendezvous_order(key, [r.url for r in loads])
    for index in order:
        if loads[index].permitted and loads[index].load < bound:
            return index
    # every permitted replica is at the bound (possible with fractional waiting counts)
    return next(index for index in order if loads[index].permitted)
