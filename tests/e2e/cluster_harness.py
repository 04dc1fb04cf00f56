"""Gateways as real processes (``switchyard serve``) sharing one real redis-server, for cluster tests.

Each gateway is started the way an operator starts it: the ``switchyard serve`` command with
``SWITCHYARD_*`` variables, here without ``--all`` (the tests bring their own simulated workers,
tenants and Redis). ``processes`` > 1 runs uvicorn's supervisor with that many workers on one port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
from gateway_harness import Fleet, write_tenants

from switchyard_cli.redis_server import free_port

HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def gateway_environment(
    folder: Path, fleet: Fleet, redis_url: str | None, *, processes: int = 1, **extra: str
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SWITCHYARD_")}
    env.update(
        {
            "SWITCHYARD_TENANTS_FILE": str(write_tenants(folder / "tenants.yaml")),
            "SWITCHYARD_WORKERS_DEPLOYMENT_FILE": str(fleet.deployment_file),
            "SWITCHYARD_WORKERS_BREAKER_COOLDOWN_S": "0.5",
            "SWITCHYARD_GATEWAY_MLRUNS": "",  # the static prior: no registry to poll
            "SWITCHYARD_GATEWAY_LOG_DIR": str(folder / "logs"),
            "SWITCHYARD_GATEWAY_SEED": "7",
            "SWITCHYARD_SAFE_MODE_VERDICT_FILE": str(folder / "drift" / "verdict.json"),
            "SWITCHYARD_CLUSTER_PROCESSES": str(processes),
        }
    )
    if redis_url is not None:
        env["SWITCHYARD_CLUSTER_REDIS_URL"] = redis_url
    env.update(extra)
    return env


@contextlib.contextmanager
def gateway_process(
    folder: Path, env: Mapping[str, str], *, processes: int = 1, name: str = "gateway"
) -> Iterator[str]:
    """``switchyard serve --processes N`` on a free loopback port; yields its URL once it is ready."""
    port = free_port()
    log_path = folder / f"{name}-{port}.log"
    command = [str(Path(sys.executable).with_name("switchyard")), "serve", "--port", str(port)]
    command += ["--processes", str(processes)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path, processes)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_ready(
    url: str, process: subprocess.Popen, log_path: Path, processes: int, seconds: float = 90
) -> None:
    """Until ``processes`` distinct gateway processes have answered ``/readyz`` ready."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the gateway exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            # a new connection each time: the kernel hands it to whichever process accepts first
            response = httpx.get(f"{url}/readyz", timeout=2.0)
            if response.status_code == 200:
                seen.add(response.json()["process"])
                if len(seen) >= processes:
                    return
                continue
        time.sleep(0.1)
    raise RuntimeError(f"{url}: {len(seen)} of {processes} processes ready:\n{log_path.read_text()[-3000:]}")


def message(
    client: httpx.Client, url: str, key: str, text: str = "hello", max_tokens: int = 16, **body: object
) -> httpx.Response:
    document = {
        "model": "auto",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **body,
    }
    return client.post(f"{url}/v1/messages", json=document, headers={**HEADERS, "x-api-key": key})


def readyz(url: str) -> dict:
    return httpx.get(f"{url}/readyz", timeout=5.0).json()


def scraped_totals(url: str) -> tuple[float, float]:
    """(serving cost in USD, accepted requests) this gateway has counted so far, from its ``/metrics``."""
    cost = requests = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5.0).text.splitlines():
        if line.startswith("switchyard_serving_cost_usd_total{"):
            cost += float(line.rsplit(" ", 1)[1])
        elif line.startswith("switchyard_requests_total{") and 'status="200"' in line:
            requests += float(line.rsplit(" ", 1)[1])
    return cost, requests


@contextlib.contextmanager
def steady_load(
    urls: list[str], key: str, *, per_url: int = 2, text: str = "load", max_tokens: int = 16
) -> Iterator[list[tuple[float, int]]]:
    """Threads sending requests round the ``urls`` while the block runs; yields [(finished, status)]."""
    results: list[tuple[float, int]] = []
    stop = threading.Event()

    def run(url: str) -> None:
        with httpx.Client(timeout=30.0) as client:
            i = 0
            while not stop.is_set():
                response = message(client, url, key, text=f"{text} {i}", max_tokens=max_tokens)
                results.append((time.monotonic(), response.status_code))
                i += 1

    threads = [threading.Thread(target=run, args=(url,), daemon=True) for url in urls * per_url]
    for thread in threads:
        thread.start()
    try:
        yield results
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
