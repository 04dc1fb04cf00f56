"""The loop in the real-outcomes world through the CLI: bootstrap → train → ``switchyard eval world``.

One module-scoped run: a small bootstrap of the real-outcomes world (4 days × ~10K requests from
LLMRouter's scores in ``../shared/routing_data``), the nightly job on its first 3 days, and the
router judged on the 4th (held-out prompts only) against the logging policy and the baselines,
read back from the ``switchyard-eval-world`` MLflow run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from offline.feast_adapter import copy_repo
from router_model.registry import tracking_uri_for
from switchyard_cli.main import app

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
# ../shared/routing_data beside the checkout, or SWITCHYARD_ROUTING_DATA
SHARED = Path(__file__).resolve().parents[3] / "shared" / "routing_data"
ROUTING_DATA = Path(os.environ.get("SWITCHYARD_ROUTING_DATA") or SHARED)
SEED = "0"
POLICIES = {"random", "cheapest", "always_best", "rules", "learned", "oracle", "logging"}


@dataclass(frozen=True)
class WorldRun:
    logs: Path
    mlruns: Path
    feature_repo: Path
    output: str  # what `switchyard eval world` printed
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    baselines: pl.DataFrame  # eval/baselines.csv of the run


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"switchyard {' '.join(args)}\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> WorldRun:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("real-loop")
    logs, mlruns = root / "logs", root / "mlruns"
    repo = copy_repo(REPO, root / "feature_repo")
    real = ["--world", "real-outcomes", "--outcomes-data", str(ROUTING_DATA), "--seed", SEED]
    size = ["--days", "4", "--requests-per-day", "10000", "--tenants", "300", "--start", "2026-11-01"]
    invoke(["bootstrap", *real, *size, "--out", str(logs)])
    paths = ["--logs", str(logs), "--mlruns", str(mlruns), "--feature-repo", str(repo)]
    trained = invoke(["train", *paths, "--seed", SEED, "--no-check-drift", "--no-weight-ablation"])
    # ~10K held-out requests are too few effective samples for the gate: v1 stays challenger
    assert "registered switchyard-router v1" in trained
    output = invoke(["eval", "world", *paths, "--version", "1", "--max-requests", "0", "--seed", SEED])

    uri = tracking_uri_for(mlruns)
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("switchyard-eval-world")
    (run,) = client.search_runs([experiment.experiment_id])
    folder = Path(client.download_artifacts(run.info.run_id, "eval/baselines.csv", str(root / "download")))
    return WorldRun(
        logs=logs,
        mlruns=mlruns,
        feature_repo=repo,
        output=output,
        metrics=run.data.metrics,
        params=run.data.params,
        tags=run.data.tags,
        baselines=pl.read_csv(folder),
    )


def heldout_mean_scores() -> dict[str, float]:
    """Each model's mean real score over LLMRouter's held-out questions (distinct by text)."""
    rows = json.loads((ROUTING_DATA / "llmrouter" / "dcrouter_test.json").read_text())
    by_question = {row["question"]: row["scores"] for row in rows}
    models = set.intersection(*(set(scores) for scores in by_question.values()))
    return {m: sum(s[m] for s in by_question.values()) / len(by_question) for m in models}


def test_every_policy_is_scored_on_the_real_scores_of_the_held_out_day(world: WorldRun) -> None:
    assert world.tags["world"] == "real-outcomes" and world.tags["registered_version"] == "1"
    assert world.params["eval_dates"] == "2026-11-04" and int(world.params["requests"]) > 5000
    assert set(world.baselines["policy"]) >= POLICIES
    for policy in POLICIES:
        assert 0.0 < world.metrics[f"baseline.{policy}.quality"] < 1.0, policy
        assert world.metrics[f"baseline.{policy}.cost_per_request_usd"] > 0.0, policy
    assert (
        "real-outcomes world: " in world.output and "margins over resampled held-out prompts" in world.output
    )

    # A policy that ignores the prompt scores the mean real held-out score of the models its SKUs
    # stand for (within sampling and truncation, < 0.01); the training-side means are 0.02-0.10 off.
    manifest = json.loads((world.logs / "_manifest.json").read_text())
    means = heldout_mean_scores()
    for policy in ("always_best", "cheapest", "random"):
        row = world.baselines.filter(pl.col("policy") == policy).row(0, named=True)
        shares = {c.removeprefix("share_by_sku."): row[c] for c in row if c.startswith("share_by_sku.")}
        expected = sum(share * means[manifest["sku_models"][sku]] for sku, share in shares.items())
        assert row["quality"] == pytest.approx(expected, abs=0.015), (policy, shares)


def test_the_oracle_is_the_best_quality_at_or_below_its_cost(world: WorldRun) -> None:
    baselines = world.baselines
    oracle = baselines.filter(pl.col("policy") == "oracle").row(0, named=True)
    affordable = baselines.filter(
        ~pl.col("uses_truth") & (pl.col("cost_per_request_usd") <= oracle["cost_per_request_usd"])
    )
    assert affordable.height and (affordable["quality"] <= oracle["quality"] + 1e-9).all()
    # and by a wide margin: the per-prompt signal of the real scores is large
    assert oracle["quality"] > baselines.filter(~pl.col("uses_truth"))["quality"].max() + 0.1


def test_the_learned_router_beats_the_logging_policy_and_the_rules_at_matched_cost(world: WorldRun) -> None:
    metrics = world.metrics
    for baseline in ("logging", "rules"):
        assert metrics[f"matched.{baseline}.in_range"] == 1.0, baseline
        assert metrics[f"matched.{baseline}.margin"] > 0.01, baseline
        assert metrics[f"matched.{baseline}.margin_low"] > 0.0, baseline  # 95% over resampled prompts
        assert metrics[f"matched.{baseline}.pure_margin"] > 0.0, baseline  # one λ at no more cost
    # Over the logging policy by more than a router without the prompt embedding gains at full size
    # (schema-v2 features: +0.010, docs/simulator.md §7); seeds 0-2 at this size: +0.033 to +0.045.
    assert metrics["matched.logging.margin"] > 0.02
    assert metrics["matched.logging.margin_positive_share"] > 0.975
    assert metrics["baseline.learned.quality"] > metrics["baseline.rules.quality"]


def test_eval_world_refuses_a_bootstrap_of_the_invented_world(world: WorldRun, tmp_path: Path) -> None:
    invented = tmp_path / "invented"
    invoke(
        ["bootstrap", "--days", "2", "--requests-per-day", "500", "--tenants", "20", "--out", str(invented)]
    )
    paths = [
        "--logs",
        str(invented),
        "--mlruns",
        str(world.mlruns),
        "--feature-repo",
        str(world.feature_repo),
    ]
    result = CliRunner().invoke(app, ["eval", "world", *paths, "--version", "1"])
    assert result.exit_code == 2, result.output
    assert "is not a bootstrap of the real-outcomes world" in result.output
