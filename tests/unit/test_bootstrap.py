import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.catalog import load_catalog
from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, FeedbackRecord, OutcomeRecord, arrow_schema
from features.request import RequestFacts, candidate_features
from features.schema import CANDIDATE_FEATURE_NAMES, REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES, TASK_TYPES
from simulator.bootstrap import MANIFEST_NAME, SUCCESS_NAME, BootstrapConfig, BootstrapError, run_bootstrap
from simulator.logging_policy import LoggingPolicyConfig, eligible_skus, logging_policy
from simulator.world import TenantParams, build_world
from switchyard_cli.main import app

SMALL = {"days": 1, "requests_per_day": 4000, "n_tenants": 400, "start": date(2026, 11, 1)}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    summary = run_bootstrap(BootstrapConfig(seed=9, out=root, **SMALL))
    return root, summary


def read(root, record_type):
    return scan_records(root, record_type).collect()


def test_tables_read_back_in_the_record_schema(logs):
    root, _ = logs
    for record_type in (DecisionRecord, AttemptRecord, OutcomeRecord, FeedbackRecord):
        frame = read(root, record_type)
        assert frame.height > 0, record_type.TABLE
        expected = pl.from_arrow(arrow_schema(record_type).empty_table()).schema
        for name, dtype in expected.items():
            assert frame.schema[name] == dtype, (record_type.TABLE, name)
        for path in (root / record_type.TABLE).rglob("*.parquet"):
            assert pq.read_schema(path).remove_metadata() == arrow_schema(record_type).remove_metadata()


def test_manifest_counts_the_rows_written(logs):
    root, summary = logs
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert (root / SUCCESS_NAME).exists()
    for record_type in (DecisionRecord, AttemptRecord, OutcomeRecord, FeedbackRecord):
        assert manifest["counts"][record_type.TABLE] == read(root, record_type).height
    assert manifest["seed"] == 9 and manifest["router_version"] == "rules-v1"
    assert summary.requests == manifest["counts"]["decisions"] == manifest["counts"]["outcomes"]


def test_propensity_is_the_probability_of_the_chosen_candidate(logs):
    decisions = read(logs[0], DecisionRecord)
    for row in decisions.iter_rows(named=True):
        probabilities = {c["sku"]: c["probability"] for c in row["candidates"]}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert row["propensity"] == probabilities[row["chosen_sku"]]
        assert row["policy_epsilon"] == 0.1 and row["router_version"] == "rules-v1"
        assert row["attempts"][0]["sku"] == row["chosen_sku"]
        assert len(row["request_features"]) == len(REQUEST_FEATURE_NAMES)
        assert len(row["store_features"]) == len(STORE_FEATURE_NAMES)
        assert all(np.isnan(row["store_features"]))


def _facts_from_vector(vector, max_tokens):
    values = dict(zip(REQUEST_FEATURE_NAMES, vector, strict=True))
    return RequestFacts(
        prompt_tokens=int(values["prompt_tokens"]),
        system_tokens=int(values["system_tokens"]),
        last_user_tokens=int(values["last_user_tokens"]),
        turns=int(values["turns"]),
        max_tokens=max_tokens,
        has_code=bool(values["has_code"]),
        has_tools=bool(values["has_tools"]),
        stream=bool(values["stream"]),
        script="latin",
        task_type=TASK_TYPES[int(values["task_type"])],
    )


def test_logged_probabilities_are_the_logging_policy_recomputed_from_the_logged_facts(logs):
    root, _ = logs
    world = build_world(9, tenant_params=TenantParams(n_tenants=SMALL["n_tenants"]))
    decisions = read(root, DecisionRecord)
    max_tokens_index = REQUEST_FEATURE_NAMES.index("max_tokens")
    for row in decisions.head(400).iter_rows(named=True):
        tenant = world.tenant(row["tenant_id"])
        facts = _facts_from_vector(row["request_features"], int(row["request_features"][max_tokens_index]))
        eligible = eligible_skus(world.catalog, tenant, facts)
        assert [sku.name for sku in eligible] == [c["sku"] for c in row["candidates"]]
        # a uniform inside the logged choice's slice of the cumulative probabilities replays that choice
        names = [c["sku"] for c in row["candidates"]]
        cumulative = np.cumsum([c["probability"] for c in row["candidates"]])
        chosen = names.index(row["chosen_sku"])
        replay = _FixedUniform((cumulative[chosen] + (cumulative[chosen - 1] if chosen else 0.0)) / 2)
        recomputed = logging_policy(facts, tenant, eligible, replay, LoggingPolicyConfig())
        for candidate in row["candidates"]:
            assert candidate["probability"] == pytest.approx(recomputed.probabilities[candidate["sku"]])
        assert recomputed.chosen == row["chosen_sku"]
        assert row["propensity"] == pytest.approx(recomputed.propensity)
        assert row["fallback_skus"] == list(recomputed.fallbacks)


class _FixedUniform:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_requests_stay_in_the_tenants_home_region(logs):
    root, _ = logs
    world = build_world(9, tenant_params=TenantParams(n_tenants=SMALL["n_tenants"]))
    catalog = world.catalog
    decisions = read(root, DecisionRecord)
    attempts = read(root, AttemptRecord)
    region_of = {t.tenant_id: t.region for t in world.tenants}
    resident = {t.tenant_id for t in world.tenants if t.residency_required}
    assert decisions["tenant_id"].is_in(list(resident)).sum() > 0
    for row in decisions.iter_rows(named=True):
        home = region_of[row["tenant_id"]]
        assert row["region"] == home
        assert all(catalog.get(c["sku"]).deployed_in(home) for c in row["candidates"])
    joined = attempts.join(decisions.select("request_id", "tenant_id"), on="request_id")
    assert all(region_of[t] == r for t, r in joined.select("tenant_id", "region").iter_rows())
    assert all(catalog.get(s).deployed_in(r) for s, r in joined.select("sku", "region").iter_rows())


def test_failed_attempts_are_logged_and_fall_back_to_the_next_sku(logs):
    root, _ = logs
    decisions = read(root, DecisionRecord)
    attempts = read(root, AttemptRecord).sort("request_id", "attempt")
    assert attempts.height == int(decisions["attempts"].list.len().sum())
    assert (attempts["status"] != "ok").sum() > 0
    for _, group in attempts.group_by("request_id", maintain_order=True):
        statuses = group["status"].to_list()
        assert group["attempt"].to_list() == list(range(len(statuses)))
        assert all(status != "ok" for status in statuses[:-1])
    fallbacks = decisions.filter(pl.col("attempts").list.len() > 1)
    assert fallbacks.height > 0
    for row in fallbacks.iter_rows(named=True):
        tried = [a["sku"] for a in row["attempts"]]
        assert tried[1:] == row["fallback_skus"][: len(tried) - 1]


def test_outcome_costs_come_from_the_catalog_and_cache_hits_from_the_candidates(logs):
    root, _ = logs
    catalog = load_catalog()
    outcomes = read(root, OutcomeRecord).filter(pl.col("sku").is_not_null())
    decisions = read(root, DecisionRecord)
    cache_index = CANDIDATE_FEATURE_NAMES.index("expected_cache_hit")
    expected_hit = {
        (row["request_id"], c["sku"]): c["features"][cache_index]
        for row in decisions.iter_rows(named=True)
        for c in row["candidates"]
    }
    assert (outcomes["cached_tokens"] > 0).mean() > 0.2
    for row in outcomes.head(500).iter_rows(named=True):
        tokens = {k: row[k] for k in ("input_tokens", "cached_tokens", "output_tokens")}
        assert row["cost_usd"] == pytest.approx(catalog.request_cost_usd(row["sku"], **tokens))
        assert row["list_price_usd"] == pytest.approx(catalog.request_list_price_usd(row["sku"], **tokens))
        prompt = row["input_tokens"] + row["cached_tokens"]
        assert row["cached_tokens"] <= expected_hit[(row["request_id"], row["sku"])] * prompt + 1
    for row in decisions.head(200).iter_rows(named=True):
        for candidate in row["candidates"]:
            features = candidate_features(
                catalog.get(candidate["sku"]), cache_hit=candidate["features"][cache_index]
            )
            np.testing.assert_allclose(candidate["features"], features, rtol=1e-6)


def test_quality_signals_are_scores_between_zero_and_one(logs):
    root, _ = logs
    outcomes = read(root, OutcomeRecord)
    judged = outcomes.filter(pl.col("quality").is_not_null())
    assert 0.3 < judged.height / outcomes.height < 0.7
    assert set(judged["quality_source"].unique()) == {"judge"}
    assert judged["quality"].is_in([0.0, 1.0]).all()
    feedback = read(root, FeedbackRecord)
    assert feedback["score"].is_between(0, 1).all() and set(feedback["source"]) == {"user"}
    assert feedback["request_id"].is_in(outcomes["request_id"]).all()


def test_no_prompt_text_in_any_column(logs):
    root, _ = logs
    for record_type in (DecisionRecord, AttemptRecord, OutcomeRecord, FeedbackRecord):
        frame = read(root, record_type)
        strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
        for name in strings:
            values = frame[name].drop_nulls()
            if values.is_empty():
                continue
            assert values.str.len_bytes().max() <= 64, name
            assert not values.str.contains(r"\s").any(), name


def _contents(root):
    """{(table, partition, window prefix): sha256 of the bytes} of every part file."""
    found = {}
    for path in Path(root).rglob("*.parquet"):
        relative = path.relative_to(root)
        key = (*relative.parts[:-1], relative.name.split("-")[0])
        found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_same_seed_writes_identical_files_and_another_seed_does_not(tmp_path):
    small = {**SMALL, "requests_per_day": 600, "n_tenants": 40}
    first = run_bootstrap(BootstrapConfig(seed=4, out=tmp_path / "a", **small))
    run_bootstrap(BootstrapConfig(seed=4, out=tmp_path / "b", **small))
    run_bootstrap(BootstrapConfig(seed=5, out=tmp_path / "c", **small))
    assert first.requests > 0
    assert _contents(tmp_path / "a") == _contents(tmp_path / "b")
    assert _contents(tmp_path / "a") != _contents(tmp_path / "c")
    assert (tmp_path / "a" / MANIFEST_NAME).read_text() == (tmp_path / "b" / MANIFEST_NAME).read_text()


def test_refuses_to_append_to_existing_logs_unless_told_to_overwrite(tmp_path):
    small = {**SMALL, "requests_per_day": 300, "n_tenants": 30}
    run_bootstrap(BootstrapConfig(seed=1, out=tmp_path, **small))
    with pytest.raises(BootstrapError):
        run_bootstrap(BootstrapConfig(seed=1, out=tmp_path, **small))
    before = read(tmp_path, DecisionRecord).height
    run_bootstrap(BootstrapConfig(seed=1, out=tmp_path, overwrite=True, **small))
    assert read(tmp_path, DecisionRecord).height == before


def test_cli_runs_the_bootstrap_and_prints_a_summary(tmp_path):
    args = [
        "bootstrap",
        "--days",
        "1",
        "--requests-per-day",
        "300",
        "--tenants",
        "30",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "requests" in result.output and "peak RSS" in result.output
    assert (tmp_path / SUCCESS_NAME).exists()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
