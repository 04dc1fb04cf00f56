"""A fleet of simulated workers from the SKU catalog, and the deployment map it writes.

Plan: every SKU is deployed in every region the catalog lists for it, ``replicas`` times.
Each (SKU, region, replica) is one *endpoint*: a worker app serving that one SKU on its own
loopback port, as one vLLM server serves one model. Endpoints are dealt round-robin to
``processes`` OS processes; a process serves all its endpoints from one event loop.

:meth:`FleetPlan.deployment_map` is what the gateway reads; the map's model, file format and
``load_deployment`` / ``write_deployment`` live in ``features.deployment`` (the shared contract).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter

from features.catalog import REGIONS, Catalog
from features.deployment import DeploymentMap, SkuDeployment
from simulator.worker import WorkerConfig


class Endpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    region: str
    replica: int
    process: int
    config: WorkerConfig

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"


class FleetPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    endpoints: tuple[Endpoint, ...]
    processes: int
    time_scale: float

    def process_configs(self, process: int) -> list[WorkerConfig]:
        return [endpoint.config for endpoint in self.endpoints if endpoint.process == process]

    def deployment_map(self) -> DeploymentMap:
        grouped: dict[tuple[str, str], list[str]] = {}
        for endpoint in self.endpoints:
            grouped.setdefault((endpoint.sku, endpoint.region), []).append(endpoint.url)
        return DeploymentMap(
            time_scale=self.time_scale,
            deployments=tuple(
                SkuDeployment(sku=sku, region=region, endpoints=tuple(urls))
                for (sku, region), urls in grouped.items()
            ),
        )


def plan_fleet(
    catalog: Catalog,
    *,
    regions: Sequence[str] | None = None,
    processes: int | None = None,
    replicas: int = 1,
    base_port: int = 8100,
    host: str = "127.0.0.1",
    time_scale: float = 1.0,
    seed: int = 0,
    catalog_path: Path | None = None,
) -> FleetPlan:
    """Every SKU in every selected region where the catalog deploys it, ``replicas`` times."""
    selected = tuple(regions) if regions else REGIONS
    unknown = [region for region in selected if region not in REGIONS]
    if unknown:
        raise ValueError(f"unknown region(s) {', '.join(unknown)}; regions are {', '.join(REGIONS)}")
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    slots = [
        (sku.name, region, replica)
        for region in selected
        for sku in catalog.in_region(region)
        for replica in range(replicas)
    ]
    if not slots:
        raise ValueError("no SKU of the catalog is deployed in the selected regions")
    process_count = max(1, min(processes or min(4, os.cpu_count() or 1), len(slots)))
    if base_port + len(slots) > 65536:
        raise ValueError(f"base port {base_port} leaves no room for {len(slots)} endpoints")
    endpoints = tuple(
        Endpoint(
            sku=sku,
            region=region,
            replica=replica,
            process=index % process_count,
            config=WorkerConfig(
                skus=(sku,),
                host=host,
                port=base_port + index,
                region=region,
                time_scale=time_scale,
                seed=seed,
                fault_seed=seed + index,
                catalog_path=catalog_path,
            ),
        )
        for index, (sku, region, replica) in enumerate(slots)
    )
    return FleetPlan(endpoints=endpoints, processes=process_count, time_scale=time_scale)


class RunningFleet:
    """The worker processes of a plan: start, wait until healthy, stop."""

    def __init__(self, plan: FleetPlan) -> None:
        self.plan = plan
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        adapter = TypeAdapter(list[WorkerConfig])
        for process in range(self.plan.processes):
            configs = adapter.dump_json(self.plan.process_configs(process)).decode()
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "simulator.worker",
                        "--configs-json",
                        configs,
                        "--parent-pid",
                        str(os.getpid()),
                    ],
                    start_new_session=True,  # the parent decides when children stop
                )
            )

    def dead(self) -> list[int]:
        return [index for index, process in enumerate(self.processes) if process.poll() is not None]

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Block until every endpoint answers ``GET /health``; RuntimeError on timeout or a crash."""
        pending = {endpoint.url for endpoint in self.plan.endpoints}
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while pending:
                if self.dead():
                    raise RuntimeError(f"worker process(es) {self.dead()} exited during start-up")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"endpoints not healthy after {timeout_s:.0f}s: {sorted(pending)}")
                for url in list(pending):
                    try:
                        if client.get(f"{url}/health").status_code == 200:
                            pending.discard(url)
                    except httpx.TransportError:
                        pass
                if pending:
                    time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child, then SIGKILL what is left after ``timeout_s``."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port_range(count: int) -> int:
    """A base port whose next ``count`` loopback ports are free right now (for ``plan_fleet``)."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randint(20_000, 60_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free port range")
