"""Requests per gateway CPU-second from 1 to N gateway processes, CPU per ``auto`` request, and the
added latency at concurrency 1.

    flock /tmp/team/bench.lock .venv/bin/python bench/process_scaling.py [--processes 1,2]
        [--rate 200] [--seconds 20] [--requests 1000] [--gateway-cores 1] [--out bench/results/process_scaling.txt]

Each configuration is a fresh service (``bench/tiered_gateway.py``): one simulated worker at time
scale 0 serving every us SKU, and ``switchyard serve --processes N`` on one port, configured as
an operator would (no MLflow, no Feast, the static prior, the event log on). Configurations:
one process with its state in memory (what ``make serve`` runs), then every N of
``--processes`` with the shared state in a local ``redis-server`` (``SWITCHYARD_CLUSTER_REDIS_URL``:
admission and whatever else the gateway shares there). Every gateway process (uvicorn's supervisor
and its workers) is pinned to ``--gateway-cores``; the worker, Redis and this client to core 0.

Per configuration:
(a) concurrency 1: one keep-alive socket each to the worker direct (pinned model) and to the
    gateway (``model: auto``), alternating (``gateway_overhead.sequential``); added p50/p99 =
    the gateway's percentile minus the direct one.
(b) a fixed offered load: Poisson arrivals at ``--rate`` req/s in open loop for ``--seconds``
    (``gateway_overhead.open_loop``, small ``auto`` bodies, the internal tenant); the CPU time
    (user + system, psutil) of every gateway process over the run, of Redis and of the worker.
    Requests per gateway CPU-second = requests answered / the gateway processes' summed CPU
    seconds; its inverse is the CPU per ``auto`` request. Flat means every configuration within
    15% of the one-process figure with the same state (Redis), and also reported against the
    in-memory one. The per-process split shows how the kernel spread the connections.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import numpy as np
import uvloop
from gateway_overhead import bodies, open_loop, raw_request, sequential, small_payload
from gateway_processes import PINNED
from machine import describe_machine, print_report
from tiered_gateway import Service, cpu_seconds, revision, warm_up

FLAT_WITHIN = 0.15


def measure(processes: int, redis: bool, args: argparse.Namespace, say) -> float:
    """One configuration's report lines; returns its requests per gateway CPU-second."""
    folder = Path(tempfile.mkdtemp(prefix=f"switchyard-scaling-{processes}-"))
    service = Service(folder, processes=processes, redis=redis, gateway_cores=args.gateway_cores)
    try:
        small = [small_payload("auto", v) for v in range(64)]
        sets = {"direct": bodies(small, PINNED), "gateway auto": bodies(small, "auto")}
        ports = {"direct": service.worker_port, "gateway auto": service.gateway_port}
        warm_up(
            service.gateway_port, [raw_request(service.gateway_port, body) for body in sets["gateway auto"]]
        )
        times = sequential(ports, sets, args.requests)
        gateway_raw = [raw_request(service.gateway_port, body) for body in sets["gateway auto"]]
        groups = {
            "gateway": service.gateway_pids(),
            "redis": [service.redis_pid] if service.redis_pid else [],
            "worker": [service.worker.pid],
        }
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(open_loop(service.gateway_port, gateway_raw, args.rate, 2.0, seed=0))  # warm-up
            calls_before = redis_calls(service)
            before = {name: cpu_seconds(pids) for name, pids in groups.items()}
            per_process = {pid: cpu_seconds([pid]) for pid in groups["gateway"]}
            latencies = runner.run(
                open_loop(service.gateway_port, gateway_raw, args.rate, args.seconds, seed=1)
            )
            used = {name: cpu_seconds(pids) - before[name] for name, pids in groups.items()}
            split = [cpu_seconds([pid]) - cpu for pid, cpu in per_process.items()]
            calls_after = redis_calls(service)
        prioritized, pinned = service.prioritized, service.pinned
    finally:
        service.stop()
    answered = len(latencies)
    per_cpu_s = answered / used["gateway"]
    state = "shared state in Redis" if redis else "state in memory"
    say(f"\n{processes} gateway process{'es' if processes > 1 else ''}, {state}:")
    d50, d99 = np.percentile(times["gateway auto"], [50, 99]) - np.percentile(times["direct"], [50, 99])
    say(
        f"  (a) concurrency 1, {args.requests} requests each: direct p50 {np.percentile(times['direct'], 50):.2f} ms; "
        f"gateway auto p50 {np.percentile(times['gateway auto'], 50):.2f} ms, "
        f"p99 {np.percentile(times['gateway auto'], 99):.2f} ms; added p50 {d50:+.2f} ms, p99 {d99:+.2f} ms"
    )
    say(
        f"  (b) {args.rate:g} req/s offered for {args.seconds:g} s: {answered:,} answered, "
        f"p50 {np.percentile(latencies, 50):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms"
    )
    say(
        f"      {per_cpu_s:6.0f} req per gateway CPU-second = {1000 / per_cpu_s:.2f} ms gateway CPU per auto request "
        f"(gateway {100 * used['gateway'] / args.seconds:.0f}% of a core"
        + (f", Redis {1000 * used['redis'] / answered:.3f} ms per request" if redis else "")
        + f", worker {1000 * used['worker'] / answered:.2f} ms per request)"
    )
    if redis:
        calls = {name: count - calls_before.get(name, 0) for name, count in calls_after.items()}
        say(
            "      Redis commands per request: "
            + ", ".join(
                f"{name} {count / answered:.2f}"
                for name, count in sorted(calls.items(), key=lambda x: -x[1])
                if count
            )
        )
    say(
        "      CPU-seconds per gateway process (supervisor first when N > 1): "
        + ", ".join(f"{cpu:.2f}" for cpu in split)
        + f"; pinned {'yes' if pinned else 'no'}, niceness raised {'yes' if prioritized else 'no'}"
    )
    return per_cpu_s


def redis_calls(service: Service) -> dict[str, int]:
    """Calls per Redis command so far (``INFO commandstats``); empty without Redis."""
    if service.redis_server is None:
        return {}
    import redis

    with redis.Redis.from_url(service.redis_server.url) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2])
    parser.add_argument("--rate", type=float, default=200.0, help="offered req/s (Poisson, open loop)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=1000, help="per target at concurrency 1")
    parser.add_argument(
        "--gateway-cores", type=lambda t: {int(x) for x in t.split(",")}, default={1}, help="e.g. 1 or 0,1"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    lines = [f"machine: {describe_machine()}", f"code: {revision()}"]
    lines.append(
        f"layout: every gateway process on core(s) {','.join(map(str, sorted(args.gateway_cores)))}; "
        "worker (time scale 0, every us SKU), Redis and this client on core 0; small auto bodies, non-streaming"
    )
    memory = measure(1, False, args, lines.append)
    shared = {n: measure(n, True, args, lines.append) for n in args.processes}
    base = shared[min(shared)]
    lines.append("\nrequests per gateway CPU-second:")
    lines.append(f"  1 process, state in memory: {memory:.0f}")
    flat = True
    for n, value in shared.items():
        within = abs(value / base - 1) <= FLAT_WITHIN
        flat = flat and within
        lines.append(
            f"  {n} process{'es' if n > 1 else ''}, Redis: {value:.0f} ({value / base - 1:+.0%} against "
            f"{min(shared)} with Redis, {value / memory - 1:+.0%} against 1 in memory)"
        )
    verdict = "met" if flat else "MISSED"
    lines.append(
        f"flat within {FLAT_WITHIN:.0%} from {min(shared)} to {max(shared)} processes (Redis): {verdict}"
    )
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
