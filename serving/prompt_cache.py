"""The gateway's estimate of what each SKU deployment holds in its prompt cache.

The workers' prefix caches are not visible to the router, so the gateway keeps its own
record: after a request is served by a SKU in a region, that deployment is taken to hold
the request's prompt prefixes (at every segment boundary, ``features.prefix.boundary_prefix_keys``)
for ``ttl_s`` seconds, refreshed by each later request carrying them. The expected cache hit
of a candidate is the longest such prefix of the new prompt, in whole blocks, over the
prompt's tokens -- the same model the simulated world's bootstrap logs use
(``simulator.prompt_cache_ttl``: a SKU holds the tenant's system prompt and the previous
turn's prompt for a TTL), so training and serving see the same feature.

Bounded: at most ``capacity`` keys per deployment, least recently used dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from features.prefix import BLOCK_TOKENS

PrefixKeys = Sequence[tuple[int, bytes]]


class PromptCacheEstimate:
    def __init__(self, ttl_s: float = 300.0, capacity: int = 200_000) -> None:
        if ttl_s <= 0 or capacity < 1:
            raise ValueError("ttl_s and capacity must be positive")
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._held: dict[tuple[str, str], OrderedDict[bytes, float]] = {}

    def cached_tokens(self, sku: str, region: str, keys: PrefixKeys, now: float) -> int:
        """Tokens of the longest prefix of ``keys`` the deployment still holds (0 if none)."""
        held = self._held.get((sku, region))
        if not held:
            return 0
        for blocks, key in reversed(keys):
            seen = held.get(key)
            if seen is not None and now - seen <= self.ttl_s:
                return blocks * BLOCK_TOKENS
        return 0

    def observe(self, sku: str, region: str, keys: PrefixKeys, now: float) -> None:
        """The deployment served a prompt with these prefix keys at ``now``."""
        if not keys:
            return
        held = self._held.setdefault((sku, region), OrderedDict())
        for _, key in keys:
            held[key] = now
            held.move_to_end(key)
        while len(held) > self.capacity:
            held.popitem(last=False)
