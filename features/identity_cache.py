"""Values derived from an object, kept per object identity.

For hot-path derivations of objects that are immutable in practice but costly to hash (a
pydantic ``Sku`` or ``Catalog`` hashes every field): a dict probe on ``id()`` plus an ``is``
check, so an id reused after its object is gone never returns another object's value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class IdentityCache(Generic[K, V]):
    """``cache(key)`` is ``build(key)``, computed once per key object (at most ``max_entries``
    objects are kept; past that the cache starts again)."""

    def __init__(self, build: Callable[[K], V], max_entries: int = 1024) -> None:
        self._build = build
        self._max_entries = max_entries
        self._entries: dict[int, tuple[K, V]] = {}

    def __call__(self, key: K) -> V:
        entry = self._entries.get(id(key))
        if entry is None or entry[0] is not key:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            entry = self._entries[id(key)] = (key, self._build(key))
        return entry[1]
