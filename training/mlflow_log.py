"""The training side of MLflow: runs, artifacts, plots, registered versions and alias moves.

Tracking and registry share one SQLite database, ``router_model.registry.tracking_uri_for``
(``mlruns/mlflow.db``); artifacts live under ``mlruns/artifacts``. The router artifact is
logged at ``router/router.onnx``, exactly what ``RouterRegistry.load`` downloads. Serving only
reads (``router_model/registry.py``); only this module writes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.schema import ALL_FEATURES, FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from offline.evaluation_runs import flat_table, log_values
from offline.reference import DOCUMENT_PATH, SAMPLE_PATH
from router_model.registry import (
    ARTIFACT_DIR,
    ARTIFACT_FILE,
    CHAMPION,
    EXPERIMENT,
    REGISTERED_MODEL,
    RegisteredRouter,
    RouterRegistry,
    tracking_uri_for,
)

DIGEST_TAG = "model_sha256"


@dataclass(frozen=True, eq=False)
class RunRecord:
    """Everything one training run logs."""

    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    model_bytes: bytes
    reference_sample: pl.DataFrame  # training feature matrix sample, for drift monitoring
    tables: Mapping[str, pl.DataFrame]  # e.g. reliability → eval/<name>.csv
    importance: Mapping[str, Mapping[str, float]]
    summary: Mapping[str, Any]  # the gate and run summary → summary.json
    reference_info: Mapping[str, Any] = field(default_factory=dict)  # → reference/reference.json


def feature_schema_document() -> dict[str, Any]:
    return {
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "features": [
            {
                "name": spec.name,
                "kind": spec.kind,
                "group": spec.group,
                "description": spec.description,
                "categories": list(spec.categories),
            }
            for spec in ALL_FEATURES
        ],
    }


class TrainingRegistry:
    """Writes runs and model versions of ``switchyard-router`` into ``mlruns/``."""

    def __init__(self, mlruns_dir: Path) -> None:
        from mlflow import MlflowClient  # heavy import: only when the pipeline logs

        self.mlruns_dir = Path(mlruns_dir).resolve()
        self.mlruns_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri_for(self.mlruns_dir)
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def champion(self) -> RegisteredRouter | None:
        """The current champion; raises ``ArtifactError`` when it cannot be served by this code."""
        return RouterRegistry(self.tracking_uri).load(CHAMPION)

    def champion_version(self) -> str | None:
        return RouterRegistry(self.tracking_uri).alias_version(CHAMPION)

    def version_with_digest(self, digest: str) -> str | None:
        """A registered version whose ONNX bytes have this sha256, if any."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self._client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
        except MlflowException:
            return None
        matches = sorted(int(v.version) for v in versions if v.tags.get(DIGEST_TAG) == digest)
        return str(matches[0]) if matches else None

    def _experiment_id(self) -> str:
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.mlruns_dir / "artifacts").as_uri()
        return self._client.create_experiment(EXPERIMENT, artifact_location=location)

    def log_run(self, record: RunRecord, run_name: str) -> str:
        """One finished run with params, metrics, the router artifact, schema, sample, tables and plots."""
        run = self._client.create_run(self._experiment_id(), run_name=run_name)
        run_id = run.info.run_id
        log_values(self._client, run_id, params=record.params, metrics=record.metrics, tags=record.tags)
        with tempfile.TemporaryDirectory(prefix="switchyard-run-") as folder:
            root = Path(folder)
            router = root / ARTIFACT_DIR
            router.mkdir()
            (router / ARTIFACT_FILE).write_bytes(record.model_bytes)
            (root / "feature_schema.json").write_text(json.dumps(feature_schema_document(), indent=2))
            (root / "summary.json").write_text(json.dumps(record.summary, indent=2, default=str))
            (root / SAMPLE_PATH).parent.mkdir(parents=True)
            record.reference_sample.write_parquet(root / SAMPLE_PATH)
            if record.reference_info:
                (root / DOCUMENT_PATH).write_text(json.dumps(record.reference_info, indent=2))
            tables = root / "eval"
            tables.mkdir()
            for name, table in record.tables.items():
                flat_table(table).write_csv(tables / f"{name}.csv")
            plots = root / "plots"
            plots.mkdir()
            write_plots(plots, record.tables, record.importance)
            for path in sorted(root.iterdir()):
                if path.is_dir():
                    self._client.log_artifacts(run_id, str(path), path.name)
                else:
                    self._client.log_artifact(run_id, str(path))
        self._client.set_terminated(run_id, "FINISHED")
        return run_id

    def register(self, run_id: str, tags: Mapping[str, str]) -> str:
        """A new version of ``switchyard-router`` pointing at the run's ``router/`` artifact."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(REGISTERED_MODEL)
        except MlflowException:
            self._client.create_registered_model(
                REGISTERED_MODEL, description="Switchyard router: LightGBM heads exported to one ONNX graph"
            )
        source = f"{self._client.get_run(run_id).info.artifact_uri}/{ARTIFACT_DIR}"
        version = self._client.create_model_version(REGISTERED_MODEL, source, run_id=run_id, tags=dict(tags))
        return str(version.version)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_model_version_tag(REGISTERED_MODEL, version, key, str(value))

    def set_alias(self, alias: str, version: str) -> None:
        self._client.set_registered_model_alias(REGISTERED_MODEL, alias, version)

    def tag_run(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_tag(run_id, key, str(value))


def write_plots(
    folder: Path, tables: Mapping[str, pl.DataFrame], importance: Mapping[str, Mapping[str, float]]
) -> list[Path]:
    """calibration.png and feature_importance.png (Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    written = []
    if "reliability" in tables:
        curve = tables["reliability"]
        figure = Figure(figsize=(5, 5))
        axes = figure.subplots()
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        axes.plot(curve["predicted"], curve["observed"], marker="o", label="p_quality")
        axes.set(xlabel="predicted P(good)", ylabel="observed share good", title="Calibration (held-out)")
        axes.legend()
        written.append(_save(figure, folder / "calibration.png"))
    if importance:
        heads = list(importance)
        figure = Figure(figsize=(10, 8))
        axes = figure.subplots()
        matrix = np.array([[importance[head][name] for head in heads] for name in FEATURE_NAMES])
        image = axes.imshow(matrix, aspect="auto", cmap="viridis")
        axes.set_xticks(range(len(heads)), heads, rotation=30, ha="right", fontsize=8)
        axes.set_yticks(range(len(FEATURE_NAMES)), FEATURE_NAMES, fontsize=7)
        axes.set_title("Feature importance (share of split gain per head)")
        figure.colorbar(image, ax=axes)
        figure.tight_layout()
        written.append(_save(figure, folder / "feature_importance.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path
