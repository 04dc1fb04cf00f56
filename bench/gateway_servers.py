"""The gateway process of ``bench/cpu_per_request.py``: the app under one HTTP server.

    python bench/gateway_servers.py {uvicorn,granian} PORT    (the folder in $SWITCHYARD_BENCH_FOLDER)

- ``uvicorn``: as ``switchyard serve`` runs it (``uvicorn.run``; uvloop and httptools when
  installed); ``uvicorn-lean``: also without the proxy-headers middleware and the access log
  (the gateway reads neither the client address nor ``X-Forwarded-*``);
- ``granian``: the ASGI interface, one worker process, uvloop, its defaults otherwise (for
  ASGI a multi-threaded Rust runtime of one thread); ``granian-st``: the single-threaded Rust
  runtime, HTTP/1 only, no websockets. The app is made by :func:`gateway_app` in granian's
  worker (a factory target).

Kept apart from the benchmark's client so the worker imports only what the gateway needs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

FOLDER_ENV = "SWITCHYARD_BENCH_FOLDER"
SERVERS = ("uvicorn", "uvicorn-lean", "granian", "granian-st")


def gateway_app():
    """The gateway app for the folder in ``$SWITCHYARD_BENCH_FOLDER`` (tenants, deployment, logs)."""
    from serving.app import AppSettings, create_app
    from serving.settings import (
        AdmissionSettings,
        GatewaySettings,
        PolicySettings,
        TenantSettings,
        WorkerSettings,
    )

    folder = Path(os.environ[FOLDER_ENV])
    settings = AppSettings(
        gateway=GatewaySettings(mlruns=None, router_model_file=None, log_dir=folder / "logs", seed=7),
        tenants=TenantSettings(file=folder / "tenants.yaml"),
        admission=AdmissionSettings(),
        policy=PolicySettings(),
        workers=WorkerSettings(deployment_file=folder / "deployment.json"),
    )
    return create_app(settings)


def serve(server: str, port: int) -> None:
    """Run the gateway under ``server`` until SIGINT (a graceful shutdown)."""
    if server.startswith("uvicorn"):
        import uvicorn

        lean = {"proxy_headers": False, "access_log": False} if server == "uvicorn-lean" else {}
        with contextlib.suppress(KeyboardInterrupt):  # SIGINT: uvicorn's graceful shutdown ran
            uvicorn.run(gateway_app(), host="127.0.0.1", port=port, log_level="warning", **lean)
        return
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes

    lean = {"runtime_mode": RuntimeModes.st, "http": HTTPModes.http1, "websockets": False}
    Granian(
        "gateway_servers:gateway_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        factory=True,
        log_level="warning",
        **(lean if server == "granian-st" else {}),
    ).serve()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in SERVERS:
        raise SystemExit(__doc__.splitlines()[2].strip())
    serve(sys.argv[1], int(sys.argv[2]))
