"""The Feast repo end to end: feature tables from logs → `feast apply` → point-in-time join → online."""

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from features.record_store import write_records
from features.records import AttemptRecord, FeedbackRecord, OutcomeRecord
from features.schema import STORE_FEATURE_NAMES
from offline.feast_adapter import copy_repo, feast_cli, materialize, open_repo, point_in_time_features
from training.feature_tables import write_feature_tables

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def outcome(
    request_id: str, minutes: float, cost: float, quality: float | None, sku: str = "claude-haiku-4-5"
):
    return OutcomeRecord(
        request_id=request_id,
        ts=T0 + timedelta(minutes=minutes),
        region="eu",
        tenant_id="acme",
        sku=sku,
        replica="w0",
        status="ok",
        error_type=None,
        http_status=200,
        ttft_ms=300.0,
        e2e_ms=2000.0,
        input_tokens=1000,
        cached_tokens=0,
        output_tokens=200,
        cost_usd=cost,
        list_price_usd=cost * 3,
        stop_reason="end_turn",
        attempts=1,
        quality=quality,
        quality_source="judge" if quality is not None else None,
    )


def attempt(request_id: str, minutes: float, ttft: float, status: str = "ok"):
    return AttemptRecord(
        request_id=request_id,
        ts=T0 + timedelta(minutes=minutes),
        region="eu",
        sku="claude-haiku-4-5",
        replica="w0",
        attempt=0,
        status=status,
        error_type=None if status == "ok" else "api_error",
        http_status=200 if status == "ok" else 500,
        ttft_ms=ttft if status == "ok" else None,
        tpot_ms=8.0 if status == "ok" else None,
        e2e_ms=2000.0,
        input_tokens=1000,
        cached_tokens=0,
        output_tokens=200,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast")
    logs = root / "logs"
    write_records(logs, [outcome("r1", 10, 1.0, 1.0), outcome("r2", 90, 2.0, 0.0)], OutcomeRecord)
    write_records(
        logs,
        [FeedbackRecord("r2", T0 + timedelta(minutes=95), "eu", "acme", 0.0, "user")],
        FeedbackRecord,
    )
    write_records(
        logs,
        [attempt("a1", 1.5, 100.0), attempt("a2", 2.5, 300.0), attempt("a3", 3.5, 0.0, status="error")],
        AttemptRecord,
    )
    tenants = root / "tenants.parquet"
    pl.DataFrame(
        {"tenant_id": ["acme"], "tier": ["enterprise"], "home_region": ["eu"], "residency_required": [1]}
    ).write_parquet(tenants)
    repo = copy_repo(REPO, root / "repo")
    counts = write_feature_tables(logs, tenants, repo / "data")
    assert counts.tenant_profile > 0 and counts.sku_live_stats > 0 and counts.tenant_sku_history > 0
    output = feast_cli(repo, "apply")
    assert "router_v1" in output
    return open_repo(repo)


def entity(request_id: str, minutes: float) -> dict:
    return {
        "request_id": request_id,
        "tenant_id": "acme",
        "sku": "claude-haiku-4-5",
        "region": "eu",
        "ts": T0 + timedelta(minutes=minutes),
    }


def test_point_in_time_join_sees_only_the_past(store):
    entities = pl.DataFrame([entity("before", 5), entity("after-first-hour", 80), entity("later", 130)])
    entities = entities.with_columns(pl.col("ts").dt.cast_time_unit("us"))
    joined = point_in_time_features(store, entities)
    assert joined["request_id"].to_list() == ["before", "after-first-hour", "later"]
    assert list(joined.columns[-len(STORE_FEATURE_NAMES) :]) == list(STORE_FEATURE_NAMES)
    before, first_hour, later = joined.iter_rows(named=True)
    assert math.isnan(before["tenant_spend_7d_usd"])  # nothing had happened yet
    assert first_hour["tenant_spend_7d_usd"] == pytest.approx(1.0)  # r2 (at 01:30) is in the future
    assert first_hour["tenant_quality_7d"] == pytest.approx(1.0)
    assert later["tenant_spend_7d_usd"] == pytest.approx(3.0)
    assert later["tenant_quality_7d"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)


def test_live_stats_join_by_sku_and_region_at_the_minute(store):
    entities = pl.DataFrame([entity("m2", 2.2), entity("m4", 4.1)]).with_columns(
        pl.col("ts").dt.cast_time_unit("us")
    )
    m2, m4 = point_in_time_features(store, entities).iter_rows(named=True)
    assert m2["sku_ttft_p50_1m_ms"] == pytest.approx(100.0)  # minute-2 window: a1 only
    assert m2["sku_error_rate_15m"] == 0.0
    assert m4["sku_error_rate_15m"] == pytest.approx(1 / 3)  # a3 failed at 3.5 min


def test_materialized_online_store_serves_the_latest_values(store):
    materialize(store, T0 - timedelta(days=1), T0 + timedelta(hours=7))
    online = store.store.get_online_features(
        features=store.store.get_feature_service("router_v1"),
        entity_rows=[{"tenant_id": "acme", "sku": "claude-haiku-4-5", "region": "eu"}],
    ).to_dict()
    assert online["tenant_spend_7d_usd"] == [pytest.approx(3.0)]
    assert online["tenant_sku_requests_30d"] == [2.0]
