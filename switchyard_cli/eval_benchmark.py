"""`switchyard eval benchmark`: routers and baselines on real outcome data, with intervals.

Prints one table per (data set, split), writes ``results.json`` / ``results.csv`` and the
frontier PNGs under ``--out``, logs an MLflow run (experiment ``router-benchmarks``) and, with
``--write-docs``, renders the tables into a markdown file between its table markers.
``--from-results`` re-renders an earlier ``results.json`` without running anything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

DATASET_CHOICES = ("mmlu", "gsm8k", "mt_bench", "llmrouter", "wide-csv", "all")


def benchmark_command(
    dataset: Annotated[
        list[str], typer.Option(help=f"one of {', '.join(DATASET_CHOICES)}; repeat for several")
    ] = ["all"],  # noqa: B006 (typer reads the default)
    data: Annotated[
        Path | None,
        typer.Option(help="the data: the routing_data root (built-in sets) or the wide CSV file"),
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="grouped | cross | given | random (default: each set's own list)")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of the prompts")] = 1000,
    seed: Annotated[int, typer.Option()] = 0,
    representation: Annotated[
        list[str],
        typer.Option(
            help="hashed<dims> (the v3 prompt embedding) or minilm; repeat to compare; the first is ours"
        ),
    ] = ["hashed32"],  # noqa: B006
    group_column: Annotated[str | None, typer.Option(help="wide CSV: the task/group column")] = None,
    mlruns: Annotated[Path, typer.Option(help="MLflow folder")] = Path("mlruns"),
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="skip the MLflow run")] = False,
    out: Annotated[Path, typer.Option(help="where results and plots go")] = Path("reports/benchmarks"),
    write_docs: Annotated[Path | None, typer.Option(help="render the tables into this markdown file")] = None,
    docs_section: Annotated[
        str, typer.Option(help="the marked section of --write-docs the tables go into")
    ] = "benchmark-tables",
    from_results: Annotated[
        Path | None, typer.Option(help="render this results.json instead of running")
    ] = None,
) -> None:
    """Benchmark our router and the baselines on real outcome data (docs/router-quality.md)."""
    from eval.benchmarks.datasets import BUILT_IN
    from eval.benchmarks.frontier_plot import plot_all
    from eval.benchmarks.results import (
        docs_with_tables,
        docs_with_verdicts,
        render_tables,
        render_verdicts,
        write_results,
    )

    if from_results is not None:
        document = json.loads(from_results.read_text(encoding="utf-8"))
    else:
        if data is None:
            raise typer.BadParameter("--data is required (the routing_data root or a wide CSV)")
        unknown = [name for name in dataset if name not in DATASET_CHOICES]
        if unknown:
            raise typer.BadParameter(f"unknown dataset(s) {unknown}; choose from {DATASET_CHOICES}")
        datasets = BUILT_IN if "all" in dataset else tuple(dataset)
        document = _run(datasets, data, split, bootstrap, seed, representation, group_column)
        files = list(write_results(document, out))
        plots = plot_all(document, out / "plots")
        if not no_mlflow:
            from eval.benchmarks.mlflow_log import log_benchmark_run

            params = {k: str(v) for k, v in document["config"].items()}
            run_id = log_benchmark_run(mlruns, document, params, files, plots)
            typer.echo(f"MLflow run {run_id} (experiment router-benchmarks, {mlruns})")
        typer.echo(f"results: {files[0]}, {files[1]}; plots: {out / 'plots'}")
    tables = render_tables(document)
    verdicts = render_verdicts(document)
    typer.echo(tables)
    typer.echo(verdicts)
    if write_docs is not None:
        existing = write_docs.read_text(encoding="utf-8") if write_docs.exists() else ""
        updated = docs_with_tables(existing, tables, docs_section)
        if docs_section == "benchmark-tables":
            updated = docs_with_verdicts(updated, verdicts)
        write_docs.write_text(updated, encoding="utf-8")
        typer.echo(f"tables written into {write_docs}")


def _run(datasets, data: Path, split, reps: int, seed: int, representations: list[str], group_column) -> dict:
    from eval.benchmarks.representations import representation_named
    from eval.benchmarks.results import results_document
    from eval.benchmarks.run import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        datasets=tuple(datasets),
        data=data,
        splits=(split,) if split else None,
        reps=reps,
        seed=seed,
        representations=tuple(representation_named(name, seed) for name in representations),
        group_column=group_column,
    )
    started = time.perf_counter()
    run = run_benchmark(config, log=lambda line: typer.echo(line, err=True))
    seconds = {**run.seconds, "total": time.perf_counter() - started}
    params = {
        "datasets": ",".join(datasets),
        "data": str(data),
        "split": split or "default",
        "bootstrap": reps,
        "seed": seed,
        "representations": ",".join(rep.name for rep in config.representations),
    }
    return results_document(run.evaluations, seconds, params)
