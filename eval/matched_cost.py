"""The learned policy's quality at each baseline's cost per request (a matched-cost comparison).

A policy traced over λ gives a set of (cost, quality) points. Any two policies can be mixed at
random per request (a seeded coin picks which one routes each request): a mixture that uses
the dearer policy with probability ``w`` has, in expectation, cost and quality
``(1 − w)·a + w·b`` — both are means over requests, and the coin does not depend on the
request. So every point on the *upper concave hull* of the frontier is attainable, and the
best quality attainable at a cost of at most ``c`` is that hull evaluated at ``c`` (flat at the
highest quality once ``c`` passes the best point's cost: the extra budget is simply unspent).

For each baseline, :func:`match_baseline` reports:

- ``learned_quality``: the hull at the baseline's cost, i.e. the mixed policy at *equal* cost;
  no value when the cost lies outside the frontier's cost range (below its cheapest point or
  above its dearest): the hull is not extrapolated, the verdict is ``out of range``;
- ``pure_*``: the best single λ (no mixing) whose cost is at most the baseline's, so the claim
  does not rest on the mixing argument alone.

Pure functions over plain data and polars frames. See docs/evaluation.md.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import polars as pl

BEATS, LOSES, TIES = "beats", "loses", "ties"
OUT_OF_RANGE = "out of range"
NO_POINT = "no point at or below this cost"


@dataclass(frozen=True, slots=True)
class FrontierPoint:
    """One pure policy: the learned router replayed at one cost multiplier λ."""

    cost_multiplier: float
    cost_usd: float  # mean true serving cost per request
    quality: float  # mean true P(good)

    @property
    def label(self) -> str:
        return f"λ={self.cost_multiplier:g}"


@dataclass(frozen=True, slots=True)
class MatchedCost:
    """A baseline against the learned frontier at the baseline's cost."""

    baseline: str
    baseline_quality: float
    baseline_cost_usd: float
    learned_quality: float | None  # the hull at the baseline's cost; None when out of range
    margin: float | None  # learned_quality − baseline_quality
    verdict: str  # beats / loses / ties / out of range
    mix: str  # the λ points the matched policy mixes (and with which probabilities), or why out of range
    pure_cost_multiplier: float | None  # the best single λ with cost ≤ the baseline's
    pure_quality: float | None
    pure_cost_usd: float | None
    pure_margin: float | None
    pure_verdict: str  # beats / loses / ties / no point at or below this cost

    def as_row(self) -> dict[str, object]:
        return asdict(self)


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


def _verdict(margin: float) -> str:
    return BEATS if margin > 0 else LOSES if margin < 0 else TIES


def match_baseline(
    points: Sequence[FrontierPoint], baseline: str, quality: float, cost_usd: float
) -> MatchedCost:
    learned, mix = quality_at_cost(points, cost_usd)
    margin = None if learned is None else learned - quality
    pure = best_pure_point(points, cost_usd)
    pure_margin = None if pure is None else pure.quality - quality
    return MatchedCost(
        baseline=baseline,
        baseline_quality=quality,
        baseline_cost_usd=cost_usd,
        learned_quality=learned,
        margin=margin,
        verdict=OUT_OF_RANGE if margin is None else _verdict(margin),
        mix=mix,
        pure_cost_multiplier=None if pure is None else pure.cost_multiplier,
        pure_quality=None if pure is None else pure.quality,
        pure_cost_usd=None if pure is None else pure.cost_usd,
        pure_margin=pure_margin,
        pure_verdict=NO_POINT if pure_margin is None else _verdict(pure_margin),
    )


def frontier_points(frontier: pl.DataFrame, policy: str = "learned") -> list[FrontierPoint]:
    """The ``policy`` rows of an ``eval.simulated.frontier`` table as points."""
    rows = frontier.filter(pl.col("policy") == policy).select(
        "cost_multiplier", "cost_per_request_usd", "quality"
    )
    return [FrontierPoint(float(lam), float(cost), float(q)) for lam, cost, q in rows.iter_rows()]


def matched_cost_table(
    frontier: pl.DataFrame, baselines: pl.DataFrame, policy: str = "learned"
) -> pl.DataFrame:
    """One row per baseline of ``baselines`` (an ``eval.simulated.compare_policies`` table) that neither
    uses the truth nor is ``policy`` itself, matched against ``policy``'s frontier points."""
    points = frontier_points(frontier, policy)
    rows = [
        match_baseline(
            points, row["policy"], float(row["quality"]), float(row["cost_per_request_usd"])
        ).as_row()
        for row in baselines.iter_rows(named=True)
        if not row["uses_truth"] and row["policy"] != policy
    ]
    schema = {name: pl.Float64 for name in MatchedCost.__dataclass_fields__} | {
        "baseline": pl.String,
        "verdict": pl.String,
        "mix": pl.String,
        "pure_verdict": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def matched_cost_metrics(table: pl.DataFrame) -> dict[str, float]:
    """``matched.<baseline>.*`` per baseline, and how many baselines the learned policy beats: at equal
    cost by a mixture (``beaten``), by one λ at no more cost (``beaten_pure``), or either way."""
    metrics: dict[str, float] = {}
    for row in table.iter_rows(named=True):
        prefix = f"matched.{row['baseline']}"
        metrics[f"{prefix}.in_range"] = float(row["verdict"] != OUT_OF_RANGE)
        if row["learned_quality"] is not None:
            metrics[f"{prefix}.learned_quality"] = row["learned_quality"]
            metrics[f"{prefix}.margin"] = row["margin"]
        if row["pure_quality"] is not None:
            metrics[f"{prefix}.pure_quality"] = row["pure_quality"]
            metrics[f"{prefix}.pure_margin"] = row["pure_margin"]
            metrics[f"{prefix}.pure_cost_multiplier"] = row["pure_cost_multiplier"]
    mixed, pure = table["verdict"] == BEATS, table["pure_verdict"] == BEATS
    either = int((mixed | pure).sum())
    return metrics | {
        "matched.baselines": float(table.height),
        "matched.beaten": float(mixed.sum()),  # at equal cost, mixing two λ (in range only)
        "matched.beaten_pure": float(pure.sum()),  # by one λ at no more cost
        "matched.beaten_at_no_more_cost": float(either),  # either way
        "matched.beats_every_baseline": float(table.height > 0 and either == table.height),
        "matched.out_of_range": float((table["verdict"] == OUT_OF_RANGE).sum()),
    }
