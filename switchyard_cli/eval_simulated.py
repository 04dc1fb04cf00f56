"""`switchyard eval simulated`: a registered router on the true quality of the simulated world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from switchyard_cli.eval_options import (
    EvalDaysOption,
    FeatureRepoOption,
    MaxRequestsOption,
    MlrunsOption,
    SeedOption,
    VersionOption,
    fail,
    require_feature_repo,
)


def simulated_command(
    logs: Annotated[Path, typer.Option(help="Root of the event log of a bootstrap (the simulated world).")],
    mlruns: MlrunsOption = Path("mlruns"),
    version: VersionOption = "champion",
    feature_repo: FeatureRepoOption = Path("feature_repo"),
    eval_days: EvalDaysOption = 1,
    max_requests: MaxRequestsOption = 80_000,
    seed: SeedOption = 0,
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
        raise fail(f"no decision logs under {logs} (run `switchyard bootstrap --out {logs}`)")
    require_feature_repo(feature_repo)
    try:
        evaluation = run_simulated_evaluation(config, store_lookup(feature_repo), progress=typer.echo)
    except (LookupError, NotSimulated) as error:
        raise fail(f"{error}") from None
    run_id = log_simulated_run(config, evaluation) if log_run else None
    typer.echo(format_simulated(evaluation, run_id))
