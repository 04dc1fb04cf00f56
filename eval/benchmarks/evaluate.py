"""Scoring routers' out-of-fold predictions with bootstrap intervals.

Two-model sets (a (strong, weak) pair): each router ranks the evaluated prompts by predicted
gain ``prediction[strong] − prediction[weak]``; metrics from ``eval.benchmarks.two_model``.
Many-model sets: each router is traced over ``LAMBDA_STEPS`` values of λ (choose ``argmax
prediction − λ·cost`` per prompt, plus λ = ∞: the cheapest model per prompt); metrics from
``eval.benchmarks.frontier``, against the single models and the oracle's hull of the same resample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.benchmarks.bootstrap import Interval, interval, resample_counts
from eval.benchmarks.frontier import Hull, frontier_metrics, upper_hull
from eval.benchmarks.outcomes import OutcomeMatrix
from eval.benchmarks.two_model import (
    PairOutcomes,
    pgr_curve,
    routing_order,
    two_model_metrics,
    two_model_metrics_batch,
)

LAMBDA_STEPS = 60
CURVE_POINTS = 101
ORACLE = "oracle"
SINGLE_MIX = "single models (mixed)"
REFERENCE = "ours"


@dataclass(frozen=True, eq=False)
class RouterScore:
    router: str
    metrics: dict[str, Interval]
    curve: dict[str, list[float]] = field(default_factory=dict)  # for plots: x / y on the full set


@dataclass(frozen=True, eq=False)
class Evaluation:
    dataset: str
    split: str
    description: str
    kind: str  # "two-model" or "many-model"
    n_prompts: int
    models: tuple[str, ...]
    singles: dict[str, dict[str, float]]  # model → {"cost_usd", "quality"} on the evaluated prompts
    routers: list[RouterScore]


def lambda_grid(cost: np.ndarray) -> np.ndarray:
    spread = float(np.median(cost.max(axis=1) - cost.min(axis=1)))
    scale = spread if spread > 0 else float(np.mean(cost)) or 1.0
    return np.concatenate([[0.0], np.geomspace(1e-3, 1e3, LAMBDA_STEPS - 1) / scale])


def traced_choices(prediction: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """``[LAMBDA_STEPS + 1, n]`` model index chosen per prompt at each λ, then at λ = ∞."""
    rows = [np.argmax(prediction - lam * cost, axis=1) for lam in lambda_grid(cost)]
    rows.append(np.lexsort((-prediction.T, cost.T), axis=0)[0])  # cheapest, ties by prediction
    return np.stack(rows)


def _two_model(evaluated: OutcomeMatrix, predictions: dict[str, np.ndarray], pair, reps, seed):
    strong, weak = pair
    outcomes = PairOutcomes(
        evaluated.quality[:, strong],
        evaluated.quality[:, weak],
        evaluated.cost[:, strong],
        evaluated.cost[:, weak],
    )
    n = len(evaluated)
    tiebreak = np.random.default_rng(seed + 1).permutation(n)
    orders = {name: routing_order(p[:, strong] - p[:, weak], tiebreak) for name, p in predictions.items()}
    full = {name: two_model_metrics(order, outcomes, np.ones(n)) for name, order in orders.items()}
    samples: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in orders}
    for counts in resample_counts(n, reps, seed):
        for name, order in orders.items():
            samples[name].append(two_model_metrics_batch(order, outcomes, counts.astype(np.float64)))
    draws = {
        name: {key: np.concatenate([s[key] for s in samples[name]]) for key in full[name]} for name in orders
    }
    grid = np.linspace(0, 1, CURVE_POINTS)
    curves = {}
    for name, order in orders.items():
        share, pgr, _, _ = pgr_curve(order, outcomes, np.ones(n))
        curves[name] = {"strong_share": grid.tolist(), "pgr": np.interp(grid, share, pgr).tolist()}
    return _scores(full, draws, curves, "apgr")


def _many_model(evaluated: OutcomeMatrix, predictions: dict[str, np.ndarray], reps, seed):
    n = len(evaluated)
    rows = np.arange(n)
    traced = {name: traced_choices(p, evaluated.cost) for name, p in predictions.items()}
    chosen_q = {name: evaluated.quality[rows, c] for name, c in traced.items()}  # [L, n]
    chosen_c = {name: evaluated.cost[rows, c] for name, c in traced.items()}
    if ORACLE not in traced:
        raise ValueError("a many-model evaluation needs the oracle's predictions")

    def one(weights: np.ndarray) -> dict[str, dict[str, float]]:
        total = weights.sum()
        single_q = weights @ evaluated.quality / total
        single_c = weights @ evaluated.cost / total
        points = {
            name: (chosen_c[name] @ weights / total, chosen_q[name] @ weights / total) for name in traced
        }
        points[SINGLE_MIX] = (single_c, single_q)
        oracle: Hull = upper_hull(*points[ORACLE])
        return {name: frontier_metrics(c, q, single_c, single_q, oracle) for name, (c, q) in points.items()}

    full = one(np.ones(n))
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in full}
    for counts in resample_counts(n, reps, seed):
        for weights in counts:
            for name, metrics in one(weights.astype(np.float64)).items():
                samples[name].append(metrics)
    draws = {name: {key: np.array([s[key] for s in samples[name]]) for key in full[name]} for name in full}
    curves = {}
    for name in full:
        if name == SINGLE_MIX:
            cost, quality = evaluated.cost.mean(axis=0), evaluated.quality.mean(axis=0)
        else:
            cost, quality = chosen_c[name].mean(axis=1), chosen_q[name].mean(axis=1)
        hull = upper_hull(cost, quality)
        curves[name] = {
            "cost_usd": cost.tolist(),
            "quality": quality.tolist(),
            "hull_cost_usd": hull.cost.tolist(),
            "hull_quality": hull.quality.tolist(),
        }
    return _scores(full, draws, curves, "aiq")


def _scores(full: dict, draws: dict, curves: dict, headline: str) -> list[RouterScore]:
    """Intervals of every metric, plus ``<headline>_vs_ours``: the router's headline metric minus
    our router's, on the same resamples (a paired interval), when our router was evaluated."""
    scores = []
    for name in full:
        metrics = {key: interval(value, draws[name][key]) for key, value in full[name].items()}
        if REFERENCE in full:
            metrics[f"{headline}_vs_ours"] = interval(
                full[name][headline] - full[REFERENCE][headline],
                draws[name][headline] - draws[REFERENCE][headline],
            )
        scores.append(RouterScore(name, metrics, curves[name]))
    return scores


def evaluate_predictions(
    evaluated: OutcomeMatrix,
    predictions: dict[str, np.ndarray],
    *,
    dataset: str,
    split: str,
    description: str,
    pair: tuple[int, int] | None,
    reps: int,
    seed: int,
) -> Evaluation:
    """Every router's metrics with intervals; ``predictions`` are ``[n_evaluated, n_models]`` in row order."""
    if pair is not None:
        routers = _two_model(evaluated, predictions, pair, reps, seed)
    else:
        routers = _many_model(evaluated, predictions, reps, seed)
    singles = {
        model: {
            "cost_usd": float(evaluated.cost[:, m].mean()),
            "quality": float(evaluated.quality[:, m].mean()),
        }
        for m, model in enumerate(evaluated.models)
    }
    return Evaluation(
        dataset=dataset,
        split=split,
        description=description,
        kind="two-model" if pair is not None else "many-model",
        n_prompts=len(evaluated),
        models=evaluated.models,
        singles=singles,
        routers=routers,
    )
