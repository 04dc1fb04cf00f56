"""Evaluation runs in MLflow: what an offline evaluation program logs, in one shape.

A run in the program's own experiment (``switchyard-eval-<program>``) of the same store the
router registry uses (``router_model.registry.tracking_uri_for``: ``mlruns/mlflow.db``,
artifacts under ``mlruns/artifacts``), with params, metrics, tags (the router version it
evaluated), tables as ``eval/<name>.csv`` (:func:`flat_table`) and figures as ``plots/<name>.png``.
Nothing here trains, registers a model or moves an alias.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import polars.selectors as cs

from router_model.registry import tracking_uri_for

EXPERIMENT_PREFIX = "switchyard-eval-"


@dataclass(frozen=True, eq=False)
class EvaluationRun:
    """Everything one evaluation run logs."""

    program: str  # e.g. "simulated": the experiment is switchyard-eval-<program>
    run_name: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)  # → eval/<name>.csv
    figures: Mapping[str, Any] = field(default_factory=dict)  # matplotlib Figures → plots/<name>.png


def flat_table(table: pl.DataFrame) -> pl.DataFrame:
    """Struct columns spread into ``<column>.<field>`` columns; list columns dropped (CSV-friendly)."""
    for name, dtype in table.schema.items():
        if isinstance(dtype, pl.Struct):
            fields = [f"{name}.{field.name}" for field in dtype.fields]
            table = table.with_columns(pl.col(name).struct.rename_fields(fields)).unnest(name)
    return table.select(~(cs.list() | cs.array()))


def experiment_name(program: str) -> str:
    return f"{EXPERIMENT_PREFIX}{program}"


def log_values(
    client: Any,
    run_id: str,
    *,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
) -> None:
    """A run's params (cut to MLflow's 6,000 characters), metrics and tags in one batch, sorted by key."""
    from mlflow.entities import Metric, Param, RunTag

    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), 0, 0) for key, value in sorted(metrics.items())],
        params=[Param(key, str(value)[:6000]) for key, value in sorted(params.items())],
        tags=[RunTag(key, str(value)) for key, value in sorted(tags.items())],
    )


def log_evaluation_run(mlruns: Path, run: EvaluationRun) -> str:
    """Log ``run`` as one finished MLflow run; returns its id."""
    from mlflow import MlflowClient

    mlruns = Path(mlruns).resolve()
    mlruns.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri_for(mlruns)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = experiment_name(run.program)
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(name, artifact_location=(mlruns / "artifacts").as_uri())
    )
    run_id = client.create_run(experiment_id, run_name=run.run_name).info.run_id
    log_values(client, run_id, params=run.params, metrics=run.metrics, tags=run.tags)
    with tempfile.TemporaryDirectory(prefix="switchyard-eval-run-") as folder:
        root = Path(folder)
        if run.tables:
            (root / "eval").mkdir()
            for table_name, table in run.tables.items():
                flat_table(table).write_csv(root / "eval" / f"{table_name}.csv")
        if run.figures:
            (root / "plots").mkdir()
            for figure_name, figure in run.figures.items():
                figure.savefig(root / "plots" / f"{figure_name}.png", dpi=110)
        for path in sorted(root.iterdir()):
            client.log_artifacts(run_id, str(path), path.name)
    client.set_terminated(run_id, "FINISHED")
    return run_id
