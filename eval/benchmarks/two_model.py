"""Two-model metrics (RouteLLM's): PGR, APGR, CPT(x%), cost saved at 95% of the strong model's quality.

A two-model router is a score per prompt (higher = more worth sending to the strong model).
Routing the top ``k`` prompts to the strong model gives ``quality(k)``;
``PGR(k) = (quality(k) − quality(weak)) / (quality(strong) − quality(weak))``. APGR is the area under
PGR as the strong share ``k/n`` goes from 0 to 1 (trapezoid over every ``k``); CPT(x) is the
smallest strong share with PGR ≥ x; cost saved at 95% is ``1 − cost(k*) / cost(all strong)`` for the
smallest ``k*`` whose quality reaches 95% of the strong model's. Ties in score are broken by a
fixed random key per prompt, so a constant score is a random router.

Every function takes ``weights`` (bootstrap counts; ones for the evaluated set itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CPT_LEVELS = (0.5, 0.8)
QUALITY_SHARE = 0.95


@dataclass(frozen=True, eq=False)
class PairOutcomes:
    """Per evaluated prompt: quality and cost of the strong and the weak model."""

    q_strong: np.ndarray
    q_weak: np.ndarray
    c_strong: np.ndarray
    c_weak: np.ndarray


def routing_order(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Prompt indices from most to least worth the strong model (ties by ``tiebreak``)."""
    return np.lexsort((tiebreak, -np.asarray(score, dtype=np.float64)))


def pgr_curve(order: np.ndarray, outcomes: PairOutcomes, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """(strong share, PGR, quality, cost) at every step of ``order``, weighted, starting at share 0."""
    w = weights[order].astype(np.float64)
    total = w.sum()
    base_quality = (weights * outcomes.q_weak).sum() / total
    strong_quality = (weights * outcomes.q_strong).sum() / total
    base_cost = (weights * outcomes.c_weak).sum() / total
    gain = (outcomes.q_strong - outcomes.q_weak)[order] * w / total
    extra = (outcomes.c_strong - outcomes.c_weak)[order] * w / total
    share = np.concatenate([[0.0], np.cumsum(w) / total])
    quality = base_quality + np.concatenate([[0.0], np.cumsum(gain)])
    cost = base_cost + np.concatenate([[0.0], np.cumsum(extra)])
    spread = strong_quality - base_quality
    pgr = (quality - base_quality) / spread if spread != 0 else np.full_like(quality, np.nan)
    return share, pgr, quality, cost


def two_model_metrics(order: np.ndarray, outcomes: PairOutcomes, weights: np.ndarray) -> dict[str, float]:
    share, pgr, quality, cost = pgr_curve(order, outcomes, weights)
    metrics = {"apgr": float(np.trapezoid(pgr, share))}
    for level in CPT_LEVELS:
        reached = np.flatnonzero(pgr >= level - 1e-12)
        metrics[f"cpt_{round(level * 100)}"] = float(share[reached[0]]) if reached.size else float("nan")
    target = QUALITY_SHARE * quality[-1]  # the last step routes every prompt to the strong model
    reached = np.flatnonzero(quality >= target - 1e-12)
    metrics["cost_saved_at_95"] = float(1.0 - cost[reached[0]] / cost[-1]) if reached.size else float("nan")
    return metrics
