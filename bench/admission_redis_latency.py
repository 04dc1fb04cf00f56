"""Latency and CPU of cluster-wide admission: admit + release through RedisAdmission and a local redis-server.

    .venv/bin/python bench/admission_redis_latency.py [--steps 20000] [--tenants 100]
        [--awaited-steps 1000] [--concurrency 1 32] [--release-delay-ms MS]
        [--out bench/results/admission_redis_latency.txt]

Starts ``redis-server`` on a free loopback port (no persistence) and runs admit + release
steps on uvloop (as the gateway does) for tenants picked round robin, with quotas high enough that every request is admitted:

- ``awaited`` (``--awaited-steps``, one at a time): ``await admit`` then ``await
  ticket.release(actual)``, each timed alone with ``perf_counter_ns`` (a release returns once
  its batch is answered, so its time includes the release delay);
- for each ``--concurrency`` N, ``--steps`` steps: N tasks admit (timed) and hand each release to a new task, as
  the gateway does (``release by task``), then again queueing it with ``release_nowait``.

The gateway's CPU per step is ``process_time`` over the run; Redis's CPU and its commands per
step come from ``INFO cpu`` / ``INFO commandstats`` before and after. The per-call timeout is
50 ms so a noisy machine does not switch to degraded mode; the report says how many decisions
were degraded anyway and how many connections the client opened.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
import uvloop
from machine import describe_machine, print_report
from tiered_gateway import revision

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


def _redis_stats(port: int) -> tuple[float, dict[str, int]]:
    """The server's CPU seconds so far and its calls per command."""
    client = redis.Redis(port=port)
    cpu = client.info("cpu")
    commands = {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in client.info("commandstats").items()
    }
    client.close()
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), commands


@dataclass
class _Result:
    name: str
    steps: int
    admit_ns: np.ndarray
    release_ns: np.ndarray | None
    cpu_s: float
    redis_cpu_s: float
    commands: dict[str, int]
    degraded: float
    connects: int


async def _run(
    port: int, steps: int, tenants: list[Tenant], concurrency: int, delay_s: float | None, mode: str
) -> _Result:
    """``awaited`` (one at a time): admit, then ``await release`` (both timed). ``task``: that many
    tasks admit and hand the release off to a task, as the gateway does; ``nowait``: they queue it
    by ``release_nowait`` (only admits timed)."""
    metrics = GatewayMetrics()
    delay = {} if delay_s is None else {"release_delay_s": delay_s}
    config = RedisAdmissionConfig(url=f"redis://127.0.0.1:{port}/0", timeout_s=0.05, **delay)
    admission = RedisAdmission.connect(config, AdmissionLimits(), metrics=metrics)
    for who in tenants:  # connect and load both scripts
        await (await admission.admit(who, 5000)).release(3000)
    admit_ns = np.empty(steps, dtype=np.int64)
    release_ns = np.empty(steps, dtype=np.int64)
    loop = asyncio.get_running_loop()
    redis_cpu_started, commands_before = _redis_stats(port)
    cpu_started = time.process_time()
    if mode == "awaited":
        for step in range(steps):
            who = tenants[step % len(tenants)]
            started = time.perf_counter_ns()
            ticket = await admission.admit(who, 5000)
            admitted = time.perf_counter_ns()
            await ticket.release(3000)
            release_ns[step] = time.perf_counter_ns() - admitted
            admit_ns[step] = admitted - started
    else:
        steps_left = iter(range(steps))

        async def client() -> None:
            for step in steps_left:
                started = time.perf_counter_ns()
                ticket = await admission.admit(tenants[step % len(tenants)], 5000)
                admit_ns[step] = time.perf_counter_ns() - started
                if mode == "nowait":
                    admission.release_nowait(ticket, 3000)
                else:
                    releasing = loop.create_task(ticket.release(3000))
                    releases.add(releasing)
                    releasing.add_done_callback(releases.discard)
                await asyncio.sleep(0)

        releases: set[asyncio.Task[bool]] = set()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        await asyncio.gather(*releases)
    await admission.aclose()
    cpu_s = time.process_time() - cpu_started
    redis_cpu, commands_after = _redis_stats(port)
    commands = {
        name: calls - commands_before.get(name, 0)
        for name, calls in commands_after.items()
        if name not in ("info",) and calls > commands_before.get(name, 0)
    }
    degraded = metrics.registry.get_sample_value("switchyard_admission_degraded_decisions_total") or 0.0
    return _Result(
        f"concurrency {concurrency}, release {'by ' + mode if mode != 'awaited' else 'awaited'}",
        steps,
        admit_ns,
        release_ns if mode == "awaited" else None,
        cpu_s,
        redis_cpu - redis_cpu_started,
        commands,
        degraded,
        getattr(getattr(admission, "client", None), "connects", -1),  # -1: not counted
    )


def _report(result: _Result) -> list[str]:
    lines = [f"{result.name}, {result.steps} admit+release:"]
    timings = [("admit", result.admit_ns)]
    if result.release_ns is not None:
        timings.append(("release", result.release_ns))
    for name, values in timings:
        p50, p99 = np.percentile(values, [50, 99]) / 1000.0
        lines.append(f"  {name:8s} p50 {p50:7.1f} µs  p99 {p99:7.1f} µs")
    per_step = {name: calls / result.steps for name, calls in result.commands.items()}
    commands = ", ".join(
        f"{name} {calls:.2f}" for name, calls in sorted(per_step.items(), key=lambda kv: -kv[1])
    )
    lines += [
        f"  gateway CPU per admit+release: {result.cpu_s / result.steps * 1e6:.1f} µs;"
        f" Redis CPU: {result.redis_cpu_s / result.steps * 1e6:.1f} µs",
        f"  Redis commands per admit+release: {commands}",
        f"  degraded decisions: {result.degraded:.0f}; connections opened: {result.connects}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--awaited-steps", type=int, default=1000, help="one at a time, release awaited")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--release-delay-ms", type=float, default=None, help="default: the config's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    delay_s = None if args.release_delay_ms is None else args.release_delay_ms / 1000.0
    process, port = _start_redis()
    try:
        version = (
            subprocess.run(
                [shutil.which("redis-server") or "redis-server", "--version"], capture_output=True, text=True
            )
            .stdout.split()[2]
            .removeprefix("v=")
        )
        runs = [(args.awaited_steps, 1, "awaited")]
        runs += [(args.steps, c, mode) for c in args.concurrency for mode in ("task", "nowait")]
        results = [
            uvloop.run(_run(port, steps, _tenants(args.tenants), c, delay_s, mode)) for steps, c, mode in runs
        ]
    finally:
        process.kill()
        process.wait()
    lines = [f"machine: {describe_machine(f'redis-server {version}')}", f"code: {revision()}"]
    for result in results:
        lines += _report(result)
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
