"""The cost–quality hull on hand-made frontiers: hull, interpolation, out of range, pure points."""

import pytest

from offline.frontier import FrontierPoint, best_pure_point, efficient_hull, quality_at_cost

# λ=2 (cost 2, quality 0.55) lies below the chord λ=4 (1, 0.5) → λ=0 (3, 0.7): a 50/50 mix of
# λ=4 and λ=0 costs 2 and has quality 0.6. λ=-1 (stand-in for an over-spending point) is dearer
# and worse than λ=0, so it never helps.
POINTS = [
    FrontierPoint(4.0, 1.0, 0.5),
    FrontierPoint(2.0, 2.0, 0.55),
    FrontierPoint(0.0, 3.0, 0.7),
    FrontierPoint(-1.0, 4.0, 0.65),
]


def test_the_hull_drops_points_below_a_chord_and_beyond_the_best():
    assert [p.cost_multiplier for p in efficient_hull(POINTS)] == [4.0, 0.0]
    collinear = [FrontierPoint(2, 1, 0.4), FrontierPoint(1, 2, 0.5), FrontierPoint(0, 3, 0.6)]
    assert [p.cost_multiplier for p in efficient_hull(collinear)] == [2, 0]
    concave = [FrontierPoint(2, 1, 0.4), FrontierPoint(1, 2, 0.55), FrontierPoint(0, 3, 0.6)]
    assert efficient_hull(reversed(concave)) == concave  # order of the input does not matter
    same_cost = [FrontierPoint(64, 1, 0.4), FrontierPoint(16, 1, 0.45), FrontierPoint(0, 2, 0.6)]
    assert [p.cost_multiplier for p in efficient_hull(same_cost)] == [16, 0]
    cheapest_is_best = [FrontierPoint(1, 1, 0.8), FrontierPoint(0, 2, 0.7)]
    assert efficient_hull(cheapest_is_best) == [cheapest_is_best[0]]
    assert efficient_hull([]) == []


def test_quality_at_cost_interpolates_on_the_hull_not_between_neighbours():
    quality, mix = quality_at_cost(POINTS, 2.0)
    assert quality == pytest.approx(0.6)  # the mix, not λ=2's 0.55
    assert mix == "λ=4 × 0.500 + λ=0 × 0.500"
    assert quality_at_cost(POINTS, 1.5)[0] == pytest.approx(0.55)
    assert quality_at_cost(POINTS, 1.0) == (0.5, "λ=4")  # exactly a vertex: a pure policy
    assert quality_at_cost(POINTS, 3.0) == (0.7, "λ=0")
    # Between the best point and the dearest one: the best point, budget left unspent.
    assert quality_at_cost(POINTS, 3.5) == (0.7, "λ=0")


def test_outside_the_frontiers_cost_range_nothing_is_extrapolated():
    below, why = quality_at_cost(POINTS, 0.5)
    assert below is None and why.startswith("below the cheapest learned point (λ=4")
    above, why = quality_at_cost(POINTS, 4.5)
    assert above is None and why.startswith("above the dearest learned point (λ=-1")
    assert quality_at_cost([], 1.0) == (None, "no learned points")


def test_best_pure_point_is_the_best_single_lambda_at_no_more_cost():
    assert best_pure_point(POINTS, 0.99) is None
    assert best_pure_point(POINTS, 1.0) == POINTS[0]
    assert best_pure_point(POINTS, 2.5) == POINTS[1]
    assert best_pure_point(POINTS, 10.0) == POINTS[2]  # λ=0 beats the dearer λ=-1
    ties = [FrontierPoint(1, 2.0, 0.6), FrontierPoint(0, 3.0, 0.6)]
    assert best_pure_point(ties, 5.0) == ties[0]  # equal quality: the cheaper one
