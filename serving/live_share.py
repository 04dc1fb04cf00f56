"""Live per-SKU stats over every gateway process's attempts, merged through Redis, served from Feast.

With several gateway processes each sees only its share of the traffic; if each pushed its own
``sku_live_stats`` rows they would overwrite each other. :class:`LiveSharer` (one per process,
in place of :class:`~serving.live_push.LivePusher`) merges them instead. Every ``period_s``:

1. **Share.** The attempts this process observed since the last sync go, as one batch, to the
   Redis stream in one script call that also trims the stream to the last ``retain_s`` and takes
   or renews the leader lease (``SET NX PX`` semantics, ``lease_s``);
   :mod:`serving.attempt_stream` has the keys and the script. A batch that could not be sent
   is kept (up to ``retain_s`` old) and sent with a later sync; a sent batch is kept as long, and
   sent again if the stream was lost (Redis restarted empty), so a new stream soon holds the last
   15 minutes again. Batch ids let the leader read each batch once.
2. **Lead.** The one process holding the lease reads the stream from its last entry id (all
   of it when it has just become leader), keeps the attempts in a
   :class:`~serving.live_push.RecentAttempts`, computes ``features.live_stats.sku_live_stats``
   at ``floor(now)`` over *every* process's attempts — the offline job's row for the same
   attempts — replaces ``sku_queue_depth`` with the workers' scraped depth where known
   (:func:`~serving.live_push.with_queue_depths`), pushes the rows to Feast's online store
   (the Redis one: ``feature_store.redis.yaml``) and caches them in its own reader. A leader that
   stops renewing (crash, hang, lost Redis) loses the lease after ``lease_s``; another process
   takes it at its next sync and reads the whole retained window. :meth:`LiveSharer.stop`
   releases the lease at once.

**What a reader sees.** ``StoreFeatureReader`` caches ``sku_live`` entries for 2 s (its TTL),
then reads Feast.

- *shared, follower*: the leader's last pushed rows, at most ``period_s`` + 2 s behind the
  leader's view; while no process leads (between a leader's crash and the lease's expiry) the
  last pushed rows, until the view's 30-minute TTL makes them NaN.
- *shared, leader*: its own computation over all processes' attempts, cached at each sync.
- *degraded* (a sync's Redis call failed or took longer than ``timeout_s``): the stats over
  **this process's own attempts only** (the last 16 minutes of them, kept all along), computed
  and cached at each sync as a single process would; nothing is pushed (the online store is that
  Redis). Between syncs a cache miss still asks Feast; when it fails the reader serves the
  last value it holds. Every sync retries Redis; the first success ends the mode, re-sends the
  kept batches and, on the leader, re-reads the whole stream. The switch is logged once per
  transition and shown by ``switchyard_live_stats_degraded``.

Memory per process: its own attempts of the last 16 minutes twice (columnar, and the
encoded batches, ~40 bytes an attempt as Redis holds them); the leader also holds every
process's. The leader's cycle costs CPU in proportion to the cluster's attempt rate over
15 minutes, almost all of it ``sku_live_stats``; a new leader's first cycle also decodes the
whole stream; a follower's sync is an encode and one script call
(bench/live_share.py measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
import redis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from serving.attempt_stream import AttemptStream, LiveShareConfig
from serving.live_push import (
    AttemptLike,
    Clock,
    RecentAttempts,
    attempt_row,
    attempts_frame,
    push_online,
    remember_rows,
    with_queue_depths,
)
from serving.store_features import StoreFeatureReader

__all__ = ["LiveShareConfig", "LiveShareMetrics", "LiveShareStats", "LiveSharer"]

log = logging.getLogger(__name__)

_FAILURES = (RedisError, OSError)


class LiveShareMetrics:
    """The sharer's Prometheus series, registered in the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.degraded = Gauge(
            "switchyard_live_stats_degraded",
            "1 while Redis is unavailable and this process routes on live stats from its own attempts only",
            registry=registry,
        )
        self.leader = Gauge(
            "switchyard_live_stats_leader",
            "1 while this process leads: merges every process's attempts and pushes live stats to Feast",
            registry=registry,
        )
        self.syncs = Counter(
            "switchyard_live_stats_syncs_total",
            "Live stats syncs by result (ok, redis_error)",
            ["result"],
            registry=registry,
        )
        self.attempts_shared = Counter(
            "switchyard_live_stats_attempts_shared_total",
            "Attempts this process sent to the shared stream",
            registry=registry,
        )
        self.attempts_merged = Counter(
            "switchyard_live_stats_attempts_merged_total",
            "Attempts read from the shared stream as leader",
            registry=registry,
        )
        self.rows_pushed = Counter(
            "switchyard_live_stats_rows_pushed_total",
            "Live stats rows pushed to Feast as leader",
            registry=registry,
        )
        self.push_errors = Counter(
            "switchyard_live_stats_push_errors_total",
            "Failed pushes of live stats to Feast",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class LiveShareStats:
    leader: bool
    degraded: bool
    observed: int  # attempts handed to observe()
    dropped: int  # attempts dropped to stay within max_rows (outbox, own buffer, kept batches, merged)
    unsent_batches: int  # batches kept until Redis takes them
    merged_buffered: int  # attempts in the leader's merged buffer (0 when not leading)
    syncs: int
    redis_errors: int  # syncs whose Redis calls failed (degraded)
    attempts_shared: int
    attempts_merged: int
    duplicate_batches: int
    bad_batches: int
    streams_lost: int  # times the stream was found lost and this process's last batches sent again
    pushes: int
    rows_pushed: int
    push_errors: int
    compute_errors: int
    last_cycle_s: float


_COUNTERS = (
    "syncs",
    "redis_errors",
    "attempts_shared",
    "attempts_merged",
    "pushes",
    "rows_pushed",
    "push_errors",
    "compute_errors",
)


class LiveSharer:
    """One gateway process's part in the shared live stats (see the module docstring).

    ``client`` is a synchronous ``redis.Redis`` whose socket timeouts bound each call (see
    :meth:`connect`); the Redis calls, the encoding and the stats computation run in a worker
    thread. ``store`` is a ``feast.FeatureStore`` on the Redis online store
    (:func:`serving.feast_redis.open_feature_store_on_redis`); ``reader`` gets the rows this
    process computes (as leader, or degraded). ``observe``, ``start``, ``stop`` and ``stats``
    are those of :class:`~serving.live_push.LivePusher`. Nothing here raises to the caller:
    failures are logged, counted and turn into the degraded mode.
    """

    def __init__(
        self,
        client: redis.Redis,
        store: Any,
        *,
        reader: StoreFeatureReader | None = None,
        config: LiveShareConfig | None = None,
        clock: Clock = time.time,
        queue_depths: Callable[[], Mapping[tuple[str, str], float]] | None = None,
        metrics: LiveShareMetrics | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.config = config or LiveShareConfig()
        self._client = client
        self.stream = AttemptStream(client, instance_id or uuid.uuid4().hex[:16], self.config)
        self._store = store
        self._reader = reader
        self._clock = clock
        self._queue_depths = queue_depths
        self._metrics = metrics
        self._outbox: list[tuple[Any, ...]] = []
        self._outbox_lock = threading.Lock()
        self._cycle_lock = threading.Lock()
        self.own = RecentAttempts(max_rows=self.config.max_rows)  # this process's attempts, for degraded mode
        self._merged: RecentAttempts | None = None  # the leader's: every process's attempts
        self.leader = False
        self.degraded = False
        self._task: asyncio.Task[None] | None = None
        self._observed = 0
        self._outbox_dropped = 0
        self._merged_dropped = 0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._last_cycle_s = 0.0

    @classmethod
    def connect(
        cls, url: str, store: Any, *, config: LiveShareConfig | None = None, **kwargs: Any
    ) -> LiveSharer:
        """A sharer on a client for ``url`` that fails fast: ``config.timeout_s`` bounds connect and reply, no retries."""
        config = config or LiveShareConfig()
        client = redis.Redis.from_url(
            url,
            socket_timeout=config.timeout_s,
            socket_connect_timeout=config.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, store, config=config, **kwargs)

    @property
    def instance_id(self) -> str:
        return self.stream.instance_id

    def observe(self, attempt: AttemptLike) -> None:
        """Record one finished attempt (appends a tuple; called on the event loop)."""
        row = attempt_row(attempt)
        with self._outbox_lock:
            self._observed += 1
            if len(self._outbox) >= self.config.max_rows:
                self._outbox_dropped += 1
                return
            self._outbox.append(row)

    # ------------------------------------------------------------------ the loop

    def sync_now(self) -> int:
        """One sync in this thread; returns the rows pushed to Feast (0 unless leading)."""
        rows, pushed = self._cycle(self._clock(), self._scraped())
        self._remember(rows)
        return pushed

    async def sync(self) -> int:
        """:meth:`sync_now` with the Redis calls and the computation in a worker thread."""
        rows, pushed = await asyncio.to_thread(self._cycle, self._clock(), self._scraped())
        self._remember(rows)
        return pushed

    async def run(self) -> None:
        """Sync every ``period_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.config.period_s)
            try:
                await self.sync()
            except Exception:  # the loop outlives any one cycle
                self._counts["compute_errors"] += 1
                log.exception("live stats sync failed")

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="live-share")
        return self._task

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop; with ``release``, give up the lease now so another process leads at its next sync."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release:
            await asyncio.to_thread(self._release)

    def _release(self) -> None:
        with self._cycle_lock:  # after a cycle still running in its thread
            if not self.leader:
                return
            try:
                self.stream.release()
            except _FAILURES:
                log.warning(
                    "live stats: could not release the lease; it expires in %.0f s", self.config.lease_s
                )
            self._set_leader(False)

    async def aclose(self) -> None:
        """:meth:`stop` (releasing the lease) and close the Redis client."""
        await self.stop()
        self._client.close()

    def stats(self) -> LiveShareStats:
        merged = self._merged
        return LiveShareStats(
            leader=self.leader,
            degraded=self.degraded,
            observed=self._observed,
            dropped=self._outbox_dropped
            + self.stream.dropped
            + self.own.dropped
            + self._merged_dropped
            + (merged.dropped if merged is not None else 0),
            unsent_batches=self.stream.unsent_batches,
            merged_buffered=merged.buffered if merged is not None else 0,
            duplicate_batches=self.stream.duplicate_batches,
            bad_batches=self.stream.bad_batches,
            streams_lost=self.stream.streams_lost,
            **self._counts,
            last_cycle_s=self._last_cycle_s,
        )

    # ------------------------------------------------------------------ one cycle (worker thread)

    def _cycle(
        self, now: float, queue_depths: Mapping[tuple[str, str], float]
    ) -> tuple[pl.DataFrame | None, int]:
        with self._cycle_lock:
            started = time.perf_counter()
            try:
                self._counts["syncs"] += 1
                self._take_outbox(now)
                self._exchange(now)
                return self._compute_and_push(now, queue_depths)
            finally:
                self._last_cycle_s = time.perf_counter() - started

    def _take_outbox(self, now: float) -> None:
        """Observed rows into this process's buffer and into a batch for the stream."""
        with self._outbox_lock:
            rows, self._outbox = self._outbox, []
        if rows:
            frame = attempts_frame(rows)
            self.own.extend(frame)
            self.stream.add(frame, max(row[0].timestamp() + row[6] / 1000.0 for row in rows))
        self.stream.prune(now)
        if not self.degraded:
            self.own.evict(now)  # computed from only when degraded; kept bounded meanwhile

    def _exchange(self, now: float) -> None:
        """Share, take or renew the lease, and as leader merge the new batches; Redis failing → degraded."""
        try:
            leading, shared = self.stream.share_and_lease()
            self._counts["attempts_shared"] += shared
            self._inc("attempts_shared", shared)
            self._set_leader(leading)
            if leading:
                assert self._merged is not None
                for frame in self.stream.read_new(now):
                    self._merged.extend(frame)
                    self._counts["attempts_merged"] += frame.height
                    self._inc("attempts_merged", frame.height)
        except _FAILURES as exc:
            self._counts["redis_errors"] += 1
            self._count_sync("redis_error")
            self._set_leader(False)
            self._set_degraded(exc)
        else:
            self._count_sync("ok")
            self._set_degraded(None)

    def _compute_and_push(
        self, now: float, queue_depths: Mapping[tuple[str, str], float]
    ) -> tuple[pl.DataFrame | None, int]:
        source = self.own if self.degraded else self._merged
        if source is None:  # a follower: the leader's rows come from Feast
            return None, 0
        try:
            rows = with_queue_depths(source.rows_at(now), queue_depths)
        except Exception:
            self._counts["compute_errors"] += 1
            log.exception("live stats computation failed")
            return None, 0
        if self.degraded or not rows.height:
            return rows, 0
        if not push_online(self._store, rows):
            self._counts["push_errors"] += 1
            self._inc("push_errors")
            return rows, 0
        self._counts["pushes"] += 1
        self._counts["rows_pushed"] += rows.height
        self._inc("rows_pushed", rows.height)
        return rows, rows.height

    # ------------------------------------------------------------------ modes

    def _set_leader(self, leading: bool) -> None:
        if leading == self.leader:
            return
        self.leader = leading
        if self._merged is not None:
            self._merged_dropped += self._merged.dropped
        self._merged = RecentAttempts(max_rows=self.config.max_rows) if leading else None
        self.stream.restart_reading()
        if self._metrics is not None:
            self._metrics.leader.set(int(leading))
        if leading:
            log.info("live stats: this process leads (merges every process's attempts, pushes to Feast)")
        else:
            log.info("live stats: this process no longer leads")

    def _set_degraded(self, exc: BaseException | None) -> None:
        degraded = exc is not None
        if degraded == self.degraded:
            return
        self.degraded = degraded
        if self._metrics is not None:
            self._metrics.degraded.set(int(degraded))
        if degraded:
            log.warning(
                "live stats: Redis unavailable (%s: %s); routing on stats from this process's attempts only",
                type(exc).__name__,
                exc,
            )
        else:
            log.warning("live stats: Redis answers again; live stats are shared again")

    # ------------------------------------------------------------------ helpers

    def _count_sync(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.syncs.labels(result).inc()

    def _inc(self, name: str, amount: float = 1) -> None:
        if self._metrics is not None and amount:
            getattr(self._metrics, name).inc(amount)

    def _scraped(self) -> Mapping[tuple[str, str], float]:
        if self._queue_depths is None:
            return {}
        try:
            return self._queue_depths()
        except Exception:  # a scrape problem never stops the sync
            log.exception("reading the scraped queue depths failed")
            return {}

    def _remember(self, rows: pl.DataFrame | None) -> None:
        if self._reader is not None and rows is not None:
            remember_rows(self._reader, rows)
