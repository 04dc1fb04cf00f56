import json
import shutil
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from eval.sim_cache import replay_prompt_cache
from eval.simulated import (
    EvaluationSet,
    GroundTruthMismatch,
    always_best,
    candidate_truth,
    cheapest,
    compare_policies,
    eligible_pairs,
    evaluate_choices,
    evaluation_set,
    frontier,
    logged_candidates,
    oracle,
    random_choice,
    regenerate_ground_truth,
    rules,
)
from features.catalog import load_catalog
from features.record_store import scan_records
from features.records import DecisionRecord, OutcomeRecord
from features.schema import REQUEST_FEATURE_NAMES
from router_model.policy import CandidatePrediction, PolicyParams, choose_sku
from simulator.bootstrap import MANIFEST_NAME, BootstrapConfig, run_bootstrap

TEST_START = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-logs")
    config = BootstrapConfig(
        days=1, requests_per_day=3000, seed=11, out=root, start=date(2026, 11, 1), n_tenants=400
    )
    run_bootstrap(config)
    return root


@pytest.fixture(scope="module")
def truth(logs):
    return regenerate_ground_truth(logs)


@pytest.fixture(scope="module")
def evaluation(logs, truth) -> EvaluationSet:
    return evaluation_set(truth, logged_candidates(logs, TEST_START), TEST_START)


@pytest.fixture(scope="module")
def table(evaluation):
    return compare_policies(None, None, rules(evaluation.candidates), evaluation=evaluation)


def _metrics(table: pl.DataFrame) -> dict[str, dict]:
    return {row["policy"]: row for row in table.iter_rows(named=True)}


def test_regenerated_truth_matches_the_logs_one_to_one(logs, truth):
    decisions = scan_records(logs, DecisionRecord).collect()
    assert truth.height == decisions.height == truth["request_id"].n_unique()
    assert set(truth["request_id"]) == set(decisions["request_id"])
    features = decisions.select(
        "request_id",
        *(
            pl.col("request_features").list.get(REQUEST_FEATURE_NAMES.index(name)).cast(pl.Int64).alias(name)
            for name in ("prompt_tokens", "system_tokens", "last_user_tokens", "turns")
        ),
        pl.col("chosen_sku"),
    )
    joined = truth.join(features, on="request_id", suffix="_logged")
    assert joined.height == truth.height
    for ours, logged in (
        ("prompt_tokens", "prompt_tokens_logged"),
        ("system_tokens", "system_tokens_logged"),
        ("last_user_tokens", "last_user_tokens_logged"),
        ("turn", "turns"),
        ("logged_chosen_sku", "chosen_sku"),
    ):
        assert (joined[ours] == joined[logged]).all(), ours
    assert truth["task"].n_unique() == 8 and truth["difficulty"].is_between(0, 1).all()
    assert (truth["task"] != truth["task_hint"]).any()  # the truth is not what the router was told


def test_candidate_truth_reproduces_what_the_bootstrap_drew_for_the_served_sku(logs, truth):
    served = truth.filter(pl.col("logged_served_sku").is_not_null())
    pairs = served.select("request_id", sku="logged_served_sku")
    by_candidate = candidate_truth(truth, pairs)
    # P(good) is exactly the bootstrap's, and the tokens the SKU returns are the logged ones
    np.testing.assert_array_equal(
        by_candidate["p_good"].to_numpy(), served["logged_served_p_good"].to_numpy()
    )
    outcomes = scan_records(logs, OutcomeRecord).collect().join(by_candidate, on=["request_id", "sku"])
    assert outcomes.height == served.height
    assert (outcomes["output_tokens"] == outcomes["output_tokens_right"]).all()
    # the logged cached tokens never exceed the prefix the SKU held; their mean matches the expectation
    prefix = truth.join(pairs, on="request_id").select(
        "request_id",
        pl.col("cached_prefix_by_sku").arr.get(pl.col("sku").cast(pl.Enum(_catalog_names())).to_physical()),
    )
    merged = outcomes.join(prefix, on="request_id")
    assert (merged["cached_tokens"] <= merged["cached_prefix_by_sku"]).all()
    assert outcomes["cached_tokens"].mean() == pytest.approx(
        outcomes["expected_cached_tokens"].mean(), rel=0.05
    )
    assert outcomes["cost_usd"].mean() == pytest.approx(outcomes["cost_usd_right"].mean(), rel=0.05)


def _catalog_names():
    return list(load_catalog().names)


def test_regeneration_refuses_logs_of_another_world(logs, tmp_path):
    copy = tmp_path / "logs"
    shutil.copytree(logs, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    (copy / MANIFEST_NAME).write_text(json.dumps({**manifest, "seed": manifest["seed"] + 1}))
    with pytest.raises(GroundTruthMismatch):
        regenerate_ground_truth(copy)
    (copy / MANIFEST_NAME).write_text(json.dumps({**manifest, "params_digest": "0" * 16}))
    with pytest.raises(GroundTruthMismatch, match="parameters"):
        regenerate_ground_truth(copy)


def test_baselines_choose_one_logged_candidate_per_test_request(evaluation):
    allowed = evaluation.candidates.select("request_id", "sku")
    for choose in (random_choice, cheapest, always_best, rules):
        choices = choose(evaluation.candidates)
        assert choices.height == evaluation.truth.height == choices["request_id"].n_unique()
        assert choices.join(allowed, on=["request_id", "sku"]).height == choices.height
    assert evaluation.truth["ts"].min() >= TEST_START
    assert evaluation.truth["ts"].min() < datetime(2026, 11, 1, 13, tzinfo=UTC)


def test_rules_is_the_logging_policys_greedy_choice(evaluation):
    candidates = evaluation.candidates
    greedy = (
        candidates.filter(pl.len().over("request_id") > 1)
        .sort("logged_probability", descending=True)
        .group_by("request_id")
        .first()
        .select("request_id", greedy="sku")
    )
    joined = rules(candidates).join(greedy, on="request_id")
    assert joined.height > 0.9 * evaluation.truth.height
    assert (joined["sku"] == joined["greedy"]).all()


def test_always_best_beats_cheapest_on_quality_at_a_higher_cost_and_random_sits_between(table):
    m = _metrics(table)
    best, cheap, rand = m["always_best"], m["cheapest"], m["random"]
    assert best["quality"] > rand["quality"] > cheap["quality"]
    assert best["cost_per_request_usd"] > cheap["cost_per_request_usd"]
    assert rand["cost_per_request_usd"] > cheap["cost_per_request_usd"]
    assert m["cheapest"]["cost_per_request_usd"] == min(r["cost_per_request_usd"] for r in m.values())
    assert best["share_by_sku"]["claude-opus-4-5"] > 0.7


def test_oracle_beats_every_policy_on_utility_and_on_quality_at_no_more_cost(table):
    m = _metrics(table)
    for name in ("oracle", "oracle_slo"):
        ref = m[name]
        assert ref["uses_truth"] and ref["meets_budget"]
        lam = ref["cost_multiplier"]
        for other in m.values():
            if other["uses_truth"]:
                continue

            def utility(row, lam=lam):
                return row["quality"] - lam * row["cost_per_request_usd"] / row["budget_usd"]

            if name == "oracle":
                assert utility(ref) >= utility(other) - 1e-12, other["policy"]
                if other["cost_per_request_usd"] <= ref["cost_per_request_usd"]:
                    assert ref["quality"] >= other["quality"], other["policy"]
    assert m["oracle_slo"]["slo_miss_share"] < m["oracle"]["slo_miss_share"]


def test_oracle_finds_the_multiplier_that_meets_a_binding_budget(evaluation):
    budget = 0.002
    choices, lam = oracle(evaluation.truth_by_candidate, budget_usd=budget)
    report = evaluate_choices(evaluation.truth_by_candidate, choices, budget_usd=budget)
    assert lam > 0 and report.meets_budget and report.cost_per_request_usd > 0.95 * budget
    unconstrained = evaluate_choices(evaluation.truth_by_candidate, oracle(evaluation.truth_by_candidate)[0])
    assert unconstrained.quality > report.quality


def test_oracle_slo_is_the_router_policy_fed_the_truth(evaluation):
    lam, params = 0.7, PolicyParams(cost_multiplier=0.7, epsilon=0.0)
    choices, _ = oracle(
        evaluation.truth_by_candidate,
        cost_multiplier=lam,
        latency_multiplier=params.latency_multiplier,
        slo_ttft_ms=params.slo_ttft_ms,
    )
    chosen = dict(choices.iter_rows())
    rows = evaluation.truth_by_candidate.filter(
        pl.col("request_id").is_in(choices["request_id"].head(300).implode())
    )
    for (request_id,), group in rows.group_by("request_id"):
        predictions = [
            CandidatePrediction(
                r["sku"], r["p_good"], r["ttft_expected_ms"], r["output_tokens"], r["cost_usd"]
            )
            for r in group.iter_rows(named=True)
        ]
        assert choose_sku(predictions, params, 0.5).chosen_sku == chosen[request_id]


def test_report_metrics_on_a_hand_made_example():
    by_candidate = pl.DataFrame(
        {
            "request_id": ["a", "a", "b", "c", "c"],
            "sku": ["big", "small", "small", "big", "small"],
            "eligible": [True, True, True, True, False],
            "p_good": [0.9, 0.6, 0.5, 0.8, 0.3],
            "cost_usd": [0.02, 0.001, 0.003, 0.01, 0.0],
            "list_price_usd": [0.05, 0.002, 0.004, 0.03, 0.0],
            "ttft_sampled_ms": [1000.0, 100.0, 500.0, 2000.0, 10.0],
        }
    )
    choices = pl.DataFrame({"request_id": ["a", "b", "c"], "sku": ["big", "small", "big"]})
    report = evaluate_choices(by_candidate, choices, budget_usd=0.012, slo_ttft_ms=900.0)
    assert report.requests == 3
    assert report.quality == pytest.approx((0.9 + 0.5 + 0.8) / 3)
    assert report.cost_per_request_usd == pytest.approx(0.011)
    assert report.list_price_per_request_usd == pytest.approx(0.028)
    assert report.ttft_p50_ms == pytest.approx(1000.0)
    assert report.ttft_p99_ms == pytest.approx(1000.0 + 0.98 * 1000.0)
    assert report.slo_miss_share == pytest.approx(2 / 3)
    assert report.meets_budget
    assert report.share_by_sku == pytest.approx({"big": 2 / 3, "small": 1 / 3})
    assert not evaluate_choices(by_candidate, choices, budget_usd=0.01).meets_budget
    with pytest.raises(ValueError, match="not eligible"):
        evaluate_choices(by_candidate, choices.with_columns(sku=pl.lit("small")))
    with pytest.raises(ValueError, match="more than one"):
        evaluate_choices(by_candidate, pl.concat([choices, choices.head(1)]))


def test_learned_choices_must_cover_the_test_requests(evaluation):
    partial = rules(evaluation.candidates).head(10)
    with pytest.raises(ValueError, match="missing"):
        compare_policies(None, None, partial, evaluation=evaluation)


def test_compare_policies_reports_every_policy_and_the_learned_one(table):
    assert table["policy"].to_list() == [
        "random",
        "cheapest",
        "always_best",
        "rules",
        "learned",
        "oracle",
        "oracle_slo",
    ]
    m = _metrics(table)
    assert m["learned"]["quality"] == m["rules"]["quality"]  # the learned slot was given the rules' choices
    for row in m.values():
        assert sum(row["share_by_sku"].values()) == pytest.approx(1.0)
        assert row["ttft_p50_ms"] <= row["ttft_p99_ms"]


def test_frontier_trades_quality_for_cost_as_lambda_grows(evaluation):
    def choices_for_lambda(lam):
        return oracle(evaluation.truth_by_candidate, cost_multiplier=lam)[0]

    points = frontier(evaluation, choices_for_lambda, (0.0, 0.5, 2.0))
    assert points.height == 9
    for name in ("learned", "oracle", "oracle_slo"):
        curve = points.filter(pl.col("policy") == name).sort("cost_multiplier")
        assert curve["cost_per_request_usd"].diff().drop_nulls().le(0).all(), name
        assert curve["quality"].diff().drop_nulls().le(0).all(), name


def test_evaluation_is_deterministic_and_independent_of_row_order(logs, truth, evaluation, table):
    again = compare_policies(logs, TEST_START, rules(evaluation.candidates))
    assert again.equals(table)
    shuffled = evaluation.candidates.sample(fraction=1.0, shuffle=True, seed=3)
    assert random_choice(shuffled).equals(random_choice(evaluation.candidates))
    assert not random_choice(evaluation.candidates, seed=1).equals(random_choice(evaluation.candidates))
    pairs = eligible_pairs(evaluation.truth)
    first = candidate_truth(truth, pairs)
    second = candidate_truth(truth, pairs.reverse()).reverse()
    assert first.equals(second)
    assert not first.equals(candidate_truth(truth, pairs, noise_seed=1))


def test_replaying_the_logged_routing_reproduces_the_logged_cache(evaluation):
    truth = evaluation.truth
    logged = truth.select("request_id", sku=pl.coalesce("logged_served_sku", "logged_chosen_sku"))
    replayed = replay_prompt_cache(truth, logged, evaluation.history, load_catalog().names)
    same = (replayed["cached_prefix_by_sku"] == truth["cached_prefix_by_sku"]).to_numpy()
    failed = truth["logged_served_sku"].null_count()  # the replay assumes every choice was served
    assert same.all() if failed == 0 else same.mean() > 0.995
    assert (truth["cached_prefix_by_sku"].to_numpy() > 0).any()


def test_cache_replay_warms_the_skus_a_policy_routes_to(table):
    m = _metrics(table)
    # always_best moves traffic to opus-4.5, which the logging policy left mostly cold: its own
    # routing warms that cache, so the replayed cost is lower than under the logged cache state
    assert m["always_best"]["replay_cost_per_request_usd"] < m["always_best"]["cost_per_request_usd"]
    assert m["rules"]["replay_cost_per_request_usd"] == pytest.approx(
        m["rules"]["cost_per_request_usd"], rel=0.05
    )
