"""An LRU prefix cache over chained block hashes (``features.prefix.prefix_block_hashes``).

It models vLLM's automatic prefix caching: a prompt is a chain of blocks, and a request
reuses the longest run of leading blocks that are still cached. Because each hash chains its
predecessor, "the first *k* hashes are cached" means "the first *k* blocks of this prompt
are cached".

Eviction is least-recently-used. When a prompt's blocks are inserted or hit they are touched
from the last block to the first, so the first block of a prompt is the most recently used
and a prompt is evicted from its tail, as vLLM frees a request's blocks in reverse order:
a shared system prompt outlives the conversation-specific blocks after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    """Block hashes held in KV-cache memory, with LRU eviction beyond ``capacity_blocks``."""

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 0:
            raise ValueError("capacity_blocks must be >= 0")
        self.capacity_blocks = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self._blocks

    def cached_prefix_blocks(self, block_hashes: Sequence[int]) -> int:
        """Number of leading blocks already cached; touches them (most recent = first block)."""
        blocks = self._blocks
        hits = 0
        for block_hash in block_hashes:
            if block_hash not in blocks:
                break
            hits += 1
        for index in range(hits - 1, -1, -1):
            blocks.move_to_end(block_hashes[index])
        return hits

    def insert(self, block_hashes: Sequence[int], reserved_blocks: int = 0) -> int:
        """Cache a prompt's blocks; evicts LRU blocks so cached + ``reserved_blocks`` fit.

        ``reserved_blocks`` are blocks held by running sequences, which cached blocks yield
        to (in vLLM free memory is the evictable cache). Returns the number of evictions.
        """
        blocks = self._blocks
        for index in range(len(block_hashes) - 1, -1, -1):
            block_hash = block_hashes[index]
            if block_hash in blocks:
                blocks.move_to_end(block_hash)
            else:
                blocks[block_hash] = None
        return self.evict_to(max(0, self.capacity_blocks - reserved_blocks))

    def evict_to(self, limit: int) -> int:
        """Evict least-recently-used blocks until at most ``limit`` remain."""
        blocks = self._blocks
        evicted = 0
        while len(blocks) > limit:
            blocks.popitem(last=False)
            evicted += 1
        return evicted

    def clear(self) -> None:
        self._blocks.clear()
