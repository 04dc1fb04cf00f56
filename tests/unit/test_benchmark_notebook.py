"""notebooks/router_frontiers.ipynb runs against MLflow data this test makes: a tiny benchmark run
through the CLI and a run holding a training frontier table, in a temporary mlruns folder."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import polars as pl
from benchmark_synthetic import synthetic_wide_csv
from nbclient import NotebookClient
from typer.testing import CliRunner

from router_model.registry import tracking_uri_for
from switchyard_cli.main import app

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "router_frontiers.ipynb"


def _log_training_frontier(mlruns: Path, folder: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri_for(mlruns))
    experiment = client.create_experiment("switchyard-eval-simulated", (mlruns / "artifacts").as_uri())
    run = client.create_run(experiment, run_name="eval-fixture")
    path = folder / "frontier.csv"
    pl.DataFrame(
        {
            "policy": ["learned", "learned", "oracle"],
            "cost_per_request_usd": [0.001, 0.002, 0.001],
            "quality": [0.6, 0.7, 0.9],
        }
    ).write_csv(path)
    client.log_artifact(run.info.run_id, str(path), "eval")
    client.set_terminated(run.info.run_id)


def test_notebook_draws_the_latest_frontiers(tmp_path):
    mlruns = tmp_path / "mlruns"
    data = synthetic_wide_csv(tmp_path / "tiny.csv", per_topic=25)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "benchmark",
            "--dataset",
            "wide-csv",
            "--data",
            str(data),
            "--split",
            "random",
            "--bootstrap",
            "20",
            "--representation",
            "hashed8",
            "--mlruns",
            str(mlruns),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "results.json").exists()
    assert (tmp_path / "out" / "plots" / "frontier_tiny_random.png").exists()
    _log_training_frontier(mlruns, tmp_path)

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["SWITCHYARD_MLRUNS"] = str(mlruns)
    try:
        NotebookClient(
            notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        del os.environ["SWITCHYARD_MLRUNS"]
    outputs = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "1 benchmark frontier(s) drawn" in outputs
    assert "training frontier: 3 points" in outputs
