"""Benchmark metrics against hand-computable cases (eval.benchmarks.two_model / frontier / bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from eval.benchmarks.bootstrap import interval, resample_counts
from eval.benchmarks.frontier import frontier_metrics, upper_hull
from eval.benchmarks.two_model import PairOutcomes, pgr_curve, routing_order, two_model_metrics

# four prompts; only prompt 0 gains from the strong model
FOUR = PairOutcomes(
    q_strong=np.array([1.0, 1.0, 0.0, 1.0]),
    q_weak=np.array([0.0, 1.0, 0.0, 1.0]),
    c_strong=np.full(4, 10.0),
    c_weak=np.full(4, 1.0),
)


def test_perfect_router_on_hand_case():
    order = routing_order(np.array([1.0, 0.0, 0.0, 0.0]), tiebreak=np.arange(4))
    metrics = two_model_metrics(order, FOUR, np.ones(4))
    # PGR: 0 → 1 over the first quarter, then 1: area 0.125 + 0.75
    assert metrics["apgr"] == pytest.approx(0.875)
    assert metrics["cpt_50"] == pytest.approx(0.25)
    assert metrics["cpt_80"] == pytest.approx(0.25)
    # strong quality 0.75; 95% of it = 0.7125 reached after one strong call: cost (10 + 3) / 4 vs 10
    assert metrics["cost_saved_at_95"] == pytest.approx(1 - 13 / 40)


def test_worst_router_on_hand_case():
    order = routing_order(np.array([0.0, 1.0, 1.0, 1.0]), tiebreak=np.arange(4))
    metrics = two_model_metrics(order, FOUR, np.ones(4))
    assert metrics["apgr"] == pytest.approx(0.125)
    assert metrics["cpt_50"] == pytest.approx(1.0)


def test_weights_count_a_prompt_twice():
    order = routing_order(np.array([1.0, 0.0, 0.0, 0.0]), tiebreak=np.arange(4))
    share, pgr, quality, _ = pgr_curve(order, FOUR, np.array([2, 1, 1, 0]))
    assert share[1] == pytest.approx(0.5)  # prompt 0 drawn twice: half of the resample
    assert quality[-1] == pytest.approx(3 / 4)  # strong quality over the resample (1 + 1 + 1 + 0) ...
    assert pgr[1] == pytest.approx(1.0)


def test_random_scores_give_apgr_near_half():
    rng = np.random.default_rng(3)
    n = 4000
    q_weak = rng.integers(0, 2, n).astype(float)
    q_strong = np.maximum(q_weak, rng.integers(0, 2, n))
    outcomes = PairOutcomes(q_strong, q_weak, np.full(n, 10.0), np.ones(n))
    apgrs = [
        two_model_metrics(routing_order(rng.uniform(size=n), np.arange(n)), outcomes, np.ones(n))["apgr"]
        for _ in range(20)
    ]
    assert np.mean(apgrs) == pytest.approx(0.5, abs=0.02)
    oracle = two_model_metrics(routing_order(q_strong - q_weak, np.arange(n)), outcomes, np.ones(n))
    # PGR climbs linearly to 1 while the prompts that gain go first, then stays at 1
    assert oracle["apgr"] == pytest.approx(1 - np.mean(q_strong > q_weak) / 2)


def test_constant_score_is_a_random_router_by_tiebreak():
    n = 2000
    rng = np.random.default_rng(5)
    q_weak = rng.integers(0, 2, n).astype(float)
    outcomes = PairOutcomes(np.ones(n), q_weak, np.full(n, 2.0), np.ones(n))
    order = routing_order(np.zeros(n), rng.permutation(n))
    assert two_model_metrics(order, outcomes, np.ones(n))["apgr"] == pytest.approx(0.5, abs=0.05)


def test_upper_hull_drops_dominated_and_inner_points():
    hull = upper_hull(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([0.5, 0.6, 0.9, 0.8, 0.95]))
    assert hull.cost.tolist() == [0.0, 2.0, 4.0]
    assert hull.at(1.0) == pytest.approx(0.7)
    assert hull.at(10.0) == pytest.approx(0.95)  # flat beyond the best point
    assert hull.cost_to_reach(0.7) == pytest.approx(1.0)
    assert np.isnan(hull.cost_to_reach(0.99))


def test_aiq_and_gains_of_the_single_model_line():
    single_cost, single_quality = np.array([0.0, 1.0]), np.array([0.5, 1.0])
    oracle = upper_hull(np.array([0.0, 0.5]), np.array([0.5, 1.0]))
    mix = frontier_metrics(single_cost, single_quality, single_cost, single_quality, oracle)
    assert mix["aiq"] == pytest.approx(0.75)  # the chord from (0, 0.5) to (1, 1)
    assert mix["gain_at_best_cost"] == pytest.approx(0.0)
    assert mix["cost_saved_at_best_quality"] == pytest.approx(0.0)
    assert mix["oracle_gap"] == pytest.approx(0.0)  # the oracle is flat at 1 from 0.5 on
    router = frontier_metrics(np.array([0.0, 0.5]), np.array([0.5, 1.0]), single_cost, single_quality, oracle)
    assert router["aiq"] == pytest.approx(0.875)  # 0.375 under the rise over [0, 0.5], then 1 × 0.5
    assert router["cost_saved_at_best_quality"] == pytest.approx(0.5)


def test_bootstrap_counts_are_seeded_and_sum_to_n():
    first = np.concatenate(list(resample_counts(50, 250, seed=1)))
    again = np.concatenate(list(resample_counts(50, 250, seed=1)))
    assert first.shape == (250, 50)
    assert (first.sum(axis=1) == 50).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.concatenate(list(resample_counts(50, 250, seed=2))))


def test_interval_reports_where_a_metric_is_undefined():
    result = interval(0.4, np.array([0.1, 0.2, np.nan, 0.3]))
    assert result.low == pytest.approx(np.percentile([0.1, 0.2, 0.3], 2.5))
    assert result.defined_share == pytest.approx(0.75)
