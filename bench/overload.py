"""Overload at 2× capacity: goodput, which tiers are shed, and how fast rejections are answered.

    flock /tmp/team/bench.lock .venv/bin/python bench/overload.py [--scenarios upstream,gateway]
        [--seconds 15] [--mix 0.4,0.3,0.2,0.1] [--overload 2.0] [--out bench/results/overload.txt]

One gateway process (``switchyard serve``, in-process admission) pinned to core 1; the simulated
worker and this client on core 0 (``bench/tiered_gateway.py``). Tenants: one per tier with
quotas no run reaches, so every rejection under load is priority shedding (529). Requests are
small ``model: auto`` bodies. "Capacity" has two meanings, one scenario each:

- ``upstream``: the worker is the limit, as a GPU fleet is. The worker serves one SKU
  (``claude-haiku-4-5``, 192 batch slots) at a time scale that makes a request take ~1.5 s,
  so the fleet completes ~130 req/s while the gateway has CPU to spare. ``max_in_flight`` is
  256: pro's shedding threshold (0.85 × 256 = 217) stays above the worker's 192 slots, so the
  traffic admitted while free is shed keeps the batch full.
- ``gateway``: the gateway's own CPU is the limit (worker at time scale 0, every us SKU),
  ``max_in_flight`` 64.

Per scenario: capacity = the closed-loop saturation throughput through the gateway (internal
tenant, as many connections as ``max_in_flight``: nothing is shed); then Poisson arrivals at
``--overload`` × capacity for ``--seconds`` in open loop, each request's tenant drawn from
``--mix`` (free, pro, enterprise, internal), over pre-opened keep-alive connections (a new one
only when all are busy). The first 3 s are warm-up. Reported: goodput (200s completed per
second in the window) / capacity; per tier the fractions answered 200 and shed; the client's
time from writing a rejected request to reading its whole answer (p50/p99); and where that
time goes: the same rejection on the idle gateway at concurrency 1 (a 429 of the rate-limited
tenant), the gateway's CPU per rejection and per success (closed loops), and the gateway's
event-loop lag during the window (its ``switchyard_event_loop_lag_seconds`` histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvloop
from gateway_overhead import bodies, exchange
from machine import describe_machine, print_report
from tiered_gateway import LIMITED_KEY, TIER_KEYS, Service, cpu_seconds, request_bytes

from features.schema import TENANT_TIERS
from serving.admission import AdmissionLimits

WARMUP_S = 3.0
POOL = 1024  # keep-alive connections opened before the offered load starts
REJECTION_TARGET_MS = 1.0
GOODPUT_TARGET = 0.90


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    time_scale: float
    skus: list[str] | None
    output_tokens: int
    max_in_flight: int


SCENARIOS = {
    "upstream": Scenario(
        "upstream", "worker-bound: claude-haiku-4-5 only, time scale 5", 5.0, ["claude-haiku-4-5"], 16, 256
    ),
    "gateway": Scenario("gateway", "gateway-CPU-bound: worker at time scale 0", 0.0, None, 64, 64),
}


def payloads(output_tokens: int) -> list[dict]:
    return [
        {
            "model": "auto",
            "max_tokens": 256,
            "messages": [
                {
                    "role": "user",
                    "content": f"Question {v}: what is the capital of France? [[sim out={output_tokens}]]",
                }
            ],
        }
        for v in range(64)
    ]


@dataclass
class Outcomes:
    tier: np.ndarray  # index into TENANT_TIERS
    status: np.ndarray
    scheduled: np.ndarray  # s since the start
    sent: np.ndarray
    done: np.ndarray
    new_connections: int


async def _read(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One Content-Length response: (status, whether the server closes the connection)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    start = head.index(b"content-length: ") + 16
    await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
    return int(head[9:12]), b"connection: close" in head


async def offered_load(
    port: int, by_tier: list[list[bytes]], mix: list[float], rate: float, seconds: float, seed: int
) -> Outcomes:
    """Poisson arrivals at ``rate`` for ``seconds``, each tenant drawn from ``mix``."""
    rng = np.random.default_rng(seed)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(POOL)]
    rows: list[tuple[int, int, float, float, float]] = []
    opened = [0]
    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()

    async def one(tier: int, body: bytes, scheduled: float) -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            opened[0] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = time.perf_counter() - start
        writer.write(body)
        try:
            status, close = await _read(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            status, close = 0, True
        rows.append((tier, status, scheduled, sent, time.perf_counter() - start))
        if close:
            writer.close()
        else:
            idle.append((reader, writer))

    next_at = 0.0
    for index in range(10**9):
        next_at += rng.exponential(1.0 / rate)
        if next_at > seconds:
            break
        await asyncio.sleep(max(0.0, next_at - (time.perf_counter() - start)))
        tier = int(rng.choice(len(mix), p=mix))
        task = asyncio.create_task(one(tier, by_tier[tier][index % len(by_tier[tier])], next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    columns = np.array(rows, dtype=float).T
    return Outcomes(
        columns[0].astype(int), columns[1].astype(int), columns[2], columns[3], columns[4], opened[0]
    )


def sequential_status(port: int, request: bytes, count: int) -> np.ndarray:
    """ms per request at concurrency 1 over one keep-alive socket (any status)."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(count + count // 10):
            started = time.perf_counter()
            exchange(sock, request)
            if index >= count // 10:
                times.append((time.perf_counter() - started) * 1000.0)
    return np.array(times)


def histogram(metrics: str, name: str) -> list[tuple[float, float]]:
    return [
        (float("inf") if le == "+Inf" else float(le), float(count))
        for le, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)
    ]


def counters(metrics: str, name: str) -> dict[str, float]:
    """A counter's samples by their label text, e.g. ``{'error_type="overloaded_error",tier="free"': 3.0}``."""
    return {labels: float(value) for labels, value in re.findall(rf"^{name}{{(.*)}} (\S+)$", metrics, re.M)}


def counter_increase(before: str, after: str, name: str) -> str:
    old = counters(before, name)
    rows = [(labels, value - old.get(labels, 0.0)) for labels, value in counters(after, name).items()]
    return (
        "; ".join(f"{labels.replace(chr(34), '')} {delta:.0f}" for labels, delta in rows if delta) or "none"
    )


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of cumulative ``buckets``."""
    total = buckets[-1][1]
    return next(upper for upper, cumulative in buckets if cumulative >= q * total)


def shed_order_kept(shed_at: list[int], shed: list[float], counts: list[int]) -> bool:
    """No tier shed more than a tier below it. Tiers with a higher threshold must be shed no more
    than those below; tiers sharing a threshold are the same to admission, so between them only
    a difference beyond 3 standard errors of the two fractions counts."""
    for low, high in itertools.combinations(range(len(shed)), 2):
        if shed_at[high] > shed_at[low]:
            if shed[high] > shed[low]:
                return False
            continue
        pooled = (shed[low] * counts[low] + shed[high] * counts[high]) / max(1, counts[low] + counts[high])
        error = math.sqrt(pooled * (1 - pooled) * (1 / max(1, counts[low]) + 1 / max(1, counts[high])))
        if shed[high] - shed[low] > 3 * error:
            return False
    return True


def closed_loop_cpu(
    runner: asyncio.Runner, service: Service, requests: list[bytes], connections: int, seconds: float
) -> tuple[float, float]:
    """(req/s, gateway CPU-ms per request) of a closed loop; any status counts as done."""
    runner.run(closed_loop_any(service.gateway_port, requests, connections, 1.0))
    pids = service.gateway_pids()
    before = cpu_seconds(pids)
    done, elapsed = runner.run(closed_loop_any(service.gateway_port, requests, connections, seconds))
    return done / elapsed, 1000.0 * (cpu_seconds(pids) - before) / done


async def closed_loop_any(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> tuple[int, float]:
    deadline = time.perf_counter() + seconds
    done = [0]

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.perf_counter() < deadline:
            writer.write(requests[sent % len(requests)])
            sent += 1
            await _read(reader)
            done[0] += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    return done[0], time.perf_counter() - started


def run_scenario(scenario: Scenario, args: argparse.Namespace, out: list[str]) -> bool:
    folder = Path(tempfile.mkdtemp(prefix=f"switchyard-overload-{scenario.name}-"))
    limits = AdmissionLimits(max_in_flight=scenario.max_in_flight, shed_fraction=args.shed_fraction)
    env = {
        "SWITCHYARD_ADMISSION_MAX_IN_FLIGHT": str(scenario.max_in_flight),
        "SWITCHYARD_ADMISSION_SHED_FRACTION": json.dumps(args.shed_fraction),
    }
    service = Service(folder, time_scale=scenario.time_scale, skus=scenario.skus, env=env)
    say = out.append
    try:
        port = service.gateway_port
        body = bodies(payloads(scenario.output_tokens), "auto")
        by_tier = [[request_bytes(port, b, TIER_KEYS[tier]) for b in body] for tier in TENANT_TIERS]
        limited = request_bytes(port, body[0], LIMITED_KEY)
        idle_rejection = sequential_status(port, limited, 1000)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rejections_per_s, cpu_rejection = closed_loop_cpu(runner, service, [limited], 16, 3.0)
            internal = by_tier[TENANT_TIERS.index("internal")]
            connections = scenario.max_in_flight if scenario.time_scale else 32
            capacity, cpu_success = closed_loop_cpu(runner, service, internal, connections, 5.0)
            metrics_url = f"{service.gateway_url}/metrics"
            before = httpx.get(metrics_url, trust_env=False).text
            groups = [service.gateway_pids(), [service.worker.pid], [os.getpid()]]
            cpu_before = [cpu_seconds(pids) for pids in groups]
            rate = args.overload * capacity
            outcomes = runner.run(offered_load(port, by_tier, args.mix, rate, args.seconds, seed=11))
            gateway_cpu, worker_cpu, client_cpu = (
                (cpu_seconds(pids) - before) / args.seconds
                for pids, before in zip(groups, cpu_before, strict=True)
            )
            after = httpx.get(metrics_url, trust_env=False).text
    finally:
        service.stop()

    lag_name = "switchyard_event_loop_lag_seconds"
    lag = [
        (upper, b - a)
        for (upper, b), (_, a) in zip(histogram(after, lag_name), histogram(before, lag_name), strict=True)
    ]
    window = outcomes.scheduled >= WARMUP_S
    ok = outcomes.status == 200
    completed = (outcomes.done >= WARMUP_S) & (outcomes.done <= args.seconds)
    goodput = float(np.sum(ok & completed)) / (args.seconds - WARMUP_S)
    rejected = window & np.isin(outcomes.status, (429, 529))
    rejection_ms = 1000.0 * (outcomes.done - outcomes.sent)[rejected]
    from_arrival_ms = 1000.0 * (outcomes.done - outcomes.scheduled)[rejected]
    lateness_ms = 1000.0 * (outcomes.sent - outcomes.scheduled)[window]
    success_ms = 1000.0 * (outcomes.done - outcomes.sent)[window & ok]

    say(
        f"\n[{scenario.name}] {scenario.what}; max_in_flight {scenario.max_in_flight}, shed fractions default"
    )
    say(
        f"  capacity: {capacity:.0f} req/s (closed loop, {connections} connections, internal tenant); "
        f"gateway CPU {cpu_success:.2f} ms per success"
    )
    say(
        f"  rejection on the idle gateway (429, concurrency 1): p50 {np.percentile(idle_rejection, 50):.3f} ms, "
        f"p99 {np.percentile(idle_rejection, 99):.3f} ms; gateway CPU {cpu_rejection:.3f} ms per rejection "
        f"({rejections_per_s:.0f} rejections/s on 16 connections) = {cpu_rejection / cpu_success:.0%} of a success"
    )
    say(
        f"  offered {rate:.0f} req/s ({args.overload:g}× capacity, Poisson, open loop) for {args.seconds:g} s, "
        f"mix {', '.join(f'{t} {m:.0%}' for t, m in zip(TENANT_TIERS, args.mix, strict=True))}; "
        f"window after {WARMUP_S:g} s warm-up: {int(window.sum()):,} requests; "
        f"{outcomes.new_connections} connections opened beyond the {POOL} pre-opened; CPU: gateway {gateway_cpu:.0%}, "
        f"worker {worker_cpu:.0%}, client {client_cpu:.0%} of a core"
    )
    goodput_met = goodput >= GOODPUT_TARGET * capacity
    say(
        f"  goodput {goodput:.0f} req/s = {goodput / capacity:.0%} of capacity "
        f"(target ≥ {GOODPUT_TARGET:.0%}: {'met' if goodput_met else 'MISSED'})"
    )
    shed_fractions, counts = [], []
    for index, tier in enumerate(TENANT_TIERS):
        mine = window & (outcomes.tier == index)
        n = max(1, int(mine.sum()))
        shed = float(np.sum(mine & (outcomes.status == 529))) / n
        shed_fractions.append(shed)
        counts.append(int(mine.sum()))
        other = float(np.sum(mine & ~np.isin(outcomes.status, (200, 529)))) / n
        say(
            f"    {tier:<10} n={int(mine.sum()):>6,}  200 {float(np.sum(mine & ok)) / n:6.1%}  "
            f"shed (529) {shed:6.1%}  other {other:5.1%}"
        )
    ordered = shed_order_kept([limits.shed_at(t) for t in TENANT_TIERS], shed_fractions, counts)
    say(
        f"  no higher tier shed more than a lower one (tiers sharing a threshold: within 3 standard errors): "
        f"{'met' if ordered else 'MISSED'}"
    )
    p50, p99 = np.percentile(rejection_ms, [50, 99]) if len(rejection_ms) else (np.nan, np.nan)
    rejection_met = bool(p99 <= REJECTION_TARGET_MS)
    say(
        f"  rejections ({len(rejection_ms):,}), written → answer read at the client: p50 {p50:.3f} ms, "
        f"p99 {p99:.3f} ms, max {np.max(rejection_ms, initial=0):.1f} ms "
        f"(target p99 ≤ {REJECTION_TARGET_MS:g} ms: {'met' if rejection_met else 'MISSED'})"
    )
    say(
        f"    from the scheduled arrival: p99 {np.percentile(from_arrival_ms, 99):.3f} ms; client lateness "
        f"(sent − scheduled) p50 {np.percentile(lateness_ms, 50):.3f} ms, p99 {np.percentile(lateness_ms, 99):.3f} ms"
    )
    say(
        f"    gateway event-loop lag in the run (its own histogram, bucket upper bounds): "
        f"p50 ≤ {1000 * bucket_quantile(lag, 0.5):g} ms, p99 ≤ {1000 * bucket_quantile(lag, 0.99):g} ms"
    )
    say(f"  gateway counters in the run: shed {counter_increase(before, after, 'switchyard_shed_total')}")
    say(f"    errors {counter_increase(before, after, 'switchyard_errors_total')}")
    say(f"    worker attempts {counter_increase(before, after, 'switchyard_worker_attempts_total')}")
    say(
        f"  admitted requests, written → answer: p50 {np.percentile(success_ms, 50):.1f} ms, "
        f"p99 {np.percentile(success_ms, 99):.1f} ms"
    )
    return goodput_met and ordered and rejection_met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="upstream,gateway", help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--seconds", type=float, default=15.0, help="open-loop duration (3 s warm-up)")
    parser.add_argument("--overload", type=float, default=2.0, help="offered load / capacity")
    parser.add_argument(
        "--mix",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.4, 0.3, 0.2, 0.1],
        help="tenant mix, free,pro,enterprise,internal",
    )
    parser.add_argument(
        "--shed-fraction",
        type=json.loads,
        default=dict(AdmissionLimits().shed_fraction),
        help="JSON {tier: fraction of max_in_flight at which it is shed} (default: the gateway's)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    if len(args.mix) != len(TENANT_TIERS) or abs(sum(args.mix) - 1.0) > 1e-9:
        parser.error("--mix needs one fraction per tier, summing to 1")
    lines = [f"machine: {describe_machine()}"]
    lines.append(
        "layout: one gateway process (switchyard serve) on core 1; the worker and this client on core 0; "
        "model auto, small bodies, non-streaming"
    )
    verdicts = {name: run_scenario(SCENARIOS[name], args, lines) for name in args.scenarios.split(",")}
    lines.append(
        "\n" + ", ".join(f"{name}: {'all met' if met else 'not all met'}" for name, met in verdicts.items())
    )
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
