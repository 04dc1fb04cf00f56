"""The nightly job end to end on a small bootstrap: Feast → LightGBM → ONNX → MLflow registry + gate.

One module-scoped bootstrap (3 days × ~6K requests) and one mlruns folder; the runs build on
each other: a first run registers a champion, a rerun on the same data gives the same bytes
and registers nothing, a run on a tiny sample is worse and stays challenger. The first version
is also judged on the simulated world's truth by eval's own program (``switchyard eval simulated``).
"""

import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.schema import FEATURE_NAMES, STORE_FEATURE_NAMES
from offline import logged
from offline import rows as model_rows
from offline.feast_adapter import copy_repo, open_repo, point_in_time_features
from router_model.artifact import HEADS
from router_model.registry import REGISTERED_MODEL, RouterRegistry, tracking_uri_for
from router_model.scorer import RouterScorer
from simulator.bootstrap import BootstrapConfig, run_bootstrap
from training.gate import GateRules
from training.pipeline import TrainConfig, format_summary, run_training

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    logs = root / "logs"
    run_bootstrap(
        BootstrapConfig(
            days=3, requests_per_day=6000, seed=0, out=logs, start=date(2026, 11, 1), n_tenants=400
        )
    )
    repo = copy_repo(REPO, root / "feature_repo")
    # Small data: 3K held-out judged requests carry ~50 effective samples for SNIPS, not 100.
    config = TrainConfig(
        logs=logs, feature_repo=repo, mlruns=root / "mlruns", gate=GateRules(min_effective_samples=20)
    )
    first = run_training(config, progress=lambda line: None)
    return config, first


def versions(config: TrainConfig) -> list:
    from mlflow import MlflowClient

    uri = tracking_uri_for(config.mlruns)
    return MlflowClient(uri, uri).search_model_versions(f"name = '{REGISTERED_MODEL}'")


def test_first_run_registers_a_champion_that_serving_can_load(world):
    config, first = world
    assert first.version == "1" and first.duplicate_of is None
    assert first.verdict.promote and first.verdict.compared_with == "logging policy", format_summary(first)
    loaded = RouterRegistry(tracking_uri_for(config.mlruns)).load("champion")
    assert loaded is not None and loaded.version == "1" and loaded.run_id == first.run_id
    assert loaded.artifact.router_version == first.router_version
    scores = RouterScorer(loaded.artifact).score(np.zeros((12, len(FEATURE_NAMES)), dtype=np.float32))
    assert set(scores) == set(HEADS) and all(len(values) == 12 for values in scores.values())
    assert 0.0 <= scores["p_quality"].min() <= scores["p_quality"].max() <= 1.0
    assert max(first.metrics[f"parity.{head}"] for head in HEADS) <= 1e-5


def test_the_run_logs_what_monitoring_and_people_need(world):
    from mlflow import MlflowClient

    config, first = world
    uri = tracking_uri_for(config.mlruns)
    client = MlflowClient(uri, uri)
    run = client.get_run(first.run_id)
    assert run.data.metrics["quality.auc"] == pytest.approx(first.metrics["quality.auc"])
    assert run.data.params["seed"] == "0" and run.data.tags["gate.verdict"] == "champion"
    folder = Path(client.download_artifacts(first.run_id, "", str(config.mlruns.parent / "download")))
    for path in (
        "router/router.onnx",
        "feature_schema.json",
        "summary.json",
        "reference/training_sample.parquet",
        "eval/reliability.csv",
        "plots/calibration.png",
        "plots/feature_importance.png",
    ):
        assert (folder / path).is_file(), path
    assert not (folder / "eval/baselines.csv").exists()  # the simulated world's tables are eval's
    reference = pl.read_parquet(folder / "reference/training_sample.parquet")
    assert reference.columns[: 2 + len(FEATURE_NAMES)] == ["ts", "sku", *FEATURE_NAMES]
    assert {
        "pred_p_quality",
        "pred_ttft_ms",
        "pred_cost_usd",
        "obs_ttft_ms",
        "obs_cost_usd",
        "obs_good",
    } <= set(reference.columns)
    assert reference.height > 1000 and reference["pred_p_quality"].is_between(0, 1).all()
    document = json.loads((folder / "reference/reference.json").read_text())
    assert document["router_version"] == first.router_version
    assert sum(document["sku_mix"].values()) == pytest.approx(1.0)
    assert sum(document["importance"].values()) == pytest.approx(1.0)


def test_the_drift_monitor_reads_the_champions_reference(world, tmp_path):
    from eval.drift import DriftConfig, run_drift

    config, first = world
    drift = DriftConfig(
        logs=config.logs,
        mlruns=config.mlruns,
        reference="champion",
        end=datetime(2026, 11, 3, 13, tzinfo=UTC),
        out=tmp_path,
        state_dir=tmp_path / "state",
        feature_repo=config.feature_repo,
        skew_sample=200,
    )
    run = run_drift(drift)
    assert first.router_version in run.reference.description and run.reference.frame.height > 1000
    assert run.reference.importance_source.startswith(first.router_version)
    assert run.verdict.check("skew").status == "ok" and run.verdict.status != "critical", (
        run.verdict.to_json()
    )
    # the logs were routed by the logging policy, not the champion: observed outcomes only
    assert not run.outcomes.calibrated
    status = run.verdict.status
    page = run.html.read_text()
    assert f'<section id="switchyard-drift" data-status="{status}">' in page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:  # the report opens in a real browser: our section and Evidently's rendered widgets
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom"]
        dom = subprocess.run(
            [browser, *flags, run.html.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert f'data-status="{status}"' in dom and "Training–serving skew" in dom
        drawn = "Drift is detected for"  # Evidently's widgets, drawn by its scripts: in the DOM twice
        assert dom.count(drawn) > page.count(drawn)


def test_a_rerun_gives_the_same_bytes_and_registers_no_duplicate(world):
    config, first = world
    again = run_training(replace_config(config, refresh_features=False), progress=lambda line: None)
    assert again.model_sha256 == first.model_sha256 and again.router_version == first.router_version
    assert again.version is None and again.duplicate_of == "1"
    assert "identical to the current champion version 1" in format_summary(again)
    assert len(versions(config)) == 1
    assert RouterRegistry(tracking_uri_for(config.mlruns)).alias_version("champion") == "1"


def test_a_worse_candidate_stays_challenger_and_says_why(world):
    config, first = world
    tiny = replace_config(config, refresh_features=False, max_train_requests=300, weight_ablation=False)
    worse = run_training(tiny, progress=lambda line: None)
    assert worse.model_sha256 != first.model_sha256 and worse.version == "2"
    assert not worse.verdict.promote and worse.verdict.alias == "challenger"
    assert worse.verdict.compared_with == "champion" and worse.verdict.failed
    registry = RouterRegistry(tracking_uri_for(config.mlruns))
    assert registry.alias_version("champion") == "1" and registry.alias_version("challenger") == "2"
    (version,) = [v for v in versions(config) if str(v.version) == "2"]
    assert version.tags["gate.verdict"] == "challenger" and version.tags["gate.failed"] != "-"


def test_minute_keyed_store_lookups_equal_feast_at_the_exact_decision_time(world):
    config, _ = world
    repo = open_repo(config.feature_repo)
    split = logged.time_split(config.logs, 1)
    requests = logged.load_window(config.logs, None, split.test_start, max_requests=300, seed=1)
    rows = model_rows.candidate_rows(requests)
    mine = model_rows.store_block(rows, lambda keys: point_in_time_features(repo, keys))
    exact = point_in_time_features(repo, rows.select("request_id", "tenant_id", "sku", "region", "ts"))
    exact_values = exact.select(STORE_FEATURE_NAMES).to_numpy()
    assert np.isfinite(mine).any()
    both = ~np.isnan(mine) & ~np.isnan(exact_values)
    np.testing.assert_array_equal(mine[both], exact_values[both])  # the same row, never a later one
    # The only difference: a value that expires (view TTL) within the minute is still seen by
    # the minute-floored lookup. Rare, and never the other way round.
    assert not (np.isnan(mine) & ~np.isnan(exact_values)).any()
    assert (~np.isnan(mine) & np.isnan(exact_values)).mean() < 0.01


def test_eval_simulated_judges_the_registered_router_on_the_truth(world, tmp_path):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from switchyard_cli.main import app

    config, first = world
    args = ["eval", "simulated", "--logs", str(config.logs), "--mlruns", str(config.mlruns)]
    args += ["--feature-repo", str(config.feature_repo), "--version", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"router v1 ({first.router_version}) in the simulated world: held out 2026-11-03" in result.output
    assert (
        "learned over λ (true quality @ cost/request)" in result.output and "matched cost:" in result.output
    )

    uri = tracking_uri_for(config.mlruns)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("switchyard-eval-simulated")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["router_version"] == first.router_version
    assert run.data.tags["registered_version"] == "1"
    # the nightly job's held-out requests, and its candidate's paced λ
    assert run.data.metrics["policy.cost_multiplier"] == first.metrics["policy.cost_multiplier"]
    assert run.data.params["requests"] == str(int(first.metrics["rows.eval_requests"]))
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path)))
    for path in (
        "eval/baselines.csv",
        "eval/frontier.csv",
        "eval/matched_cost.csv",
        "plots/cost_quality_frontier.png",
    ):
        assert (folder / path).is_file(), path
    baselines = pl.read_csv(folder / "eval/baselines.csv")
    assert {"random", "cheapest", "always_best", "rules", "learned", "oracle"} <= set(baselines["policy"])
    oracle = baselines.filter(pl.col("policy") == "oracle").row(0, named=True)
    # the truth-using oracle is the best any policy can do at no more than its cost (Lagrangian duality)
    affordable = baselines.filter(
        ~pl.col("uses_truth") & (pl.col("cost_per_request_usd") <= oracle["cost_per_request_usd"])
    )
    assert affordable.height and (affordable["quality"] <= oracle["quality"] + 1e-9).all()
    learned = pl.read_csv(folder / "eval/frontier.csv").filter(pl.col("policy") == "learned")
    assert learned.height >= 10 and learned["quality"].is_between(0, 1).all()

    missing = CliRunner().invoke(app, [*args[:-1], "7"])
    assert missing.exit_code == 2 and "no router '7'" in missing.output


def replace_config(config: TrainConfig, **changes) -> TrainConfig:
    from dataclasses import replace

    return replace(config, **changes)
