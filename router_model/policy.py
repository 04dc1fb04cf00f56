"""The routing policy: from per-candidate predictions to a chosen SKU and its propensity.

Pure functions over plain data, shared by serving (online decisions) and evaluation
(replaying a policy over logged traffic). Nothing here knows HTTP, ONNX or MLflow.

Utility of a candidate (ARCHITECTURE.md §2, step 7)::

    utility = p_quality − λ · cost_usd / budget_usd − μ · max(0, ttft_ms − slo_ms) / slo_ms

- ``λ`` prices cost in units of the per-request budget. The budget is a constraint *in
  aggregate*, so λ is a Lagrange multiplier that :func:`pace_cost_multiplier` moves up when
  the blended cost runs over budget and down when it runs under.
- The TTFT SLO is also a filter: candidates predicted to miss it are dropped unless every
  candidate misses it, in which case the fastest one stays.
- Exploration: with probability ε the choice is uniform over the best ``explore_top_k``
  feasible candidates, otherwise the best one. Every candidate's probability is returned, and
  the chosen one's is its propensity, which is what off-policy evaluation needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import polars as pl


@dataclass(frozen=True, slots=True)
class PolicyParams:
    cost_multiplier: float = 1.0  # λ
    latency_multiplier: float = 0.5  # μ
    epsilon: float = 0.05
    explore_top_k: int = 3
    slo_ttft_ms: float = 900.0
    budget_usd: float = 0.012

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError("epsilon must be within [0, 1]")
        if self.explore_top_k < 1 or self.slo_ttft_ms <= 0 or self.budget_usd <= 0:
            raise ValueError("explore_top_k, slo_ttft_ms and budget_usd must be positive")


@dataclass(frozen=True, slots=True)
class CandidatePrediction:
    sku: str
    p_quality: float
    ttft_ms: float
    output_tokens: float
    cost_usd: float


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    chosen_sku: str
    propensity: float
    probabilities: dict[str, float]  # every candidate, summing to 1
    utilities: dict[str, float]
    fallback_skus: tuple[str, ...]  # the other candidates, best first
    explored: bool


Number = TypeVar("Number", float, "np.ndarray", "pl.Series", "pl.Expr")


def utility_of(p_quality: Number, cost_usd: Number, ttft_ms: Number, params: PolicyParams) -> Number:
    """The utility formula, the only copy: elementwise over floats, numpy arrays or polars columns.

    ``max(0, x)`` is written ``(x + |x|) / 2``, which is exact in floating point and the same
    expression for every one of those types.
    """
    over = ttft_ms - params.slo_ttft_ms
    lateness = (over + abs(over)) / 2 / params.slo_ttft_ms
    return (
        p_quality
        - params.cost_multiplier * cost_usd / params.budget_usd
        - params.latency_multiplier * lateness
    )


def utility(prediction: CandidatePrediction, params: PolicyParams) -> float:
    return utility_of(prediction.p_quality, prediction.cost_usd, prediction.ttft_ms, params)


def action_probabilities(
    predictions: Sequence[CandidatePrediction], params: PolicyParams
) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Probabilities of choosing each candidate, their utilities, and candidates ranked best first."""
    if not predictions:
        raise ValueError("no candidates to choose from")
    utilities = {p.sku: utility(p, params) for p in predictions}
    ranked = sorted(predictions, key=lambda p: (-utilities[p.sku], p.sku))
    feasible = [p for p in ranked if p.ttft_ms <= params.slo_ttft_ms]
    if not feasible:
        feasible = [min(predictions, key=lambda p: (p.ttft_ms, p.sku))]
    explore_set = feasible[: params.explore_top_k]
    probabilities = dict.fromkeys(utilities, 0.0)
    for p in explore_set:
        probabilities[p.sku] += params.epsilon / len(explore_set)
    probabilities[feasible[0].sku] += 1.0 - params.epsilon
    feasible_skus = {p.sku for p in feasible}
    order = [p.sku for p in feasible] + [p.sku for p in ranked if p.sku not in feasible_skus]
    return probabilities, utilities, order


def choose_sku(
    predictions: Sequence[CandidatePrediction], params: PolicyParams, uniform: float
) -> RoutingDecision:
    """Choose a SKU; ``uniform`` is a draw from U[0, 1) supplied by the caller (seeded RNG)."""
    if not 0.0 <= uniform < 1.0:
        raise ValueError("uniform must be in [0, 1)")
    probabilities, utilities, order = action_probabilities(predictions, params)
    cumulative = 0.0
    chosen = order[0]
    for sku in order:
        cumulative += probabilities[sku]
        if uniform < cumulative:
            chosen = sku
            break
    return RoutingDecision(
        chosen_sku=chosen,
        propensity=probabilities[chosen],
        probabilities=probabilities,
        utilities=utilities,
        fallback_skus=tuple(sku for sku in order if sku != chosen),
        explored=chosen != order[0],
    )


def pace_cost_multiplier(
    current: float, observed_cost_per_request: float, budget_usd: float, *, step: float = 0.5
) -> float:
    """One step of the budget controller: λ grows when spend runs over budget, shrinks under it."""
    ratio = observed_cost_per_request / budget_usd
    return max(0.0, current * (1.0 + step * (ratio - 1.0)) if current > 0 else step * max(0.0, ratio - 1.0))
