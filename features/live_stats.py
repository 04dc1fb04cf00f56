"""Rolling per-SKU live statistics, computed from attempt records.

One definition used by the offline job (history for Feast's ``sku_live_stats`` view, which
training joins point-in-time) and by serving (the same numbers over its recent attempts,
pushed to the Feast online store). Values are keyed by ``(region, sku)`` and stamped with the
end of the window they describe: a row at ``ts`` only uses attempts that started at or
before ``ts``, so a point-in-time join never sees the future.
"""

from __future__ import annotations

import polars as pl

from features.schema import SKU_LIVE_FEATURES

LIVE_STAT_NAMES: tuple[str, ...] = tuple(spec.name for spec in SKU_LIVE_FEATURES)
_OK = pl.col("status") == "ok"


def _window_stats(attempts: pl.LazyFrame, period: str, every: str, exprs: list[pl.Expr]) -> pl.LazyFrame:
    return (
        attempts.sort("ts")
        .group_by_dynamic(
            "ts",
            every=every,
            period=period,
            offset=f"-{period}",
            closed="right",
            label="right",
            group_by=["region", "sku"],
        )
        .agg(exprs)
    )


def sku_live_stats(attempts: pl.LazyFrame, *, every: str = "1m") -> pl.LazyFrame:
    """Rolling stats per ``(region, sku)`` at each ``every`` boundary.

    ``attempts`` needs the AttemptRecord columns ts, region, sku, status, ttft_ms, tpot_ms,
    e2e_ms. Output columns: region, sku, ts (window end), and ``LIVE_STAT_NAMES``.
    """
    attempts = attempts.select("ts", "region", "sku", "status", "ttft_ms", "tpot_ms", "e2e_ms")
    one_minute = _window_stats(
        attempts,
        "1m",
        every,
        [
            pl.col("ttft_ms").filter(_OK).quantile(0.5, "linear").alias("sku_ttft_p50_1m_ms"),
            pl.col("ttft_ms").filter(_OK).quantile(0.95, "linear").alias("sku_ttft_p95_1m_ms"),
        ],
    )
    fifteen_minutes = _window_stats(
        attempts,
        "15m",
        every,
        [
            pl.col("ttft_ms").filter(_OK).quantile(0.95, "linear").alias("sku_ttft_p95_15m_ms"),
            pl.col("tpot_ms").filter(_OK).quantile(0.5, "linear").alias("sku_tpot_p50_15m_ms"),
            (1.0 - _OK.cast(pl.Float64).mean()).alias("sku_error_rate_15m"),
        ],
    )
    in_flight = _in_flight(attempts)
    return (
        fifteen_minutes.join(one_minute, on=["region", "sku", "ts"], how="left")
        .sort("ts")
        .join_asof(in_flight, on="ts", by=["region", "sku"], strategy="backward", check_sortedness=False)
        .with_columns(pl.col("sku_queue_depth").fill_null(0.0))
        .select("region", "sku", "ts", *LIVE_STAT_NAMES)
        .sort("region", "sku", "ts")
    )


def _in_flight(attempts: pl.LazyFrame) -> pl.LazyFrame:
    """Requests in flight at a SKU (running or queued) after each start/end event."""
    starts = attempts.select("region", "sku", "ts", pl.lit(1.0).alias("delta"))
    ends = attempts.select(
        "region",
        "sku",
        (pl.col("ts") + pl.duration(microseconds=(pl.col("e2e_ms") * 1000).cast(pl.Int64))).alias("ts"),
        pl.lit(-1.0).alias("delta"),
    )
    return (
        pl.concat([starts, ends])
        .sort("ts")
        .with_columns(pl.col("delta").cum_sum().over(["region", "sku"]).alias("sku_queue_depth"))
        .group_by(["region", "sku", "ts"])
        .agg(pl.col("sku_queue_depth").last())
        .sort("ts")
    )
