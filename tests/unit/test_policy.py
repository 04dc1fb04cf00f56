import random

import numpy as np
import polars as pl
import pytest

from router_model.policy import (
    CandidatePrediction,
    PolicyParams,
    action_probabilities,
    choose_sku,
    pace_cost_multiplier,
    utility,
    utility_of,
)


def candidates():
    return [
        CandidatePrediction("large", p_quality=0.92, ttft_ms=700, output_tokens=400, cost_usd=0.020),
        CandidatePrediction("medium", p_quality=0.85, ttft_ms=450, output_tokens=380, cost_usd=0.004),
        CandidatePrediction("small", p_quality=0.70, ttft_ms=200, output_tokens=350, cost_usd=0.001),
        CandidatePrediction("slow", p_quality=0.99, ttft_ms=2500, output_tokens=400, cost_usd=0.001),
    ]


def test_utility_trades_quality_for_cost_and_lateness():
    params = PolicyParams(cost_multiplier=1.0, latency_multiplier=1.0)
    large, medium, _, slow = candidates()
    assert utility(large, params) == pytest.approx(0.92 - 0.020 / 0.012)
    assert utility(medium, params) > utility(large, params)
    assert utility(slow, params) == pytest.approx(0.99 - 0.001 / 0.012 - (2500 - 900) / 900)


def test_the_one_utility_formula_gives_the_same_values_on_floats_arrays_and_polars_columns():
    params = PolicyParams(cost_multiplier=0.7, latency_multiplier=0.3)
    preds = candidates()
    expected = [utility(p, params) for p in preds]  # slow is late, the others on time
    columns = {
        "q": [p.p_quality for p in preds],
        "c": [p.cost_usd for p in preds],
        "t": [float(p.ttft_ms) for p in preds],
    }
    on_arrays = utility_of(*(np.array(values) for values in columns.values()), params)
    on_columns = pl.DataFrame(columns).select(utility_of(pl.col("q"), pl.col("c"), pl.col("t"), params))
    assert on_arrays.tolist() == expected  # bit for bit: max(0, x) as (x + |x|) / 2 is exact
    assert on_columns.to_series().to_list() == expected
    assert expected[3] == pytest.approx(0.99 - 0.7 * 0.001 / 0.012 - 0.3 * (2500 - 900) / 900)


def test_probabilities_sum_to_one_and_missing_the_slo_gets_none():
    probabilities, _, order = action_probabilities(
        candidates(), PolicyParams(cost_multiplier=0.2, epsilon=0.3, explore_top_k=2)
    )
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert probabilities["slow"] == 0.0
    assert order[0] == "medium" and order[-1] == "slow"
    assert probabilities["medium"] == pytest.approx(0.7 + 0.15)
    assert probabilities[order[1]] == pytest.approx(0.15)


def test_when_every_candidate_misses_the_slo_the_fastest_is_kept():
    slow_only = [
        CandidatePrediction("a", 0.9, 2000, 100, 0.001),
        CandidatePrediction("b", 0.5, 1200, 100, 0.001),
    ]
    decision = choose_sku(slow_only, PolicyParams(epsilon=0.5), uniform=0.99)
    assert decision.chosen_sku == "b" and decision.propensity == 1.0
    assert decision.fallback_skus == ("a",)


def test_choice_frequencies_match_the_logged_propensities():
    params = PolicyParams(epsilon=0.2, explore_top_k=3)
    rng = random.Random(7)
    counts: dict[str, int] = {}
    logged: dict[str, float] = {}
    n = 20_000
    for _ in range(n):
        decision = choose_sku(candidates(), params, rng.random())
        counts[decision.chosen_sku] = counts.get(decision.chosen_sku, 0) + 1
        logged[decision.chosen_sku] = decision.propensity
        assert decision.chosen_sku not in decision.fallback_skus
    for sku, propensity in logged.items():
        share = counts[sku] / n
        tolerance = 4 * (propensity * (1 - propensity) / n) ** 0.5
        assert abs(share - propensity) <= tolerance, (sku, share, propensity)


def test_no_exploration_is_deterministic_and_invalid_params_are_refused():
    decision = choose_sku(candidates(), PolicyParams(cost_multiplier=0.2, epsilon=0.0), uniform=0.999)
    assert decision.chosen_sku == "medium" and not decision.explored and decision.propensity == 1.0
    with pytest.raises(ValueError):
        PolicyParams(epsilon=1.5)
    with pytest.raises(ValueError):
        choose_sku([], PolicyParams(), 0.1)


def test_budget_pacing_raises_lambda_over_budget_and_lowers_it_under():
    assert pace_cost_multiplier(1.0, 0.018, 0.012) > 1.0
    assert pace_cost_multiplier(1.0, 0.006, 0.012) < 1.0
    assert pace_cost_multiplier(0.0, 0.006, 0.012) == 0.0
    assert pace_cost_multiplier(0.0, 0.024, 0.012) > 0.0
