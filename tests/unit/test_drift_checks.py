"""The drift checks as functions over small frames: skew comparison, outcome calibration, feature weighting."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from eval.drift_data import FRAME_COLUMNS, conform
from eval.drift_features import (
    FeatureDrift,
    FeatureDriftRules,
    _verdict,
    evidently_scores,
    key_features,
    restratify,
    run_evidently,
)
from eval.drift_outcomes import outcome_drift
from eval.drift_reference import parse_range
from eval.drift_skew import Recomputation, SkewRules, Tolerance, compare_served
from features.schema import ALL_FEATURES, FEATURE_NAMES
from offline.reference import combined_importance

SPECS = {spec.name: spec for spec in ALL_FEATURES}
T0 = datetime(2026, 11, 2, 12, tzinfo=UTC)


def frame(n: int, seed: int = 0, **columns) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    base = {
        "request_id": [f"r{i}" for i in range(n)],
        "ts": [T0 + timedelta(seconds=i) for i in range(n)],
        "sku": rng.choice(["a", "b"], n).tolist(),
        "router_version": ["rules-v1"] * n,
        "first_attempt_ok": [True] * n,
        "prompt_tokens": rng.lognormal(7, 1, n),
        "task_type": rng.integers(0, 8, n).astype(float),
        "has_code": (rng.random(n) < 0.2).astype(float),
        "sku_price_input": rng.choice([1.0, 3.0], n),
        "pred_ttft_ms": rng.lognormal(6, 0.3, n),
        "pred_cost_usd": np.full(n, 0.01),
        "pred_p_quality": np.full(n, 0.7),
    }
    base["obs_ttft_ms"] = base["pred_ttft_ms"] * rng.lognormal(0, 0.2, n)
    base["obs_cost_usd"] = rng.normal(0.01, 0.001, n)
    base["obs_good"] = (rng.random(n) < 0.7).astype(float)
    base.update(columns)
    return conform(pl.DataFrame(base))


def test_frames_have_one_schema():
    assert frame(3).columns == list(FRAME_COLUMNS)


def test_skew_names_the_feature_its_source_and_the_size():
    served = frame(200).with_columns(
        pl.when(pl.col("request_id").is_in([f"r{i}" for i in range(1, 13)]))
        .then(pl.col("prompt_tokens") * 1000)
        .otherwise(pl.col("prompt_tokens"))
        .alias("prompt_tokens"),
        pl.when(pl.col("request_id") == "r77")
        .then(float("nan"))
        .otherwise(pl.col("has_code"))
        .alias("has_code"),
    )
    offline = frame(200).select("request_id", "prompt_tokens", "has_code", "task_type")
    offline = offline.with_columns(
        pl.when(pl.col("request_id") == "r9").then(None).otherwise(pl.col("task_type")).alias("task_type")
    )
    result = compare_served(
        served, [Recomputation("replay", offline, tolerances={"prompt_tokens": Tolerance(0.5)})], SkewRules()
    )
    by_name = {s.name: s for s in result.features}
    tokens = by_name["prompt_tokens"]
    assert (
        tokens.mismatches == 12
        and tokens.severity == "critical"
        and tokens.median_ratio == pytest.approx(1000)
    )
    assert by_name["has_code"].mismatches == 1 and by_name["has_code"].severity == "ok"  # 0.5% < 1%
    assert "served missing" in by_name["has_code"].example
    assert by_name["task_type"].compared == 199  # null offline: not recomputable, not compared
    assert result.verdict.status == "critical" and result.verdict.reasons[0].startswith("prompt_tokens: 6.0%")


def test_skew_within_tolerance_is_no_skew_and_a_blind_source_is_a_warning():
    served = frame(100)
    offline = served.select("request_id", (pl.col("prompt_tokens") * 1.1).alias("prompt_tokens"))
    loose = Recomputation("worker usage", offline, tolerances={"prompt_tokens": Tolerance(0.5, 0.25)})
    assert compare_served(served, [loose]).verdict.status == "ok"
    tight = Recomputation("exact replay", offline)
    assert compare_served(served, [tight]).verdict.status == "critical"
    blind = Recomputation("feast", served.select("request_id").clear(), warnings=("offline store covers 0%",))
    verdict = compare_served(served, [blind]).verdict
    assert verdict.status == "warning" and not verdict.evaluated


def test_a_slower_sku_is_named_and_the_others_are_not():
    reference, current = frame(2000, seed=1), frame(1000, seed=2)
    current = current.with_columns(
        pl.when(pl.col("sku") == "b").then(pl.col("obs_ttft_ms") * 2).otherwise(pl.col("obs_ttft_ms"))
    )
    result = outcome_drift(reference, current, router_version="rules-v1")
    assert result.calibrated and result.verdict.status == "critical"
    assert [o.sku for o in result.skus if o.severity != "ok"] == ["b"]
    assert result.verdict.reasons[0].startswith("SKU b: TTFT median")
    (b,) = [o for o in result.skus if o.sku == "b"]
    assert b.ttft_calibration_ratio == pytest.approx(2.0, rel=0.1)


def test_a_slowdown_the_router_predicted_is_only_a_warning():
    reference, current = frame(2000, seed=1), frame(1000, seed=2)
    current = current.with_columns(pl.col("obs_ttft_ms") * 2, pl.col("pred_ttft_ms") * 2)
    result = outcome_drift(reference, current, router_version="rules-v1")
    assert {o.severity for o in result.skus} == {"warning"}


def test_quality_moves_only_count_beyond_the_noise():
    reference = frame(2000, seed=1)
    small = frame(60, seed=2, obs_good=np.r_[np.zeros(30), np.ones(30)])  # 0.5 vs 0.7, but 30 labels a SKU
    assert outcome_drift(reference, small, router_version="rules-v1").verdict.status == "ok"
    bad = frame(2000, seed=2, obs_good=(np.random.default_rng(3).random(2000) < 0.4).astype(float))
    result = outcome_drift(reference, bad, router_version="rules-v1")
    assert (
        result.verdict.status == "critical" and "quality calibration moved -0.29" in result.verdict.reasons[0]
    )


def test_predictions_of_another_router_are_not_compared():
    reference = frame(2000, seed=1)
    current = frame(1000, seed=2).with_columns(pl.col("pred_ttft_ms") * 3)  # another router's priors
    result = outcome_drift(reference, current, router_version="lgbm-abc")
    assert not result.calibrated and result.verdict.status == "ok"
    assert "predictions not compared" in result.verdict.reasons[-1]
    slower = current.with_columns(pl.col("obs_ttft_ms") * 2)
    raw = outcome_drift(reference, slower, router_version="lgbm-abc")
    assert raw.verdict.status == "warning"  # observed only: routing could explain it, so not critical


def test_the_sku_mix_moving_is_a_warning_at_most():
    reference = frame(2000, seed=1)
    current = frame(1000, seed=2).with_columns(pl.lit("a").alias("sku"))
    result = outcome_drift(reference, current, router_version="rules-v1")
    assert result.mix_distance > 0.5 and "SKU mix moved" in result.verdict.reasons[-1]
    assert result.verdict.status == "warning"


def test_key_features_are_the_few_that_hold_most_importance():
    rules = FeatureDriftRules(key_importance=0.8, max_key_features=8)
    importance = {name: 0.001 for name in FEATURE_NAMES} | {
        "prompt_tokens": 0.5,
        "sku_tier": 0.3,
        "task_type": 0.1,
    }
    assert key_features(importance, rules) == {"prompt_tokens", "sku_tier"}
    assert key_features({name: 1.0 for name in FEATURE_NAMES}, rules) == set(FEATURE_NAMES)
    by_head = {
        "p_quality": {"prompt_tokens": 1.0},
        "ttft_p90_ms": {"sku_tier": 1.0},
        "e2e_p50_ms": {"turns": 1.0},
    }
    combined = combined_importance(by_head)  # the heads the policy reads
    assert combined["prompt_tokens"] == combined["sku_tier"] == 0.5 and combined["turns"] == 0.0


def _drift(name: str, severity: str, importance: float, key: bool) -> FeatureDrift:
    return FeatureDrift(
        name, "numeric", "request", name, "wasserstein", 1.0, 0.2, 0.3, importance, key, severity, 1, 1, 0, 0
    )  # type: ignore[arg-type]


def test_importance_decides_how_loud_a_drift_is():
    rules = FeatureDriftRules()
    minor = _verdict((_drift("turns", "critical", 0.01, False),), rules, None, (), evaluated=True)
    assert minor.verdict.status == "warning"
    key = _verdict((_drift("prompt_tokens", "critical", 0.3, True),), rules, None, (), evaluated=True)
    assert key.verdict.status == "critical" and key.verdict.reasons[0].startswith("key feature prompt_tokens")
    many = tuple(_drift(f"f{i}", "warning", 0.1, False) for i in range(5))
    assert _verdict(many, rules, None, (), evaluated=True).verdict.status == "critical"  # 50% of importance


def test_restratify_draws_the_reference_to_the_current_sku_mix():
    reference = frame(1000, seed=1)
    current = pl.Series("sku", ["a"] * 90 + ["b"] * 10 + ["z"] * 5)
    drawn, unmatched = restratify(reference, current, 500, seed=0)
    shares = drawn["sku"].value_counts().sort("sku")["count"].to_list()
    assert drawn.height == 500 and shares == [450, 50] and unmatched == ["z"]  # 90/100 and 10/100 of a and b


def test_the_stat_tests_alone_give_the_report_scores():
    rules = FeatureDriftRules()
    specs = [SPECS[name] for name in ("prompt_tokens", "task_type", "has_code")]
    ref = frame(600, seed=1).select(
        pl.col("prompt_tokens").log1p().alias("log1p(prompt_tokens)"),
        pl.col("task_type").cast(pl.Int64).cast(pl.String),
        pl.col("has_code").cast(pl.Int64).cast(pl.String),
    )
    cur = frame(400, seed=2).select(
        (pl.col("prompt_tokens") * 2).log1p().alias("log1p(prompt_tokens)"),
        pl.col("task_type").cast(pl.Int64).cast(pl.String),
        pl.col("has_code").cast(pl.Int64).cast(pl.String),
    )
    snapshot, reported = run_evidently(ref, cur, specs, rules)
    alone = evidently_scores(ref, cur, specs, rules)
    assert {c: m for c, (_, m) in reported.items()} == {c: m for c, (_, m) in alone.items()}
    assert {c: s for c, (s, _) in reported.items()} == pytest.approx({c: s for c, (s, _) in alone.items()})
    assert reported["log1p(prompt_tokens)"][0] > rules.numeric_critical  # ln 2 / σ ≈ 0.7
    assert snapshot is not None


def test_reference_ranges():
    assert parse_range("2026-11-01..2026-11-02") == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
    )
    assert parse_range("2026-11-01T06:00..2026-11-01T12:00")[1] == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert parse_range("champion") is None
    with pytest.raises(ValueError):
        parse_range("2026-11-02..2026-11-01")
