from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.live_stats import LIVE_STAT_NAMES, sku_live_stats

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def attempts(rows):
    return pl.DataFrame(
        [
            {
                "ts": T0 + timedelta(seconds=s),
                "region": region,
                "sku": sku,
                "status": status,
                "ttft_ms": ttft,
                "tpot_ms": 10.0,
                "e2e_ms": e2e,
            }
            for s, region, sku, status, ttft, e2e in rows
        ],
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    ).lazy()


def stats_at(frame: pl.DataFrame, sku: str, minute: int) -> dict:
    row = frame.filter((pl.col("sku") == sku) & (pl.col("ts") == T0 + timedelta(minutes=minute)))
    assert row.height == 1, row
    return row.row(0, named=True)


def test_windows_cover_the_trailing_minute_and_quarter_hour_only():
    rows = [
        (10, "us", "a", "ok", 100.0, 500.0),
        (70, "us", "a", "ok", 300.0, 500.0),
        (80, "us", "a", "error", None, 50.0),
    ]
    out = sku_live_stats(attempts(rows)).collect()
    assert out.columns == ["region", "sku", "ts", *LIVE_STAT_NAMES]
    first = stats_at(out, "a", 1)
    assert first["sku_ttft_p50_1m_ms"] == 100.0 and first["sku_error_rate_15m"] == 0.0
    second = stats_at(out, "a", 2)
    assert second["sku_ttft_p50_1m_ms"] == 300.0  # the first attempt left the 1-minute window
    assert second["sku_ttft_p95_15m_ms"] == pytest.approx(100 + 0.95 * 200)
    assert second["sku_error_rate_15m"] == pytest.approx(1 / 3)


def test_a_row_never_uses_attempts_after_its_timestamp():
    rows = [(30, "us", "a", "ok", 100.0, 100.0), (61, "us", "a", "ok", 9_999.0, 100.0)]
    out = sku_live_stats(attempts(rows)).collect()
    assert stats_at(out, "a", 1)["sku_ttft_p95_15m_ms"] == 100.0


def test_regions_and_skus_are_kept_apart_and_queue_depth_counts_in_flight():
    rows = [
        (5, "us", "a", "ok", 100.0, 120_000.0),
        (6, "us", "a", "ok", 100.0, 120_000.0),
        (7, "us", "a", "ok", 100.0, 1_000.0),
        (8, "eu", "a", "ok", 900.0, 1_000.0),
    ]
    out = sku_live_stats(attempts(rows)).collect()
    us = out.filter(pl.col("region") == "us")
    eu = out.filter(pl.col("region") == "eu")
    assert us.filter(pl.col("ts") == T0 + timedelta(minutes=1))["sku_queue_depth"].item() == 2.0
    assert eu.filter(pl.col("ts") == T0 + timedelta(minutes=1))["sku_ttft_p50_1m_ms"].item() == 900.0
    assert eu.filter(pl.col("ts") == T0 + timedelta(minutes=1))["sku_queue_depth"].item() == 0.0
