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
import polars.selectors as cs

from features.schema import ALL_FEATURES, FEATURE_NAMES, FEATURE_SCHEMA_VERSION
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
    tables: Mapping[str, pl.DataFrame]  # e.g. baselines, frontier, reliability → eval/<name>.csv
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
        from mlflow.entities import Metric, Param, RunTag

        run = self._client.create_run(self._experiment_id(), run_name=run_name)
        run_id = run.info.run_id
        self._client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), 0, 0) for key, value in sorted(record.metrics.items())],
            params=[Param(key, str(value)[:6000]) for key, value in sorted(record.params.items())],
            tags=[RunTag(key, str(value)) for key, value in sorted(record.tags.items())],
        )
        with tempfile.TemporaryDirectory(prefix="switchyard-run-") as folder:
            root = Path(folder)
            router = root / ARTIFACT_DIR
            router.mkdir()
            (router / ARTIFACT_FILE).write_bytes(record.model_bytes)
            (root / "feature_schema.json").write_text(json.dumps(feature_schema_document(), indent=2))
            (root / "summary.json").write_text(json.dumps(record.summary, indent=2, default=str))
            reference = root / "reference"
            reference.mkdir()
            record.reference_sample.write_parquet(reference / "training_sample.parquet")
            if record.reference_info:
                (reference / "reference.json").write_text(json.dumps(record.reference_info, indent=2))
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


def flat_table(table: pl.DataFrame) -> pl.DataFrame:
    """Struct columns spread into ``<column>.<field>`` columns; list columns dropped (CSV-friendly)."""
    for name, dtype in table.schema.items():
        if isinstance(dtype, pl.Struct):
            fields = [f"{name}.{field.name}" for field in dtype.fields]
            table = table.with_columns(pl.col(name).struct.rename_fields(fields)).unnest(name)
    return table.select(~(cs.list() | cs.array()))


def write_plots(
    folder: Path, tables: Mapping[str, pl.DataFrame], importance: Mapping[str, Mapping[str, float]]
) -> list[Path]:
    """calibration.png, cost_quality_frontier.png and feature_importance.png (Agg, no pyplot state)."""
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
    if "frontier" in tables and tables["frontier"].height:
        written.append(_frontier_plot(folder / "cost_quality_frontier.png", tables))
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


def _frontier_plot(path: Path, tables: Mapping[str, pl.DataFrame]) -> Path:
    """λ sweeps, the learned hull (mixtures), baselines as labelled points, and each baseline's match."""
    from matplotlib.figure import Figure

    from eval.matched_cost import efficient_hull, frontier_points

    frontier = tables["frontier"]
    figure = Figure(figsize=(8, 5.5))
    axes = figure.subplots()
    for policy in frontier["policy"].unique(maintain_order=True).to_list():
        points = frontier.filter(pl.col("policy") == policy).sort("cost_multiplier")
        axes.plot(points["cost_per_request_usd"], points["quality"], marker="o", label=f"{policy} (λ sweep)")
        if policy == "learned":
            _label_lambdas(axes, frontier, points)
    hull = efficient_hull(frontier_points(frontier))
    if len(hull) > 1:  # a straight segment is a random mix of its two ends, so the cost axis stays linear
        axes.plot(
            [p.cost_usd for p in hull],
            [p.quality for p in hull],
            linestyle="--",
            color="grey",
            label="learned: mixtures of two λ (upper hull)",
        )
    if "baselines" in tables:
        for row in tables["baselines"].iter_rows(named=True):
            if row["policy"] == "learned":
                continue  # the paced λ, already on the sweep
            marker = "s" if row["uses_truth"] else "x"
            axes.scatter(row["cost_per_request_usd"], row["quality"], marker=marker, color="black", zorder=3)
            axes.annotate(
                row["policy"],
                (row["cost_per_request_usd"], row["quality"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
    if "matched_cost" in tables:
        matched = tables["matched_cost"].filter(pl.col("learned_quality").is_not_null())
        for row in matched.iter_rows(named=True):
            cost = row["baseline_cost_usd"]
            axes.plot(
                [cost, cost],
                [row["baseline_quality"], row["learned_quality"]],
                linestyle=":",
                color="green" if row["margin"] > 0 else "red",
            )
        if matched.height:
            axes.scatter(
                matched["baseline_cost_usd"],
                matched["learned_quality"],
                marker="*",
                s=80,
                color=["green" if margin > 0 else "red" for margin in matched["margin"]],
                zorder=3,
                label="learned at the baseline's cost (green: beats, red: does not)",
            )
    axes.set(
        xlabel="serving cost per request (USD)",
        ylabel="true quality",
        title="Cost–quality frontier (simulated world)",
    )
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


def _label_lambdas(axes: Any, frontier: pl.DataFrame, points: pl.DataFrame) -> None:
    """λ next to each point; runs of points that nearly coincide get one label ("λ=8–64")."""
    span_cost = float(frontier["cost_per_request_usd"].max() - frontier["cost_per_request_usd"].min()) or 1.0
    span_quality = float(frontier["quality"].max() - frontier["quality"].min()) or 1.0
    groups: list[list[tuple[float, float, float]]] = []
    for lam, cost, quality in points.select("cost_multiplier", "cost_per_request_usd", "quality").rows():
        last = groups[-1][0] if groups else None
        if last and abs(cost - last[1]) < 0.02 * span_cost and abs(quality - last[2]) < 0.02 * span_quality:
            groups[-1].append((lam, cost, quality))
        else:
            groups.append([(lam, cost, quality)])
    for group in groups:
        lams = f"{group[0][0]:g}" if len(group) == 1 else f"{group[0][0]:g}–{group[-1][0]:g}"
        axes.annotate(f"λ={lams}", group[0][1:], fontsize=6, xytext=(3, -8), textcoords="offset points")


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path
