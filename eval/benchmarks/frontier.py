"""Many-model metrics on the cost–quality frontier: AIQ, gain over the best single model, cost
saved at the best single model's quality, gap to the oracle.

A router traced over λ (choose ``argmax predicted quality − λ·cost`` per prompt) gives points
(mean cost, mean quality). Two policies can be mixed at random per request, so the attainable
frontier is the **upper concave hull** of the points, flat beyond its best point (extra budget
is left unspent); see ``eval.matched_cost``. With the cheapest single model's mean cost
``c_min`` and the dearest's ``c_max``:

- **AIQ** = (1 / (c_max − c_min)) ∫ hull(c) dc over [c_min, c_max]: the mean quality over
  costs normalised to [0, 1] between the cheapest and the dearest single model;
- **gain at best-single cost** = hull(c_best) − q_best, for the single model of highest quality;
- **cost saved at best-single quality** = 1 − c*/c_best, c* the least cost where the hull reaches
  q_best (undefined when it never does);
- **oracle gap** = oracle hull(c_best) − hull(c_best).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AIQ_GRID = 201


@dataclass(frozen=True, slots=True)
class Hull:
    """Vertices of an upper concave, non-decreasing hull (costs ascending)."""

    cost: np.ndarray
    quality: np.ndarray

    def at(self, cost: float | np.ndarray) -> np.ndarray:
        return np.interp(cost, self.cost, self.quality)

    def cost_to_reach(self, quality: float) -> float:
        """Least cost at which the hull reaches ``quality`` (NaN if it never does)."""
        if self.quality[-1] < quality - 1e-12:
            return float("nan")
        if self.quality[0] >= quality:
            return float(self.cost[0])
        i = int(np.flatnonzero(self.quality >= quality - 1e-12)[0])
        q0, q1, c0, c1 = self.quality[i - 1], self.quality[i], self.cost[i - 1], self.cost[i]
        return float(c0 + (quality - q0) / (q1 - q0) * (c1 - c0)) if q1 > q0 else float(c1)


def upper_hull(cost: np.ndarray, quality: np.ndarray) -> Hull:
    """The upper concave hull of the points, cut after its highest-quality vertex."""
    order = np.lexsort((-quality, cost))
    vertices: list[tuple[float, float]] = []
    for c, q in zip(cost[order].tolist(), quality[order].tolist(), strict=True):
        if vertices and c == vertices[-1][0]:
            continue  # same cost, lower quality (sorted)
        while len(vertices) >= 2:
            (c1, q1), (c2, q2) = vertices[-2], vertices[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):  # vertex 2 lies on or under the chord
                vertices.pop()
            else:
                break
        vertices.append((c, q))
    costs = np.array([v[0] for v in vertices])
    qualities = np.array([v[1] for v in vertices])
    top = int(np.argmax(qualities))
    return Hull(costs[: top + 1], qualities[: top + 1])


def frontier_metrics(
    points_cost: np.ndarray,
    points_quality: np.ndarray,
    single_cost: np.ndarray,
    single_quality: np.ndarray,
    oracle: Hull,
) -> dict[str, float]:
    """The metrics above for one router's points against the single models (one resample)."""
    hull = upper_hull(points_cost, points_quality)
    c_min, c_max = float(single_cost.min()), float(single_cost.max())
    grid = np.linspace(c_min, c_max, AIQ_GRID)
    best = int(np.argmax(single_quality))
    c_best, q_best = float(single_cost[best]), float(single_quality[best])
    reach = hull.cost_to_reach(q_best)
    at_best = float(hull.at(c_best))
    return {
        "aiq": float(np.trapezoid(hull.at(grid), grid) / (c_max - c_min)) if c_max > c_min else at_best,
        "max_quality": float(hull.quality[-1]),
        "gain_at_best_cost": at_best - q_best,
        "cost_saved_at_best_quality": 1.0 - reach / c_best if np.isfinite(reach) else float("nan"),
        "oracle_gap": float(oracle.at(c_best)) - at_best,
    }
