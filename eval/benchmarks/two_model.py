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
    """The metrics for one weight vector ``[n]``."""
    batch = two_model_metrics_batch(order, outcomes, np.asarray(weights, dtype=np.float64)[None, :])
    return {key: float(values[0]) for key, values in batch.items()}


def two_model_metrics_batch(
    order: np.ndarray, outcomes: PairOutcomes, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """The metrics for each row of ``weights`` ``[reps, n]`` at once (the same arithmetic as
    :func:`pgr_curve`, vectorised over resamples); NaN where a level is never reached."""
    w = weights[:, order].astype(np.float64)
    total = w.sum(axis=1, keepdims=True)
    base_quality = weights @ outcomes.q_weak / total[:, 0]
    strong_quality = weights @ outcomes.q_strong / total[:, 0]
    base_cost = weights @ outcomes.c_weak / total[:, 0]
    zeros = np.zeros((w.shape[0], 1))
    share = np.hstack([zeros, np.cumsum(w, axis=1) / total])
    gain = np.hstack([zeros, np.cumsum(w * (outcomes.q_strong - outcomes.q_weak)[order], axis=1) / total])
    extra = np.hstack([zeros, np.cumsum(w * (outcomes.c_strong - outcomes.c_weak)[order], axis=1) / total])
    spread = strong_quality - base_quality
    with np.errstate(divide="ignore", invalid="ignore"):
        pgr = gain / spread[:, None]
    metrics = {"apgr": np.trapezoid(pgr, share, axis=1)}
    for level in CPT_LEVELS:
        metrics[f"cpt_{round(level * 100)}"] = _first_share(pgr >= level - 1e-12, share)
    quality = base_quality[:, None] + gain
    reached = quality >= QUALITY_SHARE * quality[:, -1:] - 1e-12
    first = np.argmax(reached, axis=1)
    rows = np.arange(w.shape[0])
    cost = base_cost + extra[rows, first]
    saved = 1.0 - cost / (base_cost + extra[:, -1])
    metrics["cost_saved_at_95"] = np.where(reached.any(axis=1), saved, np.nan)
    return metrics


def _first_share(reached: np.ndarray, share: np.ndarray) -> np.ndarray:
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), share[np.arange(share.shape[0]), first], np.nan)
