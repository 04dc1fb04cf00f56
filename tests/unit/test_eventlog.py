"""The gateway's event log: exactly-once Parquet under failing writers, full queues and crashes.

Fakes, not mocks: writers that fail N times (before or after really writing), a root that is a
regular file (chmod does not stop root, who runs these tests), a real process killed with
SIGKILL. Every check reads the result back with ``scan_records``, as training does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from features.record_store import scan_records
from features.records import (
    RECORD_TYPES,
    AttemptRecord,
    AttemptSummary,
    CandidateScore,
    CandidateScores,
    DecisionRecord,
    FeedbackRecord,
    OutcomeRecord,
)
from features.schema import FEATURE_SCHEMA_VERSION, REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES
from serving.eventlog import SPOOL_DIR, EventLog, EventLogClosed, write_parts

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def decision(request_id: str, ts: datetime = T0, region: str = "us") -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id,
        ts=ts,
        region=region,
        tenant_id="tenant-1",
        tier="pro",
        surface="api",
        stream=True,
        requested_model="auto",
        conversation_key="c1",
        feature_schema_version=FEATURE_SCHEMA_VERSION,
        request_features=[1.0] * len(REQUEST_FEATURE_NAMES),
        store_features=[math.nan] * len(STORE_FEATURE_NAMES),
        candidates=CandidateScores.from_rows(
            [CandidateScore("claude-haiku-4-5", [0.5], 0.7, 300.0, 200.0, 0.001, 0.6, 1.0)]
        ),
        chosen_sku="claude-haiku-4-5",
        propensity=1.0,
        router_version="rules-v1",
        policy_lambda=1.0,
        policy_mu=0.1,
        policy_epsilon=0.0,
        fallback_skus=[],
        attempts=[AttemptSummary("claude-haiku-4-5", "w0", "ok", None)],
        decision_ms=0.4,
    )


def attempt(
    request_id: str, ts: datetime = T0, region: str = "us", e2e_ms: float | None = 900.0
) -> AttemptRecord:
    return AttemptRecord(
        request_id,
        ts,
        region,
        "claude-haiku-4-5",
        "w0",
        0,
        "ok",
        None,
        200,
        300.0,
        20.0,
        e2e_ms,
        5000,
        0,
        300,
    )  # type: ignore[arg-type]


def outcome(request_id: str, ts: datetime = T0, region: str = "us") -> OutcomeRecord:
    return OutcomeRecord(
        request_id=request_id,
        ts=ts,
        region=region,
        tenant_id="tenant-1",
        sku="claude-haiku-4-5",
        replica="w0",
        status="ok",
        error_type=None,
        http_status=200,
        ttft_ms=310.0,
        e2e_ms=910.0,
        input_tokens=5000,
        cached_tokens=0,
        output_tokens=300,
        cost_usd=0.001,
        list_price_usd=0.002,
        stop_reason="end_turn",
        attempts=1,
    )


def feedback(request_id: str, ts: datetime = T0, region: str = "us") -> FeedbackRecord:
    return FeedbackRecord(request_id, ts, region, "tenant-1", 1.0, "user")


MAKERS = (decision, attempt, outcome, feedback)


def mixed(count: int, prefix: str = "r") -> list[object]:
    """``count`` records cycling through the four types, two regions and two UTC dates."""
    return [
        MAKERS[i % 4](f"{prefix}{i}", T0 + timedelta(hours=i // 8 % 2), ("us", "eu")[i // 4 % 2])  # type: ignore[operator]
        for i in range(count)
    ]


def logged_ids(root: Path, record_type: type) -> list[str]:
    if not (root / record_type.TABLE).exists():  # type: ignore[attr-defined]
        return []
    return scan_records(root, record_type).select("request_id").collect()["request_id"].to_list()


def all_logged(root: Path) -> Counter[str]:
    """How many times each (table, request id) pair is in the Parquet log."""
    return Counter(f"{t.TABLE}/{rid}" for t in RECORD_TYPES for rid in logged_ids(root, t))  # type: ignore[attr-defined]


def expected(records: list[object]) -> Counter[str]:
    return Counter(f"{type(r).TABLE}/{r.request_id}" for r in records)  # type: ignore[attr-defined]


def spool_files(root: Path) -> list[Path]:
    return sorted((root / SPOOL_DIR).rglob("*.arrows"))


class FlakyWriter:
    """The real writer, except that the first ``failures`` calls raise, before or after writing."""

    def __init__(self, failures: int, *, write_first: bool = False) -> None:
        self.failures = failures
        self.write_first = write_first
        self.calls = 0

    def __call__(self, root: Path, table_name: str, table: pa.Table, part_name: str) -> object:
        self.calls += 1
        if self.calls <= self.failures:
            if self.write_first:  # the parts land, then e.g. the directory fsync fails
                write_parts(root, table_name, table, part_name)
            raise OSError(5, f"injected failure {self.calls}")
        return write_parts(root, table_name, table, part_name)


async def test_submitted_records_round_trip_partitioned_by_region_and_date(tmp_path):
    records = mixed(40)
    log = EventLog(tmp_path, flush_interval_s=60)
    await log.start()
    for record in records:
        log.submit(record)
    assert await log.flush()

    assert all_logged(tmp_path) == expected(records)
    decisions = scan_records(tmp_path, DecisionRecord).collect()
    assert sorted(set(zip(decisions["region"], decisions["date"], strict=True))) == [
        ("eu", "2026-11-26"),
        ("eu", "2026-11-27"),
        ("us", "2026-11-26"),
        ("us", "2026-11-27"),
    ]
    one = decisions.filter(pl.col("request_id") == "r0").row(0, named=True)
    assert one["candidates"][0]["sku"] == "claude-haiku-4-5" and one["decision_ms"] == 0.4
    stats = log.stats()
    assert (stats.submitted, stats.written, stats.spooled, stats.dropped, stats.queue_depth) == (
        40,
        40,
        0,
        0,
        0,
    )
    assert stats.oldest_unwritten_age_s == 0.0
    await log.close()
    assert spool_files(tmp_path) == []


async def test_the_background_task_writes_by_size_without_a_flush(tmp_path):
    log = EventLog(tmp_path, flush_interval_s=3600, max_batch=10, max_queued=100)
    await log.start()
    await asyncio.sleep(0.05)  # the start-up cycle (nothing to replay) is done
    for record in mixed(10):
        log.submit(record)
    for _ in range(500):
        if log.stats().written == 10:
            break
        await asyncio.sleep(0.01)
    assert log.stats().written == 10
    assert sum(all_logged(tmp_path).values()) == 10
    await log.close()


async def test_concurrent_submitters_on_the_loop_and_in_threads_are_each_written_once(tmp_path):
    log = EventLog(tmp_path, flush_interval_s=0.02, max_batch=200, max_queued=400)
    await log.start()
    task_records = [mixed(300, prefix=f"task{k}-") for k in range(6)]
    thread_records = [mixed(300, prefix=f"thread{k}-") for k in range(3)]

    async def submitter(records: list[object]) -> None:
        for index, record in enumerate(records):
            log.submit(record)
            if index % 7 == 0:
                await asyncio.sleep(0)

    threads = [threading.Thread(target=lambda rs=rs: [log.submit(r) for r in rs]) for rs in thread_records]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(submitter(records) for records in task_records))
    await asyncio.to_thread(lambda: [thread.join() for thread in threads])
    assert await log.flush()

    every = [record for records in task_records + thread_records for record in records]
    assert all_logged(tmp_path) == expected(every)
    stats = log.stats()
    assert stats.submitted == len(every) == stats.written + stats.replayed
    await log.close()


async def test_a_full_queue_spills_to_the_spool_and_each_record_is_written_once(tmp_path):
    log = EventLog(tmp_path, flush_interval_s=3600, max_batch=5, max_queued=10, max_retained=1000)
    await log.start()
    records = mixed(35)
    for record in records:  # no await: the writer cannot run, so the queue overflows three times
        log.submit(record)
    assert log.stats().queue_depth == 35
    assert await log.flush()

    stats = log.stats()
    assert (stats.spooled, stats.replayed, stats.written, stats.dropped) == (30, 30, 5, 0)
    assert all_logged(tmp_path) == expected(records)
    assert spool_files(tmp_path) == []
    await log.close()


@pytest.mark.parametrize("write_first", [False, True], ids=["fails-before-writing", "fails-after-writing"])
async def test_a_writer_failing_k_times_then_recovering_writes_every_record_once(tmp_path, write_first):
    writer = FlakyWriter(failures=6, write_first=write_first)
    log = EventLog(tmp_path, flush_interval_s=3600, retry_interval_s=0.0, write_parts=writer)
    await log.start()
    records = mixed(40)
    for record in records:
        log.submit(record)
    assert await log.flush()  # durable: what Parquet refused is in the spool
    assert log.stats().write_errors >= 1 and log.stats().spooled > 0
    for _ in range(10):
        if log.stats().spool_segments == 0:
            break
        await log.flush()

    stats = log.stats()
    assert stats.write_errors == 6
    assert stats.spool_segments == 0 and spool_files(tmp_path) == []
    assert stats.written + stats.replayed == 40 and stats.dropped == 0
    assert all_logged(tmp_path) == expected(records)
    await log.close()


async def test_the_background_task_replays_the_spool_once_the_writer_recovers(tmp_path):
    writer = FlakyWriter(failures=3)
    log = EventLog(tmp_path, flush_interval_s=0.02, retry_interval_s=0.05, write_parts=writer)
    await log.start()
    records = mixed(20)
    for record in records:
        log.submit(record)
    for _ in range(500):
        stats = log.stats()
        if stats.spooled and stats.spool_segments == 0 and stats.queue_depth == 0:
            break
        await asyncio.sleep(0.01)
    assert stats.write_errors == 3 and stats.replayed == stats.spooled > 0
    assert all_logged(tmp_path) == expected(records)
    await log.close()


CRASHING_CHILD = """
import asyncio, json, os, signal, sys
from datetime import UTC, datetime
from pathlib import Path
from features.records import FeedbackRecord
from serving.eventlog import EventLog

def refuse(*args):
    raise OSError(28, "no space left on device (injected)")

async def main(root, spooled, in_memory):
    log = EventLog(Path(root), flush_interval_s=3600, write_parts=refuse)
    await log.start()
    ts = datetime(2026, 11, 26, 12, tzinfo=UTC)
    for i in range(spooled):
        log.submit(FeedbackRecord(f"spooled-{i}", ts, "us", "tenant-1", 1.0, "user"))
    assert await log.flush()
    for i in range(in_memory):
        log.submit(FeedbackRecord(f"memory-{i}", ts, "us", "tenant-1", 1.0, "user"))
    stats = log.stats()
    print(json.dumps({"spooled": stats.spooled, "queue_depth": stats.queue_depth}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def crash_a_process_with_a_spool(root: Path, spooled: int, in_memory: int) -> dict[str, int]:
    import json

    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(root), str(spooled), str(in_memory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    return json.loads(child.stdout)


async def test_a_killed_process_spool_is_replayed_once_at_the_next_start(tmp_path):
    reported = crash_a_process_with_a_spool(tmp_path, spooled=25, in_memory=7)
    assert reported == {"spooled": 25, "queue_depth": 7}
    (dead_owner,) = [p for p in (tmp_path / SPOOL_DIR).iterdir() if p.name.startswith("owner-")]
    assert len(list(dead_owner.glob("*.arrows"))) == 1
    left_by_the_crash = tmp_path / "copy-of-dead-spool"
    shutil.copytree(dead_owner, left_by_the_crash)

    log = EventLog(tmp_path, flush_interval_s=3600)
    await log.start()
    assert await log.flush()
    stats = log.stats()
    assert (stats.replayed, stats.spool_segments) == (25, 0)
    # what was only in memory died with the process; what was spooled is there, once
    assert sorted(logged_ids(tmp_path, FeedbackRecord)) == sorted(f"spooled-{i}" for i in range(25))
    assert not dead_owner.exists()
    await log.close()
    assert list((tmp_path / SPOOL_DIR).iterdir()) == []
    parts = sorted((tmp_path / "feedback").rglob("*.parquet"))

    # a crash after the parts were written and before the segment was deleted leaves both:
    # the replay replaces the same parts instead of adding copies
    shutil.copytree(left_by_the_crash, tmp_path / SPOOL_DIR / dead_owner.name)
    again = EventLog(tmp_path, flush_interval_s=3600)
    await again.start()
    assert await again.flush()
    assert again.stats().replayed == 25
    assert Counter(logged_ids(tmp_path, FeedbackRecord)) == Counter(f"spooled-{i}" for i in range(25))
    assert sorted((tmp_path / "feedback").rglob("*.parquet")) == parts
    await again.close()


async def test_a_live_owner_spool_is_left_alone_and_torn_or_corrupt_files_are_not_lost_silently(
    tmp_path, caplog
):
    live = EventLog(tmp_path, flush_interval_s=3600, write_parts=FlakyWriter(failures=100))
    await live.start()
    for record in mixed(8, prefix="live"):
        live.submit(record)
    assert await live.flush() and live.stats().spool_segments == 4
    (live_owner,) = (tmp_path / SPOOL_DIR).glob("owner-*")

    elsewhere = tmp_path / "elsewhere"
    crashed = EventLog(elsewhere, flush_interval_s=3600, write_parts=FlakyWriter(failures=100))
    await crashed.start()
    for record in mixed(4, prefix="dead"):
        crashed.submit(record)
    assert await crashed.flush()
    (crashed_owner,) = (elsewhere / SPOOL_DIR).glob("owner-*")
    dead = tmp_path / SPOOL_DIR / "owner-dead"
    shutil.copytree(crashed_owner, dead)  # as if that process had died with this spool
    await crashed.close()
    (dead / ".ev-1-torn.feedback.3.arrows.tmp").write_bytes(b"half a segment")
    decision_segment = next(dead.glob("*.decisions.*.arrows"))
    decision_segment.write_bytes(decision_segment.read_bytes()[:100])  # corrupt, e.g. a bad disk block

    caplog.set_level(logging.ERROR, "switchyard.eventlog")
    log = EventLog(tmp_path, flush_interval_s=3600)
    await log.start()
    assert await log.flush()
    stats = log.stats()
    assert (stats.replayed, stats.dropped) == (3, 1)  # the corrupt segment held one decision
    assert (tmp_path / SPOOL_DIR / "quarantine" / decision_segment.name).exists()
    assert "unreadable spool segment" in caplog.text
    assert all_logged(tmp_path) == Counter({"attempts/dead1": 1, "outcomes/dead2": 1, "feedback/dead3": 1})
    assert not dead.exists()
    assert len(list(live_owner.glob("*.arrows"))) == 4  # a live process's spool is its own
    await log.close()
    await live.close()
    assert len(list(live_owner.glob("*.arrows"))) == 4  # kept for the next start to replay


async def test_close_flushes_everything_is_idempotent_and_later_submits_raise(tmp_path):
    log = EventLog(tmp_path, flush_interval_s=3600)
    await log.start()
    records = mixed(12)
    for record in records:
        log.submit(record)
    await asyncio.gather(log.close(), log.close())
    await log.close()
    assert all_logged(tmp_path) == expected(records)
    assert log.stats().queue_depth == 0 and log.stats().dropped == 0
    with pytest.raises(EventLogClosed):
        log.submit(feedback("late"))
    assert await log.flush()
    assert list((tmp_path / SPOOL_DIR).iterdir()) == []


async def test_records_submitted_before_start_are_written_by_close(tmp_path):
    log = EventLog(tmp_path)
    records = mixed(4)
    for record in records:
        log.submit(record)
    await log.close()
    assert all_logged(tmp_path) == expected(records)


async def test_an_unwritable_root_keeps_records_in_memory_counts_drops_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.ERROR, "switchyard.eventlog")
    root = tmp_path / "log"
    root.write_text("a regular file where the log directory should be")  # every mkdir/open fails
    log = EventLog(root, flush_interval_s=3600, max_batch=10, max_queued=20, max_retained=50)
    await log.start()
    records = mixed(60)
    for record in records:
        log.submit(record)
    assert not await log.flush()
    stats = log.stats()
    assert (stats.submitted, stats.queue_depth, stats.dropped, stats.written, stats.spooled) == (
        60,
        50,
        10,
        0,
        0,
    )
    assert stats.write_errors >= 1 and stats.spool_errors >= 1  # both were tried
    assert "dropping records" in caplog.text and "spool write failed" in caplog.text

    root.unlink()  # the disk is back
    root.mkdir()
    assert await log.flush()
    assert all_logged(root) == expected(records[:50])
    assert log.stats().queue_depth == 0
    await log.close()


async def test_records_the_disk_still_refuses_at_close_are_counted_as_dropped(tmp_path, caplog):
    root = tmp_path / "log"
    root.write_text("not a directory")
    log = EventLog(root, flush_interval_s=3600)
    await log.start()
    for record in mixed(5):
        log.submit(record)
    await log.close()
    assert log.stats().dropped == 5 and log.stats().queue_depth == 0
    assert "they are lost" in caplog.text
    assert not await log.flush()


async def test_a_record_that_does_not_fit_its_schema_is_dropped_loudly_and_the_rest_written(tmp_path, caplog):
    log = EventLog(tmp_path, flush_interval_s=3600)
    await log.start()
    good = [attempt("a1"), attempt("a2"), feedback("f1")]
    log.submit(attempt("bad", e2e_ms=None))  # e2e_ms is not nullable
    for record in good:
        log.submit(record)
    assert await log.flush()
    assert log.stats().dropped == 1 and log.stats().written == 3
    assert all_logged(tmp_path) == expected(good)
    assert "do not fit their schema" in caplog.text
    await log.close()


async def test_listeners_get_attempts_and_outcomes_and_cannot_break_submit(tmp_path):
    log = EventLog(tmp_path)
    seen: list[str] = []
    log.add_listener(lambda record: seen.append(f"{type(record).__name__}:{record.request_id}"))

    def broken(record: object) -> None:
        raise RuntimeError("listener bug")

    log.add_listener(broken)
    await log.start()
    for record in mixed(8):
        log.submit(record)
    assert seen == ["AttemptRecord:r1", "OutcomeRecord:r2", "AttemptRecord:r5", "OutcomeRecord:r6"]
    assert log.stats().listener_errors == 4
    log.remove_listener(broken)
    log.submit(attempt("r9"))
    assert log.stats().listener_errors == 4 and seen[-1] == "AttemptRecord:r9"
    with pytest.raises(TypeError):
        log.submit("not a record")
    await log.close()
    assert log.stats().written == 9


async def test_stats_report_the_age_of_the_oldest_unwritten_record(tmp_path):
    now = [100.0]
    log = EventLog(tmp_path, flush_interval_s=3600, clock=lambda: now[0])
    log.submit(feedback("f1"))
    now[0] += 2.5
    log.submit(feedback("f2"))
    assert log.stats().oldest_unwritten_age_s == pytest.approx(2.5)
    assert log.stats().queue_depth == 2
    await log.close()
    assert log.stats().oldest_unwritten_age_s == 0.0


def test_limits_must_nest():
    with pytest.raises(ValueError):
        EventLog(Path("unused"), max_batch=10, max_queued=5)
    with pytest.raises(ValueError):
        EventLog(Path("unused"), max_queued=10, max_retained=5)


async def test_stale_temp_files_of_crashed_writes_are_removed_at_start_and_never_read(tmp_path):
    partition = tmp_path / "attempts" / "region=us" / "date=2026-11-26"
    partition.mkdir(parents=True)
    stale, fresh = partition / ".ev-1-a.parquet.tmp", partition / ".ev-2-b.parquet.tmp"
    for temp in (stale, fresh):
        temp.write_bytes(b"torn parquet")
    os.utime(stale, (0, 0))
    log = EventLog(tmp_path)
    await log.start()
    log.submit(attempt("a1"))
    await log.close()
    assert not stale.exists() and fresh.exists()  # a fresh one may be another live writer's
    assert logged_ids(tmp_path, AttemptRecord) == ["a1"]


async def test_an_idle_writer_writes_in_a_sched_idle_thread_while_it_keeps_up_and_in_a_normal_one_when_not(
    tmp_path,
):
    policies: list[int] = []
    slow_once: list[object] = []  # a record to submit while the one slow write runs

    def recording_write(root, table_name, table, part_name):
        policies.append(os.sched_getscheduler(0))
        if slow_once:
            log.submit(slow_once.pop())  # pending when the slow cycle ends: the next cycle has work
            time.sleep(0.5)  # longer than the flush interval: the writer is behind
        return write_parts(root, table_name, table, part_name)

    async def written(count: int) -> None:
        for _ in range(1000):
            if log.stats().written >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"not written: {log.stats()}")

    log = EventLog(tmp_path, flush_interval_s=0.2, idle_writer=True, write_parts=recording_write)
    await log.start()
    log.submit(feedback("f1"))
    await written(1)  # keeping up: the idle thread
    await asyncio.sleep(0.5)  # empty cycles in between: a cold first write does not count as slow
    slow_once.append(feedback("f3"))
    log.submit(feedback("f2"))
    await written(3)  # f2 (idle, decided before it was slow), then f3 right after the slow cycle
    await asyncio.sleep(0.5)
    log.submit(feedback("f4"))
    await written(4)  # caught up again
    log.submit(feedback("f5"))
    assert await log.flush()  # a caller waits for a flush: never the idle thread
    assert policies == [os.SCHED_IDLE, os.SCHED_IDLE, os.SCHED_OTHER, os.SCHED_IDLE, os.SCHED_OTHER]
    assert all_logged(tmp_path) == expected([feedback(f"f{i}") for i in range(1, 6)])
    await log.close()
