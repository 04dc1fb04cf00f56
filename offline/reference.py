"""The drift reference a training run writes: its training sample and what the model made of it.

The nightly job logs, with every run (``training/pipeline.py`` → ``training/mlflow_log.py``):

- :data:`SAMPLE_PATH` (:func:`training_reference_sample`): a seeded sample of the training
  matrix the model was fit on, one served row per request: ``ts``, ``sku``, the features in
  ``FEATURE_NAMES`` order, the model's own predictions on those rows (``pred_*``, the same heads
  and cost formula serving logs) and what was observed (``obs_*``);
- :data:`DOCUMENT_PATH` (:func:`reference_document`): the training window, the router version,
  the SKU mix of the whole training set (:func:`sku_shares`), and the feature importance (share
  of split gain per head, and combined over the heads the policy reads).

The drift monitor reads them back (``eval.drift_reference.reference_from_run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from features.catalog import Catalog
from features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from router_model.candidates import POLICY_HEADS, POLICY_TTFT_HEAD, expected_costs

SAMPLE_PATH = "reference/training_sample.parquet"
DOCUMENT_PATH = "reference/reference.json"


def sku_shares(frame: pl.DataFrame) -> dict[str, float]:
    """Share of rows per ``sku``."""
    counts = frame["sku"].value_counts()
    total = counts["count"].sum() or 1
    return {sku: count / total for sku, count in counts.iter_rows()}


def uniform_importance() -> dict[str, float]:
    return {name: 1.0 / len(FEATURE_NAMES) for name in FEATURE_NAMES}


def combined_importance(by_head: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean share of split gain over the heads the policy reads (all heads if none of those)."""
    heads = [h for h in POLICY_HEADS if h in by_head] or list(by_head)
    if not heads:
        return uniform_importance()
    mean = {name: float(np.mean([by_head[h].get(name, 0.0) for h in heads])) for name in FEATURE_NAMES}
    total = sum(mean.values()) or 1.0
    return {name: value / total for name, value in mean.items()}


def training_reference_sample(
    frame: pl.DataFrame,
    features: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    catalog: Catalog,
) -> pl.DataFrame:
    """The reference rows of a training run: features, the model's predictions, the observations.

    ``frame`` is the training rows' frame (``training.dataset.training_rows``: ts, sku, labels,
    cost), ``features`` its matrix and ``predictions`` the router's heads on it
    (``RouterScorer.score``), all row for row.
    """
    matrix = pl.DataFrame(features, schema=list(FEATURE_NAMES), orient="row")
    output_tokens = np.asarray(predictions["output_tokens"], dtype=np.float64)
    cost = expected_costs(
        catalog,
        frame["sku"].to_list(),
        matrix["prompt_tokens"].to_numpy(),
        matrix["expected_cache_hit"].to_numpy(),
        output_tokens,
    )
    extra = pl.DataFrame(
        {
            "pred_p_quality": np.asarray(predictions["p_quality"], dtype=np.float64),
            "pred_ttft_ms": np.asarray(predictions[POLICY_TTFT_HEAD], dtype=np.float64),
            "pred_output_tokens": output_tokens,
            "pred_cost_usd": cost,
        }
    )
    observed = frame.select(
        "ts",
        "sku",
        pl.col("first_attempt_ok"),
        pl.col("ttft_ms").alias("obs_ttft_ms"),
        pl.col("e2e_ms").alias("obs_e2e_ms"),
        pl.col("output_tokens").cast(pl.Float64).alias("obs_output_tokens"),
        pl.col("cost_usd").alias("obs_cost_usd")
        if "cost_usd" in frame.columns
        else pl.lit(None).alias("obs_cost_usd"),
        pl.col("quality_label").cast(pl.Float64).alias("obs_good"),
    )
    return pl.concat(
        [observed.select("ts", "sku"), matrix, extra, observed.drop("ts", "sku")], how="horizontal"
    )


def reference_document(
    *,
    router_version: str,
    window: tuple[datetime, datetime],
    sku_mix: Mapping[str, float],
    importance_by_head: Mapping[str, Mapping[str, float]],
    training_rows: int,
) -> dict[str, Any]:
    return {
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "router_version": router_version,
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
        "training_rows": training_rows,
        "sku_mix": dict(sku_mix),
        "importance": combined_importance(importance_by_head),
        "importance_by_head": {head: dict(values) for head, values in importance_by_head.items()},
    }
