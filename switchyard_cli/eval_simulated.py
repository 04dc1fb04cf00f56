"""`switchyard eval simulated`: a registered router on the true quality of the simulated world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def simulated_command(
    logs: Annotated[Path, typer.Option(help="Root of the event log of a bootstrap (the simulated world).")],
    mlruns: Annotated[Path, typer.Option(help="MLflow folder: mlflow.db and artifacts/.")] = Path("mlruns"),
    version: Annotated[
        str, typer.Option(help="The registered router: an alias (champion, challenger) or a version number.")
    ] = "champion",
    feature_repo: Annotated[
        Path, typer.Option(help="The applied Feast repo (store features as of each decision).")
    ] = Path("feature_repo"),
    eval_days: Annotated[int, typer.Option(min=1, help="Latest logged days held out, as in training.")] = 1,
    max_requests: Annotated[
        int, typer.Option(min=0, help="Seeded sample of held-out requests; 0 = all of them.")
    ] = 80_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample and of the simulated TTFT noise.")] = 0,
    log_run: Annotated[
        bool,
        typer.Option(help="Log the tables and plot as a run of the switchyard-eval-simulated experiment."),
    ] = True,
) -> None:
    """Compare a registered router with the baselines on the truth of the held-out simulated days.

    Prints the baselines table (random, cheapest, always_best, rules, the router, the oracles),
    the router's cost–quality frontier over λ, and its quality at each baseline's cost; logs
    them to MLflow as an evaluation run tagged with the router version. Read-only towards the
    registry: nothing is trained or promoted.
    """
    from eval.simulated_report import format_simulated, log_simulated_run
    from eval.simulated_router import NotSimulated, SimulatedEvalConfig, run_simulated_evaluation
    from offline.feast_adapter import store_lookup

    config = SimulatedEvalConfig(
        logs=logs,
        mlruns=mlruns,
        feature_repo=feature_repo,
        version=version,
        eval_days=eval_days,
        max_requests=max_requests or None,
        seed=seed,
    )
    if not (logs / "decisions").is_dir():
        typer.echo(
            f"error: no decision logs under {logs} (run `switchyard bootstrap --out {logs}`)", err=True
        )
        raise typer.Exit(code=2)
    if not (feature_repo / "data" / "registry.db").is_file():
        typer.echo(
            f"error: {feature_repo} is not an applied Feast repo (run `switchyard train` first)", err=True
        )
        raise typer.Exit(code=2)
    try:
        evaluation = run_simulated_evaluation(config, store_lookup(feature_repo), progress=typer.echo)
    except (LookupError, NotSimulated) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    run_id = log_simulated_run(config, evaluation) if log_run else None
    typer.echo(format_simulated(evaluation, run_id))
