"""Held-out evaluation of a trained router: per-head metrics, its policy's choices, off-policy value.

Pure functions over arrays and polars frames. The policy replay (``offline.replay``) and the
off-policy estimators (``offline.ope``) are the offline core's; this module adds the heads'
own metrics (AUC, log-loss, calibration, pinball losses) and puts them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.catalog import Catalog
from offline.ope import OffPolicyValue, logged_value, rewards, snips
from offline.replay import replay_policy
from router_model.policy import PolicyParams


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count one half); NaN with one class only."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pl.Series(np.asarray(scores, dtype=np.float64)).rank("average").to_numpy()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def log_loss(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float(np.average(losses, weights=weights)) if len(losses) else float("nan")


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, *, bins: int = 10) -> pl.DataFrame:
    """Equal-width probability bins: count, mean predicted probability, observed share of good answers."""
    p = np.asarray(probabilities, dtype=np.float64)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    frame = pl.DataFrame({"bin": index, "p": p, "y": np.asarray(labels, dtype=np.float64)})
    return (
        frame.group_by("bin")
        .agg(
            pl.len().alias("count"),
            pl.col("p").mean().alias("predicted"),
            pl.col("y").mean().alias("observed"),
        )
        .with_columns((pl.col("bin") / bins).alias("lower"), ((pl.col("bin") + 1) / bins).alias("upper"))
        .sort("bin")
    )


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, *, bins: int = 10) -> float:
    """Σ_bins (count / n) · |mean predicted − observed| over equal-width bins."""
    curve = reliability_curve(labels, probabilities, bins=bins)
    if curve.height == 0:
        return float("nan")
    gaps = (curve["predicted"] - curve["observed"]).abs() * curve["count"]
    return float(gaps.sum() / curve["count"].sum())


def pinball_loss(actual: np.ndarray, predicted: np.ndarray, alpha: float) -> float:
    diff = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1) * diff))) if len(diff) else float("nan")


def coverage(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of actual values at or below the predicted quantile (should be near its level)."""
    return float(np.mean(np.asarray(actual) <= np.asarray(predicted))) if len(actual) else float("nan")


def head_metrics(
    predictions: dict[str, np.ndarray], frame: pl.DataFrame, base_rate: float
) -> dict[str, float]:
    """Metrics on the served rows of the held-out window (``frame`` = evaluation rows, aligned)."""
    served = frame["is_served"].to_numpy()
    labelled = served & frame["quality_label"].is_not_null().to_numpy()
    y = frame["quality_label"].to_numpy()[labelled].astype(np.float64)
    p = predictions["p_quality"][labelled]
    metrics = {
        "quality.rows": float(labelled.sum()),
        "quality.auc": auc(y, p),
        "quality.log_loss": log_loss(y, p),
        "quality.log_loss_ipw": log_loss(y, p, 1.0 / frame["propensity"].to_numpy()[labelled])
        if len(y)
        else float("nan"),
        "quality.base_rate_log_loss": log_loss(y, np.full(len(y), base_rate)),
        "quality.ece": expected_calibration_error(y, p),
        "quality.brier": float(np.mean((p - y) ** 2)) if len(y) else float("nan"),
    }
    for head, label, alpha in (
        ("ttft_p50_ms", "ttft_ms", 0.5),
        ("ttft_p90_ms", "ttft_ms", 0.9),
        ("e2e_p50_ms", "e2e_ms", 0.5),
    ):
        actual = frame[label].to_numpy()[served].astype(np.float64)
        known = np.isfinite(actual)  # a non-streamed answer has no TTFT
        predicted = predictions[head][served][known]
        metrics[f"{head}.pinball"] = pinball_loss(actual[known], predicted, alpha)
        metrics[f"{head}.coverage"] = coverage(actual[known], predicted)
    tokens = frame["output_tokens"].to_numpy()[served]
    metrics["output_tokens.mae"] = float(np.mean(np.abs(tokens - predictions["output_tokens"][served])))
    metrics["output_tokens.mean_actual"] = float(np.mean(tokens)) if len(tokens) else float("nan")
    return metrics


@dataclass(frozen=True, eq=False)
class RouterEvaluation:
    """One router on the held-out rows: predictions, metrics, its ε = 0 choices and their value."""

    predictions: dict[str, np.ndarray]
    costs: np.ndarray
    params: PolicyParams  # the policy it was replayed with (λ paced for a candidate)
    metrics: dict[str, float]
    choices: pl.DataFrame
    value: OffPolicyValue


def evaluate_router(
    predictions: dict[str, np.ndarray],
    frame: pl.DataFrame,
    logged: pl.DataFrame,
    *,
    base_rate: float,
    params: PolicyParams,
    catalog: Catalog,
    pace: bool = False,
) -> RouterEvaluation:
    """Head metrics, the policy's choices (λ paced to the budget when ``pace``) and their SNIPS value."""
    replay = replay_policy(frame, predictions, params, catalog, pace=pace)
    params, choices, costs = replay.params, replay.choices, replay.costs
    rewarded = rewards(logged, params)
    value = snips(choices, rewarded)
    metrics = head_metrics(predictions, frame, base_rate) | {
        "policy.cost_multiplier": params.cost_multiplier,
        "policy.predicted_cost_usd": float(choices["expected_cost_usd"].mean()),  # type: ignore[arg-type]
        "policy.value": value.value,
        "policy.standard_error": value.standard_error,
        "policy.cost_per_request_usd": value.cost_per_request_usd,
        "policy.effective_samples": value.effective_samples,
        "policy.matched_requests": float(value.matched),
        "logged_policy.value": logged_value(rewarded),
        "logged_policy.cost_per_request_usd": float(rewarded["cost_usd"].mean())
        if rewarded.height
        else float("nan"),  # type: ignore[arg-type]
    }
    return RouterEvaluation(predictions, costs, params, metrics, choices, value)
