"""`switchyard train` (the nightly `make train-router` job) and `switchyard feature-tables`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train_command(
    logs: Annotated[Path, typer.Option(help="Root of the partitioned event log.")] = Path("data/logs"),
    feature_repo: Annotated[
        Path, typer.Option(help="The Feast repo (tables are written to its data/).")
    ] = Path("feature_repo"),
    mlruns: Annotated[Path, typer.Option(help="MLflow folder: mlflow.db and artifacts/.")] = Path("mlruns"),
    seed: Annotated[
        int, typer.Option(help="Seed of sampling and LightGBM; same seed, same model bytes.")
    ] = 0,
    eval_days: Annotated[int, typer.Option(min=1, help="Latest logged days held out for evaluation.")] = 1,
    max_train_requests: Annotated[
        int, typer.Option(min=0, help="Seeded sample of training requests; 0 = all of them.")
    ] = 300_000,
    max_eval_requests: Annotated[
        int, typer.Option(min=0, help="Seeded sample of held-out requests; 0 = all of them.")
    ] = 80_000,
    weight_clip: Annotated[
        float, typer.Option(min=1.0, help="Clip of the 1/propensity quality weights.")
    ] = 10.0,
    refresh_features: Annotated[
        bool, typer.Option(help="Recompute the feature tables and run `feast apply` first.")
    ] = True,
    weight_ablation: Annotated[
        bool, typer.Option(help="Also fit an unweighted quality head to compare.")
    ] = True,
    drift_dir: Annotated[
        Path,
        typer.Option(help="The drift monitor's state: a critical verdict over the input refuses promotion."),
    ] = Path(".switchyard/drift"),
    check_drift: Annotated[
        bool,
        typer.Option(help="Consult the drift monitor's verdicts before promoting (--no-check-drift: not)."),
    ] = True,
) -> None:
    """Train the router from logged outcomes, evaluate it on the latest days, register it in MLflow.

    The version becomes `champion` only if it passes the gate against the current champion
    (docs/adr/0003) and no unresolved critical skew or drift verdict covers its input
    (docs/runbooks/drift.md); otherwise it is registered as `challenger` with the reasons.
    """
    from training.pipeline import TrainConfig, format_summary, run_training

    config = TrainConfig(
        logs=logs,
        feature_repo=feature_repo,
        mlruns=mlruns,
        seed=seed,
        eval_days=eval_days,
        max_train_requests=max_train_requests or None,
        max_eval_requests=max_eval_requests or None,
        weight_clip=weight_clip,
        refresh_features=refresh_features,
        weight_ablation=weight_ablation,
        drift_dir=drift_dir if check_drift else None,
    )
    if not (logs / "decisions").is_dir():
        typer.echo(
            f"error: no decision logs under {logs} (run `switchyard bootstrap --out {logs}`)", err=True
        )
        raise typer.Exit(code=2)
    try:
        result = run_training(config, progress=typer.echo)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(format_summary(result))


def feature_tables_command(
    logs: Annotated[Path, typer.Option(help="Root of the partitioned event log.")] = Path("data/logs"),
    feature_repo: Annotated[Path, typer.Option(help="The Feast repo; tables go to its data/.")] = Path(
        "feature_repo"
    ),
    tenants: Annotated[
        Path | None, typer.Option(help="Tenant registry parquet; default <logs>/tenants.parquet.")
    ] = None,
    apply: Annotated[bool, typer.Option(help="Run `feast apply` in the repo afterwards.")] = True,
) -> None:
    """Compute tenant_profile, sku_live_stats and tenant_sku_history from the logs for Feast."""
    from offline.feast_adapter import feast_cli
    from training.feature_tables import write_feature_tables

    counts = write_feature_tables(logs, tenants or logs / "tenants.parquet", feature_repo / "data")
    typer.echo(
        f"tenant_profile {counts.tenant_profile:,} rows, sku_live_stats {counts.sku_live_stats:,}, "
        f"tenant_sku_history {counts.tenant_sku_history:,} → {feature_repo / 'data'}"
    )
    if apply:
        typer.echo(feast_cli(feature_repo, "apply").strip())
