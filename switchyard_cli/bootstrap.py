"""`switchyard bootstrap`: simulate days of traffic under the logging policy and write the event log."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from simulator.bootstrap import BootstrapConfig, BootstrapError, format_summary, run_bootstrap


def bootstrap_command(
    days: Annotated[int, typer.Option(min=1, help="Days of traffic to simulate.")] = 7,
    requests_per_day: Annotated[int, typer.Option(min=1, help="Mean requests per simulated day.")] = 143_000,
    seed: Annotated[
        int, typer.Option(help="World and traffic seed; the same seed writes the same rows.")
    ] = 0,
    out: Annotated[Path, typer.Option(help="Root of the partitioned event log.")] = Path("data/logs"),
    start: Annotated[
        str, typer.Option(help="First simulated day (UTC), YYYY-MM-DD; default: the N days ending yesterday.")
    ] = "",
    epsilon: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Exploration rate of the logging policy.")
    ] = 0.1,
    tenants: Annotated[int, typer.Option(min=10, help="Number of simulated tenants.")] = 2000,
    overwrite: Annotated[bool, typer.Option(help="Replace event logs already under --out.")] = False,
    world: Annotated[
        str,
        typer.Option(
            help="The simulated world: `invented` (formula quality) or `real-outcomes` (real prompts and "
            "per-SKU scores from --outcomes-data; docs/simulator.md §7)."
        ),
    ] = "invented",
    outcomes_data: Annotated[
        Path | None,
        typer.Option(help="Real outcome data for --world real-outcomes (LLMRouter's dcrouter files)."),
    ] = None,
    heldout_days: Annotated[
        int, typer.Option(min=1, help="real-outcomes: last days drawn from held-out prompts only.")
    ] = 1,
) -> None:
    """Simulate N days under the exploring rule policy and write decision/attempt/outcome/feedback logs."""
    try:
        first_day = date.fromisoformat(start) if start else date.today() - timedelta(days=days)
    except ValueError:
        raise typer.BadParameter(f"not a date: {start!r}", param_hint="--start") from None
    config = BootstrapConfig(
        days=days,
        requests_per_day=requests_per_day,
        seed=seed,
        out=out,
        start=first_day,
        epsilon=epsilon,
        n_tenants=tenants,
        overwrite=overwrite,
        world=world,
        outcomes_data=outcomes_data,
        heldout_days=heldout_days,
    )
    typer.echo(
        f"bootstrap: {days} days x ~{requests_per_day:,} requests/day, seed {seed}, "
        f"{config.windows_per_day} window(s)/day, {world} world -> {out}"
    )
    try:
        summary = run_bootstrap(config, progress=typer.echo)
    except BootstrapError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(format_summary(summary))
