"""Live stats shared by several gateway processes through a real redis-server, served from Feast on it.

Each "process" is a :class:`LiveSharer` with its own Redis client, its own ``feast.FeatureStore``
(``feature_store.redis.yaml`` on that server) and its own ``StoreFeatureReader``: to Redis and
Feast they are separate clients, as separate processes are. The repo is the project's
``feature_repo`` applied with ``feast -f feature_store.redis.yaml apply``.
"""

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from feast.data_source import PushMode
from prometheus_client import CollectorRegistry

from features.live_stats import LIVE_STAT_NAMES, sku_live_stats
from features.schema import STORE_FEATURE_NAMES, names_in_group
from offline.feast_adapter import copy_repo, feast_cli
from serving.feast_redis import feast_connection_string, open_feature_store_on_redis
from serving.live_push import PUSH_SOURCE, attempt_row, attempts_frame, window_end
from serving.live_share import LiveShareConfig, LiveShareMetrics, LiveSharer
from serving.store_features import StoreFeatureReader
from switchyard_cli.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
HAIKU, SONNET = "claude-haiku-4-5", "claude-sonnet-4-5"
LIVE = [STORE_FEATURE_NAMES.index(name) for name in names_in_group("sku_live")]


@dataclass(frozen=True)
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


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_repo(REPO, tmp_path_factory.mktemp("live-share") / "repo")
    with running_redis() as server:
        os.environ["REDIS_URL"] = server.feast_connection_string
        try:
            assert "sku_live_stats" in feast_cli(repo, "-f", "feature_store.redis.yaml", "apply")
        finally:
            del os.environ["REDIS_URL"]
    return repo


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def now() -> float:
    """20 s into the current minute: rows are stamped with its start, attempts end before it."""
    return window_end(time.time()).timestamp() + 20.0


def attempts(
    seed: int, n: int, region: str, sku: str, ttft: float, error_rate: float, now: float
) -> list[Attempt]:
    """``n`` attempts over the 10 minutes before ``floor(now)``, a fifth of them in its last minute."""
    rng = np.random.default_rng(seed)
    end = window_end(now)
    out = []
    for i in range(n):
        back = rng.uniform(2, 60) if i % 5 == 0 else rng.uniform(60, 600)
        ok = rng.random() >= error_rate
        out.append(
            Attempt(
                ts=end - timedelta(seconds=float(back)),
                region=region,
                sku=sku,
                status="ok" if ok else "error",
                ttft_ms=float(ttft * rng.uniform(0.8, 1.2)) if ok else None,
                tpot_ms=float(rng.uniform(5, 40)) if ok else None,
                e2e_ms=float(rng.uniform(500, 30_000)),
            )
        )
    return out


def expected(observed: list[Attempt], now: float) -> dict[tuple[str, str], list[float]]:
    """The offline job's ``sku_live_stats`` row at ``floor(now)`` over these attempts (null → NaN)."""
    frame = attempts_frame([attempt_row(a) for a in observed])
    rows = sku_live_stats(frame.lazy()).filter(pl.col("ts") == window_end(now)).collect()
    return {
        (row["region"], row["sku"]): [np.nan if row[n] is None else row[n] for n in LIVE_STAT_NAMES]
        for row in rows.iter_rows(named=True)
    }


def online(store, region: str, sku: str) -> list[float]:
    """The row in Feast's online store, read straight from Feast (no reader cache)."""
    response = store.get_online_features(
        features=[f"sku_live_stats:{name}" for name in LIVE_STAT_NAMES],
        entity_rows=[{"sku": sku, "region": region}],
    ).to_dict()
    return [np.nan if response[name][0] is None else response[name][0] for name in LIVE_STAT_NAMES]


def same(left: list[float], right: list[float]) -> bool:
    return bool(np.array_equal(np.array(left, dtype=float), np.array(right, dtype=float), equal_nan=True))


@dataclass
class Gateway:
    """One gateway process's parts: Feast on the Redis, its reader, its sharer and metrics."""

    sharer: LiveSharer
    store: object
    reader: StoreFeatureReader
    metrics: LiveShareMetrics


def gateway(repo: Path, server: RedisServer, clock: Clock, queue_depths=None, **config) -> Gateway:
    store = open_feature_store_on_redis(repo, server.url)
    reader = StoreFeatureReader(store, clock=clock)
    metrics = LiveShareMetrics(CollectorRegistry())
    sharer = LiveSharer.connect(
        server.url,
        store,
        reader=reader,
        config=LiveShareConfig(**{"timeout_s": 0.5, **config}),
        clock=clock,
        metrics=metrics,
        queue_depths=queue_depths,
    )
    return Gateway(sharer, store, reader, metrics)


def test_feast_online_store_on_redis_takes_every_push_of_a_minute(repo, server, now):
    store = open_feature_store_on_redis(repo, server.url)
    ts = window_end(now)
    for value in (1.0, 2.0):  # the leader pushes the same minute's row again with more attempts
        row = {"region": "eu", "sku": HAIKU, "ts": ts, **dict.fromkeys(LIVE_STAT_NAMES, value)}
        store.push(PUSH_SOURCE, pd.DataFrame([row]), to=PushMode.ONLINE)
        assert online(store, "eu", HAIKU) == [value] * len(LIVE_STAT_NAMES)
    assert (
        feast_connection_string("redis://:s3cret@db.internal:6380/2")
        == "db.internal:6380,db=2,password=s3cret"
    )


def test_the_online_row_is_the_stats_over_every_process_attempts(repo, server, now):
    clock = Clock(now)
    ga = gateway(repo, server, clock, queue_depths=lambda: {("us", SONNET): 7.0})
    gb = gateway(repo, server, clock)
    a, b = ga.sharer, gb.sharer
    seen_a = attempts(1, 120, "eu", HAIKU, 150.0, 0.05, now) + attempts(2, 30, "us", SONNET, 400.0, 0.0, now)
    seen_b = attempts(3, 120, "eu", HAIKU, 900.0, 0.30, now)
    for attempt in seen_a:
        a.observe(attempt)
    for attempt in seen_b:
        b.observe(attempt)

    assert a.sync_now() == 2 and a.leader  # first to sync: leads, and so far knows its own attempts
    assert b.sync_now() == 0 and not b.leader  # a follower pushes nothing
    assert a.sync_now() == 2  # now with b's batch

    union, only_a, only_b = expected(seen_a + seen_b, now), expected(seen_a, now), expected(seen_b, now)
    row = online(gb.store, "eu", HAIKU)
    assert same(row, union[("eu", HAIKU)])
    errors, p95 = LIVE_STAT_NAMES.index("sku_error_rate_15m"), LIVE_STAT_NAMES.index("sku_ttft_p95_15m_ms")
    assert (
        only_a[("eu", HAIKU)][errors] < row[errors] < only_b[("eu", HAIKU)][errors]
    )  # both processes' traffic
    assert only_a[("eu", HAIKU)][p95] < row[p95]
    sonnet = online(gb.store, "us", SONNET)
    depth = LIVE_STAT_NAMES.index("sku_queue_depth")
    assert sonnet[depth] == 7.0  # the leader's scrape of the workers
    assert same(
        sonnet[:depth] + sonnet[depth + 1 :],
        union[("us", SONNET)][:depth] + union[("us", SONNET)][depth + 1 :],
    )
    # the follower routes on the leader's rows, read from Feast through its reader
    assert same(gb.reader.read_now("acme", "eu", [HAIKU])[0, LIVE].tolist(), union[("eu", HAIKU)])
    stats_a, stats_b = a.stats(), b.stats()
    assert (stats_a.attempts_merged, stats_a.attempts_shared, stats_b.attempts_shared) == (270, 150, 120)
    assert (stats_b.pushes, stats_b.attempts_merged, stats_a.duplicate_batches) == (0, 0, 0)
    assert (ga.metrics.leader._value.get(), gb.metrics.leader._value.get()) == (1, 0)


async def wait_for(condition, timeout_s: float) -> float:
    """Seconds until ``condition()`` holds (polling every 10 ms); fails after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_a_dead_leader_is_replaced_within_its_lease_and_a_stopped_one_at_once(repo, server, now):
    period, lease = 0.1, 1.0
    clock = Clock(now)
    ga, gb = (gateway(repo, server, clock, period_s=period, lease_s=lease) for _ in range(2))
    seen_a = attempts(4, 100, "eu", HAIKU, 150.0, 0.1, now)
    seen_b = attempts(5, 100, "eu", HAIKU, 700.0, 0.2, now)
    union = expected(seen_a + seen_b, now)[("eu", HAIKU)]

    async def scenario() -> tuple[float, float]:
        for attempt in seen_a:
            ga.sharer.observe(attempt)
        ga.sharer.sync_now()  # a leads from the start
        ga.sharer.start()
        gb.sharer.start()
        for attempt in seen_b:
            gb.sharer.observe(attempt)
        await wait_for(lambda: ga.sharer.stats().attempts_merged == 200, 5.0)
        assert ga.sharer.leader and not gb.sharer.leader
        await ga.sharer.stop(release=False)  # a crash: the lease is not given back
        takeover = await wait_for(lambda: gb.sharer.leader, 5.0)
        # the new leader read the whole retained stream: a's attempts are in its rows too
        await wait_for(lambda: gb.sharer.stats().pushes > 0, 2.0)
        assert gb.sharer.stats().attempts_merged == 200
        assert same(online(gb.store, "eu", HAIKU), union)
        restarted = gateway(repo, server, clock, period_s=period, lease_s=lease)
        restarted.sharer.start()
        await asyncio.sleep(3 * period)
        assert not restarted.sharer.leader
        await gb.sharer.stop()  # a clean stop gives the lease back
        handover = await wait_for(lambda: restarted.sharer.leader, 5.0)
        await wait_for(lambda: restarted.sharer.stats().pushes > 0, 2.0)
        assert same(online(gb.store, "eu", HAIKU), union)
        await restarted.sharer.aclose()
        return takeover, handover

    takeover, handover = asyncio.run(scenario())
    assert lease - 2 * period < takeover < lease + 5 * period + 0.5  # waited for the lease, then one sync
    assert handover < 3 * period


def test_without_redis_each_process_routes_on_its_own_stats_then_all_are_shared_again(repo, now, caplog):
    clock = Clock(now)
    server = RedisServer()
    server.start()
    try:
        ga, gb = (gateway(repo, server, clock, timeout_s=0.2) for _ in range(2))
        a, b = ga.sharer, gb.sharer
        before_a, before_b = (
            attempts(6, 80, "eu", HAIKU, 150.0, 0.1, now),
            attempts(7, 80, "eu", HAIKU, 700.0, 0.2, now),
        )
        for attempt in before_a:
            a.observe(attempt)
        for attempt in before_b:
            b.observe(attempt)
        a.sync_now(), b.sync_now(), a.sync_now()
        assert same(online(gb.store, "eu", HAIKU), expected(before_a + before_b, now)[("eu", HAIKU)])

        server.stop()
        during_a, during_b = (
            attempts(8, 40, "eu", HAIKU, 150.0, 0.1, now),
            attempts(9, 40, "eu", HAIKU, 700.0, 0.2, now),
        )
        for attempt in during_a:
            a.observe(attempt)
        for attempt in during_b:
            b.observe(attempt)
        with caplog.at_level(logging.WARNING, logger="serving.live_share"):
            for _ in range(3):
                assert a.sync_now() == 0 and b.sync_now() == 0  # nothing pushed, nothing raised
        assert a.degraded and b.degraded and not a.leader
        assert sum("Redis unavailable" in r.getMessage() for r in caplog.records) == 2  # one per process
        assert (ga.metrics.degraded._value.get(), gb.metrics.degraded._value.get()) == (1, 1)
        assert ga.metrics.syncs.labels("redis_error")._value.get() == 3

        own_b = expected(before_b + during_b, now)[("eu", HAIKU)]
        assert same(gb.reader.read_now("acme", "eu", [HAIKU])[0, LIVE].tolist(), own_b)
        clock.now += 3  # past the reader's 2 s cache TTL: it asks Feast, which fails fast
        started = time.perf_counter()
        served = asyncio.run(gb.reader.read("acme", "eu", [HAIKU]))
        assert time.perf_counter() - started < 0.5
        assert same(served[0, LIVE].tolist(), own_b)  # still this process's own stats
        own_a = expected(before_a + during_a, now)[("eu", HAIKU)]
        assert same(ga.reader.read_now("acme", "eu", [HAIKU])[0, LIVE].tolist(), own_a)

        server.start()  # empty: the stream is gone, each process sends its last 16 minutes again
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="serving.live_share"):
            for _ in range(3):
                a.sync_now(), b.sync_now()
        assert not a.degraded and not b.degraded and a.leader
        assert sum("answers again" in r.getMessage() for r in caplog.records) == 2
        assert a.stats().streams_lost == 1 and b.stats().streams_lost == 1
        union = expected(before_a + before_b + during_a + during_b, now)[("eu", HAIKU)]
        assert same(online(gb.store, "eu", HAIKU), union)
        assert a.stats().merged_buffered == 240 and a.stats().duplicate_batches == 0  # each attempt once
        assert gb.metrics.degraded._value.get() == 0
    finally:
        server.stop()


def test_a_hung_redis_degrades_within_the_timeout_and_a_batch_it_applied_late_counts_once(repo, server, now):
    clock = Clock(now)
    ga, gb = (gateway(repo, server, clock, timeout_s=0.2) for _ in range(2))
    seen_a, seen_b = (
        attempts(10, 60, "us", SONNET, 300.0, 0.1, now),
        attempts(11, 60, "us", SONNET, 600.0, 0.0, now),
    )
    for attempt in seen_a:
        ga.sharer.observe(attempt)
    ga.sharer.sync_now()
    gb.sharer.sync_now()  # b is connected: its next call reaches the server
    for attempt in seen_b:
        gb.sharer.observe(attempt)
    pid = server._process.pid
    os.kill(pid, signal.SIGSTOP)  # Redis hangs: the script call waits in its socket
    try:
        started = time.perf_counter()
        assert gb.sharer.sync_now() == 0
        assert time.perf_counter() - started < 1.0 and gb.sharer.degraded
        assert gb.sharer.stats().unsent_batches == 1
    finally:
        os.kill(pid, signal.SIGCONT)  # the server now runs the queued call: b's batch is in the stream
    gb.sharer.sync_now()  # b recovers and sends its batch again (it never saw the reply)
    assert not gb.sharer.degraded and gb.sharer.stats().unsent_batches == 0
    assert ga.sharer.sync_now() == 1
    assert ga.sharer.stats().duplicate_batches == 1 and ga.sharer.stats().merged_buffered == 120
    assert same(online(gb.store, "us", SONNET), expected(seen_a + seen_b, now)[("us", SONNET)])
