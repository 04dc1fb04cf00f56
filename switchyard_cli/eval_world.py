"""`switchyard eval world`: the champion against the logging policy and the baselines on real outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def eval_world_command(
    logs: Annotated[
        Path,
        typer.Option(
            help="A bootstrap of the real-outcomes world (`switchyard bootstrap --world real-outcomes`)."
        ),
    ] = Path("data/logs"),
    mlruns: Annotated[Path, typer.Option(help="MLflow folder holding the champion.")] = Path("mlruns"),
    feature_repo: Annotated[
        Path, typer.Option(help="The Feast repo the champion was trained with (store features).")
    ] = Path("feature_repo"),
    outcomes_data: Annotated[
        Path | None,
        typer.Option(
            help="The real outcome data the logs were simulated from; default: the path in the manifest."
        ),
    ] = None,
    eval_days: Annotated[int, typer.Option(min=1, help="Latest logged days held out (as in training).")] = 1,
    max_requests: Annotated[
        int, typer.Option(min=0, help="Seeded sample of held-out requests; 0 = all of them.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of sampling, the random baseline and TTFT noise.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Score the champion, the logging policy, rules, cheapest, random, always-best and the oracle on the
    real scores of the held-out window, and trace the champion over λ for a matched-cost comparison."""
    from eval.real_world import evaluate_world, format_report, report_document
    from eval.sim_truth import GroundTruthMismatch

    if not (logs / "_manifest.json").exists():
        typer.echo(f"error: {logs} holds no bootstrap manifest", err=True)
        raise typer.Exit(code=2)
    try:
        result = evaluate_world(
            logs,
            mlruns,
            feature_repo,
            outcomes_data=outcomes_data,
            eval_days=eval_days,
            max_requests=max_requests or None,
            seed=seed,
        )
    except (GroundTruthMismatch, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(format_report(result))
    if report is not None:
        report.write_text(json.dumps(report_document(result), indent=2, default=str) + "\n")
        typer.echo(f"report: {report}")
