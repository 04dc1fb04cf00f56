"""``switchyard workers``: run the fleet of simulated vLLM workers from the SKU catalog; ``workers vllm``: real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.catalog import CatalogError, load_catalog
from features.deployment import DEFAULT_DEPLOYMENT_PATH, write_deployment
from simulator.fleet import FleetPlan, RunningFleet, plan_fleet
from switchyard_cli.fleet_lifetime import run_fleet
from switchyard_cli.vllm_commands import vllm_app

workers_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Simulated vLLM workers (`up`) and real ones (`vllm`)."
)
workers_app.add_typer(vllm_app, name="vllm")


def _table(plan: FleetPlan, pids: list[int]) -> str:
    rows = [("SKU", "REGION", "REPLICA", "ENDPOINT", "PID")]
    rows += [
        (e.sku, e.region, str(e.replica), e.url, str(pids[e.process]))
        for e in sorted(plan.endpoints, key=lambda e: (e.region, e.sku, e.replica))
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    )


@workers_app.command("up")
def up(
    catalog: Annotated[Path | None, typer.Option(help="SKU catalog YAML (default: the packaged one)")] = None,
    processes: Annotated[int | None, typer.Option(help="worker processes (default: min(4, CPUs))")] = None,
    base_port: Annotated[int, typer.Option(help="first port; endpoints take consecutive ports")] = 8100,
    time_scale: Annotated[float, typer.Option(help="1.0 = real latency, 0 = no sleeping")] = 1.0,
    region: Annotated[list[str] | None, typer.Option(help="only these regions (repeatable)")] = None,
    replicas: Annotated[int, typer.Option(help="endpoints per (SKU, region)")] = 1,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="seed of the generated text and fault draws")] = 0,
    deployment_file: Annotated[Path, typer.Option(help="where to write the deployment map")] = (
        DEFAULT_DEPLOYMENT_PATH
    ),
) -> None:
    """Start a worker fleet, write the deployment map, and run until Ctrl-C / SIGTERM."""
    try:
        sku_catalog = load_catalog(catalog)
        plan = plan_fleet(
            sku_catalog,
            regions=region,
            processes=processes,
            replicas=replicas,
            base_port=base_port,
            host=host,
            time_scale=time_scale,
            seed=seed,
            catalog_path=catalog.resolve() if catalog else None,
        )
    except (CatalogError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    fleet = RunningFleet(plan)

    def ready() -> Path:
        fleet.wait_healthy()
        written = write_deployment(plan.deployment_map(), deployment_file)
        typer.echo(_table(plan, [process.pid for process in fleet.processes]))
        typer.echo(
            f"\n{len(plan.endpoints)} endpoints in {plan.processes} processes, time_scale={time_scale}; "
            f"deployment map: {written}. Ctrl-C to stop."
        )
        return written

    run_fleet(fleet, ready, name="workers", dead=lambda: f"worker process(es) {fleet.dead()}")
