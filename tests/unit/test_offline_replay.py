"""Replaying the routing policy over logged candidates, on hand examples."""

import numpy as np
import polars as pl
import pytest

from features.catalog import load_catalog
from offline import replay
from router_model.policy import CandidatePrediction, PolicyParams, choose_sku


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


def test_pacing_takes_the_smallest_lambda_whose_predicted_cost_is_within_budget():
    frame = pl.DataFrame(
        {"request_id": ["r1", "r1", "r2", "r2"], "_request": [0, 0, 1, 1], "sku": ["a", "b"] * 2}
    )
    predictions = {
        "p_quality": np.array([0.9, 0.5, 0.9, 0.5]),
        "ttft_p90_ms": np.full(4, 100.0),
        "output_tokens": np.full(4, 100.0),
    }
    costs = np.array([0.02, 0.002, 0.02, 0.002])  # "a" is better and over the $0.012 budget
    lam, choices = replay.paced_choices(frame, predictions, costs, PolicyParams(), grid=(0.0, 0.1, 0.5, 1.0))
    # utility of a − b = 0.4 − λ·0.018/0.012: b wins once λ > 0.267
    assert lam == 0.5 and choices["sku"].to_list() == ["b", "b"]
    generous = PolicyParams(budget_usd=0.05)
    assert replay.paced_choices(frame, predictions, costs, generous, grid=(0.0, 0.1))[0] == 0.0
