"""`switchyard eval world`: a registered router against the logging policy and the baselines on real outcomes."""

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


def eval_world_command(
    logs: Annotated[
        Path,
        typer.Option(
            help="A bootstrap of the real-outcomes world (`switchyard bootstrap --world real-outcomes`)."
        ),
    ],
    mlruns: MlrunsOption = Path("mlruns"),
    version: VersionOption = "champion",
    feature_repo: FeatureRepoOption = Path("feature_repo"),
    outcomes_data: Annotated[
        Path | None,
        typer.Option(
            help="The real outcome data the logs were simulated from; default: the path in the manifest."
        ),
    ] = None,
    eval_days: EvalDaysOption = 1,
    max_requests: MaxRequestsOption = 80_000,
    seed: SeedOption = 0,
    log_run: Annotated[
        bool, typer.Option(help="Log the tables and plot as a run of the switchyard-eval-world experiment.")
    ] = True,
) -> None:
    """Score a registered router, the logging policy, rules, cheapest, random, always-best and the oracles on
    the real scores of the held-out window; trace the router over λ and match it to each baseline's cost.

    Read-only towards the registry: nothing is trained or promoted.
    """
    from eval.real_world import WORLD_LAMBDAS, format_world, log_world_run, run_world_evaluation
    from eval.sim_truth import GroundTruthMismatch
    from eval.simulated_router import SimulatedEvalConfig
    from offline.feast_adapter import store_lookup

    config = SimulatedEvalConfig(
        logs=logs,
        mlruns=mlruns,
        feature_repo=feature_repo,
        version=version,
        eval_days=eval_days,
        max_requests=max_requests or None,
        seed=seed,
        lambdas=WORLD_LAMBDAS,
    )
    if not (logs / "_manifest.json").is_file():
        raise fail(f"{logs} holds no bootstrap manifest (run `switchyard bootstrap --world real-outcomes`)")
    require_feature_repo(feature_repo)
    try:
        result = run_world_evaluation(
            config, store_lookup(feature_repo), outcomes_data=outcomes_data, progress=typer.echo
        )
    except (LookupError, GroundTruthMismatch) as error:
        raise fail(f"{error}") from None
    run_id = log_world_run(config, result) if log_run else None
    typer.echo(format_world(result, run_id))
