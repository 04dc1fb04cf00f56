"""A cost–quality frontier: points, their upper concave hull, the best quality at a given cost.

A policy traced over a parameter (the router's cost multiplier λ, or any other knob) gives a set
of (cost, quality) points. Any two policies can be mixed at random per request (a seeded coin
picks which one routes each request): a mixture that uses the dearer policy with probability
``w`` has, in expectation, cost and quality ``(1 − w)·a + w·b`` — both are means over requests,
and the coin does not depend on the request. So every point on the *upper concave hull* of the
points is attainable (:func:`efficient_hull`), and the best quality attainable at a cost of at
most ``c`` is that hull evaluated at ``c`` (:func:`quality_at_cost`; flat at the highest quality
once ``c`` passes the best point's cost: the extra budget is simply unspent).

Pure functions over plain data.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    """One pure policy: e.g. the learned router replayed at one cost multiplier λ."""

    cost_multiplier: float
    cost_usd: float  # mean true serving cost per request
    quality: float  # mean true P(good)

    @property
    def label(self) -> str:
        return f"λ={self.cost_multiplier:g}"


def _cross(o: FrontierPoint, a: FrontierPoint, b: FrontierPoint) -> float:
    return (a.cost_usd - o.cost_usd) * (b.quality - o.quality) - (a.quality - o.quality) * (
        b.cost_usd - o.cost_usd
    )


def efficient_hull(points: Iterable[FrontierPoint]) -> list[FrontierPoint]:
    """The upper concave hull from the cheapest point to the best one: cost rising, quality rising.

    Points below a chord between two others, and points dearer than the best one, are left out
    (a mixture, or a cheaper pure policy, does at least as well at their cost).
    """
    ordered = sorted(points, key=lambda p: (p.cost_usd, -p.quality, p.cost_multiplier))
    hull: list[FrontierPoint] = []
    for point in ordered:
        if hull and point.cost_usd == hull[-1].cost_usd:
            continue  # same cost, lower (or equal) quality
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()  # hull[-1] lies on or below the chord hull[-2] → point
        hull.append(point)
    if not hull:
        return hull
    best = max(range(len(hull)), key=lambda i: (hull[i].quality, -i))
    return hull[: best + 1]


def _describe(point: FrontierPoint) -> str:
    return f"{point.label}: {point.quality:.3f} @ ${point.cost_usd:.5f}"


def quality_at_cost(points: Sequence[FrontierPoint], cost_usd: float) -> tuple[float | None, str]:
    """The best quality a mixture of the points attains at mean cost ``cost_usd`` (at most), and the mix.

    None (and the reason) when ``cost_usd`` is below the cheapest point or above the dearest one.
    """
    if not points:
        return None, "no learned points"
    cheapest = min(points, key=lambda p: (p.cost_usd, -p.quality))
    dearest = max(points, key=lambda p: (p.cost_usd, p.quality))
    if cost_usd < cheapest.cost_usd:
        return None, f"below the cheapest learned point ({_describe(cheapest)})"
    if cost_usd > dearest.cost_usd:
        return None, f"above the dearest learned point ({_describe(dearest)})"
    hull = efficient_hull(points)
    best = hull[-1]
    if cost_usd >= best.cost_usd:
        return best.quality, best.label
    index = bisect_right([p.cost_usd for p in hull], cost_usd) - 1  # hull[index] ≤ cost < hull[index + 1]
    low, high = hull[index], hull[index + 1]
    weight = (cost_usd - low.cost_usd) / (high.cost_usd - low.cost_usd)
    if weight == 0.0:
        return low.quality, low.label
    quality = low.quality + weight * (high.quality - low.quality)
    return quality, f"{low.label} × {1 - weight:.3f} + {high.label} × {weight:.3f}"


def best_pure_point(points: Iterable[FrontierPoint], cost_usd: float) -> FrontierPoint | None:
    """The single point of highest quality among those costing at most ``cost_usd`` (cheaper on ties)."""
    affordable = [p for p in points if p.cost_usd <= cost_usd]
    return max(affordable, key=lambda p: (p.quality, -p.cost_usd), default=None)
