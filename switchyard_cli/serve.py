"""``switchyard serve``: the gateway, and with ``--all`` everything it needs on a fresh machine.

``switchyard serve --all`` (what ``make serve`` runs) does, skipping each step already done:

1. bootstrap simulated logs (``data/logs``) if there are none, in the world ``--world`` names
   (``invented``, or ``real-outcomes`` with ``--outcomes-data``; docs/simulator.md §7);
2. train the router if the MLflow store (``mlruns/``) has no ``champion`` -- this also writes
   the Feast feature tables and applies the repo;
3. materialize the Feast online store up to now (tenant profiles, tenant × SKU history);
4. write a tenant file with fresh API keys for the bootstrap's tenants (plus the development
   tenant), keys in ``.switchyard/tenant-keys.json`` (mode 0600);
5. start the simulated worker fleet (``switchyard workers up``) and wait for its deployment map;
6. run the API on ``--host:--port`` and print how to call it.

Without ``--all`` only the API runs, configured by ``SWITCHYARD_*`` variables (serving/settings.py).

``--processes N`` (N > 1) runs N gateway processes on the one port (uvicorn's supervisor binds the
socket once, forks N workers and replaces any that dies). Their shared state lives in Redis: the
one named by ``SWITCHYARD_CLUSTER_REDIS_URL``, or else a local ``redis-server`` this command starts
(and stops) on a free loopback port. With ``--all`` the Feast online store moves to that Redis too
(``feature_store.redis.yaml``, materialized here) so every process reads the same rows and the
live stats leader's pushes reach all of them. Several hosts run the same command behind any L4
load balancer, pointed at one managed Redis (docs/gateway.md, "Many processes").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from switchyard_cli.redis_server import RedisServer

STATE = Path(".switchyard")
TENANTS_FILE = STATE / "tenants.yaml"
KEYS_FILE = STATE / "tenant-keys.json"
DEPLOYMENT_FILE = STATE / "deployment.json"


def _step(message: str) -> None:
    typer.secho(f"==> {message}", fg=typer.colors.CYAN, err=True)


def _cli() -> str:
    """The ``switchyard`` console script of this environment."""
    return str(Path(sys.executable).with_name("switchyard"))


def _run(*args: str) -> None:
    completed = subprocess.run([_cli(), *args], check=False)
    if completed.returncode != 0:
        raise typer.Exit(completed.returncode)


def _has_champion(mlruns: Path) -> bool:
    if not (mlruns / "mlflow.db").exists():
        return False
    from router_model.registry import RouterRegistry, tracking_uri_for

    return RouterRegistry(tracking_uri_for(mlruns)).alias_version() is not None


def logged_world(logs: Path) -> str | None:
    """The world a finished bootstrap in ``logs`` simulated (from its manifest), or None if there is none."""
    if not (logs / "_SUCCESS").exists():
        return None
    manifest = json.loads((logs / "_manifest.json").read_text(encoding="utf-8"))
    return str(manifest.get("world", "invented"))


def check_world(logs: Path, mlruns: Path, feature_repo: Path, requested: str) -> None:
    """Refuse to serve one world with the logs (and so the champion and feature tables) of another."""
    found = logged_world(logs)
    if found is not None and found != requested:
        typer.secho(
            f"serve: {logs} holds a bootstrap of the {found!r} world, but --world {requested!r} was asked for;"
            f" the champion in {mlruns} and the feature tables in {feature_repo}/data were made from those logs."
            f" Remove them to switch worlds (rm -r {logs} {mlruns}/* {feature_repo}/data {STATE}),"
            " or give this world its own --logs/--mlruns/--feature-repo.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)


def prepare(logs: Path, mlruns: Path, feature_repo: Path, days: int, world: tuple[str, ...] = ()) -> None:
    """Steps 1-4 (idempotent); ``world`` holds the bootstrap's world options (``--world``, ...)."""
    if (logs / "_SUCCESS").exists():
        _step(f"bootstrap: {logs} already holds logs")
    else:
        _step(f"bootstrap: {days} days of simulated traffic into {logs}")
        _run("bootstrap", "--days", str(days), "--out", str(logs), *world)
    if _has_champion(mlruns):
        _step(f"router: {mlruns} has a champion")
    else:
        _step("router: no champion yet -- training one (the nightly job, a few minutes)")
        _run("train", "--logs", str(logs), "--mlruns", str(mlruns), "--feature-repo", str(feature_repo))
    if not (feature_repo / "data" / "registry.db").exists():
        _run("feature-tables", "--logs", str(logs), "--feature-repo", str(feature_repo))
    _step("features: materializing the Feast online store")
    from offline.feast_adapter import feast_cli

    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    feast_cli(feature_repo, "materialize-incremental", now)
    if not TENANTS_FILE.exists():
        from features.catalog import load_catalog
        from serving.tenant_registry import tenants_from_registry

        made = tenants_from_registry(
            logs / "tenants.parquet",
            TENANTS_FILE,
            KEYS_FILE,
            catalog=load_catalog(),
            include_development_tenant=True,
        )
        _step(f"tenants: {made.tenants} tenants in {TENANTS_FILE}; their API keys in {KEYS_FILE}")


def start_workers(time_scale: float) -> subprocess.Popen[bytes]:
    DEPLOYMENT_FILE.unlink(missing_ok=True)
    _step(f"workers: starting the simulated fleet (time scale {time_scale})")
    process = subprocess.Popen(
        [
            _cli(),
            "workers",
            "up",
            "--time-scale",
            str(time_scale),
            "--deployment-file",
            str(DEPLOYMENT_FILE),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not DEPLOYMENT_FILE.exists():
        if process.poll() is not None:
            raise typer.Exit(f"the worker fleet exited with status {process.returncode}")
        if time.monotonic() > deadline:
            process.terminate()
            raise typer.Exit("the worker fleet did not come up in 120 s")
        time.sleep(0.2)
    return process


def start_cluster_state(processes: int, feature_repo: Path, feature_store: bool) -> RedisServer | None:
    """Point N processes at one Redis (starting a local one if none is configured); sets the env they read."""
    from switchyard_cli.redis_server import RedisServer

    os.environ["SWITCHYARD_CLUSTER_PROCESSES"] = str(processes)
    server = None
    url = os.environ.get("SWITCHYARD_CLUSTER_REDIS_URL")
    if not url:
        STATE.mkdir(exist_ok=True)
        server = RedisServer(log_file=STATE / "redis.log")
        server.start()
        url = server.url
        os.environ["SWITCHYARD_CLUSTER_REDIS_URL"] = url
        _step(f"cluster: started redis-server on 127.0.0.1:{server.port} for {processes} gateway processes")
    else:
        _step(f"cluster: {processes} gateway processes share {url}")
    if feature_store:  # the gateways open feature_store.redis.yaml on this Redis (serving/feast_redis.py)
        _step("features: materializing the Feast online store on Redis")
        from offline.feast_adapter import feast_cli
        from serving.feast_redis import REDIS_YAML, feast_connection_string

        os.environ["REDIS_URL"] = feast_connection_string(url)  # what `feast -f` fills the yaml with
        yaml = str(feature_repo.resolve() / REDIS_YAML)
        feast_cli(feature_repo, "-f", yaml, "materialize", "--disable-event-timestamp")
    return server


def _banner(host: str, port: int) -> str:
    from serving.tenants import DEVELOPMENT_API_KEY

    url = f"http://{host}:{port}"
    return f"""
Switchyard is serving on {url}  (metrics {url}/metrics, readiness {url}/readyz)

  curl {url}/v1/messages -H 'x-api-key: {DEVELOPMENT_API_KEY}' -H 'anthropic-version: 2023-06-01' \\
       -H 'content-type: application/json' \\
       -d '{{"model": "auto", "max_tokens": 256, "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  python -c "import anthropic; c = anthropic.Anthropic(base_url='{url}', api_key='{DEVELOPMENT_API_KEY}'); \\
print(c.messages.create(model='auto', max_tokens=256, messages=[{{'role': 'user', 'content': 'Hello!'}}]))"

  make demo      # realistic traffic from the simulated tenants, with a live table
Ctrl-C stops the API and the workers.
"""


def serve_command(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the API")] = 8080,
    all_: Annotated[
        bool, typer.Option("--all", help="also bootstrap, train, materialize, start workers")
    ] = False,
    logs: Annotated[Path, typer.Option(help="bootstrap logs (training data)")] = Path("data/logs"),
    mlruns: Annotated[Path, typer.Option(help="MLflow store with the champion")] = Path("mlruns"),
    feature_repo: Annotated[Path, typer.Option(help="the Feast repo")] = Path("feature_repo"),
    days: Annotated[int, typer.Option(help="days of simulated traffic to bootstrap")] = 7,
    time_scale: Annotated[float, typer.Option(help="worker latency scale: 1 real, 0 instant")] = 1.0,
    world: Annotated[
        str, typer.Option(help="world to bootstrap: invented, or real-outcomes (needs --outcomes-data)")
    ] = "invented",
    outcomes_data: Annotated[
        Path | None, typer.Option(help="real outcome data for --world real-outcomes (docs/simulator.md)")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="gateway processes on the port; >1 shares their state in Redis")
    ] = 1,
) -> None:
    """Run the inference API (Anthropic Messages) with learned routing."""
    import uvicorn

    from serving.app import create_app

    workers: subprocess.Popen[bytes] | None = None
    if all_:
        check_world(logs, mlruns, feature_repo, world)
        world_options = ("--world", world) + (
            ("--outcomes-data", str(outcomes_data)) if outcomes_data else ()
        )
        prepare(logs, mlruns, feature_repo, days, world_options)
        workers = start_workers(time_scale)
        os.environ.setdefault("SWITCHYARD_TENANTS_FILE", str(TENANTS_FILE))
        os.environ.setdefault("SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY", "true")
        os.environ.setdefault("SWITCHYARD_WORKERS_DEPLOYMENT_FILE", str(DEPLOYMENT_FILE))
        os.environ.setdefault("SWITCHYARD_GATEWAY_MLRUNS", str(mlruns))
        os.environ.setdefault("SWITCHYARD_GATEWAY_FEATURE_STORE", "true")
        os.environ.setdefault("SWITCHYARD_FEAST_REPO_PATH", str(feature_repo))
    redis_server = None
    try:
        if processes > 1:
            feature_store = os.environ.get("SWITCHYARD_GATEWAY_FEATURE_STORE", "").lower() in (
                "1",
                "true",
                "yes",
            )
            redis_server = start_cluster_state(processes, feature_repo, feature_store)
        typer.echo(_banner(host, port), err=True)
        if processes == 1:
            uvicorn.run(create_app(), host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
        else:  # an import string: each worker process builds its own app (and runtime) after the fork
            uvicorn.run(
                "serving.app:create_app",
                factory=True,
                workers=processes,
                host=host,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=10,
            )
    finally:
        if workers is not None and workers.poll() is None:
            os.killpg(workers.pid, signal.SIGTERM)
            workers.wait(timeout=15)
        if redis_server is not None:
            redis_server.stop()
