"""The real-outcomes world: SKU → model map, the leak-free split, the logs, the truth, the CLI."""

import itertools
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from eval.sim_truth import GroundTruthMismatch, regenerate_ground_truth
from features.catalog import load_catalog
from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, FeedbackRecord, OutcomeRecord, arrow_schema
from features.request import facts_from_request, request_features
from features.schema import SKU_TIERS
from simulator.bootstrap import MANIFEST_NAME, BootstrapConfig, BootstrapError, run_bootstrap
from simulator.prompts import parse_sim_marker
from simulator.real_outcomes import load_outcome_data, model_tiers, sku_model_map
from simulator.real_world import build_real_world, real_requests, render_real_payload
from simulator.workload import US_PER_HOUR, WorkloadParams, generate_conversations
from simulator.world import TenantParams, build_world
from switchyard_cli.demo_real import RealJudge, live_real_world, real_prepared_requests
from switchyard_cli.demo_traffic import judge_keys
from switchyard_cli.main import app

# ../shared/routing_data beside the checkout, or SWITCHYARD_ROUTING_DATA
SHARED = Path(__file__).resolve().parents[3] / "shared" / "routing_data"
ROUTING_DATA = Path(os.environ.get("SWITCHYARD_ROUTING_DATA") or SHARED) / "llmrouter"
START = date(2026, 11, 1)
SMALL = {"days": 2, "requests_per_day": 3000, "n_tenants": 120, "start": START, "epsilon": 0.3}


def write_slice(folder: Path, *, train: int = 400, test: int = 80, duplicate: bool = True) -> Path:
    """A small slice of LLMRouter's files; with ``duplicate``, one test question repeats a train one."""
    folder.mkdir(parents=True, exist_ok=True)
    train_rows = json.loads((ROUTING_DATA / "dcrouter_train.json").read_text())[:train]
    test_rows = json.loads((ROUTING_DATA / "dcrouter_test.json").read_text())[:test]
    if duplicate:
        test_rows.append({"question": train_rows[0]["question"], "scores": dict(test_rows[0]["scores"])})
    (folder / "dcrouter_train.json").write_text(json.dumps(train_rows))
    (folder / "dcrouter_test.json").write_text(json.dumps(test_rows))
    (folder / "llm_candidates.json").write_bytes((ROUTING_DATA / "llm_candidates.json").read_bytes())
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("outcomes"))


@pytest.fixture(scope="module")
def logs(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("real-logs")
    config = BootstrapConfig(seed=5, out=root, world="real-outcomes", outcomes_data=data_dir, **SMALL)
    return root, run_bootstrap(config)


@pytest.fixture(scope="module")
def truth(logs):
    return regenerate_ground_truth(logs[0])


def test_every_sku_maps_to_a_model_of_its_price_tier(data_dir):
    data, catalog = load_outcome_data(data_dir), load_catalog()
    tiers = model_tiers(data)
    price = data.input_price + data.output_price
    assert sorted(m for models in tiers.values() for m in models) == list(range(len(data.models)))
    for cheaper, dearer in zip(SKU_TIERS[::-1], SKU_TIERS[::-1][1:], strict=False):  # small < medium < large
        assert price[list(tiers[cheaper])].max() <= price[list(tiers[dearer])].min()
    mapping = sku_model_map(catalog, data)
    assert len(mapping) == len(catalog.names)
    for sku, model in zip(catalog.skus, mapping, strict=True):
        assert model in tiers[sku.tier], (sku.name, data.models[model])
    by_name = dict(zip(catalog.names, mapping, strict=True))
    assert (
        by_name["claude-sonnet-4-5-1m"] == by_name["claude-sonnet-4-5"]
    )  # a long-context variant: same model
    assert len({by_name[s.name] for s in catalog.skus if s.tier == "large"}) == len(tiers["large"])


def test_heldout_prompts_are_disjoint_from_training_prompts(data_dir):
    data = load_outcome_data(data_dir)
    train = {data.prompts[i] for i in data.train_prompts}
    heldout = {data.prompts[i] for i in data.heldout_prompts}
    assert train and heldout and not train & heldout
    duplicated = json.loads((data_dir / "dcrouter_train.json").read_text())[0]["question"]
    assert duplicated in heldout  # a question in both files is held out only


def test_heldout_window_draws_only_heldout_prompts(logs, truth):
    root, _ = logs
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    boundary = datetime.fromtimestamp(manifest["heldout_from_us"] / 1e6, tz=UTC)
    assert boundary == datetime(2026, 11, 2, tzinfo=UTC)  # the last day: training's held-out window
    late = truth["ts"] >= boundary
    assert truth.filter(late)["heldout_prompt"].all()
    assert not truth.filter(~late)["heldout_prompt"].any()
    assert truth.filter(late).height > 0 and truth.filter(~late).height > 0


def test_the_real_world_writes_the_record_schema(logs):
    root, _ = logs
    for record_type in (DecisionRecord, AttemptRecord, OutcomeRecord, FeedbackRecord):
        paths = list((root / record_type.TABLE).rglob("*.parquet"))
        assert paths, record_type.TABLE
        for path in paths:
            assert pq.read_schema(path).remove_metadata() == arrow_schema(record_type).remove_metadata()
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["world"] == "real-outcomes" and len(manifest["outcomes_digest"]) == 16
    assert set(manifest["sku_models"]) == set(load_catalog().names)


def test_quality_labels_follow_the_real_scores(logs, data_dir):
    root, _ = logs
    data, catalog = load_outcome_data(data_dir), load_catalog()
    strength = dict(
        zip(catalog.names, data.mean_train_score()[list(sku_model_map(catalog, data))], strict=True)
    )
    labels = (
        scan_records(root, OutcomeRecord)
        .filter(pl.col("quality").is_not_null())
        .group_by("sku")
        .agg(pl.col("quality").mean().alias("good"), pl.len().alias("n"))
        .filter(pl.col("n") >= 100)
        .collect()
    )
    assert labels.height >= 3
    ranked = sorted(labels.iter_rows(named=True), key=lambda row: strength[row["sku"]])
    weakest, strongest = ranked[0], ranked[-1]
    assert strength[strongest["sku"]] - strength[weakest["sku"]] > 0.15
    assert strongest["good"] > weakest["good"] + 0.1


def test_regenerated_truth_is_the_data_and_refuses_other_data(logs, truth, data_dir, tmp_path):
    root, _ = logs
    data, catalog = load_outcome_data(data_dir), load_catalog()
    mapping = np.array(sku_model_map(catalog, data))
    prompts = truth["prompt_id"].to_numpy()
    assert np.array_equal(truth["p_good_by_sku"].to_numpy(), data.scores[prompts][:, mapping])
    other = write_slice(tmp_path / "other", train=401)
    with pytest.raises(GroundTruthMismatch, match="digest"):
        regenerate_ground_truth(root, outcomes_data=other)


def test_features_equal_serving_features_of_the_rendered_payload(data_dir):
    world = build_world(3, tenant_params=TenantParams(n_tenants=80))
    start_us = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * 1_000_000
    real = build_real_world(world.catalog, data_dir, heldout_from_us=start_us + 3 * US_PER_HOUR)
    params = WorkloadParams(requests_per_day=4000)
    table = generate_conversations(
        world,
        params,
        np.random.default_rng(1),
        start_us=start_us,
        end_us=start_us + 6 * US_PER_HOUR,
        first_id=0,
    )
    realized = real.realize(world, params, table, np.random.default_rng(2))
    _, matrix = real.request_facts(world, realized)
    row_of = {
        (int(c), int(t)): i
        for i, (c, t) in enumerate(zip(realized.conversation_id, realized.turn, strict=True))
    }
    requests = real_requests(world, realized, real)
    assert len(requests) == len(realized) > 50
    assert any(r.turn > 1 for r in requests) and any(r.tenant.system_prompt_tokens for r in requests)
    for request in requests[:300]:
        payload = render_real_payload(request, real.data)
        facts = facts_from_request(payload)
        expected = request_features(facts, tenant_tier=request.tenant.tier, surface=request.tenant.surface)
        row = row_of[(request.conversation_id, request.turn)]
        assert np.allclose(matrix[row], np.array(expected, dtype=np.float32)), request
        assert facts.prompt_tokens == realized.prompt_tokens[row]
        assert real.data.prompts[request.prompt] in payload["messages"][-1]["content"]


def test_cli_world_flags(tmp_path, data_dir):
    runner = CliRunner()
    common = [
        "bootstrap",
        "--days",
        "2",
        "--requests-per-day",
        "500",
        "--tenants",
        "40",
        "--start",
        "2026-11-01",
    ]
    missing = runner.invoke(app, [*common, "--out", str(tmp_path / "a"), "--world", "real-outcomes"])
    assert missing.exit_code == 2 and "--outcomes-data" in missing.output
    unknown = runner.invoke(app, [*common, "--out", str(tmp_path / "b"), "--world", "other"])
    assert unknown.exit_code == 2 and "unknown world" in unknown.output
    args = [
        *common,
        "--out",
        str(tmp_path / "c"),
        "--world",
        "real-outcomes",
        "--outcomes-data",
        str(data_dir),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())
    assert manifest["world"] == "real-outcomes" and manifest["outcomes_data"] == str(data_dir.resolve())
    invented = runner.invoke(app, [*common, "--out", str(tmp_path / "d")])
    assert invented.exit_code == 0
    assert json.loads((tmp_path / "d" / MANIFEST_NAME).read_text())["world"] == "invented"


def test_real_world_needs_its_data():
    with pytest.raises(BootstrapError, match="outcomes-data"):
        run_bootstrap(BootstrapConfig(world="real-outcomes", out=Path("/nonexistent"), **SMALL))


def test_demo_sends_real_training_side_prompts_and_judges_by_real_scores(data_dir):
    world = build_world(4, tenant_params=TenantParams(n_tenants=60))
    real = live_real_world(world, data_dir)
    keys = {t.tenant_id: f"key-{t.tenant_id}" for t in world.tenants}
    items = list(itertools.islice(real_prepared_requests(world, real, keys, seed=2), 40))
    train_side = {real.data.prompts[i] for i in real.data.train_prompts}
    for item in items:
        payload = json.loads(item.body)
        last = payload["messages"][-1]["content"]
        prompt, _, marker = last.rpartition("\n\n")
        assert prompt == real.data.prompts[item.sim.prompt] and prompt in train_side
        assert parse_sim_marker(marker).output_tokens == item.sim.output_tokens[-1]
        assert item.api_key == keys[item.sim.tenant.tenant_id]

    judge = RealJudge(world, real, judge_keys(world, keys), share=1.0, seed=0)
    scores = real.p_good(np.array([item.sim.prompt for item in items]))
    for column in range(len(world.catalog.names)):
        sure = [(item, scores[k, column]) for k, item in enumerate(items) if scores[k, column] in (0.0, 1.0)]
        for item, score in sure[:5]:
            sku = world.catalog.names[column]
            labels = [judge.score(item, sku, truncated=False) for _ in range(200)]
            assert abs(np.mean(labels) - score) < 0.15  # the real score, flipped at the judge's 5%
