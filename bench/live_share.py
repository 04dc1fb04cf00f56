"""CPU of shared live stats: one process's sync, the leader's cycle, a takeover, at a cluster attempt rate.

    flock /tmp/team/bench.lock .venv/bin/python bench/live_share.py [--rate 500] [--processes 4] [--rounds 10]

Starts ``redis-server`` on a free loopback port and applies the project's ``feature_repo`` with
``feature_store.redis.yaml`` in a temp dir (Feast's online store on that server). ``--processes``
:class:`~serving.live_share.LiveSharer` s (each its own Redis client and ``feast.FeatureStore``,
in this one Python process, run one after another) share ``--rate`` attempts/s between them
(catalog SKUs × regions, 3% errors, lognormal TTFT and duration), one batch per process per
``--period`` seconds, on a clock that steps a period at a time:

1. **prefill**: ``--minutes`` of attempts go through the followers' syncs while a foreign holder
   keeps the lease (nobody leads), so the stream holds the whole retained window;
2. **takeover**: the lease is freed; one sharer's next sync takes it, reads the whole stream,
   computes and pushes: what a new leader costs once;
3. **steady state**: ``--rounds`` periods, each: every process observes its new attempts and
   syncs; the followers' syncs (encode + one script call) and the leader's (its own share, read
   the others' new batches, ``sku_live_stats`` over the 15-minute window of every process's
   attempts, Feast push) are timed.

CPU is ``time.process_time`` around each sync (this process: polars' threads count, Redis's own
CPU does not; the Redis server's CPU per period is read from its ``INFO cpu``). ``observe`` is
timed per attempt.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import redis
from machine import describe_machine, print_report

from features.catalog import REGIONS, load_catalog
from offline.feast_adapter import copy_repo, feast_cli
from serving.feast_redis import open_feature_store_on_redis
from serving.live_share import LiveShareConfig, LiveSharer
from switchyard_cli.redis_server import running_redis

REPO = Path(__file__).resolve().parents[1] / "feature_repo"
OUT = Path(__file__).resolve().parent / "results" / "live_share.txt"


@dataclass(frozen=True, slots=True)
class Attempt:
    ts: datetime
    region: str
    sku: str
    status: str
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def period_attempts(rng, n: int, start: float, period: float, skus: list[str]) -> list[Attempt]:
    """``n`` attempts that end within ``[start, start + period)``."""
    e2e = np.minimum(rng.lognormal(np.log(3_000), 0.8, n), 120_000)
    ends = start + rng.uniform(0, period, n)
    ok = rng.random(n) >= 0.03
    ttft = rng.lognormal(np.log(400), 0.5, n)
    tpot = rng.uniform(5, 40, n)
    regions = rng.choice(list(REGIONS), n)
    names = rng.choice(skus, n)
    return [
        Attempt(
            datetime.fromtimestamp(ends[i] - e2e[i] / 1000, UTC),
            str(regions[i]),
            str(names[i]),
            "ok" if ok[i] else "error",
            float(ttft[i]) if ok[i] else None,
            float(tpot[i]) if ok[i] else None,
            float(e2e[i]),
        )
        for i in range(n)
    ]


def timed(sync) -> tuple[float, float, int]:
    cpu, wall = time.process_time(), time.perf_counter()
    pushed = sync()
    return time.process_time() - cpu, time.perf_counter() - wall, pushed


def line(label: str, cpu: list[float], wall: list[float]) -> str:
    c, w = np.array(cpu) * 1e3, np.array(wall) * 1e3
    return (
        f"  {label:<34} CPU p50 {np.median(c):8.2f} ms  max {c.max():8.2f} ms   "
        f"wall p50 {np.median(w):8.2f} ms  max {w.max():8.2f} ms   (n={len(c)})"
    )


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="attempts/s over every process")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--period", type=float, default=5.0, help="sync period, seconds")
    parser.add_argument("--minutes", type=float, default=16.0, help="history before the measured rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    skus = list(load_catalog().names)
    rng = np.random.default_rng(11)
    per_batch = int(args.rate * args.period / args.processes)

    with running_redis() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["REDIS_URL"] = server.feast_connection_string
        repo = copy_repo(REPO, Path(tmp) / "repo")
        feast_cli(repo, "-f", "feature_store.redis.yaml", "apply")
        admin = redis.Redis.from_url(server.url)
        clock = Clock(time.time() - args.minutes * 60)
        config = LiveShareConfig(period_s=args.period, timeout_s=2.0, lease_s=3600.0)
        sharers = [
            LiveSharer.connect(
                server.url, open_feature_store_on_redis(repo, server.url), config=config, clock=clock
            )
            for _ in range(args.processes)
        ]
        lease_key = sharers[0].stream.lease_key
        admin.set(lease_key, "bench-prefill", px=3_600_000)

        observe_ns: list[int] = []
        follower_cpu: list[float] = []
        follower_wall: list[float] = []

        def period(measure: bool) -> None:
            start = clock.now
            clock.now += args.period
            for sharer in sharers:
                batch = period_attempts(rng, per_batch, start, args.period, skus)
                started = time.perf_counter_ns()
                for attempt in batch:
                    sharer.observe(attempt)
                observe_ns.append((time.perf_counter_ns() - started) // max(1, len(batch)))
                if sharer.leader:
                    continue
                cpu, wall, _ = timed(sharer.sync_now)
                if measure:
                    follower_cpu.append(cpu)
                    follower_wall.append(wall)

        prefill_periods = int(args.minutes * 60 / args.period)
        started = time.perf_counter()
        for _ in range(prefill_periods):
            period(measure=True)
        prefill_s = time.perf_counter() - started
        stream_bytes = admin.memory_usage(sharers[0].stream.stream_key) or 0
        entries = admin.xlen(sharers[0].stream.stream_key)

        admin.delete(lease_key)
        leader = sharers[0]
        take_cpu, take_wall, take_pushed = timed(leader.sync_now)
        assert leader.leader, "the freed lease was not taken"
        merged_at_takeover = leader.stats().merged_buffered

        leader_cpu: list[float] = []
        leader_wall: list[float] = []
        redis_before = redis_cpu_s(admin)
        for _ in range(args.rounds):
            period(measure=True)
            cpu, wall, _ = timed(leader.sync_now)
            leader_cpu.append(cpu)
            leader_wall.append(wall)
        redis_per_period = (redis_cpu_s(admin) - redis_before) / args.rounds
        compute_cpu: list[float] = []
        compute_wall: list[float] = []
        for _ in range(3):  # the leader's computation alone, on the same buffer
            cpu, wall, _ = timed(lambda: leader._merged.rows_at(clock.now).height)
            compute_cpu.append(cpu)
            compute_wall.append(wall)
        stats = leader.stats()
        for sharer in sharers:
            sharer._client.close()
        del os.environ["REDIS_URL"]

    window_rows = stats.merged_buffered
    report = [
        f"# flock /tmp/team/bench.lock .venv/bin/python bench/live_share.py --rate {args.rate:g} "
        f"--processes {args.processes} --period {args.period:g} --minutes {args.minutes:g} --rounds {args.rounds}",
        f"machine: {describe_machine('redis-server on loopback, polars, feast')}",
        f"cluster: {args.rate:g} attempts/s over {args.processes} processes, one batch per process per "
        f"{args.period:g} s ({per_batch} attempts, {len(skus)} SKUs x {len(REGIONS)} regions)",
        f"stream after {args.minutes:g} min: {entries} entries, {stream_bytes / 1e6:.1f} MB in Redis "
        f"({stream_bytes / max(1, entries * per_batch):.0f} bytes an attempt); prefill took {prefill_s:.0f} s",
        f"observe: {np.median(observe_ns) / 1e3:.2f} us an attempt (p50 over batches)",
        "per sync:",
        line("follower (encode + 1 script call)", follower_cpu, follower_wall),
        line(f"leader steady ({window_rows:,} attempts)", leader_cpu, leader_wall),
        line("  of which sku_live_stats (rows_at)", compute_cpu, compute_wall),
        line(f"leader takeover ({merged_at_takeover:,} read)", [take_cpu], [take_wall]),
        f"  leader pushes {take_pushed} rows a sync; Redis server CPU {redis_per_period * 1e3:.1f} ms a period",
        f"per process, a share of the gateway's CPU at one sync per {args.period:g} s: follower "
        f"{np.median(follower_cpu) / args.period * 100:.2f}%, leader {np.median(leader_cpu) / args.period * 100:.2f}%",
        f"leader stats: {stats}",
    ]
    print_report("\n".join(report), args.out)


if __name__ == "__main__":
    main()
