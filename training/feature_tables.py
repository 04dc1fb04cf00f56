"""The offline feature job: event log → the Parquet tables behind the Feast feature views.

Every row is stamped with the end of the window it summarises and only uses events at or
before that time, so Feast's point-in-time join hands training the value serving could
have seen. Pure polars functions; ``write_feature_tables`` is the thin I/O wrapper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.live_stats import sku_live_stats
from features.record_store import scan_records
from features.records import AttemptRecord, FeedbackRecord, OutcomeRecord
from features.schema import names_in_group

TENANT_COLUMNS = ("tenant_id", "tier", "home_region", "residency_required")


def _windows(
    frame: pl.LazyFrame, *, by: list[str], period: str, every: str, exprs: list[pl.Expr]
) -> pl.LazyFrame:
    """Trailing ``period`` windows ending at each ``every`` boundary, up to the last event."""
    last_boundary = frame.select(pl.col("ts").max().dt.truncate(every).dt.offset_by(every))
    return (
        frame.sort("ts")
        .group_by_dynamic(
            "ts", every=every, period=period, offset=f"-{period}", closed="right", label="right", group_by=by
        )
        .agg(exprs)
        .join(last_boundary.select(pl.col("ts").alias("_last")), how="cross")
        .filter(pl.col("ts") <= pl.col("_last"))
        .drop("_last")
    )


def quality_signals(outcomes: pl.LazyFrame, feedback: pl.LazyFrame) -> pl.LazyFrame:
    """Every quality observation (judge scores on outcomes, user feedback) as (ts, tenant, request, score)."""
    judged = outcomes.filter(pl.col("quality").is_not_null()).select(
        "ts", "tenant_id", "request_id", pl.col("quality").alias("score")
    )
    return pl.concat([judged, feedback.select("ts", "tenant_id", "request_id", "score")])


def tenant_profile(
    tenants: pl.LazyFrame, outcomes: pl.LazyFrame, feedback: pl.LazyFrame, *, every: str = "1h"
) -> pl.LazyFrame:
    """Hourly tenant rows: registry attributes with rolling 7-day spend and quality."""
    spend = _windows(
        outcomes.select("ts", "tenant_id", "cost_usd"),
        by=["tenant_id"],
        period="7d",
        every=every,
        exprs=[pl.col("cost_usd").sum().alias("tenant_spend_7d_usd")],
    )
    quality = _windows(
        quality_signals(outcomes, feedback),
        by=["tenant_id"],
        period="7d",
        every=every,
        exprs=[pl.col("score").mean().alias("tenant_quality_7d")],
    )
    return (
        spend.join(quality, on=["tenant_id", "ts"], how="full", coalesce=True)
        .join(tenants.select(TENANT_COLUMNS), on="tenant_id", how="inner")
        .select("tenant_id", "ts", *TENANT_COLUMNS[1:], *names_in_group("tenant"))
        .sort("tenant_id", "ts")
    )


def tenant_sku_history(outcomes: pl.LazyFrame, feedback: pl.LazyFrame, *, every: str = "6h") -> pl.LazyFrame:
    """Per tenant × SKU rows over 30 days: quality, TTFT p50 and request count."""
    served = outcomes.filter(pl.col("sku").is_not_null())
    scored = quality_signals(served, feedback).join(
        served.select("request_id", "sku"), on="request_id", how="inner"
    )
    by = ["tenant_id", "sku"]
    quality = _windows(
        scored,
        by=by,
        period="30d",
        every=every,
        exprs=[pl.col("score").mean().alias("tenant_sku_quality_30d")],
    )
    latency = _windows(
        served.select("ts", "tenant_id", "sku", "ttft_ms"),
        by=by,
        period="30d",
        every=every,
        exprs=[
            pl.col("ttft_ms").median().alias("tenant_sku_ttft_p50_30d_ms"),
            pl.len().cast(pl.Float64).alias("tenant_sku_requests_30d"),
        ],
    )
    return (
        latency.join(quality, on=[*by, "ts"], how="left")
        .select(*by, "ts", *names_in_group("tenant_sku"))
        .sort(*by, "ts")
    )


@dataclass(frozen=True, slots=True)
class FeatureTableCounts:
    tenant_profile: int
    sku_live_stats: int
    tenant_sku_history: int


def _write_atomically(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def write_feature_tables(logs_root: Path, tenants_file: Path, out_dir: Path) -> FeatureTableCounts:
    """Compute the three feature tables from the event log and write them for Feast."""
    tenants = pl.scan_parquet(tenants_file)
    outcomes = scan_records(logs_root, OutcomeRecord)
    feedback = scan_records(logs_root, FeedbackRecord)
    attempts = scan_records(logs_root, AttemptRecord)
    tables = {
        "tenant_profile": tenant_profile(tenants, outcomes, feedback),
        "sku_live_stats": sku_live_stats(attempts),
        "tenant_sku_history": tenant_sku_history(outcomes, feedback),
    }
    counts = {}
    for name, lazy in tables.items():
        frame = lazy.collect()
        _write_atomically(frame, out_dir / f"{name}.parquet")
        counts[name] = frame.height
    return FeatureTableCounts(**counts)
