"""The learned policy's quality at each baseline's cost per request (a matched-cost comparison).

The learned policy traced over λ gives a set of (cost, quality) points; mixing two of them at
random per request attains every point of their upper concave hull (``offline.frontier``).

For each baseline, :func:`match_baseline` reports:

- ``learned_quality``: the hull at the baseline's cost, i.e. the mixed policy at *equal* cost;
  no value when the cost lies outside the frontier's cost range (below its cheapest point or
  above its dearest): the hull is not extrapolated, the verdict is ``out of range``;
- ``pure_*``: the best single λ (no mixing) whose cost is at most the baseline's, so the claim
  does not rest on the mixing argument alone.

Pure functions over plain data and polars frames. See docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import polars as pl

from offline.frontier import FrontierPoint, best_pure_point, quality_at_cost

BEATS, LOSES, TIES = "beats", "loses", "ties"
OUT_OF_RANGE = "out of range"
NO_POINT = "no point at or below this cost"


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
