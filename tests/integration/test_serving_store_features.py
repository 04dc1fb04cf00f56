"""Store features on the serving side against a real Feast repo (SQLite online store) in a tmp dir.

The offline side is built exactly as training builds it: records → ``write_feature_tables`` →
``feast apply`` → ``point_in_time_features``. Serving (``StoreFeatureReader``,
``LivePusher``) must hand the router the same numbers.
"""

import asyncio
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from features.live_stats import LIVE_STAT_NAMES
from features.record_store import write_records
from features.records import AttemptRecord, FeedbackRecord, OutcomeRecord
from features.schema import STORE_FEATURE_NAMES, names_in_group
from offline.feast_adapter import copy_repo, feast_cli, materialize, open_repo, point_in_time_features
from serving.live_push import LivePusher
from serving.store_features import StoreCachePolicy, StoreFeatureReader, open_feature_store
from training.feature_tables import write_feature_tables

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=25, seconds=30)  # the online store is materialized up to here
PUSH_AT = T0 + timedelta(minutes=12, seconds=40)  # the live pusher's "now"
HAIKU, SONNET, OPUS = "claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5"
TENANT = slice(0, 2)
LIVE = slice(2, 8)
TENANT_SKU = slice(8, 11)


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def outcome(request_id, tenant, at, sku, cost, quality):
    return OutcomeRecord(
        request_id=request_id, ts=at, region="eu", tenant_id=tenant, sku=sku, replica="w0", status="ok",
        error_type=None, http_status=200, ttft_ms=250.0 + 100 * cost, e2e_ms=2000.0, input_tokens=1000,
        cached_tokens=0, output_tokens=200, cost_usd=cost, list_price_usd=cost * 3, stop_reason="end_turn",
        attempts=1, quality=quality, quality_source=None if quality is None else "judge",
    )  # fmt: skip


def attempt(i, start, region, sku, status, ttft, e2e_ms):
    ok = status == "ok"
    return AttemptRecord(
        request_id=f"a{i}", ts=start, region=region, sku=sku, replica="w0", attempt=0, status=status,
        error_type=None if ok else f"{status}_error", http_status=200 if ok else 500,
        ttft_ms=ttft if ok else None, tpot_ms=8.0 + i % 7 if ok else None, e2e_ms=e2e_ms,
        input_tokens=1000, cached_tokens=0, output_tokens=200,
    )  # fmt: skip


def live_attempts() -> list[AttemptRecord]:
    """20 minutes of attempts on two SKUs in two regions; none in flight across ``PUSH_AT``.

    (An attempt running at the push is the one thing the pusher cannot know yet; see
    serving/live_push.py.) Two hand-placed attempts test the edges: one in flight over the
    12-minute boundary (queue depth), one started after it with an absurd TTFT (a row at
    12:00 must not see it).
    """
    rng = np.random.default_rng(7)
    records = []
    for i in range(400):
        start = T0 + timedelta(seconds=float(rng.uniform(0, 20 * 60)))
        e2e = float(rng.choice([900.0, 4_000.0, 20_000.0, 75_000.0]))
        if start <= PUSH_AT < start + timedelta(milliseconds=e2e):
            continue
        status = str(rng.choice(["ok", "error", "timeout"], p=[0.85, 0.1, 0.05]))
        records.append(
            attempt(
                i,
                start,
                str(rng.choice(["eu", "us"])),
                str(rng.choice([HAIKU, SONNET])),
                status,
                float(rng.lognormal(np.log(400), 0.5)),
                e2e,
            )
        )
    records.append(attempt(900, T0 + timedelta(minutes=11, seconds=50), "eu", HAIKU, "ok", 310.0, 30_000))
    records.append(attempt(901, T0 + timedelta(minutes=12, seconds=10), "eu", HAIKU, "ok", 99_999.0, 5_000))
    return records


def end_of(record: AttemptRecord) -> datetime:
    return record.ts + timedelta(milliseconds=record.e2e_ms)


@pytest.fixture(scope="module")
def applied(tmp_path_factory) -> Path:
    """An applied repo: feature tables from a small log, materialized up to ``NOW``."""
    root = tmp_path_factory.mktemp("serving-feast")
    logs = root / "logs"
    hours = timedelta(hours=1)
    outcomes = [
        outcome("o1", "acme", T0 - 3 * hours + timedelta(minutes=10), HAIKU, 1.0, 1.0),
        outcome("o2", "acme", T0 - 2 * hours + timedelta(minutes=20), HAIKU, 2.0, 0.0),
        outcome("o3", "acme", T0 - 90 * timedelta(minutes=1), SONNET, 0.5, None),
        outcome("o4", "beta", T0 - 30 * timedelta(minutes=1), HAIKU, 4.0, 1.0),
    ]
    write_records(logs, outcomes, OutcomeRecord)
    write_records(logs, [FeedbackRecord("o3", T0 - hours, "eu", "acme", 1.0, "user")], FeedbackRecord)
    write_records(logs, live_attempts(), AttemptRecord)
    tenants = root / "tenants.parquet"
    pl.DataFrame(
        {
            "tenant_id": ["acme", "beta"],
            "tier": ["enterprise", "pro"],
            "home_region": ["eu", "us"],
            "residency_required": [1, 0],
        }
    ).write_parquet(tenants)
    repo = copy_repo(REPO, root / "repo")
    write_feature_tables(logs, tenants, repo / "data")
    assert "router_v1" in feast_cli(repo, "apply")
    materialize(open_repo(repo), T0 - timedelta(days=2), NOW)
    return repo


@pytest.fixture
def repo(applied, tmp_path) -> Path:
    """A private copy of the applied repo (registry, online store, tables) for tests that change it."""
    return Path(shutil.copytree(applied, tmp_path / "repo"))


def offline(repo: Path, tenant: str, region: str, skus: list[str], at: datetime) -> np.ndarray:
    """The store block training's point-in-time join gives the same request."""
    entities = pl.DataFrame(
        [
            {"request_id": f"r{i}", "tenant_id": tenant, "sku": sku, "region": region, "ts": at}
            for i, sku in enumerate(skus)
        ]
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    joined = point_in_time_features(open_repo(repo), entities)
    return joined.select(STORE_FEATURE_NAMES).to_numpy()


@pytest.mark.parametrize(
    ("tenant", "region", "skus"),
    [("acme", "eu", [HAIKU, SONNET, OPUS]), ("beta", "us", [SONNET, HAIKU]), ("nobody", "eu", [HAIKU])],
)
def test_reader_serves_what_the_point_in_time_join_gives_training(applied, tenant, region, skus):
    reader = StoreFeatureReader(open_feature_store(applied), clock=FakeClock(NOW))
    served = reader.read_now(tenant, region, skus)
    expected = offline(applied, tenant, region, skus, NOW)
    assert served.shape == (len(skus), len(STORE_FEATURE_NAMES))
    np.testing.assert_array_equal(served, expected)
    if tenant == "acme":  # the data is there to compare, not NaN == NaN throughout
        assert served[0, TENANT].tolist() == [pytest.approx(3.5), pytest.approx(2 / 3)]
        assert not np.isnan(served[:2, LIVE]).all() and not np.isnan(served[:2, TENANT_SKU]).any()
        assert np.isnan(served[2, LIVE]).all() and np.isnan(served[2, TENANT_SKU]).all()  # opus: no data
    if tenant == "nobody":
        assert np.isnan(served[0, TENANT]).all()


def test_rows_past_their_view_ttl_are_nan_as_in_the_offline_join(applied):
    later = NOW + timedelta(hours=2)  # sku_live_stats rows live 30 minutes, tenant rows 8 days
    reader = StoreFeatureReader(open_feature_store(applied), clock=FakeClock(later))
    served = reader.read_now("acme", "eu", [HAIKU, SONNET])
    np.testing.assert_array_equal(served, offline(applied, "acme", "eu", [HAIKU, SONNET], later))
    assert np.isnan(served[:, LIVE]).all() and not np.isnan(served[:, TENANT]).any()


def test_one_feast_call_per_miss_batch_then_cache_hits(applied):
    reader = StoreFeatureReader(open_feature_store(applied), clock=FakeClock(NOW))
    first = reader.read_now("acme", "eu", [HAIKU, SONNET, OPUS])
    stats = reader.stats()
    assert (stats.fetches, stats.misses, stats.hits) == (1, 7, 0)  # 1 tenant + 3 live + 3 tenant×SKU keys
    second = reader.read_now("acme", "eu", [HAIKU, SONNET, OPUS])
    stats = reader.stats()
    assert (stats.fetches, stats.misses, stats.hits) == (1, 7, 7)
    np.testing.assert_array_equal(first, second)
    assert reader.stats().fetch_p50_s > 0


def test_a_changed_online_value_is_seen_after_the_cache_ttl_not_before(repo):
    clock = FakeClock(NOW)
    reader = StoreFeatureReader(open_feature_store(repo), clock=clock)
    before = reader.read_now("acme", "eu", [HAIKU])
    writer = open_feature_store(repo)
    writer.write_to_online_store(
        "tenant_profile",
        pd.DataFrame(
            {
                "tenant_id": ["acme"],
                "ts": [pd.Timestamp(NOW)],
                "tier": ["enterprise"],
                "home_region": ["eu"],
                "residency_required": [1],
                "tenant_spend_7d_usd": [99.0],
                "tenant_quality_7d": [0.25],
            }
        ),
    )
    live = {name: [float(i + 1)] for i, name in enumerate(names_in_group("sku_live"))}
    stamp = pd.Timestamp(T0 + timedelta(minutes=25))
    writer.push(
        "sku_live_stats_push", pd.DataFrame({"sku": [HAIKU], "region": ["eu"], "ts": [stamp], **live})
    )

    clock.advance(1.5)  # within every TTL: the cache answers, Feast is not asked
    np.testing.assert_array_equal(reader.read_now("acme", "eu", [HAIKU]), before)
    assert reader.stats().fetches == 1
    clock.advance(1.0)  # past the 2 s live-stats TTL only
    seen = reader.read_now("acme", "eu", [HAIKU])
    assert seen[0, LIVE].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    np.testing.assert_array_equal(seen[0, TENANT], before[0, TENANT])
    assert reader.stats().fetches == 2
    clock.advance(60.0)  # past the 60 s tenant TTL
    assert reader.read_now("acme", "eu", [HAIKU])[0, TENANT].tolist() == [99.0, 0.25]


def drop_online_tables(repo: Path) -> None:
    """Break the online store under a running reader, as a torn-down or lost database would."""
    with sqlite3.connect(repo / "data" / "online_store.db") as db:
        for view in ("tenant_profile", "sku_live_stats", "tenant_sku_history"):
            db.execute(f"DROP TABLE switchyard_{view}")


def test_feast_failure_serves_last_known_values_then_nan_and_counts_it(repo, caplog):
    clock = FakeClock(NOW)
    policy = StoreCachePolicy(error_backoff_s=5.0)
    reader = StoreFeatureReader(open_feature_store(repo), policy, clock=clock)
    known = reader.read_now("acme", "eu", [HAIKU, SONNET])
    drop_online_tables(repo)

    clock.advance(61.0)  # every entry past its cache TTL
    served = reader.read_now("acme", "eu", [HAIKU, SONNET])
    np.testing.assert_array_equal(served, known)
    stats = reader.stats()
    assert (stats.fetches, stats.fetch_errors, stats.stale_served, stats.defaults_served) == (2, 1, 5, 0)
    assert "Feast online read failed" in caplog.text

    unknown = reader.read_now("beta", "us", [HAIKU])  # within the backoff: Feast is not asked
    assert np.isnan(unknown).all()
    stats = reader.stats()
    assert (stats.fetches, stats.defaults_served) == (2, 3)
    clock.advance(5.0)  # backoff over: asked again, fails again
    assert np.isnan(reader.read_now("beta", "us", [HAIKU])).all()
    assert (reader.stats().fetches, reader.stats().fetch_errors) == (3, 2)


def test_a_hung_online_store_costs_a_request_the_timeout_not_the_hang(repo):
    clock = FakeClock(NOW)
    policy = StoreCachePolicy(fetch_timeout_s=0.05, error_backoff_s=30.0)
    reader = StoreFeatureReader(open_feature_store(repo), policy, clock=clock)
    skus = [HAIKU, SONNET]

    known = reader.read_now("acme", "eu", skus)  # start-up: Feast's first call loads its online store

    async def scenario():
        lock = sqlite3.connect(repo / "data" / "online_store.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # Feast's reads now wait on SQLite's busy handler (5 s)
        try:
            clock.advance(61.0)
            served = await reader.read("acme", "eu", skus)
            np.testing.assert_array_equal(served, known)
            stats = reader.stats()
            assert (stats.fetch_timeouts, stats.fetch_errors, stats.in_flight_fetches) == (1, 0, 1)
            assert stats.stale_served == 5
            again = await reader.read("acme", "eu", skus)  # backing off: no wait, no second call
            np.testing.assert_array_equal(again, known)
            assert reader.stats().in_flight_fetches == 1
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for _ in range(500):  # the stuck call lands once the lock is gone, and fills the cache
            if reader.stats().in_flight_fetches == 0:
                break
            await asyncio.sleep(0.01)
        stats = reader.stats()
        assert (stats.in_flight_fetches, stats.fetches, stats.fetch_errors) == (0, 2, 0)
        hits = stats.hits
        np.testing.assert_array_equal(await reader.read("acme", "eu", skus), known)
        assert reader.stats().hits == hits + 5  # fresh again, from the late fetch

    asyncio.run(scenario())


def test_concurrent_misses_share_one_fetch(applied):
    policy = StoreCachePolicy(fetch_timeout_s=30.0)  # a first call loads Feast's online store: ~0.3 s
    reader = StoreFeatureReader(open_feature_store(applied), policy, clock=FakeClock(NOW))

    async def scenario():
        return await asyncio.gather(*(reader.read("acme", "eu", [HAIKU, SONNET]) for _ in range(20)))

    blocks = asyncio.run(scenario())
    assert reader.stats().fetches == 1
    for block in blocks:
        np.testing.assert_array_equal(block, blocks[0])
    np.testing.assert_array_equal(blocks[0], offline(applied, "acme", "eu", [HAIKU, SONNET], NOW))


def test_warm_prefills_every_key(applied):
    reader = StoreFeatureReader(open_feature_store(applied), clock=FakeClock(NOW))
    assert reader.warm(["acme", "beta"], ["eu", "us"], [HAIKU, SONNET, OPUS]) == 2 + 6 + 6
    fetches = reader.stats().fetches
    served = reader.read_now("beta", "us", [OPUS, HAIKU])
    assert reader.stats().fetches == fetches
    np.testing.assert_array_equal(served, offline(applied, "beta", "us", [OPUS, HAIKU], NOW))


def test_pushed_live_stats_equal_the_offline_history_for_the_same_attempts(repo):
    clock = FakeClock(PUSH_AT)
    store = open_feature_store(repo)
    linked = StoreFeatureReader(store, clock=clock)
    pusher = LivePusher(store, reader=linked, clock=clock)
    finished = sorted((a for a in live_attempts() if end_of(a) <= PUSH_AT), key=end_of)
    for record in finished:
        pusher.observe(record)
    skus = [HAIKU, SONNET, OPUS]
    materialized = StoreFeatureReader(open_feature_store(repo), clock=clock).read_now("acme", "eu", skus)

    assert pusher.push_now() == 4  # (eu, us) × (haiku, sonnet)
    assert pusher.stats().push_errors == 0

    expected = {
        region: offline(repo, "acme", region, skus, PUSH_AT)[:, LIVE] for region in ("eu", "us")
    }  # from the log of the same attempts, through Feast's point-in-time join
    fresh = StoreFeatureReader(open_feature_store(repo), clock=clock)  # reads what the push wrote
    for region in ("eu", "us"):
        np.testing.assert_array_equal(fresh.read_now("acme", region, skus)[:, LIVE], expected[region])
    assert not np.array_equal(materialized[:, LIVE], expected["eu"], equal_nan=True)
    assert expected["eu"][0, LIVE_STAT_NAMES.index("sku_queue_depth")] >= 1  # attempt 900 in flight at 12:00
    assert expected["eu"][0, LIVE_STAT_NAMES.index("sku_ttft_p95_1m_ms")] < 99_999  # attempt 901 is later

    hits, fetches = linked.stats().hits, linked.stats().fetches
    np.testing.assert_array_equal(linked.read_now("acme", "eu", skus)[:, LIVE], expected["eu"])
    assert linked.stats().local_updates == 4
    assert linked.stats().hits == hits + 2  # the pushed (eu, haiku|sonnet) rows, without asking Feast
    assert linked.stats().fetches == fetches + 1  # tenant, tenant × SKU and (eu, opus)


def test_a_failed_push_is_counted_and_the_local_reader_still_gets_the_values(repo):
    clock = FakeClock(PUSH_AT)
    store = open_feature_store(repo)
    reader = StoreFeatureReader(store, clock=clock)
    pusher = LivePusher(store, reader=reader, clock=clock)
    for record in sorted((a for a in live_attempts() if end_of(a) <= PUSH_AT), key=end_of):
        pusher.observe(record)
    drop_online_tables(repo)
    assert pusher.push_now() == 0
    stats = pusher.stats()
    assert (stats.push_errors, stats.pushes, stats.compute_errors) == (1, 0, 0)
    live = reader.read_now("acme", "eu", [HAIKU])[0, LIVE]
    expected = pusher.attempts.rows_at(clock()).filter((pl.col("region") == "eu") & (pl.col("sku") == HAIKU))
    np.testing.assert_array_equal(live, expected.select(LIVE_STAT_NAMES).fill_null(np.nan).to_numpy()[0])


def test_the_push_loop_runs_on_its_period_until_stopped(repo):
    clock = FakeClock(PUSH_AT)
    store = open_feature_store(repo)
    pusher = LivePusher(store, period_s=0.02, clock=clock)
    for record in sorted((a for a in live_attempts() if end_of(a) <= PUSH_AT), key=end_of):
        pusher.observe(record)

    async def scenario():
        pusher.start()
        for _ in range(500):
            if pusher.stats().pushes >= 2:
                break
            await asyncio.sleep(0.01)
        await pusher.stop()

    asyncio.run(scenario())
    stats = pusher.stats()
    assert stats.pushes >= 2 and stats.rows_pushed == 4 * stats.pushes and stats.push_errors == 0
    reader = StoreFeatureReader(store, clock=clock)
    live = reader.read_now("acme", "us", [SONNET])[0, LIVE]
    np.testing.assert_array_equal(live, offline(repo, "acme", "us", [SONNET], PUSH_AT)[0, LIVE])
