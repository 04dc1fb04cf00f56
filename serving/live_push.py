"""Live per-(region, SKU) stats from the gateway's own attempts, pushed to the Feast online store.

One definition of the statistics: ``features.live_stats.sku_live_stats``, the polars function
the offline job (``switchyard feature-tables``) uses to write the history training joins.
That job stamps each row with the end of its minute window (``ts`` on a minute boundary;
15-minute and 1-minute windows closed on the right) from every attempt in the log. A
point-in-time join at time ``t`` returns the latest row at or before ``t``: the row at
``floor(t, 1 min)`` while the (region, SKU) has attempts in the 15 minutes before it,
else the last earlier row (until the view's 30-minute TTL).

:class:`RecentAttempts` keeps ~16 minutes of attempt rows (bounded) and computes, at ``now``,
the row the offline job would stamp ``floor(now, 1 min)`` for each (region, SKU) with
attempts in that window. :class:`LivePusher` pushes those rows every ``period_s`` through
the push source ``sku_live_stats_push`` (online only: the offline history comes from the log)
and hands them to a :class:`~serving.store_features.StoreFeatureReader`, so this process
routes on them at once. Online value = offline value for the same attempts at the same
time; what this process cannot see makes the difference:

- attempts are observed when they finish (an AttemptRecord carries the end-to-end time), so
  an attempt started before ``floor(now)`` and still running at the push is missing from that
  push (in-flight count too); the row is pushed again at the next period with it, until the
  minute ends. A long attempt that ends after its minute is only in later rows.
- after a restart the buffer holds only attempts since start: rows cover less than 15 minutes
  until 15 minutes have passed; beyond ``max_rows`` the oldest attempts are dropped (counted).
- with several gateway processes each sees its own share of traffic, and their pushes to a
  shared online store would overwrite each other. :class:`serving.live_share.LiveSharer`
  replaces this pusher then: every process shares its attempts through Redis and one leader
  pushes the stats over all of them.
- a ``feast materialize`` of ``sku_live_stats`` writes the offline table's latest row over the
  pushed one until the next push.

**Queue depth from the workers.** ``sku_queue_depth`` offline is the number of attempts in
flight at the SKU (from the log of every gateway). Online, this process sees only its own
attempts, and only once they finish. When ``queue_depths`` is given (the worker pool's
scrape of every replica's ``vllm:num_requests_running`` + ``vllm:num_requests_waiting``:
the requests the SKU's replicas hold, from every gateway), the pushed rows carry that value
instead; a (region, SKU) whose healthy replicas were not all scraped recently keeps the
value from its own attempts.

Cost: ``observe`` appends a tuple (~2 µs); each cycle recomputes the function over the
buffered ~15 minutes of attempts, in a worker thread (polars releases the GIL), so its CPU
time grows with the attempt rate (bench/store_features_latency.py measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import polars as pl

from features.live_stats import LIVE_STAT_NAMES, sku_live_stats
from serving.store_features import StoreFeatureReader

log = logging.getLogger(__name__)

PUSH_SOURCE = "sku_live_stats_push"
WINDOW = timedelta(minutes=15)  # the longest window of sku_live_stats
ATTEMPT_SCHEMA = pl.Schema(
    {
        "ts": pl.Datetime("us", "UTC"),
        "region": pl.String,
        "sku": pl.String,
        "status": pl.String,
        "ttft_ms": pl.Float64,
        "tpot_ms": pl.Float64,
        "e2e_ms": pl.Float64,
    }
)
Clock = Callable[[], float]  # wall-clock epoch seconds


class AttemptLike(Protocol):
    """The AttemptRecord fields live stats read (``features.records.AttemptRecord`` has them)."""

    ts: datetime  # start of the attempt, UTC
    region: str
    sku: str
    status: str
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float


def attempt_row(attempt: AttemptLike) -> tuple[Any, ...]:
    """One attempt as a row of ``ATTEMPT_SCHEMA`` (a naive ``ts`` is taken as UTC)."""
    ts = attempt.ts if attempt.ts.tzinfo is not None else attempt.ts.replace(tzinfo=UTC)
    return (ts, attempt.region, attempt.sku, attempt.status, attempt.ttft_ms, attempt.tpot_ms, attempt.e2e_ms)


def attempts_frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Rows from :func:`attempt_row` as a frame in ``ATTEMPT_SCHEMA``."""
    return pl.DataFrame(rows, schema=ATTEMPT_SCHEMA, orient="row")


def window_end(now: float) -> datetime:
    """The minute boundary at or before ``now``: the ``ts`` of the row a join at ``now`` returns."""
    return datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)


class RecentAttempts:
    """The last ~16 minutes of attempts, columnar, and the live stats row they give at ``now``.

    :meth:`observe` only appends a tuple; rows become a polars chunk at the next
    :meth:`rows_at`. Chunks whose every attempt ended before the window are dropped: an
    attempt that started and ended before ``floor(now) - 15 min`` changes no row at
    ``floor(now)`` (it is outside both windows, and its +1/−1 in-flight events cancel).
    """

    def __init__(self, *, max_rows: int = 1_000_000) -> None:
        self.max_rows = max_rows
        self._pending: deque[tuple[Any, ...]] = deque()
        self._pending_end = -math.inf
        self._chunks: deque[tuple[float, pl.DataFrame]] = deque()  # (latest end, epoch s; rows)
        self._lock = threading.Lock()  # observe() vs a flush in a worker thread
        self.observed = 0
        self.dropped = 0

    def observe(self, attempt: AttemptLike) -> None:
        row = attempt_row(attempt)
        end = row[0].timestamp() + attempt.e2e_ms / 1000.0
        with self._lock:
            self.observed += 1
            if len(self._pending) >= self.max_rows:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(row)
            self._pending_end = max(self._pending_end, end)

    @property
    def buffered(self) -> int:
        return len(self._pending) + sum(chunk.height for _, chunk in self._chunks)

    def extend(self, frame: pl.DataFrame) -> None:
        """Add attempts already in ``ATTEMPT_SCHEMA`` columns as one chunk (e.g. another process's batch)."""
        if not frame.height:
            return
        end = frame.select(
            (pl.col("ts").dt.epoch("us").cast(pl.Float64) / 1e6 + pl.col("e2e_ms") / 1000.0).max()
        ).item()
        self._chunks.append((float(end), frame))
        with self._lock:
            self.observed += frame.height

    def frame(self, now: float) -> pl.DataFrame:
        """Buffered attempts that can still affect the row at ``floor(now)`` (flushes and evicts)."""
        self.evict(now)
        if not self._chunks:
            return ATTEMPT_SCHEMA.to_frame()
        return pl.concat([chunk for _, chunk in self._chunks])

    def evict(self, now: float) -> None:
        """Flush observed rows into a chunk; drop chunks before the window at ``floor(now)`` and beyond ``max_rows``."""
        self._flush()
        cutoff = (window_end(now) - WINDOW).timestamp()
        while self._chunks and self._chunks[0][0] <= cutoff:
            self._chunks.popleft()
        excess = sum(chunk.height for _, chunk in self._chunks) - self.max_rows
        while excess > 0 and self._chunks:
            end, oldest = self._chunks.popleft()
            if oldest.height > excess:
                self._chunks.appendleft((end, oldest.slice(excess)))
            with self._lock:
                self.dropped += min(excess, oldest.height)
            excess -= oldest.height

    def rows_at(self, now: float) -> pl.DataFrame:
        """Per (region, SKU) with attempts in the 15 minutes to ``floor(now)``: the offline job's row there.

        Columns: region, sku, ts (= ``floor(now)``), then ``LIVE_STAT_NAMES`` (null where the
        window has no successful attempt).
        """
        end = window_end(now)
        # attempts that start after ``end`` change no row at ``end``; categorical keys group
        # ~20% faster than strings (same values); the streaming engine is slower here
        attempts = (
            self.frame(now)
            .lazy()
            .filter(pl.col("ts") <= end)
            .with_columns(pl.col("region", "sku").cast(pl.Categorical))
        )
        stats = sku_live_stats(attempts).filter(pl.col("ts") == end)
        stats = stats.with_columns(pl.col("region", "sku").cast(pl.String))
        return stats.collect(engine="in-memory").sort("region", "sku")

    def _flush(self) -> None:
        with self._lock:
            rows, end = list(self._pending), self._pending_end
            self._pending.clear()
            self._pending_end = -math.inf
        if rows:
            self._chunks.append((end, attempts_frame(rows)))


@dataclass(frozen=True, slots=True)
class LivePushStats:
    observed: int  # attempts handed to observe()
    dropped: int  # attempts dropped to stay within max_rows
    buffered: int
    pushes: int  # successful push calls
    rows_pushed: int
    push_errors: int  # failed Feast pushes (logged)
    compute_errors: int  # failed stats computations (logged)
    last_cycle_s: float  # compute + push, seconds


class LivePusher:
    """Computes live stats over recent attempts and pushes them to Feast every ``period_s``.

    ``store`` is a ``feast.FeatureStore`` (``serving.store_features.open_feature_store``);
    ``reader``, if given, gets the computed rows as fresh cache entries at each cycle, pushed
    or not: they are the values the offline history will hold for these attempts. Nothing
    here raises: failures are logged and counted in :meth:`stats`.
    """

    def __init__(
        self,
        store: Any,
        *,
        reader: StoreFeatureReader | None = None,
        period_s: float = 5.0,
        max_rows: int = 1_000_000,
        clock: Clock = time.time,
        queue_depths: Callable[[], Mapping[tuple[str, str], float]] | None = None,
    ) -> None:
        self._store = store
        self._queue_depths = queue_depths  # (region, sku) -> running + waiting at its replicas
        self._reader = reader
        self.period_s = period_s
        self._clock = clock
        self.attempts = RecentAttempts(max_rows=max_rows)
        self._cycle_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._counts = {"pushes": 0, "rows_pushed": 0, "push_errors": 0, "compute_errors": 0}
        self._last_cycle_s = 0.0

    def observe(self, attempt: AttemptLike) -> None:
        """Record one finished attempt (cheap; called on the request path)."""
        self.attempts.observe(attempt)

    def push_now(self) -> int:
        """Compute and push the current rows in this thread; returns the rows pushed (0 on failure)."""
        rows, pushed = self._cycle(self._clock(), self._scraped())
        self._remember(rows)
        return pushed

    async def push(self) -> int:
        """:meth:`push_now` with the computation and the Feast call in a worker thread."""
        # the scrape is read here, on the event loop that updates it; the rest runs in a thread
        rows, pushed = await asyncio.to_thread(self._cycle, self._clock(), self._scraped())
        self._remember(rows)
        return pushed

    async def run(self) -> None:
        """Push every ``period_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.push()
            except Exception:  # the loop outlives any one cycle
                self._counts["compute_errors"] += 1
                log.exception("live stats push cycle failed")

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="live-push")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def stats(self) -> LivePushStats:
        return LivePushStats(
            observed=self.attempts.observed,
            dropped=self.attempts.dropped,
            buffered=self.attempts.buffered,
            **self._counts,
            last_cycle_s=self._last_cycle_s,
        )

    def _scraped(self) -> Mapping[tuple[str, str], float]:
        if self._queue_depths is None:
            return {}
        try:
            return self._queue_depths()
        except Exception:  # a scrape problem never stops the push
            log.exception("reading the scraped queue depths failed")
            return {}

    def _cycle(
        self, now: float, queue_depths: Mapping[tuple[str, str], float] | None = None
    ) -> tuple[pl.DataFrame | None, int]:
        with self._cycle_lock:
            started = time.perf_counter()
            try:
                rows = with_queue_depths(self.attempts.rows_at(now), queue_depths or {})
            except Exception:
                self._counts["compute_errors"] += 1
                log.exception("live stats computation failed; nothing pushed")
                return None, 0
            pushed = 0
            if rows.height:
                if push_online(self._store, rows):
                    self._counts["pushes"] += 1
                    self._counts["rows_pushed"] += rows.height
                    pushed = rows.height
                else:
                    self._counts["push_errors"] += 1
            self._last_cycle_s = time.perf_counter() - started
            return rows, pushed

    def _remember(self, rows: pl.DataFrame | None) -> None:
        if self._reader is not None and rows is not None:
            remember_rows(self._reader, rows)


def push_online(store: Any, rows: pl.DataFrame) -> bool:
    """Push live stats rows to Feast's online store through ``PUSH_SOURCE``; False (logged) if it fails."""
    try:
        from feast.data_source import PushMode

        store.push(PUSH_SOURCE, rows.to_pandas(), to=PushMode.ONLINE)
    except Exception:
        log.warning("push of %d live stats rows to Feast failed", rows.height, exc_info=True)
        return False
    return True


def remember_rows(reader: StoreFeatureReader, rows: pl.DataFrame) -> None:
    """Hand computed rows to ``reader`` as fresh ``sku_live`` cache entries (null → NaN)."""
    for row in rows.iter_rows(named=True):
        values = [math.nan if row[name] is None else row[name] for name in LIVE_STAT_NAMES]
        reader.remember_sku_live(row["region"], row["sku"], row["ts"], values)


def with_queue_depths(rows: pl.DataFrame, queue_depths: Mapping[tuple[str, str], float]) -> pl.DataFrame:
    """``rows`` with ``sku_queue_depth`` replaced where ``queue_depths`` has its (region, sku)."""
    if not queue_depths or not rows.height:
        return rows
    scraped = pl.DataFrame(
        [(region, sku, float(depth)) for (region, sku), depth in queue_depths.items()],
        schema={"region": rows.schema["region"], "sku": rows.schema["sku"], "_scraped": pl.Float64},
        orient="row",
    )
    depth = pl.coalesce(pl.col("_scraped"), pl.col("sku_queue_depth")).cast(rows.schema["sku_queue_depth"])
    return (
        rows.join(scraped, on=["region", "sku"], how="left")
        .with_columns(depth.alias("sku_queue_depth"))
        .select(rows.columns)
    )
