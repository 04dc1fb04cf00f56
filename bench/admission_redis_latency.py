"""Latency and CPU of cluster-wide admission: one admit + release through RedisAdmission and a local redis-server.

    .venv/bin/python bench/admission_redis_latency.py [--steps 20000] [--tenants 100]

Starts ``redis-server`` on a free loopback port (no persistence), then runs ``--steps``
sequential steps in one event loop, each ``await admit`` (one check-and-reserve script) and
``await ticket.release(actual)`` (one release-and-reconcile script) for a tenant picked round
robin, with quotas high enough that every request is admitted. Each call is timed alone with
``perf_counter_ns``; the gateway's CPU per step is ``process_time`` over the run (the Redis
server's own CPU is not in it). The per-call timeout is 50 ms so a noisy machine does not
switch to degraded mode; the report says how many decisions were degraded anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import time

import numpy as np
from machine import describe_machine

from serving.admission import AdmissionLimits
from serving.admission_redis import RedisAdmission, RedisAdmissionConfig
from serving.metrics import GatewayMetrics
from serving.tenants import Quotas, Tenant


def _start_redis() -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make redis-setup`")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("redis-server did not start")


def _tenants(count: int) -> list[Tenant]:
    quotas = Quotas(requests_per_minute=10_000_000, tokens_per_minute=10_000_000_000, max_concurrency=100_000)
    return [
        Tenant(
            tenant_id=f"bench-{i}",
            tier="enterprise",
            home_region="us",
            residency_required=False,
            surface="api",
            entitled_skus=frozenset({"claude-haiku-4-5"}),
            quotas=quotas,
        )
        for i in range(count)
    ]


async def _run(port: int, steps: int, tenants: list[Tenant]) -> tuple[np.ndarray, np.ndarray, float, float]:
    metrics = GatewayMetrics()
    config = RedisAdmissionConfig(url=f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
    admission = RedisAdmission.connect(config, AdmissionLimits(), metrics=metrics)
    for who in tenants:  # connect and load both scripts
        await (await admission.admit(who, 5000)).release(3000)
    admit_ns = np.empty(steps, dtype=np.int64)
    release_ns = np.empty(steps, dtype=np.int64)
    cpu_started = time.process_time()
    for step in range(steps):
        who = tenants[step % len(tenants)]
        started = time.perf_counter_ns()
        ticket = await admission.admit(who, 5000)
        admitted = time.perf_counter_ns()
        await ticket.release(3000)
        release_ns[step] = time.perf_counter_ns() - admitted
        admit_ns[step] = admitted - started
    cpu_s = time.process_time() - cpu_started
    degraded = metrics.registry.get_sample_value("switchyard_admission_degraded_decisions_total") or 0.0
    await admission.aclose()
    return admit_ns, release_ns, cpu_s, degraded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=100)
    args = parser.parse_args()
    process, port = _start_redis()
    try:
        version = (
            subprocess.run(
                [shutil.which("redis-server") or "redis-server", "--version"], capture_output=True, text=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
        admit_ns, release_ns, cpu_s, degraded = asyncio.run(_run(port, args.steps, _tenants(args.tenants)))
    finally:
        process.kill()
        process.wait()
    print(describe_machine(f"redis-server {version}"))
    for name, values in (("admit", admit_ns), ("release", release_ns)):
        p50, p99 = np.percentile(values, [50, 99]) / 1000.0
        print(f"{name:8s} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs")
    print(f"gateway CPU per admit+release: {cpu_s / args.steps * 1e6:.1f} µs ({args.steps} steps)")
    print(f"degraded decisions: {degraded:.0f}")


if __name__ == "__main__":
    main()
