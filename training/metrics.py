"""Held-out evaluation: per-head metrics, the learned policy's choices, off-policy value.

Pure functions over arrays and polars frames. The policy is ``router_model.policy`` itself
(``choose_sku`` at ε = 0), fed each candidate's predictions: ``p_quality``, ``ttft_p90_ms``
as the TTFT the SLO filter and latency penalty see (a p90 keeps the p99 SLO honest where a
median would not), and the expected serving cost of the predicted output tokens plus the
request's prompt tokens split by the candidate's expected cache hit (``Catalog.request_cost_usd``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from features.catalog import Catalog
from router_model.candidates import candidate_predictions
from router_model.candidates import expected_costs as candidate_costs
from router_model.policy import PolicyParams, choose_sku

PACING_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
REWARD_SOURCE = "judge"  # judge scores sample requests at random; user feedback favours bad answers


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


def expected_costs(frame: pl.DataFrame, output_tokens: np.ndarray, catalog: Catalog) -> np.ndarray:
    """Serving cost of each candidate row: its prompt split by expected cache hit, predicted output."""
    return candidate_costs(
        catalog,
        frame["sku"].to_numpy(),
        frame["prompt_tokens"].to_numpy(),
        frame["expected_cache_hit"].to_numpy(),
        output_tokens,
    )


def policy_choices(
    frame: pl.DataFrame, predictions: dict[str, np.ndarray], costs: np.ndarray, params: PolicyParams
) -> pl.DataFrame:
    """``[request_id, sku, expected_cost_usd]``: ``choose_sku`` at ε = 0 over each request's candidate rows."""
    params = replace(params, epsilon=0.0)
    request = frame["_request"].to_numpy()
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    ends = np.r_[starts[1:], len(request)]
    skus = frame["sku"].to_list()
    ids = frame["request_id"].to_list()
    candidates_all = candidate_predictions(skus, predictions, costs)
    cost = costs.tolist()
    chosen, chosen_cost = [], []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        sku = choose_sku(candidates_all[start:end], params, 0.0).chosen_sku
        chosen.append(sku)
        chosen_cost.append(cost[start + skus[start:end].index(sku)])
    return pl.DataFrame(
        {"request_id": [ids[i] for i in starts.tolist()], "sku": chosen, "expected_cost_usd": chosen_cost}
    )


@dataclass(frozen=True, slots=True)
class OffPolicyValue:
    """Self-normalised IPS estimate of a policy's mean reward on the logged held-out requests."""

    value: float
    standard_error: float
    cost_per_request_usd: float  # SNIPS of the logged serving cost: does the policy keep the budget?
    matched: int  # requests where the policy agrees with the logged action
    effective_samples: float  # (Σw)² / Σw²
    requests: int


def rewards(logged: pl.DataFrame, params: PolicyParams) -> pl.DataFrame:
    """``quality − λ·cost/budget − μ·lateness`` of the logged action, on requests the judge scored."""
    lateness = ((pl.col("outcome_ttft_ms").fill_null(0.0) - params.slo_ttft_ms) / params.slo_ttft_ms).clip(
        0.0
    )
    return logged.filter(
        (pl.col("quality_source") == REWARD_SOURCE) & pl.col("quality_label").is_not_null()
    ).with_columns(
        (
            pl.col("quality_label").cast(pl.Float64)
            - params.cost_multiplier * pl.col("cost_usd") / params.budget_usd
            - params.latency_multiplier * lateness
        ).alias("reward")
    )


def logged_value(rewarded: pl.DataFrame) -> float:
    """The logging policy's own (on-policy) mean reward."""
    return float(rewarded["reward"].mean()) if rewarded.height else float("nan")  # type: ignore[arg-type]


def snips(choices: pl.DataFrame, rewarded: pl.DataFrame) -> OffPolicyValue:
    """SNIPS of a deterministic policy: Σ w·r / Σ w with w = 1[choice = logged] / propensity."""
    joined = rewarded.join(choices.rename({"sku": "target"}), on="request_id", how="inner")
    match = (joined["target"] == joined["chosen_sku"]).to_numpy()
    weights = np.where(match, 1.0 / joined["propensity"].to_numpy(), 0.0)
    reward = joined["reward"].to_numpy()
    total = weights.sum()
    if total == 0:
        return OffPolicyValue(float("nan"), float("nan"), float("nan"), 0, 0.0, joined.height)
    value = float((weights * reward).sum() / total)
    se = float(np.sqrt(np.sum(weights**2 * (reward - value) ** 2)) / total)
    ess = float(total**2 / np.sum(weights**2))
    cost = float((weights * joined["cost_usd"].to_numpy()).sum() / total)
    return OffPolicyValue(value, se, cost, int(match.sum()), ess, joined.height)


@dataclass(frozen=True, eq=False)
class RouterEvaluation:
    """One router on the held-out rows: predictions, metrics, its ε = 0 choices and their value."""

    predictions: dict[str, np.ndarray]
    costs: np.ndarray
    params: PolicyParams  # the policy it was replayed with (λ paced for a candidate)
    metrics: dict[str, float]
    choices: pl.DataFrame
    value: OffPolicyValue


def paced_choices(
    frame: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    costs: np.ndarray,
    params: PolicyParams,
    grid: tuple[float, ...] = PACING_GRID,
) -> tuple[float, pl.DataFrame]:
    """The smallest λ of ``grid`` whose *predicted* mean cost is within budget, and its choices.

    Offline, this is where serving's budget pacer (``pace_cost_multiplier``) settles: λ only
    as high as the budget needs. With no λ within budget, the largest.
    """
    lam, choices = 0.0, pl.DataFrame()
    for lam in sorted(grid):
        choices = policy_choices(frame, predictions, costs, replace(params, cost_multiplier=lam))
        if choices["expected_cost_usd"].mean() <= params.budget_usd:  # type: ignore[operator]
            break
    return lam, choices


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
    costs = expected_costs(frame, predictions["output_tokens"], catalog)
    if pace:
        lam, choices = paced_choices(frame, predictions, costs, params)
        params = replace(params, cost_multiplier=lam)
    else:
        choices = policy_choices(frame, predictions, costs, params)
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


def snips_difference(
    choices: pl.DataFrame, other: pl.DataFrame, rewarded: pl.DataFrame
) -> tuple[float, float]:
    """SNIPS(choices) − SNIPS(other) on the same requests, and its paired (linearised) standard error."""
    a, b = snips(choices, rewarded), snips(other, rewarded)
    joined = rewarded.join(choices.select("request_id", pl.col("sku").alias("a")), on="request_id").join(
        other.select("request_id", pl.col("sku").alias("b")), on="request_id"
    )
    logged, propensity = joined["chosen_sku"], joined["propensity"].to_numpy()
    reward = joined["reward"].to_numpy()
    w_a = np.where((joined["a"] == logged).to_numpy(), 1.0 / propensity, 0.0)
    w_b = np.where((joined["b"] == logged).to_numpy(), 1.0 / propensity, 0.0)
    if w_a.sum() == 0 or w_b.sum() == 0:
        return float("nan"), float("nan")
    influence = w_a * (reward - a.value) / w_a.sum() - w_b * (reward - b.value) / w_b.sum()
    return a.value - b.value, float(np.sqrt(np.sum(influence**2)))
