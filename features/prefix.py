"""Prompt-prefix block hashes: the identity of a prompt prefix for prompt caching.

A prompt is cut into fixed-size blocks (``BLOCK_TOKENS`` tokens, estimated as
``BLOCK_TOKENS * BYTES_PER_TOKEN`` bytes); each block's hash chains the previous block's
hash, so two prompts share the first *k* hashes exactly when they share the first *k*
blocks. vLLM's automatic prefix caching works the same way (over token ids). Workers use
these hashes as prefix-cache keys; the router uses them for replica affinity and for the
expected prompt-cache hit of a SKU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from features.tokens import BYTES_PER_TOKEN

BLOCK_TOKENS = 16
BLOCK_BYTES = BLOCK_TOKENS * BYTES_PER_TOKEN


def prefix_block_hashes(segments: Iterable[str], *, max_blocks: int | None = None) -> list[int]:
    """Chained 64-bit hashes of the full blocks of the concatenated prompt ``segments``.

    The trailing partial block is not hashed (it cannot be shared). ``max_blocks`` stops
    early, for callers that only need the leading blocks (replica affinity).
    """
    data = b"\x1e".join(segment.encode("utf-8") for segment in segments)
    n_blocks = len(data) // BLOCK_BYTES
    if max_blocks is not None:
        n_blocks = min(n_blocks, max_blocks)
    hashes: list[int] = []
    previous = b""
    for index in range(n_blocks):
        digest = hashlib.blake2b(
            previous + data[index * BLOCK_BYTES : (index + 1) * BLOCK_BYTES], digest_size=8
        ).digest()
        hashes.append(int.from_bytes(digest, "big", signed=True))
        previous = digest
    return hashes
