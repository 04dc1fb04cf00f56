"""What the drift monitor compares: served rows from the decision log, and the reference.

Both sides are polars frames with the same columns (:data:`FRAME_COLUMNS`), one row per
request: the feature vector *as served* for the chosen SKU (``features.schema.FEATURE_NAMES``:
the logged request vector, the chosen candidate's vector, the logged store features), what the
router predicted for that SKU (``pred_*``) and what happened (``obs_*``).

- **Current** (:func:`served_window`): decisions in ``[start, end)`` of the current feature
  schema, joined with the serving attempt, the outcome's cost and the quality label
  (``offline.logged.logged_requests``, the join training reads too: the judge first, else users).
- **Reference from the logs** (a date range): the same, for an earlier window.
- **Reference from a training run** (``eval.drift_reference``): the sample of the training
  matrix the champion was trained on, with the champion's predictions and the labels.

Observed TTFT, end-to-end time and output tokens are the serving attempt's own (what the
latency heads learn from); ``first_attempt_ok`` says the chosen SKU served at once, the only
rows where the prediction and the observation are about the same SKU.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from features.record_store import scan_records
from features.records import DecisionRecord
from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    FEATURE_NAMES,
    REQUEST_FEATURE_NAMES,
    STORE_FEATURE_NAMES,
)
from offline.logged import dates_between, logged_requests, window_keys

META_COLUMNS: tuple[str, ...] = (
    "request_id",
    "ts",
    "region",
    "tenant_id",
    "logged_tier",  # the decision's own fields (the vector encodes them too: a skew check)
    "logged_surface",
    "logged_stream",
    "router_version",
    "sku",  # the chosen SKU (the reference: the SKU of the training row)
)
PRED_COLUMNS: tuple[str, ...] = ("pred_p_quality", "pred_ttft_ms", "pred_output_tokens", "pred_cost_usd")
OBS_COLUMNS: tuple[str, ...] = (
    "first_attempt_ok",
    "obs_ttft_ms",
    "obs_e2e_ms",
    "obs_output_tokens",
    "obs_cost_usd",
    "obs_good",
    "worker_prompt_tokens",  # input + cached tokens the worker counted on the serving attempt
)
FRAME_COLUMNS: tuple[str, ...] = META_COLUMNS + FEATURE_NAMES + PRED_COLUMNS + OBS_COLUMNS


def _vector_columns(column: str, names: tuple[str, ...]) -> list[pl.Expr]:
    return [pl.col(column).list.get(i).cast(pl.Float64).alias(name) for i, name in enumerate(names)]


def served_window(
    logs: Path,
    start: datetime,
    end: datetime,
    *,
    max_requests: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per decision with ``start <= ts < end`` (a seeded sample of at most ``max_requests``)."""
    keys = window_keys(logs, start, end, max_requests=max_requests, seed=seed)
    requests = logged_requests(
        logs,
        keys,
        decision_dates=dates_between(start, end),
        # an outcome completing after midnight is in the next date; later feedback is not waited for
        outcome_dates=dates_between(start, end, slack_days=1),
    )
    return (
        requests.rename({"chosen_sku": "sku"})
        .explode("candidates")
        .filter(pl.col("candidates").struct.field("sku") == pl.col("sku"))
        .unique("request_id", keep="first")
        .with_columns(
            pl.col("tier").alias("logged_tier"),
            pl.col("surface").alias("logged_surface"),
            pl.col("stream").alias("logged_stream"),
            pl.col("candidates").struct.field("features").alias("candidate_features"),
            pl.col("candidates").struct.field("p_quality").alias("pred_p_quality"),
            pl.col("candidates").struct.field("ttft_ms").alias("pred_ttft_ms"),
            pl.col("candidates").struct.field("output_tokens").alias("pred_output_tokens"),
            pl.col("candidates").struct.field("cost_usd").alias("pred_cost_usd"),
            pl.col("ttft_ms").alias("obs_ttft_ms"),
            pl.col("e2e_ms").alias("obs_e2e_ms"),
            pl.col("output_tokens").alias("obs_output_tokens"),
            pl.col("cost_usd").alias("obs_cost_usd"),
            pl.col("quality_label").cast(pl.Float64).alias("obs_good"),
            pl.col("served_prompt_tokens").alias("worker_prompt_tokens"),
        )
        .with_columns(
            *_vector_columns("request_features", REQUEST_FEATURE_NAMES),
            *_vector_columns("candidate_features", CANDIDATE_FEATURE_NAMES),
            *_vector_columns("store_features", STORE_FEATURE_NAMES),
        )
        .select(FRAME_COLUMNS)
        .collect()
        .sort("ts", "request_id")
    )


def logged_range(logs: Path) -> tuple[datetime, datetime] | None:
    """The first and last decision time in the logs (None when there are none)."""
    bounds = (
        scan_records(Path(logs), DecisionRecord)
        .select(pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"))
        .collect()
    )
    first, last = bounds.row(0)
    return None if first is None else (first, last)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every :data:`FRAME_COLUMNS` column (nulls where it has none), in that order."""
    missing = [pl.lit(None).alias(name) for name in FRAME_COLUMNS if name not in frame.columns]
    frame = frame.with_columns(missing) if missing else frame
    floats = [
        pl.col(name).cast(pl.Float64)
        for name in (*FEATURE_NAMES, *PRED_COLUMNS, *OBS_COLUMNS)
        if name != "first_attempt_ok"
    ]
    texts = [pl.col(name).cast(pl.String) for name in META_COLUMNS if name not in ("ts", "logged_stream")]
    return frame.with_columns(
        *floats, *texts, pl.col("first_attempt_ok").cast(pl.Boolean).fill_null(False)
    ).select(FRAME_COLUMNS)
