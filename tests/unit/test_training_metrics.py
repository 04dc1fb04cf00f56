"""Held-out metrics, the policy replay and the off-policy estimate on hand examples."""

import numpy as np
import polars as pl
import pytest

from features.catalog import load_catalog
from offline import ope, replay
from router_model.policy import CandidatePrediction, PolicyParams, choose_sku
from training import metrics


def test_expected_calibration_error_by_hand():
    # bin [0.1, 0.2): predictions 0.1, 0.1 with labels 0, 1 → |0.1 − 0.5| = 0.4 on 2 of 4 rows
    # bin [0.9, 1.0]: predictions 0.9, 0.9 with labels 1, 1 → |0.9 − 1.0| = 0.1 on 2 of 4 rows
    labels = np.array([0, 1, 1, 1])
    predictions = np.array([0.1, 0.1, 0.9, 0.9])
    assert metrics.expected_calibration_error(labels, predictions) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    curve = metrics.reliability_curve(labels, predictions)
    assert curve["count"].to_list() == [2, 2] and curve["observed"].to_list() == [0.5, 1.0]
    assert metrics.expected_calibration_error(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.0)


def test_auc_log_loss_pinball_and_coverage_by_hand():
    assert metrics.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert metrics.auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(metrics.auc(np.array([1, 1]), np.array([0.2, 0.3])))
    assert metrics.log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    # α = 0.9: under-prediction by 10 costs 9, over-prediction by 10 costs 1
    assert metrics.pinball_loss(np.array([110.0, 90.0]), np.array([100.0, 100.0]), 0.9) == pytest.approx(5.0)
    assert metrics.coverage(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0])) == 0.5


def test_expected_costs_are_the_catalogs():
    catalog = load_catalog()
    frame = pl.DataFrame(
        {
            "sku": ["claude-haiku-4-5", "claude-opus-4-5"],
            "prompt_tokens": [1000.0, 4000.0],
            "expected_cache_hit": [0.5, 0.0],
        }
    )
    costs = replay.expected_costs(frame, np.array([200.0, 300.0]), catalog)
    assert costs[0] == pytest.approx(
        catalog.request_cost_usd("claude-haiku-4-5", input_tokens=500, cached_tokens=500, output_tokens=200)
    )
    assert costs[1] == pytest.approx(
        catalog.request_cost_usd("claude-opus-4-5", input_tokens=4000, cached_tokens=0, output_tokens=300)
    )


def test_policy_replay_is_choose_sku_per_request():
    rng = np.random.default_rng(0)
    skus = ["a", "b", "c", "a", "b"]
    frame = pl.DataFrame({"request_id": ["r1"] * 3 + ["r2"] * 2, "_request": [0, 0, 0, 1, 1], "sku": skus})
    predictions = {
        "p_quality": rng.random(5),
        "ttft_p90_ms": np.array([300.0, 1200.0, 500.0, 950.0, 980.0]),
        "output_tokens": np.full(5, 300.0),
    }
    costs = rng.random(5) / 100
    params = PolicyParams(epsilon=0.3)  # the replay always runs at ε = 0
    choices = replay.policy_choices(frame, predictions, costs, params)
    for request, rows in (("r1", range(3)), ("r2", range(3, 5))):
        candidates = [
            CandidatePrediction(
                skus[i], predictions["p_quality"][i], predictions["ttft_p90_ms"][i], 300.0, costs[i]
            )
            for i in rows
        ]
        expected = choose_sku(candidates, PolicyParams(epsilon=0.0), 0.0).chosen_sku
        row = choices.filter(pl.col("request_id") == request).row(0, named=True)
        assert row["sku"] == expected
        assert (
            row["expected_cost_usd"] == costs[list(rows)[skus[slice(rows.start, rows.stop)].index(expected)]]
        )


def test_snips_by_hand():
    rewarded = pl.DataFrame(
        {
            "request_id": ["r1", "r2", "r3"],
            "chosen_sku": ["a", "b", "a"],
            "propensity": [0.5, 0.25, 1.0],
            "reward": [1.0, 0.0, 0.5],
            "cost_usd": [0.003, 0.006, 0.001],
        }
    )
    choices = pl.DataFrame({"request_id": ["r1", "r2", "r3"], "sku": ["a", "b", "b"]})
    value = ope.snips(choices, rewarded)
    # weights 2, 4, 0 → (2·1 + 4·0) / 6
    assert value.value == pytest.approx(1 / 3) and value.matched == 2 and value.requests == 3
    assert value.effective_samples == pytest.approx(36 / 20)
    assert value.cost_per_request_usd == pytest.approx((2 * 0.003 + 4 * 0.006) / 6)
    nothing = ope.snips(choices.with_columns(pl.lit("z").alias("sku")), rewarded)
    assert np.isnan(nothing.value) and nothing.matched == 0


def test_rewards_use_judge_scores_and_price_cost_and_lateness():
    params = PolicyParams(cost_multiplier=0.5, latency_multiplier=0.5, budget_usd=0.01, slo_ttft_ms=1000.0)
    logged = pl.DataFrame(
        {
            "request_id": ["r1", "r2", "r3"],
            "quality_label": [1, 0, 1],
            "quality_source": ["judge", "judge", "user"],
            "cost_usd": [0.01, 0.002, 0.0],
            "outcome_ttft_ms": [500.0, 1500.0, 100.0],
        }
    )
    rewarded = ope.rewards(logged, params)
    assert rewarded["request_id"].to_list() == ["r1", "r2"]  # user feedback is not a random sample
    assert rewarded["reward"].to_list() == pytest.approx([1 - 0.5, 0 - 0.1 - 0.25])
    assert ope.logged_value(rewarded) == pytest.approx((0.5 - 0.35) / 2)


def test_the_paired_difference_of_two_policies():
    rewarded = pl.DataFrame(
        {
            "request_id": ["r1", "r2", "r3", "r4"],
            "chosen_sku": ["a", "b", "a", "b"],
            "propensity": [0.5, 0.5, 0.5, 0.5],
            "reward": [1.0, 0.0, 0.5, 1.0],
            "cost_usd": [0.0] * 4,
        }
    )
    first = pl.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "sku": ["a", "a", "a", "b"]})
    second = pl.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "sku": ["a", "b", "b", "b"]})
    difference, se = ope.snips_difference(first, second, rewarded)
    assert difference == pytest.approx(
        ope.snips(first, rewarded).value - ope.snips(second, rewarded).value
    )
    assert se > 0
    assert ope.snips_difference(first, first, rewarded) == (0.0, 0.0)
