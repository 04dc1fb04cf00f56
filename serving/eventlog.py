"""The gateway's event log: records queued off the request path, written once as partitioned Parquet.

``submit(record)`` appends a :mod:`features.records` record to an in-memory list and returns
(sync, O(1), no I/O). A background task seals what is pending every ``flush_interval_s`` (or as
soon as ``max_batch`` records wait) into a *batch* with a unique id and writes it, in a worker
thread, as one Parquet part per table and ``region``/``date`` partition, named
``<batch id>.parquet``, through :func:`features.record_store.write_table_partitioned` (the layout
the bootstrap writes and training scans). Parts are fsynced before their rename and their
directories after it.

**Spool.** When a Parquet write fails, or when ``max_queued`` records are pending (the writer
is behind; a spool segment is uncompressed and one file per table, not per partition, so it
is the faster write), a batch's tables go to
``<root>/_spool/owner-<pid>-<token>/<batch id>.<table>.<rows>.arrows``: one Arrow IPC stream per
table, the same Arrow schema as the Parquet part, written to a temp name, fsynced, renamed and
its directory fsynced. Segments are replayed to Parquet, oldest first, when the writer works
again (after a backoff of ``retry_interval_s`` doubling to ``max_retry_interval_s``) and on
:meth:`EventLog.flush`. A segment is deleted only after its parts are fsynced. Each process holds
an ``flock`` on its owner directory's ``LOCK`` file for its lifetime; at start, a process takes
over the directories whose lock nobody holds (their owner died, however it died) and replays
them, so several processes may share a root. Temp files a crash left are never read (readers
glob ``*.parquet``; the spool reads only ``*.arrows``); dead owners' temp files are deleted, and
stale Parquet temp files of this log (``.ev-*.tmp``, older than an hour) are removed at start.

**Exactly once**, here: every record ``submit`` accepted is, once it is durable, one row in its
table, never two, even across failed writes, crashes and replays. A record leaves memory only
into an fsynced Parquet part or spool segment; the part names of a batch derive from the batch
id alone, and a batch's rows split into the same partitions every time, so a write retried
after a partial failure, or a segment replayed after a crash between "parts written" and
"segment deleted", replaces the same files instead of adding copies. A reader may see a part
being replaced (an atomic rename), never two copies of a row.

**What can be lost, and how it is never silent.**

- *SIGKILL, OOM kill or power loss* loses the records held only in memory: the batch being
  written plus those submitted since it was sealed. When the writer keeps up that is about
  ``flush_interval_s`` plus one write's duration of traffic (the next tick starts when a write
  ends); when it does not, more, up to ``max_retained`` records. ``stats().queue_depth`` and
  ``oldest_unwritten_age_s`` are that exposure, live (export them; alert on the age). Of a
  batch killed mid-write, the parts already renamed into place stay (those rows are written
  once; the rest are lost).
- *A write that hangs* (rather than fails) holds the single writer: nothing is written or
  spooled until it returns, so memory fills to ``max_retained`` and then drops are counted.
  The growing ``oldest_unwritten_age_s`` is the signal.
- *A failing disk:* a Parquet failure spools the batch. If the spool fails too, batches stay in
  memory and are retried each tick; past ``max_retained`` records held, new records are
  dropped. Drops are counted (``stats().dropped``) and logged at ERROR (at most every 10 s per
  cause, with totals), as are records still held when :meth:`EventLog.close` gives up, records
  that cannot be converted to their Arrow schema (a bug in the caller) and spool segments that
  cannot be read (moved to ``_spool/quarantine/``, not deleted).

**Why** ``submit`` **does not write ahead to the spool.** A per-record write-ahead in ``submit``
would shrink the SIGKILL window to nothing, but it would serialize on the event loop.
``bench/eventlog_throughput.py`` on a loaded 2-vCPU VM: ``submit`` p50 1.5 µs, p99 3 µs (27 µs
while the writer thread converts a batch); pickle + ``write(2)`` to an O_APPEND file (survives
SIGKILL, not power loss) p50 37 µs per record and 118 µs per DecisionRecord, p99 in the
milliseconds; with an ``fsync`` per record (survives power loss) p50 1.0 ms, p99 10 ms. At
~3 records per request that is ~0.2 ms of event-loop CPU per request without fsync and several
ms with it: a large share of the router's 5-10 ms budget (ARCHITECTURE §1) spent on the loop
that serves every stream. The gateway instead drains on SIGTERM (``close()`` flushes), keeps
the kill window to about one flush interval and exports the exposure.

**Throughput.** The writer's ceiling is the Arrow conversion (``records_to_table``, ~5 µs
per 12-candidate decision and ~1.5 µs per attempt or outcome on the machine above, more in its
slow phases), which runs in a worker thread but holds the GIL inside each ``pa.array`` call;
it converts in slices of 1,024 records so that the event loop never waits for a whole large
batch. The worker threads run below the event loop's priority (``serving.background_threads``).
With ``idle_writer``, while the writer keeps up (its last cycle took at most half the flush
interval and at most ``max_batch`` records are held) a cycle's conversion and writes run in a
``SCHED_IDLE`` thread, which the event loop preempts at once; behind, or in a flush someone
waits for, they run in the normal pool, so a saturated core cannot starve the log.

**Threads.** ``submit`` may be called from any thread (a lock guards the queue); listeners run
on the event loop.
After :meth:`EventLog.close`, ``submit`` raises :class:`EventLogClosed`: the app closes the log
last in its shutdown, when no handler is left to submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.ipc as ipc

from features.record_store import write_table_partitioned
from features.records import RECORD_TYPES, AttemptRecord, OutcomeRecord, records_to_table
from serving.background_threads import idle_thread_executor

log = logging.getLogger("switchyard.eventlog")
T = TypeVar("T")

SPOOL_DIR = "_spool"
_OWNER_PREFIX = "owner-"
_LOCK = "LOCK"
_SEGMENT_SUFFIX = ".arrows"
_BATCH_PREFIX = "ev-"
_STALE_TEMP_S = 3600.0
_LOG_EVERY_S = 10.0
_TABLES: dict[type, str] = {record_type: record_type.TABLE for record_type in RECORD_TYPES}  # type: ignore[attr-defined]
_CONVERSION_SLICE = 1024  # records per Arrow conversion: ~5 ms of 12-candidate decisions
_CONVERSION_ERRORS = (pa.ArrowException, TypeError, ValueError, AttributeError, OverflowError)

Listener = Callable[[AttemptRecord | OutcomeRecord], None]
PartWriter = Callable[[Path, str, pa.Table, str], object]  # (root, table name, rows, part name)


def write_parts(root: Path, table_name: str, table: pa.Table, part_name: str) -> object:
    """The default writer: durable, deterministically named parts in the record store."""
    return write_table_partitioned(root, table_name, table, part_name=part_name, durable=True)


class EventLogClosed(RuntimeError):
    """``submit`` after ``close``."""


@dataclass(frozen=True, slots=True)
class EventLogStats:
    """Counters since this object was made (records unless named otherwise)."""

    submitted: int  # accepted by submit (dropped ones included)
    written: int  # written to Parquet straight from memory
    spooled: int  # written to spool segments
    replayed: int  # written to Parquet from spool segments (this process's or a dead one's)
    write_errors: int  # failed Parquet writes (calls, not records)
    spool_errors: int  # failed spool writes (calls, not records)
    dropped: int  # lost and logged: memory full, unconvertible, unreadable segment, held at close
    queue_depth: int  # held in memory, not yet durable
    spool_segments: int  # segments on disk waiting for replay
    spool_records: int
    oldest_unwritten_age_s: float  # oldest record not yet in Parquet (memory or spool); 0 if none
    listener_errors: int


@dataclass(slots=True, eq=False)
class _Batch:
    batch_id: str
    records: list[object]
    since: float  # monotonic time its oldest record was submitted
    spill: bool  # sealed because the queue was full: spool it, skip the Parquet attempt
    tables: dict[str, pa.Table] | None = None  # converted in the worker; removed as each is durable


@dataclass(frozen=True, slots=True)
class _Segment:
    path: Path
    batch_id: str
    table: str
    rows: int

    @property
    def created(self) -> float:
        """Wall-clock seconds when its batch was sealed (the batch id starts with it)."""
        return int(self.batch_id.split("-")[1]) / 1e9

    @classmethod
    def parse(cls, path: Path) -> _Segment | None:
        """The segment a spool file name describes; None (and a warning) for a foreign file."""
        try:
            batch_id, table, rows, _ = path.name.split(".")
            segment = cls(path, batch_id, table, int(rows))
            segment.created  # noqa: B018 - validates the batch id
        except (ValueError, IndexError):
            log.warning("event log: ignoring %s in the spool: not a segment name", path)
            return None
        return segment


def _batch_id() -> str:
    return f"{_BATCH_PREFIX}{time.time_ns():019d}-{secrets.token_hex(6)}"


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def _try_lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing), or None if someone holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


class _Spool:
    """This process's spool directory and the dead owners' ones it took over (blocking I/O)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / SPOOL_DIR
        self.own: Path | None = None
        self._locks: dict[Path, int] = {}

    def open(self) -> list[_Segment]:
        """Create and lock our directory; lock and return the segments of dead owners'."""
        if self.own is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            staging = self.dir / f".new-{name}"
            staging.mkdir()
            descriptor = _try_lock(staging / _LOCK)
            assert descriptor is not None  # a directory nobody else knows yet
            own = self.dir / f"{_OWNER_PREFIX}{name}"
            os.rename(staging, own)
            _fsync(self.dir)
            self.own, self._locks[own] = own, descriptor
        adopted: list[_Segment] = []
        for owner in sorted(self.dir.iterdir()):
            if owner in self._locks:
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                staging = owner.name.startswith(".new-")  # a dead process's, if old
                if not (owner.name.startswith(_OWNER_PREFIX) or (staging and _age_s(owner) > 60)):
                    continue
                descriptor = _try_lock(owner / _LOCK)
                if descriptor is None:
                    continue  # a live process's
                self._locks[owner] = descriptor
                for temp in owner.glob(".*.tmp"):
                    temp.unlink()
                segments = [_Segment.parse(path) for path in owner.glob(f"*{_SEGMENT_SUFFIX}")]
                adopted.extend(segment for segment in segments if segment is not None)
                if not any(segments):
                    self._release(owner, remove=not segments)
        return adopted

    def write(self, batch_id: str, table_name: str, table: pa.Table) -> _Segment:
        if self.own is None:
            raise OSError("the spool directory is not available")
        path = self.own / f"{batch_id}.{table_name}.{table.num_rows}{_SEGMENT_SUFFIX}"
        temp = self.own / f".{path.name}.tmp"
        with pa.OSFile(str(temp), "wb") as sink, ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        _fsync(temp)
        os.replace(temp, path)
        _fsync(self.own)
        return _Segment(path, batch_id, table_name, table.num_rows)

    @staticmethod
    def read(segment: _Segment) -> pa.Table:
        with pa.OSFile(str(segment.path), "rb") as source:
            return ipc.open_stream(source).read_all()

    def remove(self, segment: _Segment) -> None:
        segment.path.unlink(missing_ok=True)
        _fsync(segment.path.parent)
        self._release_if_drained(segment.path.parent)

    def quarantine(self, segment: _Segment) -> Path:
        target = self.dir / "quarantine" / segment.path.name
        target.parent.mkdir(exist_ok=True)
        os.replace(segment.path, target)
        self._release_if_drained(segment.path.parent)
        return target

    def _release_if_drained(self, owner: Path) -> None:
        """A dead owner's directory goes once its last segment has."""
        if owner != self.own and owner in self._locks and not any(owner.glob(f"*{_SEGMENT_SUFFIX}")):
            self._release(owner, remove=True)

    def close(self) -> None:
        for owner in list(self._locks):
            self._release(owner, remove=not any(owner.glob(f"*{_SEGMENT_SUFFIX}")))
        self.own = None

    def _release(self, owner: Path, *, remove: bool) -> None:
        if remove:
            shutil.rmtree(owner, ignore_errors=True)
        os.close(self._locks.pop(owner))


def _records_to_tables(records: Sequence[object]) -> tuple[dict[str, pa.Table], list[str]]:
    """One Arrow table per record type; records that do not fit their schema come back as errors."""
    groups: dict[type, list[object]] = {}
    for record in records:
        groups.setdefault(type(record), []).append(record)
    tables: dict[str, pa.Table] = {}
    errors: list[str] = []
    for record_type, group in groups.items():
        try:
            slices = [  # each pa.array call holds the GIL: in slices the event loop waits less
                records_to_table(group[start : start + _CONVERSION_SLICE], record_type)
                for start in range(0, len(group), _CONVERSION_SLICE)
            ]
            tables[_TABLES[record_type]] = pa.concat_tables(slices)
            continue
        except _CONVERSION_ERRORS:
            pass
        good = []
        for record in group:
            try:
                records_to_table([record], record_type)
                good.append(record)
            except Exception as error:  # whatever a malformed record raises, it must not block the log
                errors.append(f"{record_type.__name__} {getattr(record, 'request_id', '?')}: {error}")
        if good:
            tables[_TABLES[record_type]] = records_to_table(good, record_type)
    return tables, errors


def _remove_stale_temp_parts(root: Path, older_than_s: float) -> int:
    removed = 0
    for table in _TABLES.values():
        for temp in (root / table).glob(f"region=*/date=*/.{_BATCH_PREFIX}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if _age_s(temp) > older_than_s:
                    temp.unlink()
                    removed += 1
    return removed


class EventLog:
    """Asynchronous, bounded, durable log of decision/attempt/outcome/feedback records."""

    def __init__(
        self,
        root: Path,
        *,
        flush_interval_s: float = 1.0,
        max_batch: int = 5_000,
        max_queued: int = 20_000,
        max_retained: int = 100_000,
        retry_interval_s: float = 1.0,
        max_retry_interval_s: float = 30.0,
        write_parts: PartWriter = write_parts,
        clock: Callable[[], float] = time.monotonic,
        idle_writer: bool = False,
    ) -> None:
        if flush_interval_s <= 0 or retry_interval_s < 0 or max_retry_interval_s < retry_interval_s:
            raise ValueError("need flush_interval_s > 0 and 0 <= retry_interval_s <= max_retry_interval_s")
        if not 1 <= max_batch <= max_queued <= max_retained:
            raise ValueError("need 1 <= max_batch <= max_queued <= max_retained")
        self._root = Path(root)
        self._flush_interval_s = flush_interval_s
        self._max_batch, self._max_queued, self._max_retained = max_batch, max_queued, max_retained
        self._retry_interval_s, self._max_retry_interval_s = retry_interval_s, max_retry_interval_s
        self._write_parts = write_parts
        self._clock = clock
        self._idle_writer = idle_writer
        self._idle_thread: ThreadPoolExecutor | None = None  # SCHED_IDLE, while the writer keeps up
        self._writer_idle = False  # this cycle's conversion and writes go to the idle thread
        self._last_cycle_s = 0.0
        self._spool = _Spool(self._root)
        self._lock = threading.Lock()  # guards _pending, _sealed (appends) and _held
        self._pending: list[object] = []
        self._pending_since = 0.0
        self._sealed: deque[_Batch] = deque()
        self._held = 0  # records in _pending and _sealed
        self._segments: list[_Segment] = []  # oldest first
        self._unremoved: list[_Segment] = []  # replayed, deletion failed
        self._listeners: tuple[Listener, ...] = ()
        self._counts = dict.fromkeys(
            ("submitted", "written", "spooled", "replayed", "write_errors", "spool_errors", "dropped"), 0
        )
        self._listener_errors = 0
        self._last_logged: dict[str, float] = {}
        self._backoff_s = retry_interval_s
        self._writer_down_until = 0.0
        self._force = False
        self._io = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = self._stopping = False
        self._closed_clean = True
        self._close_done: asyncio.Future[None] | None = None

    # ---- request path ----------------------------------------------------------------------

    def submit(self, record: object) -> None:
        """Queue one record: no I/O, never blocks; raises only for a non-record or after ``close``."""
        table = _TABLES.get(type(record))
        if table is None:
            raise TypeError(f"not an event-log record: {type(record).__name__}")
        if self._closed:
            raise EventLogClosed("the event log is closed; records can no longer be submitted")
        wake = dropped = False
        with self._lock:
            self._counts["submitted"] += 1
            if self._held >= self._max_retained:
                self._counts["dropped"] += 1
                dropped = True
            else:
                pending = self._pending
                if not pending:
                    self._pending_since = self._clock()
                pending.append(record)
                self._held += 1
                if len(pending) >= self._max_queued:
                    self._sealed.append(_Batch(_batch_id(), pending, self._pending_since, spill=True))
                    self._pending = []
                    wake = True
                elif len(pending) == self._max_batch:
                    wake = True
        if dropped:
            self._log_throttled("dropped", "memory full (%d held): dropping records", self._held)
        if wake:
            self._call_in_loop(self._wake.set)
        if self._listeners and table in ("attempts", "outcomes"):
            self._call_in_loop(self._notify, record)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(record)`` on the event loop with each submitted attempt and outcome.

        Keep it cheap (it runs inside ``submit`` on the loop); exceptions are counted and logged.
        """
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(item for item in self._listeners if item is not listener)

    def stats(self) -> EventLogStats:
        now = self._clock()
        with self._lock:
            held = self._held
            oldest = self._sealed[0].since if self._sealed else self._pending_since if self._pending else None
        segments = list(self._segments)
        age = now - oldest if oldest is not None else 0.0
        if segments:
            age = max(age, time.time() - min(segment.created for segment in segments))
        return EventLogStats(
            **self._counts,
            queue_depth=held,
            spool_segments=len(segments),
            spool_records=sum(segment.rows for segment in segments),
            oldest_unwritten_age_s=max(age, 0.0),
            listener_errors=self._listener_errors,
        )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool (taking over dead processes' spools) and start the writer task."""
        if self._closed:
            raise EventLogClosed("the event log is closed")
        if self._task is not None:
            return
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        if self._idle_writer:
            self._idle_thread = idle_thread_executor("eventlog-idle")
        await self._open_spool()
        try:
            removed = await asyncio.to_thread(_remove_stale_temp_parts, self._root, _STALE_TEMP_S)
            if removed:
                log.info("event log: removed %d stale temp part(s) under %s", removed, self._root)
        except OSError as error:
            log.warning("event log: could not sweep temp parts under %s: %s", self._root, error)
        self._task = asyncio.create_task(self._run(), name="eventlog-writer")
        self._task.add_done_callback(self._task_ended)
        self._wake.set()  # replay what was taken over right away

    async def flush(self) -> bool:
        """Make every record submitted so far durable, then replay the spool as far as it goes.

        True when nothing submitted before the call is held only in memory any more (it is in
        Parquet or in the spool); False when the disk refused both (those records stay in
        memory and are retried). Tries Parquet even during the failure backoff.
        """
        if self._closed:
            await self.close()
            return self._closed_clean
        if self._task is None:
            raise RuntimeError("EventLog.flush() before start()")
        async with self._io:
            return await self._forced_cycle()

    async def close(self) -> None:
        """Flush, stop the writer and release the spool; idempotent. Later ``submit`` raises.

        Records the disk still refuses at this point are counted as dropped and logged.
        """
        if self._close_done is not None:
            await asyncio.shield(self._close_done)
            return
        self._close_done = asyncio.get_running_loop().create_future()
        try:
            if self._task is None and self._held:
                await self.start()  # never started, yet holds records: make them durable
            self._closed = True
            if self._task is not None:
                self._stopping = True  # the writer ends its current cycle, if any, and returns
                self._wake.set()
                await asyncio.wait([self._task])
                async with self._io:
                    try:
                        self._closed_clean = await self._forced_cycle()
                    except Exception:
                        self._closed_clean = False
                        log.exception("event log: unexpected error in the last flush")
            self._drop_held_at_close()
            await asyncio.to_thread(self._spool.close)
            if self._idle_thread is not None:
                await asyncio.to_thread(self._idle_thread.shutdown)
        finally:
            self._closed = True
            self._close_done.set_result(None)

    # ---- the writer ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            # a timer rather than wait_for, whose 3.11 version can swallow a cancellation
            tick = loop.call_later(self._flush_interval_s, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                tick.cancel()
            self._wake.clear()
            if self._stopping:
                return
            try:
                async with self._io:
                    started = loop.time()
                    await self._cycle(force=False)
                    self._last_cycle_s = loop.time() - started
            except Exception:  # a bug, not a disk error (those are handled below): keep logging
                log.exception("event log: unexpected error in the writer task; retrying next tick")

    async def _forced_cycle(self) -> bool:
        self._force = True
        try:
            return await self._cycle(force=True)
        finally:
            self._force = False

    async def _cycle(self, *, force: bool) -> bool:
        if self._spool.own is None:
            await self._open_spool()
        # Keeping up (a cycle well within the flush interval, at most a batch held): the work
        # can wait whenever the event loop wants the core. Behind, or flushing for a caller: not.
        self._writer_idle = (
            self._idle_thread is not None
            and not force
            and self._held <= self._max_batch
            and self._last_cycle_s <= self._flush_interval_s / 2
        )
        with self._lock:
            if self._pending:
                self._sealed.append(_Batch(_batch_id(), self._pending, self._pending_since, spill=False))
                self._pending = []
            due = len(self._sealed)
        for _ in range(due):
            if not await self._persist(self._sealed[0]):
                return False
            with self._lock:
                self._sealed.popleft()
        await self._replay(force=force)
        return True

    async def _persist(self, batch: _Batch) -> bool:
        """Write a batch's tables to Parquet, or else to the spool; False if some are still held."""
        if batch.tables is None:
            batch.tables, errors = await self._offload(_records_to_tables, batch.records)
            rejected = len(batch.records) - sum(table.num_rows for table in batch.tables.values())
            batch.records = []
            if rejected:
                self._release_held(rejected, "dropped")
                log.error(
                    "event log: dropped %d record(s) that do not fit their schema: %s", rejected, errors[:3]
                )
        for name, table in list(batch.tables.items()):
            for to_spool in (True, False) if batch.spill else (False, True):
                if await (
                    self._spool_table(batch, name, table)
                    if to_spool
                    else self._write_table(batch, name, table)
                ):
                    del batch.tables[name]
                    break
            else:
                return False
        return True

    async def _write_table(self, batch: _Batch, name: str, table: pa.Table) -> bool:
        if not self._writer_up():
            return False
        try:
            await self._offload(self._write_parts, self._root, name, table, batch.batch_id)
        except Exception as error:
            self._writer_failed(error)
            return False
        self._writer_ok()
        self._release_held(table.num_rows, "written")
        return True

    async def _spool_table(self, batch: _Batch, name: str, table: pa.Table) -> bool:
        try:
            segment = await self._offload(self._spool.write, batch.batch_id, name, table)
        except Exception as error:
            self._count("spool_errors")
            self._log_throttled("spool", "spool write failed (%d held in memory): %s", self._held, error)
            return False
        self._segments.append(segment)
        self._release_held(table.num_rows, "spooled")
        return True

    async def _replay(self, *, force: bool) -> None:
        for segment in list(self._unremoved):
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._spool.remove, segment)
                self._unremoved.remove(segment)
        while self._segments and self._writer_up():
            if not force and (self._sealed or len(self._pending) >= self._max_batch):
                return  # new work first; the spool waits for the next tick
            segment = self._segments[0]
            try:
                table = await self._offload(self._spool.read, segment)
            except (pa.ArrowInvalid, ValueError) as error:
                await self._quarantine(segment, error)
                continue
            except OSError as error:
                self._writer_failed(error)
                return
            try:
                await self._offload(self._write_parts, self._root, segment.table, table, segment.batch_id)
            except OSError as error:
                self._writer_failed(error)
                return
            except Exception as error:  # not the disk: these rows can never be written as they are
                await self._quarantine(segment, error)
                continue
            self._writer_ok()
            self._segments.pop(0)
            self._count("replayed", table.num_rows)
            try:
                await asyncio.to_thread(self._spool.remove, segment)
            except OSError as error:
                log.warning("event log: replayed %s but could not delete it: %s", segment.path, error)
                self._unremoved.append(segment)

    async def _quarantine(self, segment: _Segment, error: Exception) -> None:
        self._segments.remove(segment)
        self._count("dropped", segment.rows)
        try:
            target = await asyncio.to_thread(self._spool.quarantine, segment)
        except OSError:
            target = segment.path
        log.error(
            "event log: unreadable spool segment (%d records) kept at %s: %s", segment.rows, target, error
        )

    async def _open_spool(self) -> None:
        try:
            adopted = await asyncio.to_thread(self._spool.open)
        except OSError as error:
            self._log_throttled("spool-open", "cannot open the spool under %s: %s", self._root, error)
            return
        if adopted:
            rows = sum(segment.rows for segment in adopted)
            log.warning(
                "event log: took over %d spool segment(s), %d records, left by processes now gone",
                len(adopted),
                rows,
            )
            self._segments = sorted([*self._segments, *adopted], key=lambda segment: segment.path.name)

    async def _offload(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking writer work in a thread: the idle one while keeping up, else the pool."""
        if self._writer_idle:  # only ever set while the idle thread exists
            return await asyncio.get_running_loop().run_in_executor(self._idle_thread, function, *args)
        return await asyncio.to_thread(function, *args)

    # ---- bookkeeping -----------------------------------------------------------------------

    def _count(self, counter: str, count: int = 1) -> None:
        with self._lock:
            self._counts[counter] += count

    def _release_held(self, count: int, counter: str) -> None:
        with self._lock:
            self._held -= count
            self._counts[counter] += count

    def _writer_up(self) -> bool:
        return self._force or self._clock() >= self._writer_down_until

    def _writer_failed(self, error: Exception) -> None:
        self._count("write_errors")
        self._force = False  # one failed attempt per flush; then the spool
        self._writer_down_until = self._clock() + self._backoff_s
        self._log_throttled(
            "write", "Parquet write failed, spooling; retry in %.1f s: %r", self._backoff_s, error
        )
        self._backoff_s = min(max(self._backoff_s * 2, self._retry_interval_s), self._max_retry_interval_s)

    def _writer_ok(self) -> None:
        self._backoff_s = self._retry_interval_s
        self._writer_down_until = 0.0

    def _drop_held_at_close(self) -> None:
        with self._lock:
            lost = self._held
            self._held = 0
            self._pending, self._sealed = [], deque()
            self._counts["dropped"] += lost
        if lost:
            log.error("event log: closed with %d record(s) the disk refused; they are lost", lost)

    def _call_in_loop(self, function: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            function(*args)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)

    def _notify(self, record: AttemptRecord | OutcomeRecord) -> None:
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:
                self._listener_errors += 1
                if self._throttle("listener"):
                    log.exception(
                        "event log: listener %r failed (%d so far)", listener, self._listener_errors
                    )

    def _throttle(self, key: str) -> bool:
        now = self._clock()
        if now - self._last_logged.get(key, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return False
        self._last_logged[key] = now
        return True

    def _log_throttled(self, key: str, message: str, *args: object) -> None:
        if self._throttle(key):
            log.error(f"event log: {message} [totals: %s]", *args, self._counts)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("event log: the writer task died", exc_info=task.exception())
