"""The matched-cost comparison on hand-made frontiers: verdicts, tables, metrics (the hull itself:
test_offline_frontier.py)."""

import polars as pl
import pytest

from eval.matched_cost import (
    BEATS,
    LOSES,
    NO_POINT,
    OUT_OF_RANGE,
    TIES,
    match_baseline,
    matched_cost_metrics,
    matched_cost_table,
)
from offline.frontier import FrontierPoint

# λ=2 (cost 2, quality 0.55) lies below the chord λ=4 (1, 0.5) → λ=0 (3, 0.7): a 50/50 mix of
# λ=4 and λ=0 costs 2 and has quality 0.6. λ=-1 (stand-in for an over-spending point) is dearer
# and worse than λ=0, so it never helps.
POINTS = [
    FrontierPoint(4.0, 1.0, 0.5),
    FrontierPoint(2.0, 2.0, 0.55),
    FrontierPoint(0.0, 3.0, 0.7),
    FrontierPoint(-1.0, 4.0, 0.65),
]


def test_a_baseline_above_the_hull_loses_both_ways():
    match = match_baseline(POINTS, "strong", quality=0.65, cost_usd=2.0)
    assert match.verdict == LOSES and match.margin == pytest.approx(-0.05)
    assert match.pure_verdict == LOSES and match.pure_cost_multiplier == 2.0
    assert match.pure_margin == pytest.approx(-0.10)


def test_mixing_can_beat_a_baseline_that_every_affordable_single_lambda_loses_to():
    match = match_baseline(POINTS, "middling", quality=0.6, cost_usd=2.5)
    assert match.verdict == BEATS and match.learned_quality == pytest.approx(0.65)
    assert match.pure_verdict == LOSES and match.pure_quality == 0.55


def test_exact_ties_and_out_of_range_verdicts():
    assert match_baseline(POINTS, "tied", quality=0.7, cost_usd=3.0).verdict == TIES
    cheap = match_baseline(POINTS, "cheap", quality=0.3, cost_usd=0.5)
    assert cheap.verdict == OUT_OF_RANGE and cheap.learned_quality is None and cheap.margin is None
    assert cheap.pure_verdict == NO_POINT and cheap.pure_quality is None  # better quality, but dearer
    dear_good = match_baseline(POINTS, "dear_good", quality=0.9, cost_usd=9.0)
    assert dear_good.verdict == OUT_OF_RANGE and dear_good.pure_verdict == LOSES
    dear_bad = match_baseline(POINTS, "dear_bad", quality=0.6, cost_usd=9.0)
    assert dear_bad.verdict == OUT_OF_RANGE
    assert dear_bad.pure_verdict == BEATS and dear_bad.pure_cost_multiplier == 0.0


def _tables():
    """The learned frontier and baselines of the 1M-request bootstrap run (docs/training.md §5)."""
    learned = [
        (0.0, 0.730, 0.0095),
        (0.1, 0.716, 0.0080),
        (0.25, 0.641, 0.0048),
        (0.5, 0.583, 0.0033),
        (1.0, 0.537, 0.0026),
        (2.0, 0.484, 0.0021),
        (4.0, 0.449, 0.0020),
    ]
    rows = [("learned", lam, q, c) for lam, q, c in learned] + [("oracle", 0.0, 0.9, 0.0005)]
    frontier = pl.DataFrame(
        rows, schema=["policy", "cost_multiplier", "quality", "cost_per_request_usd"], orient="row"
    )
    baselines = pl.DataFrame(
        [
            ("random", False, 0.635, 0.0185),
            ("cheapest", False, 0.434, 0.0018),
            ("always_best", False, 0.794, 0.0190),
            ("rules", False, 0.667, 0.0093),
            ("learned", False, 0.730, 0.0095),
            ("oracle", True, 0.782, 0.0120),
        ],
        schema=["policy", "uses_truth", "quality", "cost_per_request_usd"],
        orient="row",
    )
    return frontier, baselines


def test_matched_cost_table_and_metrics_on_the_measured_run():
    frontier, baselines = _tables()
    table = matched_cost_table(frontier, baselines)
    assert table["baseline"].to_list() == [
        "random",
        "cheapest",
        "always_best",
        "rules",
    ]  # no oracle, no learned
    rows = {row["baseline"]: row for row in table.iter_rows(named=True)}
    # rules at $0.0093: 13/15 of the way from λ=0.1 ($0.0080) to λ=0 ($0.0095).
    assert rows["rules"]["verdict"] == BEATS
    assert rows["rules"]["learned_quality"] == pytest.approx(0.716 + 13 / 15 * 0.014)
    assert rows["rules"]["pure_cost_multiplier"] == 0.1 and rows["rules"]["pure_verdict"] == BEATS
    assert rows["random"]["verdict"] == OUT_OF_RANGE and rows["random"]["pure_verdict"] == BEATS
    assert rows["always_best"]["verdict"] == OUT_OF_RANGE and rows["always_best"]["pure_verdict"] == LOSES
    assert rows["cheapest"]["verdict"] == OUT_OF_RANGE and rows["cheapest"]["pure_verdict"] == NO_POINT
    # The oracle's cheap, excellent frontier point is not the learned policy's.
    assert "below the cheapest learned point (λ=4" in rows["cheapest"]["mix"]

    metrics = matched_cost_metrics(table)
    assert metrics["matched.rules.learned_quality"] == pytest.approx(rows["rules"]["learned_quality"])
    assert metrics["matched.rules.margin"] == pytest.approx(rows["rules"]["learned_quality"] - 0.667)
    assert "matched.random.learned_quality" not in metrics and metrics["matched.random.in_range"] == 0.0
    assert metrics["matched.random.pure_margin"] == pytest.approx(0.730 - 0.635)
    assert "matched.cheapest.pure_quality" not in metrics
    assert (metrics["matched.baselines"], metrics["matched.beaten"]) == (4.0, 1.0)
    assert (metrics["matched.beaten_pure"], metrics["matched.out_of_range"]) == (2.0, 3.0)
    assert metrics["matched.beaten_at_no_more_cost"] == 2.0  # rules and random; not cheapest, not always_best
    assert metrics["matched.beats_every_baseline"] == 0.0


def test_matched_cost_table_when_the_learned_policy_loses_everywhere():
    frontier, baselines = _tables()
    worse = frontier.with_columns(
        pl.when(pl.col("policy") == "learned")
        .then(pl.col("quality") - 0.2)
        .otherwise("quality")
        .alias("quality")
    )
    in_range = baselines.filter(pl.col("policy") == "rules")
    table = matched_cost_table(worse, in_range)
    assert table["verdict"].to_list() == [LOSES] and table["pure_verdict"].to_list() == [LOSES]
    assert table["margin"][0] < 0
    metrics = matched_cost_metrics(table)
    assert metrics["matched.beaten"] == metrics["matched.beaten_at_no_more_cost"] == 0.0
    assert metrics["matched.beats_every_baseline"] == 0.0
    empty = matched_cost_table(frontier.filter(pl.col("policy") == "nobody"), baselines)
    assert empty.height == 4 and set(empty["verdict"]) == {OUT_OF_RANGE}


def test_beats_every_baseline_only_when_each_one_is_beaten_one_way_or_the_other():
    frontier, baselines = _tables()
    deployable = baselines.filter(pl.col("policy").is_in(["random", "rules"]))
    metrics = matched_cost_metrics(matched_cost_table(frontier, deployable))
    assert metrics["matched.beaten"] == 1.0 and metrics["matched.beaten_pure"] == 2.0  # random: out of range
    assert metrics["matched.beats_every_baseline"] == 1.0
    cheap = pl.DataFrame(
        [("learned", 8.0, 0.44, 0.0017)],
        schema=["policy", "cost_multiplier", "quality", "cost_per_request_usd"],
        orient="row",
    )
    metrics = matched_cost_metrics(matched_cost_table(pl.concat([frontier, cheap]), baselines))
    assert metrics["matched.cheapest.in_range"] == 1.0 and metrics["matched.cheapest.margin"] > 0
    assert metrics["matched.beats_every_baseline"] == 0.0  # always_best is still better
