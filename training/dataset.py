"""The training set: logged requests (``offline.logged``) → the served SKU's model rows and labels.

One row per served request (``offline.rows``: ``features.schema.FEATURE_NAMES`` order, store
features from Feast as of the decision time): the SKU that served it. Quality labels and
importance weights only where the *first attempt succeeded on the chosen SKU*
(``first_attempt_ok``): there the served SKU is the logged action and ``propensity`` is its
probability. Requests served by a fallback keep their row for the latency and token heads
(their labels are the successful attempt's own TTFT, end-to-end time and output tokens, a true
observation of that SKU under that load; dropping them would hide peak-load latency) but get no
quality label. Requests that failed on every attempt have no row. Rows without any quality
signal are excluded from the quality head only.

The held-out window's rows (every logged candidate) are ``offline.rows.evaluation_rows``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from offline.rows import ModelRows, StoreLookup, candidate_rows, model_rows


def importance_weights(propensity: np.ndarray, clip: float) -> np.ndarray:
    """``min(1/propensity, clip)``, scaled to mean 1 (so LightGBM's hessian limits keep their meaning)."""
    if clip < 1.0:
        raise ValueError("the weight clip must be at least 1")
    if len(propensity) == 0:
        return np.zeros(0)
    weights = np.minimum(1.0 / np.asarray(propensity, dtype=np.float64), clip)
    return weights / weights.mean()


def training_rows(requests: pl.DataFrame, lookup: StoreLookup, *, weight_clip: float) -> ModelRows:
    """The served SKU's row of every served request; quality labels and weights on first-attempt rows."""
    rows = candidate_rows(requests.filter(pl.col("served_sku").is_not_null())).filter(
        pl.col("sku") == pl.col("served_sku")
    )
    quality_ok = pl.col("first_attempt_ok") & pl.col("quality_label").is_not_null()
    weighted = rows.filter(quality_ok)
    weights = pl.Series("weight", importance_weights(weighted["propensity"].to_numpy(), weight_clip))
    rows = rows.join(
        weighted.select("request_id").with_columns(weights),
        on="request_id",
        how="left",
        maintain_order="left",
    )
    columns: list[str | pl.Expr] = [
        "request_id",
        "ts",
        "sku",
        "first_attempt_ok",
        "propensity",
        pl.when(quality_ok).then(pl.col("quality_label")).alias("quality_label"),
        "quality_source",
        "weight",
        "ttft_ms",
        "e2e_ms",
        "output_tokens",
        "cost_usd",  # the outcome's serving cost (the drift monitor's reference)
    ]
    return model_rows(rows, lookup, columns)
