"""A gateway service for the overload and process-scaling benchmarks: tenants of every tier,
a simulated worker, optionally a Redis, and ``switchyard serve --processes N`` on one port.

:class:`Service` starts the worker (``simulator.worker``, pinned to ``worker_core``), a
``redis-server`` when asked (pinned with the worker), and the gateway as an operator runs it
(``switchyard serve --processes N``, configured only by ``SWITCHYARD_*`` variables: tenants,
deployment, event log, no MLflow, no Feast, the static prior), with every gateway process
(uvicorn's supervisor and its workers) pinned to ``gateway_cores``. :meth:`Service.gateway_pids`
lists those processes, so a benchmark can sum their CPU time. Every one of them runs at niceness
``PRIORITY`` where the OS allows it (``prioritized``), so that other work on a shared machine
preempts them less.

The tenant file holds one tenant per tier (``TIER_KEYS``), each with quotas high enough that
only priority shedding rejects it, plus ``limited`` (free tier, 1 request per minute) whose
requests are rate-limited (429): a rejection measurable on an idle gateway. The internal
tenant's key is ``gateway_processes.API_KEY``, so the concurrency-1 client of
``gateway_overhead.py`` works unchanged.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import yaml
from gateway_overhead import exchange
from gateway_processes import API_KEY, ROOT, SALT, free_port, wait_ready

from features.catalog import load_catalog
from features.deployment import DeploymentMap, SkuDeployment, write_deployment
from features.schema import TENANT_TIERS
from serving.tenants import KEY_HASH_SCHEME, hash_api_key

TIER_KEYS = {
    tier: API_KEY if tier == "internal" else f"sk-sy-bench-{tier}-{'0' * 24}" for tier in TENANT_TIERS
}
LIMITED_KEY = f"sk-sy-bench-limited-{'0' * 24}"
UNLIMITED_QUOTAS = {"requests_per_minute": 10**9, "tokens_per_minute": 10**13, "max_concurrency": 10**6}
PRIORITY = -10  # the niceness of every benchmark process, where the OS allows it
LIMITED_QUOTAS = {"requests_per_minute": 1, "tokens_per_minute": 10**6, "max_concurrency": 10**6}


def tenant_document(skus: list[str]) -> dict:
    """The tenant file: one unlimited tenant per tier and the rate-limited ``limited`` tenant."""

    def entry(tenant_id: str, tier: str, key: str, quotas: dict) -> dict:
        return {
            "tenant_id": tenant_id,
            "tier": tier,
            "home_region": "us",
            "entitled_skus": skus,
            "quotas": quotas,
            "api_key_hashes": [hash_api_key(key, SALT)],
        }

    tenants = [entry(f"bench-{tier}", tier, key, UNLIMITED_QUOTAS) for tier, key in TIER_KEYS.items()]
    tenants.append(entry("limited", "free", LIMITED_KEY, LIMITED_QUOTAS))
    return {"version": 1, "key_hashing": {"scheme": KEY_HASH_SCHEME, "salt": SALT}, "tenants": tenants}


def write_config(folder: Path, worker_url: str, skus: list[str], time_scale: float) -> None:
    (folder / "tenants.yaml").write_text(yaml.safe_dump(tenant_document(skus)), encoding="utf-8")
    deployments = tuple(SkuDeployment(sku=name, region="us", endpoints=(worker_url,)) for name in skus)
    write_deployment(
        DeploymentMap(time_scale=time_scale, deployments=deployments), folder / "deployment.json"
    )


def request_bytes(port: int, body: bytes, key: str) -> bytes:
    """A raw keep-alive ``POST /v1/messages`` with the tenant's key."""
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"x-api-key: {key}\r\nanthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def set_affinity(pids: list[int], cores: set[int]) -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    for pid in pids:
        os.sched_setaffinity(pid, cores)
    return True


def raise_priority(pids: list[int], niceness: int = PRIORITY) -> bool:
    """Run every thread of the processes at ``niceness`` so other work on a shared machine preempts
    them less (all threads: a background thread left behind would hold the GIL at a lower priority)."""
    try:
        for pid in pids:
            for thread in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(thread.name), niceness)
    except OSError:  # PermissionError included: not allowed here, or no /proc
        return False
    return True


def revision() -> str:
    """The code measured: ``git describe --always --dirty``."""
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def warm_up(port: int, requests: list[bytes], count: int = 400, settle_s: float = 2.0) -> None:
    """Send ``count`` requests one at a time (any status) round robin over 8 connections (so that
    every gateway process gets some), then wait ``settle_s``: each process's first event-log
    flush (its first Arrow conversion imports pandas in a background thread, holding the GIL for
    most of a second) is over before anything is measured."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        for index in range(count):
            exchange(sockets[index % len(sockets)], requests[index % len(requests)])
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(settle_s)


class Service:
    """Worker, optional Redis and ``switchyard serve --processes N``; ``stop()`` ends them all."""

    def __init__(
        self,
        folder: Path,
        *,
        processes: int = 1,
        time_scale: float = 0.0,
        skus: list[str] | None = None,
        redis: bool = False,
        env: dict[str, str] | None = None,
        worker_core: int = 0,
        gateway_cores: set[int] | None = None,
    ) -> None:
        self.folder = folder
        self.processes = processes
        self.skus = skus or [sku.name for sku in load_catalog().in_region("us")]
        self.worker_port, self.gateway_port = free_port(), free_port()
        self.redis_server = None
        self.gateway: subprocess.Popen | None = None
        worker_args = [sys.executable, "-m", "simulator.worker", "--time-scale", str(time_scale)]
        worker_args += ["--region", "us", "--port", str(self.worker_port), "--parent-pid", str(os.getpid())]
        worker_args += list(itertools.chain(*(("--sku", s) for s in self.skus)))
        self.worker = subprocess.Popen(worker_args, cwd=ROOT)
        try:
            self.pinned = set_affinity([self.worker.pid, os.getpid()], {worker_core})
            wait_ready(f"{self.worker_url}/health", self.worker)
            write_config(folder, self.worker_url, self.skus, time_scale)
            gateway_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
            gateway_env |= {
                "SWITCHYARD_TENANTS_FILE": str(folder / "tenants.yaml"),
                "SWITCHYARD_WORKERS_DEPLOYMENT_FILE": str(folder / "deployment.json"),
                "SWITCHYARD_GATEWAY_MLRUNS": "",  # the static prior, no MLflow polling
                "SWITCHYARD_GATEWAY_FEATURE_STORE": "false",
                "SWITCHYARD_GATEWAY_LOG_DIR": str(folder / "logs"),
                "SWITCHYARD_GATEWAY_SEED": "7",
                **(env or {}),
            }
            if redis:
                from switchyard_cli.redis_server import RedisServer

                self.redis_server = RedisServer(log_file=folder / "redis.log")
                self.redis_server.start()
                set_affinity([self.redis_pid], {worker_core})
                gateway_env["SWITCHYARD_CLUSTER_REDIS_URL"] = self.redis_server.url
            command = [
                str(Path(sys.executable).with_name("switchyard")),
                "serve",
                "--port",
                str(self.gateway_port),
            ]
            command += ["--processes", str(processes)]
            with (folder / "gateway.log").open("ab") as log:  # the banner and any traceback
                self.gateway = subprocess.Popen(
                    command, cwd=folder, env=gateway_env, stdout=log, stderr=log, start_new_session=True
                )
            self.wait_gateway_ready()
            cores = gateway_cores if gateway_cores is not None else {1}
            self.pinned = self.pinned and set_affinity(self.gateway_pids(), cores)
            others = [self.worker.pid, os.getpid(), *([self.redis_pid] if self.redis_pid else [])]
            self.prioritized = raise_priority(self.gateway_pids() + others)
        except BaseException:
            self.stop()
            raise

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def redis_pid(self) -> int | None:
        process = self.redis_server._process if self.redis_server else None
        return process.pid if process else None

    def gateway_pids(self) -> list[int]:
        """The ``switchyard serve`` process and every process under it (uvicorn's workers)."""
        if self.gateway is None:
            return []
        root = psutil.Process(self.gateway.pid)
        return [root.pid, *(child.pid for child in root.children(recursive=True))]

    def wait_gateway_ready(self, seconds: float = 120.0) -> None:
        """Ready once ``/readyz`` answers and every process has finished starting (its CPU is idle)."""
        assert self.gateway is not None
        wait_ready(f"{self.gateway_url}/readyz", self.gateway, seconds)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pids = self.gateway_pids()
            before = cpu_seconds(pids)
            time.sleep(0.5)
            workers = len(pids) - 1 if self.processes > 1 else 1
            if workers >= self.processes and cpu_seconds(pids) - before < 0.05:
                for _ in range(4 * self.processes):  # fresh connections reach every process
                    httpx.get(f"{self.gateway_url}/readyz", timeout=5.0, trust_env=False).raise_for_status()
                return
        raise RuntimeError(f"the {self.processes} gateway processes did not settle in {seconds:.0f} s")

    def stop(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGINT)
            try:
                self.gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.gateway.pid, signal.SIGKILL)
                self.gateway.wait(timeout=10)
        if self.worker.poll() is None:
            self.worker.send_signal(signal.SIGINT)
            self.worker.wait(timeout=60)
        if self.redis_server is not None:
            self.redis_server.stop()
