"""Off-policy estimators: what a routing policy would have earned on the logged requests.

Pure functions over polars frames. The logged side is one row per request
(``offline.logged.logged_outcomes``: ``chosen_sku``, ``propensity``, labels, cost, TTFT);
a target policy is a frame of choices ``[request_id, sku]``, one per request.

- :func:`rewards`: the reward of the logged action, the policy's own utility
  (``router_model.policy.utility_of``: quality − λ·cost/budget − μ·lateness) on the observed
  quality label, serving cost and TTFT, on requests the judge scored;
- :func:`logged_value`: the logging policy's own mean reward;
- :func:`snips`: the self-normalised IPS value of a deterministic policy, with its standard
  error, effective sample size and SNIPS serving cost;
- :func:`snips_difference`: the paired difference of two policies on the same requests.

Each estimator takes the rewarded frame and the choices, so others (doubly robust, intervals)
slot in beside them with the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from router_model.policy import PolicyParams, utility_of

REWARD_SOURCE = "judge"  # judge scores sample requests at random; user feedback favours bad answers


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
    """``logged`` with the ``reward`` of the logged action, on requests the judge scored.

    The reward is the policy's utility of the observed outcome: the quality label, the serving
    cost, and the outcome's TTFT (no TTFT, e.g. a non-streamed answer: no lateness).
    """
    reward = utility_of(
        pl.col("quality_label").cast(pl.Float64),
        pl.col("cost_usd"),
        pl.col("outcome_ttft_ms").fill_null(0.0),
        params,
    )
    return logged.filter(
        (pl.col("quality_source") == REWARD_SOURCE) & pl.col("quality_label").is_not_null()
    ).with_columns(reward.alias("reward"))


def logged_value(rewarded: pl.DataFrame) -> float:
    """The logging policy's own (on-policy) mean reward."""
    return float(rewarded["reward"].mean()) if rewarded.height else float("nan")  # type: ignore[arg-type]


def _match_weights(target: pl.Series, logged: pl.Series, propensity: np.ndarray) -> np.ndarray:
    """``1[target = logged] / propensity``: the importance weight of a deterministic target policy."""
    return np.where((target == logged).to_numpy(), 1.0 / propensity, 0.0)


def snips(choices: pl.DataFrame, rewarded: pl.DataFrame) -> OffPolicyValue:
    """SNIPS of a deterministic policy: Σ w·r / Σ w with w = 1[choice = logged] / propensity."""
    joined = rewarded.join(choices.rename({"sku": "target"}), on="request_id", how="inner")
    weights = _match_weights(joined["target"], joined["chosen_sku"], joined["propensity"].to_numpy())
    reward = joined["reward"].to_numpy()
    total = weights.sum()
    if total == 0:
        return OffPolicyValue(float("nan"), float("nan"), float("nan"), 0, 0.0, joined.height)
    value = float((weights * reward).sum() / total)
    se = float(np.sqrt(np.sum(weights**2 * (reward - value) ** 2)) / total)
    ess = float(total**2 / np.sum(weights**2))
    cost = float((weights * joined["cost_usd"].to_numpy()).sum() / total)
    return OffPolicyValue(value, se, cost, int((weights > 0).sum()), ess, joined.height)


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
    w_a = _match_weights(joined["a"], logged, propensity)
    w_b = _match_weights(joined["b"], logged, propensity)
    if w_a.sum() == 0 or w_b.sum() == 0:
        return float("nan"), float("nan")
    influence = w_a * (reward - a.value) / w_a.sum() - w_b * (reward - b.value) / w_b.sum()
    return a.value - b.value, float(np.sqrt(np.sum(influence**2)))
