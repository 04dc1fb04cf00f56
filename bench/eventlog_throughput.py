"""Event-log throughput: submit() cost, records/s written, spool and replay rates, write-ahead cost.

    .venv/bin/python bench/eventlog_throughput.py [--requests 10000] [--rate 1000] [--root DIR]

Each request logs what the gateway will: one DecisionRecord (12 scored candidates, full feature
vectors), one AttemptRecord (two for 10% of requests, a fallback), one OutcomeRecord, and a
FeedbackRecord for 5%. Records are built before timing. Scenarios, each on a fresh root under
``--root`` (default: a temp dir; the disk matters, name it):

- ``burst``: every record submitted as fast as the loop goes (a yield every 100 submits, as
  handlers await between records), then ``flush()``. Submitted/s is the submit loop alone;
  written/s is first submit → flush returned (all durable in Parquet). A burst larger than
  ``max_queued`` spills to the spool, as designed; the counters show how much.
- ``paced``: ``--rate`` requests/s offered for ``--requests`` requests while the writer runs,
  so submit() is timed under the writer thread's GIL contention; reports the largest
  ``oldest_unwritten_age_s`` seen (sampled every 50 ms): what a SIGKILL would have lost.
- ``spool``: a writer that refuses every write, so each batch goes to the spool; then a
  working writer and ``flush()`` replays it.
- ``write-ahead``: the alternative to queueing, per record on the caller: pickle + write(2)
  to an O_APPEND file (survives SIGKILL, not power loss), and the same plus fsync (survives
  power loss).

Each submit() is timed with ``perf_counter_ns`` (its own ~50-100 ns included).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import pickle
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from machine import describe_machine

from features.records import (
    AttemptRecord,
    AttemptSummary,
    CandidateScores,
    DecisionRecord,
    FeedbackRecord,
    OutcomeRecord,
)
from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    REQUEST_FEATURE_NAMES,
    STORE_FEATURE_NAMES,
)
from serving.eventlog import EventLog, write_parts

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
SKUS = [f"sku-{k:02d}" for k in range(12)]


def request_records(index: int, rng: np.random.Generator) -> list[object]:
    request_id = f"req-{index:09d}"
    ts = T0 + timedelta(milliseconds=index)
    region = ("us", "eu", "apac")[index % 3]
    probabilities = rng.dirichlet(np.ones(len(SKUS)))
    n = len(SKUS)
    candidates = CandidateScores.from_columns(  # as the gateway's router builds them: arrays
        SKUS,
        rng.random((n, len(CANDIDATE_FEATURE_NAMES))).astype(np.float32),
        p_quality=rng.random(n),
        ttft_ms=rng.uniform(200, 900, n),
        output_tokens=rng.uniform(50, 800, n),
        cost_usd=rng.uniform(1e-4, 1e-2, n),
        utility=rng.random(n),
        probability=probabilities,
    )
    fallback = rng.random() < 0.1
    chosen = SKUS[int(np.argmax(probabilities))]
    attempts = [
        AttemptRecord(
            request_id, ts, region, chosen, "w0", 0, "error", "api_error", 500, None, None, 40.0, 5000, 0, 0
        )
    ] * fallback
    served = SKUS[0] if fallback else chosen
    attempts.append(
        AttemptRecord(
            request_id,
            ts,
            region,
            served,
            "w1",
            len(attempts),
            "ok",
            None,
            200,
            310.0,
            21.0,
            6200.0,
            4000,
            1000,
            280,
        )
    )
    decision = DecisionRecord(
        request_id=request_id,
        ts=ts,
        region=region,
        tenant_id=f"tenant-{index % 1000:04d}",
        tier="pro",
        surface="api",
        stream=True,
        requested_model="auto",
        conversation_key=f"conv-{index // 3:09d}",
        feature_schema_version=FEATURE_SCHEMA_VERSION,
        request_features=rng.random(len(REQUEST_FEATURE_NAMES)).tolist(),
        store_features=[math.nan] * len(STORE_FEATURE_NAMES),
        candidates=candidates,
        chosen_sku=chosen,
        propensity=float(probabilities.max()),
        router_version="bench",
        policy_lambda=1.0,
        policy_mu=0.1,
        policy_epsilon=0.05,
        fallback_skus=SKUS[:2],
        attempts=[AttemptSummary(a.sku, a.replica, a.status, a.error_type) for a in attempts],
        decision_ms=0.4,
    )
    outcome = OutcomeRecord(
        request_id, ts + timedelta(seconds=6), region, decision.tenant_id, served, "w1", "ok", None, 200,
        330.0, 6300.0, 4000, 1000, 280, 0.004, 0.011, "end_turn", len(attempts),
    )  # fmt: skip
    records: list[object] = [decision, *attempts, outcome]
    if rng.random() < 0.05:
        records.append(
            FeedbackRecord(request_id, ts + timedelta(minutes=1), region, decision.tenant_id, 1.0, "user")
        )
    return records


def summary(label: str, samples_ns: list[int]) -> str:
    micros = np.array(samples_ns) / 1e3
    p50, p99, p999 = np.percentile(micros, [50, 99, 99.9])
    return (
        f"{label:<34} n={len(micros):>8,}  p50 {p50:7.2f} µs  p99 {p99:7.2f} µs  "
        f"p99.9 {p999:8.2f} µs  mean {micros.mean():7.2f} µs"
    )


def counters(log: EventLog) -> str:
    s = log.stats()
    return (
        f"submitted {s.submitted:,} written {s.written:,} spooled {s.spooled:,} replayed {s.replayed:,} "
        f"dropped {s.dropped:,} write_errors {s.write_errors}"
    )


async def burst(root: Path, records: list[object]) -> None:
    log = EventLog(root)
    await log.start()
    timings: list[int] = []
    timer = time.perf_counter_ns
    began = time.perf_counter()
    for index, record in enumerate(records):
        start = timer()
        log.submit(record)
        timings.append(timer() - start)
        if index % 100 == 99:
            await asyncio.sleep(0)
    submitted_s = time.perf_counter() - began
    assert await log.flush()
    written_s = time.perf_counter() - began
    print(summary("burst: submit()", timings))
    print(
        f"{'':<34} submitted {len(records) / submitted_s:,.0f} records/s; "
        f"all durable in Parquet after {written_s:.2f} s = {len(records) / written_s:,.0f} records/s"
    )
    print(f"{'':<34} {counters(log)}")
    await log.close()


async def paced(root: Path, requests: list[list[object]], rate: float) -> None:
    log = EventLog(root)
    await log.start()
    timings: list[int] = []
    exposure = [0.0, 0]

    async def sample() -> None:
        while True:
            stats = log.stats()
            exposure[0] = max(exposure[0], stats.oldest_unwritten_age_s)
            exposure[1] = max(exposure[1], stats.queue_depth)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    timer = time.perf_counter_ns
    began = time.perf_counter()
    for index, records in enumerate(requests):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for record in records:
            start = timer()
            log.submit(record)
            timings.append(timer() - start)
    offered_s = time.perf_counter() - began
    assert await log.flush()
    sampler.cancel()
    print(summary(f"paced {rate:,.0f} req/s: submit()", timings))
    print(
        f"{'':<34} offered {len(requests) / offered_s:,.0f} req/s = {len(timings) / offered_s:,.0f} records/s; "
        f"max unwritten age {exposure[0]:.2f} s, max queue depth {exposure[1]:,} (the SIGKILL exposure)"
    )
    print(f"{'':<34} {counters(log)}")
    await log.close()


async def spool(root: Path, records: list[object]) -> None:
    def refuse(*args: object) -> None:
        raise OSError(28, "no space left on device (bench)")

    log = EventLog(root, write_parts=refuse)
    await log.start()
    began = time.perf_counter()
    for record in records:
        log.submit(record)
    assert await log.flush()
    spooled_s = time.perf_counter() - began
    segments = log.stats().spool_segments
    await log.close()
    megabytes = sum(p.stat().st_size for p in (root / "_spool").rglob("*.arrows")) / 1e6
    print(
        f"spool: {len(records):,} records in {spooled_s:.2f} s = {len(records) / spooled_s:,.0f} records/s "
        f"to {segments} segments, {megabytes:.1f} MB ({megabytes * 1e6 / len(records):,.0f} B/record)"
    )
    log = EventLog(root, write_parts=write_parts)
    began = time.perf_counter()
    await log.start()
    assert await log.flush()
    replayed_s = time.perf_counter() - began
    print(
        f"replay: {log.stats().replayed:,} records in {replayed_s:.2f} s = {log.stats().replayed / replayed_s:,.0f} records/s"
    )
    await log.close()


def write_ahead(root: Path, records: list[object], fsync_count: int) -> None:
    path = root / "write-ahead.log"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    timer = time.perf_counter_ns
    for label, sample, sync in (
        ("write-ahead: pickle+write", records, False),
        ("write-ahead: pickle+write+fsync", records[:fsync_count], True),
    ):
        timings = []
        for record in sample:
            start = timer()
            payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
            os.write(descriptor, len(payload).to_bytes(4, "little") + payload)
            if sync:
                os.fsync(descriptor)
            timings.append(timer() - start)
        print(summary(label, timings))
    os.close(descriptor)
    decisions = [r for r in records if isinstance(r, DecisionRecord)][:2000]
    timings = []
    for record in decisions:
        start = timer()
        pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        timings.append(timer() - start)
    print(summary("  of which pickle, DecisionRecord", timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1_000.0, help="offered req/s in the paced run")
    parser.add_argument("--root", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--fsyncs", type=int, default=1_000, help="records in the write-ahead+fsync run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    requests = [request_records(index, rng) for index in range(args.requests)]
    records = [record for request in requests for record in request]
    print(f"machine: {describe_machine(f'pyarrow {pa.__version__}')}")
    with tempfile.TemporaryDirectory(dir=args.root) as scratch:
        base = Path(scratch)
        print(f"root: {base} ({os.statvfs(base).f_bsize} B blocks)")
        print(
            f"{args.requests:,} requests → {len(records):,} records "
            f"(per request: 1 decision with {len(SKUS)} candidates, 1.1 attempts, 1 outcome, 0.05 feedback)\n"
        )
        asyncio.run(burst(base / "burst", records))
        print()
        asyncio.run(paced(base / "paced", requests, args.rate))
        print()
        asyncio.run(spool(base / "spool", records))
        print()
        write_ahead(base, records, args.fsyncs)


if __name__ == "__main__":
    main()
