"""The prompt-cache estimate replicated between gateway processes through Redis pub/sub.

Why shared: a worker's prefix cache holds what *every* gateway sent it. Behind a load balancer
the turns of one conversation reach different gateway processes, so one process's
:class:`~serving.prompt_cache.PromptCacheEstimate` sees ~1/N of them and tells the router "not
cached" for a turn whose prefix another process sent to the same deployment seconds ago: the
router then prices the warm SKU as cold and steers away from the hit. (The circuit breakers stay
per process: a breaker judges the calls *this* process makes, opens within a few of them, and the
worker probe already watches health; sharing it would put Redis on the failure path.)

How: :class:`SharedPromptCache` has the estimate's interface. ``observe`` updates the local
estimate at once and queues ``(sku, region, key, wall time)``; every ``period_s`` the queue is
published as one message on ``switchyard:prompt-cache`` (one Redis round trip per period, not per
request), and every process applies the other processes' messages to its own estimate, so each
holds the union, ``period_s`` + one hop late. Times travel as wall-clock seconds and are mapped
onto this process's monotonic clock on receipt.

Pub/sub keeps nothing: a process that starts, or whose subscription broke, learns only what is
published after it (re)subscribed -- the same as a fresh single process, and the estimate
fills within its TTL. Redis down or slow: the estimate stays correct for this process's own
traffic (the view one process has without sharing); the outbox is dropped rather than held
(``dropped`` counts entries), the transition is logged once each way and the
``switchyard_prompt_cache_shared`` gauge reads 0.

Cost: a queued tuple per prefix key on the request path (~1 µs); per period one PUBLISH and,
per received entry, one ``OrderedDict`` update (~1 µs). Every process applies the whole
cluster's entries, so the receive side grows with the fleet's request rate: fine for the
processes of one host or region; at the brief's scale the same effect comes cheaper from
conversation affinity at the load balancer (a conversation's turns to one gateway), which makes
the local view right without any replication.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from serving.prompt_cache import PrefixKeys, PromptCacheEstimate

log = logging.getLogger(__name__)

CHANNEL = "switchyard:prompt-cache"
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
_HEADER = struct.Struct("<8sH")  # sender id, entry count
_ENTRY = struct.Struct("<dBB16s")  # wall time, sku length, region length, key (16 bytes)


@dataclass(frozen=True, slots=True)
class PromptCacheShareStats:
    published: int  # entries published
    applied: int  # entries received from other processes and applied
    dropped: int  # entries not published (Redis unavailable, or the outbox full)
    shared: bool  # replicating now


def encode_entries(sender: bytes, entries: list[tuple[str, str, bytes, float]]) -> bytes:
    """One message: the sender's id, then each entry's time, SKU, region and 16-byte key."""
    parts = [_HEADER.pack(sender, len(entries))]
    for sku, region, key, wall in entries:
        sku_bytes, region_bytes = sku.encode(), region.encode()
        parts.append(_ENTRY.pack(wall, len(sku_bytes), len(region_bytes), key))
        parts.append(sku_bytes + region_bytes)
    return b"".join(parts)


def decode_entries(message: bytes) -> tuple[bytes, list[tuple[str, str, bytes, float]]]:
    """Inverse of :func:`encode_entries`; raises ``ValueError`` (or ``struct.error``) on a malformed message."""
    sender, count = _HEADER.unpack_from(message, 0)
    offset = _HEADER.size
    entries = []
    for _ in range(count):
        wall, sku_len, region_len, key = _ENTRY.unpack_from(message, offset)
        offset += _ENTRY.size
        sku = message[offset : offset + sku_len].decode()
        region = message[offset + sku_len : offset + sku_len + region_len].decode()
        offset += sku_len + region_len
        entries.append((sku, region, key, wall))
    if offset != len(message):
        raise ValueError("trailing bytes in a prompt-cache message")
    return sender, entries


class SharedPromptCache:
    """A :class:`PromptCacheEstimate` whose observations reach every process on the channel."""

    def __init__(
        self,
        estimate: PromptCacheEstimate,
        client: aioredis.Redis,
        *,
        period_s: float = 0.2,
        max_outbox: int = 100_000,
        on_shared: Callable[[bool], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.estimate = estimate
        self.ttl_s = estimate.ttl_s
        self._client = client
        self.period_s = period_s
        self._outbox: deque[tuple[str, str, bytes, float]] = deque()
        self._max_outbox = max_outbox
        self._on_shared = on_shared
        self._wall = wall_clock
        self._clock = clock
        self._sender = secrets.token_bytes(8)
        self._counts = {"published": 0, "applied": 0, "dropped": 0}
        self.shared = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def connect(
        cls, url: str, estimate: PromptCacheEstimate, *, timeout_s: float, **kwargs
    ) -> SharedPromptCache:
        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=None, retry=Retry(NoBackoff(), 0)
        )
        return cls(estimate, client, **kwargs)

    # the estimate's interface (the gateway calls these on the request path)
    def cached_tokens(self, sku: str, region: str, keys: PrefixKeys, now: float) -> int:
        return self.estimate.cached_tokens(sku, region, keys, now)

    def observe(self, sku: str, region: str, keys: PrefixKeys, now: float) -> None:
        self.estimate.observe(sku, region, keys, now)
        if not keys:
            return
        wall = self._wall() - (self._clock() - now)
        for _, key in keys:
            if len(self._outbox) >= self._max_outbox:
                self._outbox.popleft()
                self._counts["dropped"] += 1
            self._outbox.append((sku, region, key, wall))

    def stats(self) -> PromptCacheShareStats:
        return PromptCacheShareStats(**self._counts, shared=self.shared)

    def start(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish_forever(), name="prompt-cache-publish"),
            loop.create_task(self._receive_forever(), name="prompt-cache-receive"),
        ]
        return self._tasks

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._client.aclose()

    async def publish_now(self) -> int:
        """Publish the outbox as one message; returns the entries sent (0 and the outbox dropped on failure)."""
        if not self._outbox:
            return 0
        entries = list(self._outbox)
        self._outbox.clear()
        try:
            for start in range(0, len(entries), 60_000):  # the header counts entries in 16 bits
                chunk = entries[start : start + 60_000]
                await self._client.publish(CHANNEL, encode_entries(self._sender, chunk))
        except _FAILURES as exc:
            self._counts["dropped"] += len(entries)
            self._set_shared(False, exc)
            return 0
        self._counts["published"] += len(entries)
        return len(entries)

    def apply(self, message: bytes) -> int:
        """Apply another process's message to the local estimate; returns the entries applied."""
        sender, entries = decode_entries(message)
        if sender == self._sender:
            return 0
        now_wall, now = self._wall(), self._clock()
        for sku, region, key, wall in entries:
            self.estimate.observe(sku, region, ((0, key),), now - (now_wall - wall))
        self._counts["applied"] += len(entries)
        return len(entries)

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            await self.publish_now()

    async def _receive_forever(self) -> None:
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._set_shared(True)
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            self._apply_safely(item["data"])
            except asyncio.CancelledError:
                raise
            except _FAILURES as exc:
                self._set_shared(False, exc)
            await asyncio.sleep(self.period_s * 5)  # then subscribe again

    def _apply_safely(self, data: bytes) -> None:
        try:
            self.apply(data)
        except (ValueError, struct.error, UnicodeDecodeError):
            log.warning("prompt cache: ignoring a malformed message on %s", CHANNEL)

    def _set_shared(self, shared: bool, exc: BaseException | None = None) -> None:
        if shared == self.shared:
            return
        self.shared = shared
        if self._on_shared is not None:
            self._on_shared(shared)
        if shared:
            log.warning("prompt cache: replicating between gateway processes through Redis")
        else:
            log.warning(
                "prompt cache: Redis unavailable (%s); the estimate sees this process's traffic only",
                type(exc).__name__ if exc else "unknown",
            )
