"""The bootstrap's prompt-cache model: what prefix of a request each SKU still holds.

A SKU (in the tenant's region: tenants never leave their home region) holds a prompt prefix
for ``ttl`` seconds after a request carrying it was *served* there, refreshed by every later
such request. Two prefixes matter:

- the tenant's system prompt, sent with every request of the tenant;
- the conversation so far: the previous turn's whole prompt is a prefix of this turn's.

For request *i* and SKU *s* the cached prefix is the longest of those that some earlier
request served by *s* carried within the TTL, rounded down to whole prefix blocks
(``features.prefix.BLOCK_TOKENS``). Computed column-wise with one ``searchsorted`` per SKU
over events keyed (group, position); events from before the window are carried in a tail.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from features.prefix import BLOCK_TOKENS

_POSITION_BITS = 32


@dataclass(frozen=True, eq=False)
class ServedEvents:
    """Requests that were served (the SKU now holds their prompt), in arrival order."""

    ts_us: np.ndarray
    sku: np.ndarray
    tenant: np.ndarray
    conversation: np.ndarray
    prompt_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_us)

    @classmethod
    def empty(cls) -> ServedEvents:
        return cls(*(np.zeros(0, dtype=np.int64) for _ in fields(cls)))

    def take(self, index: np.ndarray) -> ServedEvents:
        return ServedEvents(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, first: ServedEvents, second: ServedEvents) -> ServedEvents:
        return cls(
            **{f.name: np.concatenate([getattr(first, f.name), getattr(second, f.name)]) for f in fields(cls)}
        )


def _last_before(
    event_group: np.ndarray, event_position: np.ndarray, group: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """For each query, the index of the latest event of the same group at an earlier position, or -1."""
    if len(event_group) == 0:
        return np.full(len(group), -1)
    event_keys = (event_group.astype(np.int64) << _POSITION_BITS) | event_position
    order = np.argsort(event_keys, kind="stable")
    sorted_keys = event_keys[order]
    query_keys = (group.astype(np.int64) << _POSITION_BITS) | position
    slot = np.searchsorted(sorted_keys, query_keys, side="left") - 1
    found = order[np.maximum(slot, 0)]
    same = (slot >= 0) & (event_group[found] == group)
    return np.where(same, found, -1)


def cached_prefix_tokens(
    tail: ServedEvents,
    window: ServedEvents,
    *,
    system_tokens: np.ndarray,
    n_skus: int,
    ttl_us: int,
) -> np.ndarray:
    """[n, sku] prefix tokens each SKU holds for each request of ``window`` when it arrives.

    ``window`` lists every request of the window in arrival order with its served SKU (-1 if
    every attempt failed); ``tail`` the served events of earlier windows within the TTL.
    """
    if len(tail) + len(window) >= 1 << _POSITION_BITS:
        raise ValueError("window too large for the position encoding")
    n_tail = len(tail)
    events = ServedEvents.concat(tail, window)
    position = np.arange(len(events), dtype=np.int64)
    query_position = position[n_tail:]
    prefix = np.zeros((len(window), n_skus), dtype=np.int64)
    for sku in range(n_skus):
        served = np.flatnonzero(events.sku == sku)
        if len(served) == 0:
            continue
        for group_name, reuse in (("tenant", "system"), ("conversation", "prompt")):
            event_group = getattr(events, group_name)[served]
            hit = _last_before(event_group, position[served], getattr(window, group_name), query_position)
            source = served[np.maximum(hit, 0)]
            fresh = (hit >= 0) & (window.ts_us - events.ts_us[source] <= ttl_us)
            tokens = system_tokens if reuse == "system" else events.prompt_tokens[source]
            prefix[:, sku] = np.maximum(prefix[:, sku], np.where(fresh, tokens, 0))
    return (prefix // BLOCK_TOKENS) * BLOCK_TOKENS


def tail_after(tail: ServedEvents, window: ServedEvents, cutoff_us: int) -> ServedEvents:
    """Served events (tail + window) at or after ``cutoff_us``: what the next window can still hit."""
    events = ServedEvents.concat(tail, window.take(np.flatnonzero(window.sku >= 0)))
    return events.take(np.flatnonzero(events.ts_us >= cutoff_us))
