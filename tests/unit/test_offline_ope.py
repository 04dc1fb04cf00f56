"""The off-policy estimators on hand examples."""

import numpy as np
import polars as pl
import pytest

from offline import ope
from router_model.policy import PolicyParams


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
    assert difference == pytest.approx(ope.snips(first, rewarded).value - ope.snips(second, rewarded).value)
    assert se > 0
    assert ope.snips_difference(first, first, rewarded) == (0.0, 0.0)


def test_the_reward_is_the_policys_own_utility_and_a_missing_ttft_is_not_late():
    params = PolicyParams(cost_multiplier=2.0, latency_multiplier=1.0, budget_usd=0.01, slo_ttft_ms=500.0)
    logged = pl.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "quality_label": [1, 1],
            "quality_source": ["judge", "judge"],
            "cost_usd": [0.005, 0.005],
            "outcome_ttft_ms": [None, 750.0],  # a non-streamed answer has no TTFT
        }
    )
    rewards = ope.rewards(logged, params)["reward"].to_list()
    assert rewards == pytest.approx([1 - 2 * 0.5, 1 - 2 * 0.5 - 1.0 * 0.5])


def test_snips_standard_error_and_a_uniform_logging_policy():
    # uniform logging over two SKUs (propensity 0.5): SNIPS is the mean reward of the matched rows
    rewarded = pl.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(4)],
            "chosen_sku": ["a", "b", "a", "a"],
            "propensity": [0.5] * 4,
            "reward": [1.0, 0.0, 0.0, 0.5],
            "cost_usd": [0.0] * 4,
        }
    )
    choices = pl.DataFrame({"request_id": [f"r{i}" for i in range(4)], "sku": ["a"] * 4})
    value = ope.snips(choices, rewarded)
    assert value.value == pytest.approx(0.5) and value.matched == 3
    # se = sqrt(Σ w²(r − v)²) / Σw with w = 2 on the matched rows
    assert value.standard_error == pytest.approx(np.sqrt(4 * (0.25 + 0.25 + 0.0)) / 6)
    assert value.effective_samples == pytest.approx(3.0)
