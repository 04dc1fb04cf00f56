"""Serving's store-feature pieces that need no Feast: the column layout, live stats over a bounded buffer, settings."""

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from features.live_stats import LIVE_STAT_NAMES, sku_live_stats
from features.schema import STORE_FEATURE_NAMES
from serving.live_push import ATTEMPT_SCHEMA, RecentAttempts, window_end, with_queue_depths
from serving.settings import FeatureStoreSettings
from serving.store_features import STORE_GROUPS, StoreCachePolicy

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Attempt:
    ts: datetime
    region: str
    sku: str
    status: str
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float

    @property
    def end(self) -> datetime:
        return self.ts + timedelta(milliseconds=self.e2e_ms)


def random_attempts(n: int, minutes: float, seed: int = 3) -> list[Attempt]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ok = rng.random() < 0.85
        out.append(
            Attempt(
                ts=T0 + timedelta(seconds=float(rng.uniform(0, minutes * 60))),
                region=str(rng.choice(["eu", "us"])),
                sku=str(rng.choice(["a", "b", "c"])),
                status="ok" if ok else str(rng.choice(["error", "timeout"])),
                ttft_ms=float(rng.lognormal(6, 0.6)) if ok else None,
                tpot_ms=float(rng.uniform(5, 40)) if ok else None,
                e2e_ms=float(rng.choice([500.0, 8_000.0, 45_000.0, 200_000.0])),
            )
        )
    return out


def offline_rows(attempts: list[Attempt], now: datetime) -> pl.DataFrame:
    """What the offline job's table holds at ``floor(now)`` for these attempts."""
    frame = pl.DataFrame(
        [(a.ts, a.region, a.sku, a.status, a.ttft_ms, a.tpot_ms, a.e2e_ms) for a in attempts],
        schema=ATTEMPT_SCHEMA,
        orient="row",
    )
    end = window_end(now.timestamp())
    return sku_live_stats(frame.lazy()).filter(pl.col("ts") == end).collect().sort("region", "sku")


def test_store_groups_lay_out_the_store_features_in_schema_order():
    names = [name for group in STORE_GROUPS for name in group.features]
    assert tuple(names) == STORE_FEATURE_NAMES
    assert [group.start for group in STORE_GROUPS] == [0, 2, 8]
    assert [group.view for group in STORE_GROUPS] == [
        "tenant_profile",
        "sku_live_stats",
        "tenant_sku_history",
    ]


def test_window_end_is_the_minute_boundary_at_or_before_now():
    assert window_end((T0 + timedelta(seconds=59.9)).timestamp()) == T0
    assert window_end((T0 + timedelta(minutes=1)).timestamp()) == T0 + timedelta(minutes=1)


def test_live_rows_equal_the_offline_job_over_the_same_attempts_as_the_buffer_rolls():
    attempts = random_attempts(3000, minutes=40)
    recent = RecentAttempts()
    seen: list[Attempt] = []
    pending = sorted(attempts, key=lambda a: a.end)
    compared = 0
    for step in range(1, 40 * 3 + 1):  # every 20 s for 40 minutes
        now = T0 + timedelta(seconds=20 * step)
        while pending and pending[0].end <= now:  # observed when they finish
            recent.observe(pending[0])
            seen.append(pending.pop(0))
        rows = recent.rows_at(now.timestamp())
        expected = offline_rows(seen, now)
        assert rows.equals(expected), f"at {now}"
        compared += rows.height
    assert compared > 500
    assert recent.buffered < len(seen) / 2  # old attempts were evicted along the way
    assert recent.observed == len(seen) and recent.dropped == 0


def test_rows_carry_the_window_end_and_never_a_later_row():
    recent = RecentAttempts()
    recent.observe(Attempt(T0 + timedelta(seconds=30), "eu", "a", "ok", 100.0, 10.0, 1_000.0))
    recent.observe(Attempt(T0 + timedelta(seconds=70), "eu", "a", "ok", 9_999.0, 10.0, 1_000.0))
    rows = recent.rows_at((T0 + timedelta(seconds=75)).timestamp())
    assert rows.columns == ["region", "sku", "ts", *LIVE_STAT_NAMES]
    assert rows["ts"].to_list() == [T0 + timedelta(minutes=1)]
    assert rows["sku_ttft_p95_15m_ms"].to_list() == [100.0]  # the 01:10 attempt belongs to the 02:00 row


def test_scraped_queue_depths_replace_the_own_in_flight_count_where_known():
    recent = RecentAttempts()
    for region, sku in (("eu", "a"), ("us", "a"), ("us", "b")):
        recent.observe(Attempt(T0 + timedelta(seconds=30), region, sku, "ok", 100.0, 10.0, 1_000.0))
    rows = recent.rows_at((T0 + timedelta(seconds=75)).timestamp())
    replaced = with_queue_depths(rows, {("us", "a"): 7.0, ("eu", "zzz"): 3.0})
    assert replaced.schema == rows.schema and replaced.height == rows.height
    depth = {(r["region"], r["sku"]): r["sku_queue_depth"] for r in replaced.iter_rows(named=True)}
    own = {(r["region"], r["sku"]): r["sku_queue_depth"] for r in rows.iter_rows(named=True)}
    assert depth[("us", "a")] == 7.0
    assert depth[("eu", "a")] == own[("eu", "a")] and depth[("us", "b")] == own[("us", "b")]
    other = replaced.drop("sku_queue_depth").equals(rows.drop("sku_queue_depth"))
    assert other  # nothing else changed
    assert with_queue_depths(rows, {}).equals(rows)


def test_the_buffer_is_bounded_and_counts_what_it_drops():
    recent = RecentAttempts(max_rows=100)
    for attempt in random_attempts(250, minutes=2):
        recent.observe(attempt)
    assert recent.buffered == 100 and recent.dropped == 150
    recent.rows_at((T0 + timedelta(minutes=3)).timestamp())
    for attempt in random_attempts(80, minutes=2, seed=4):
        recent.observe(attempt)
    recent.rows_at((T0 + timedelta(minutes=3)).timestamp())
    assert recent.buffered == 100 and recent.dropped == 230
    assert recent.observed == 330


def test_cache_policy_ttls_per_group_and_settings_from_the_environment(monkeypatch):
    policy = StoreCachePolicy()
    assert [policy.ttl(g.name) for g in STORE_GROUPS] == [60.0, 2.0, 60.0]
    monkeypatch.setenv("SWITCHYARD_FEAST_SKU_LIVE_TTL_S", "0.5")
    monkeypatch.setenv("SWITCHYARD_FEAST_YAML", "feature_store.redis.yaml")
    settings = FeatureStoreSettings()
    assert settings.cache_policy().ttl("sku_live") == 0.5 and settings.cache_policy().ttl("tenant") == 60.0
    assert str(settings.yaml) == "feature_store.redis.yaml"
    monkeypatch.setenv("SWITCHYARD_FEAST_FETCH_TIMEOUT_S", "0")
    with pytest.raises(ValueError):
        FeatureStoreSettings()


def test_importing_the_serving_modules_imports_no_feast():
    code = "import sys, serving.store_features, serving.live_push; print('feast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
