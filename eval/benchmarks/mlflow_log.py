"""Logging a benchmark run to MLflow (experiment ``router-benchmarks``, the local ``mlruns/``).

Metrics are named ``<dataset>/<split>/<router>/<metric>`` (value) with ``…/low`` and ``…/high``
for the interval; the results files and plots are the run's artifacts (``results/``,
``plots/``). The notebook in ``notebooks/`` reads the latest such run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from router_model.registry import tracking_uri_for

EXPERIMENT = "router-benchmarks"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_key(*parts: str) -> str:
    return "/".join(_UNSAFE.sub("_", part) for part in parts)


def log_benchmark_run(
    mlruns: Path, document: dict, params: dict[str, str], files: list[Path], plots: list[Path]
) -> str:
    """The run id of a new finished run holding ``document``'s metrics and the files as artifacts."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    mlruns = Path(mlruns).resolve()
    mlruns.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri_for(mlruns))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(EXPERIMENT, artifact_location=(mlruns / "artifacts").as_uri())
    )
    run_id = client.create_run(experiment_id, run_name="benchmark " + params.get("datasets", "")).info.run_id
    metrics = []
    for evaluation in document["evaluations"]:
        for router in evaluation["routers"]:
            for name, values in router["metrics"].items():
                key = metric_key(evaluation["dataset"], evaluation["split"], router["router"], name)
                for suffix, value in (
                    ("", values["value"]),
                    ("/low", values["low"]),
                    ("/high", values["high"]),
                ):
                    if math.isfinite(value):
                        metrics.append(Metric(key + suffix, float(value), 0, 0))
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in sorted(params.items())])
    for path in files:
        client.log_artifact(run_id, str(path), "results")
    for path in plots:
        client.log_artifact(run_id, str(path), "plots")
    client.set_terminated(run_id, "FINISHED")
    return run_id
