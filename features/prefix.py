"""Prompt-prefix block hashes: the identity of a prompt prefix for prompt caching.

A prompt is cut into fixed-size blocks (``BLOCK_TOKENS`` tokens, estimated as
``BLOCK_TOKENS * BYTES_PER_TOKEN`` bytes); each block's hash chains the previous block's
hash, so two prompts share the first *k* hashes exactly when they share the first *k*
blocks. vLLM's automatic prefix caching works the same way (over token ids). Workers use
these hashes as prefix-cache keys; the router uses them for replica affinity and for the
expected prompt-cache hit of a SKU.

The chain rule lives in :func:`extend_chain` only. :class:`PrefixHasher` memoizes chain
states at segment boundaries for hot paths where prompts share whole segments (the same
system prompt, the same earlier turns): hashing a 5K-token prompt block by block costs
~0.4 ms in CPython, a resumed chain only hashes the new turn.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from features.tokens import BYTES_PER_TOKEN

BLOCK_TOKENS = 16
BLOCK_BYTES = BLOCK_TOKENS * BYTES_PER_TOKEN
SEGMENT_SEPARATOR = b"\x1e"


@dataclass(frozen=True, slots=True)
class ChainState:
    """The block-hash chain after some prefix of the prompt's bytes."""

    hashes: tuple[int, ...]
    previous: bytes  # digest of the last full block (b"" before the first)
    tail: bytes  # bytes after the last full block

    def prompt_fingerprint(self) -> bytes:
        """16 bytes that identify the whole prompt these bytes came from."""
        return hashlib.blake2b(self.previous + self.tail, digest_size=16).digest()


EMPTY_CHAIN = ChainState((), b"", b"")


def extend_chain(state: ChainState, data: bytes, *, max_blocks: int | None = None) -> ChainState:
    """The chain after appending ``data`` to the bytes ``state`` describes."""
    data = state.tail + data
    full = len(data) // BLOCK_BYTES
    if max_blocks is not None:
        full = max(0, min(full, max_blocks - len(state.hashes)))
    if full == 0:
        return ChainState(state.hashes, state.previous, data)
    hashes = list(state.hashes)
    previous = state.previous
    blake2b = hashlib.blake2b
    for index in range(full):
        previous = blake2b(
            previous + data[index * BLOCK_BYTES : (index + 1) * BLOCK_BYTES], digest_size=8
        ).digest()
        hashes.append(int.from_bytes(previous, "big", signed=True))
    return ChainState(tuple(hashes), previous, data[full * BLOCK_BYTES :])


def prefix_block_hashes(segments: Iterable[str], *, max_blocks: int | None = None) -> list[int]:
    """Chained 64-bit hashes of the full blocks of the concatenated prompt ``segments``.

    The trailing partial block is not hashed (it cannot be shared). ``max_blocks`` stops
    early, for callers that only need the leading blocks (replica affinity).
    """
    data = SEGMENT_SEPARATOR.join(segment.encode("utf-8") for segment in segments)
    return list(extend_chain(EMPTY_CHAIN, data, max_blocks=max_blocks).hashes)


class PrefixHasher:
    """``prefix_block_hashes`` with an LRU of chain states at segment boundaries."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._states: OrderedDict[tuple[str, ...], ChainState] = OrderedDict()

    def chain(self, segments: Sequence[str]) -> ChainState:
        """The chain state of the whole prompt ``segments`` (joined by ``SEGMENT_SEPARATOR``)."""
        states = self._states
        key = tuple(segments)
        start = len(key)
        state: ChainState | None = None
        while start > 0:
            state = states.get(key[:start])
            if state is not None:
                states.move_to_end(key[:start])
                break
            start -= 1
        if state is None:
            state = EMPTY_CHAIN
        for index in range(start, len(key)):
            data = key[index].encode("utf-8")
            state = extend_chain(state, data if index == 0 else SEGMENT_SEPARATOR + data)
            states[key[: index + 1]] = state
        while len(states) > self.capacity:
            states.popitem(last=False)
        return state

    def block_hashes(self, segments: Sequence[str]) -> tuple[int, ...]:
        return self.chain(segments).hashes


def boundary_prefix_keys(segments: Sequence[str]) -> tuple[tuple[int, bytes], ...]:
    """``(blocks, key)`` at every segment boundary of the prompt, shortest first.

    ``blocks`` is the number of whole blocks before the end of segments ``0..i`` and ``key``
    identifies exactly those leading ``blocks * BLOCK_BYTES`` bytes of the joined prompt. Two
    prompts that share a whole-segment prefix (a system prompt, the earlier turns of a
    conversation) get the same key at that boundary. One pass of one running hash over the
    prompt, ~20 µs for a 5K-token prompt -- for callers that only need to match prefixes at
    segment boundaries (the gateway's prompt-cache estimate), not the per-block chain.
    """
    running = hashlib.blake2b(digest_size=16)
    hashed = 0  # bytes fed to ``running``: always a whole number of blocks
    offset = 0  # bytes of the joined prompt up to the current boundary
    pending = b""  # bytes after ``hashed`` up to ``offset``
    keys: list[tuple[int, bytes]] = []
    for index, segment in enumerate(segments):
        data = segment.encode("utf-8")
        if index:
            data = SEGMENT_SEPARATOR + data
        offset += len(data)
        pending += data
        whole = (len(pending) // BLOCK_BYTES) * BLOCK_BYTES
        if whole:
            running.update(pending[:whole])
            hashed += whole
            pending = pending[whole:]
        blocks = hashed // BLOCK_BYTES
        if blocks and (not keys or keys[-1][0] != blocks):
            keys.append((blocks, running.copy().digest()))
    return tuple(keys)
