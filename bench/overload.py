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

Capacity is the saturation throughput through the gateway, internal tenant only (shed only at
``max_in_flight``), the larger of two measurements: a closed loop over ``max_in_flight``
connections, and Poisson arrivals in open loop at 1.5× the closed loop's figure (the closed loop
undercounts a batching worker: its requests start in waves). Then Poisson arrivals at
``--overload`` × capacity for ``--seconds`` in open loop, each request's tenant drawn from
``--mix`` (free, pro, enterprise, internal), over pre-opened keep-alive connections
(``bench/overload_client.py``). The first 3 s of every open loop are warm-up. Reported: goodput
(200s completed per second in the window) / capacity; per tier the fractions answered 200 and
shed; the client's time from writing a rejected request to reading its whole answer
(p50/p99); and where that time goes: the same rejection on the idle gateway at concurrency 1 (a
429 of the rate-limited tenant), rejections alone at the overload's rejection rate (open loop:
the gateway with nothing else to do), the gateway's CPU per rejection and per success (closed
loops), and the gateway's event-loop lag in the run (its ``switchyard_event_loop_lag_seconds``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvloop
from gateway_overhead import bodies
from machine import describe_machine, print_report
from overload_client import (
    POOL,
    Outcomes,
    bucket_quantile,
    closed_loop_cpu,
    counter_increase,
    histogram,
    offered_load,
    sequential_status,
)
from tiered_gateway import LIMITED_KEY, TIER_KEYS, Service, cpu_seconds, request_bytes, revision, warm_up

from features.schema import TENANT_TIERS
from serving.admission import AdmissionLimits

WARMUP_S = 3.0
REJECTION_TARGET_MS = 1.0
GOODPUT_TARGET = 0.90
LAG = "switchyard_event_loop_lag_seconds"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    time_scale: float
    skus: list[str] | None
    output_tokens: int
    max_in_flight: int
    capacity_seconds: float  # each capacity measurement, after 2-3 s of warm-up


SCENARIOS = {
    "upstream": Scenario(
        "upstream",
        "worker-bound: claude-haiku-4-5 only, time scale 5",
        5.0,
        ["claude-haiku-4-5"],
        16,
        256,
        10.0,
    ),
    "gateway": Scenario("gateway", "gateway-CPU-bound: worker at time scale 0", 0.0, None, 64, 64, 5.0),
}


def payloads(output_tokens: int) -> list[dict]:
    content = "Question {}: what is the capital of France? [[sim out={}]]"
    return [
        {
            "model": "auto",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": content.format(v, output_tokens)}],
        }
        for v in range(64)
    ]


def goodput(outcomes: Outcomes, seconds: float) -> float:
    """200s completed per second between the warm-up and the end of the arrivals."""
    completed = (outcomes.done >= WARMUP_S) & (outcomes.done <= seconds) & (outcomes.status == 200)
    return float(np.sum(completed)) / (seconds - WARMUP_S)


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


@dataclass
class Measured:
    closed_capacity: float
    open_capacity: float
    cpu_success_ms: float
    idle_rejection_ms: np.ndarray
    cpu_rejection_ms: float
    rate: float
    outcomes: Outcomes
    cpu: dict[str, float]  # share of a core over the overload run, by process group
    metrics_before: str
    metrics_after: str
    alone_rate: float
    alone: Outcomes
    prioritized: bool

    @property
    def capacity(self) -> float:
        return max(self.closed_capacity, self.open_capacity)


def measure(scenario: Scenario, args: argparse.Namespace) -> Measured:
    folder = Path(tempfile.mkdtemp(prefix=f"switchyard-overload-{scenario.name}-"))
    env = {
        "SWITCHYARD_ADMISSION_MAX_IN_FLIGHT": str(scenario.max_in_flight),
        "SWITCHYARD_ADMISSION_SHED_FRACTION": json.dumps(args.shed_fraction),
    }
    service = Service(folder, time_scale=scenario.time_scale, skus=scenario.skus, env=env)
    try:
        port = service.gateway_port
        body = bodies(payloads(scenario.output_tokens), "auto")
        by_tier = [[request_bytes(port, b, TIER_KEYS[tier]) for b in body] for tier in TENANT_TIERS]
        internal_only = [0.0] * (len(TENANT_TIERS) - 1) + [1.0]
        limited = request_bytes(port, body[0], LIMITED_KEY)
        warm_up(port, [limited])  # rejections are logged too: the first flush happens here
        idle_rejection = sequential_status(port, limited, 1000)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            _, cpu_rejection = closed_loop_cpu(runner, service, [limited], 16, 3.0, 429)
            closed, cpu_success = closed_loop_cpu(
                runner, service, by_tier[-1], scenario.max_in_flight, scenario.capacity_seconds, 200
            )
            seconds = WARMUP_S + scenario.capacity_seconds
            saturated = runner.run(offered_load(port, by_tier, internal_only, 1.5 * closed, seconds, seed=5))
            capacity = max(closed, goodput(saturated, seconds))
            rate = args.overload * capacity
            metrics_url = f"{service.gateway_url}/metrics"
            before = httpx.get(metrics_url, trust_env=False).text
            groups = {
                "gateway": service.gateway_pids(),
                "worker": [service.worker.pid],
                "client": [os.getpid()],
            }
            cpu_before = {name: cpu_seconds(pids) for name, pids in groups.items()}
            outcomes = runner.run(offered_load(port, by_tier, args.mix, rate, args.seconds, seed=11))
            cpu = {
                name: (cpu_seconds(pids) - cpu_before[name]) / args.seconds for name, pids in groups.items()
            }
            after = httpx.get(metrics_url, trust_env=False).text
            window = outcomes.scheduled >= WARMUP_S
            alone_rate = float(np.sum(window & (outcomes.status != 200))) / (args.seconds - WARMUP_S)
            alone = runner.run(offered_load(port, [[limited]], [1.0], max(1.0, alone_rate), 8.0, seed=13))
    finally:
        service.stop()
    return Measured(
        closed, goodput(saturated, seconds), cpu_success, idle_rejection, cpu_rejection, rate, outcomes, cpu,
        before, after, alone_rate, alone, service.prioritized,
    )  # fmt: skip


def percentiles(ms: np.ndarray) -> str:
    if not len(ms):
        return "none"
    p50, p99 = np.percentile(ms, [50, 99])
    return f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"


def report(scenario: Scenario, m: Measured, args: argparse.Namespace, say) -> bool:
    limits = AdmissionLimits(max_in_flight=scenario.max_in_flight, shed_fraction=args.shed_fraction)
    out = m.outcomes
    window, ok = out.scheduled >= WARMUP_S, out.status == 200
    rejected = window & np.isin(out.status, (429, 529))
    rejection_ms = 1000.0 * (out.done - out.sent)[rejected]
    thresholds = ", ".join(f"{tier} {limits.shed_at(tier)}" for tier in TENANT_TIERS)
    say(
        f"\n[{scenario.name}] {scenario.what}; max_in_flight {scenario.max_in_flight}, shed at in-flight {thresholds}"
    )
    say(
        f"  capacity {m.capacity:.0f} req/s: closed loop ({scenario.max_in_flight} connections) {m.closed_capacity:.0f}, "
        f"open loop at 1.5× that {m.open_capacity:.0f} (internal tenant); gateway CPU {m.cpu_success_ms:.2f} ms "
        f"per success ({m.closed_capacity * m.cpu_success_ms / 10:.0f}% of its core in the closed loop)"
    )
    mix = ", ".join(f"{t} {share:.0%}" for t, share in zip(TENANT_TIERS, args.mix, strict=True))
    say(
        f"  offered {m.rate:.0f} req/s ({args.overload:g}× capacity, Poisson, open loop) for {args.seconds:g} s, mix {mix}; "
        f"{int(window.sum()):,} requests after the {WARMUP_S:g} s warm-up; {out.new_connections} connections opened "
        f"beyond the {POOL} pre-opened; CPU: gateway {m.cpu['gateway']:.0%}, worker {m.cpu['worker']:.0%}, "
        f"client {m.cpu['client']:.0%} of a core"
    )
    good = goodput(out, args.seconds)
    goodput_met = good >= GOODPUT_TARGET * m.capacity
    say(
        f"  goodput {good:.0f} req/s = {good / m.capacity:.0%} of capacity "
        f"(target ≥ {GOODPUT_TARGET:.0%}: {'met' if goodput_met else 'MISSED'})"
    )
    shed, counts = [], []
    for index, tier in enumerate(TENANT_TIERS):
        mine = window & (out.tier == index)
        n = int(mine.sum())
        shed.append(float(np.sum(mine & (out.status == 529))) / max(1, n))
        counts.append(n)
        other = float(np.sum(mine & ~np.isin(out.status, (200, 529)))) / max(1, n)
        say(
            f"    {tier:<10} n={n:>6,}  200 {float(np.sum(mine & ok)) / max(1, n):6.1%}  "
            f"shed (529) {shed[-1]:6.1%}  other {other:5.1%}"
        )
    ordered = shed_order_kept([limits.shed_at(t) for t in TENANT_TIERS], shed, counts)
    say(
        f"  no higher tier shed more than a lower one (tiers sharing a threshold: within 3 SE): {'met' if ordered else 'MISSED'}"
    )
    p99 = float(np.percentile(rejection_ms, 99)) if len(rejection_ms) else math.inf
    rejection_met = p99 <= REJECTION_TARGET_MS
    say(
        f"  rejections ({len(rejection_ms):,}), written → answer read at the client: {percentiles(rejection_ms)}, "
        f"max {np.max(rejection_ms, initial=0):.1f} ms (target p99 ≤ {REJECTION_TARGET_MS:g} ms: "
        f"{'met' if rejection_met else 'MISSED'})"
    )
    lateness = 1000.0 * (out.sent - out.scheduled)[window]
    say(f"    where it goes: client lateness (sent − scheduled arrival) {percentiles(lateness)}")
    say(f"    the same rejection on the idle gateway, concurrency 1: {percentiles(m.idle_rejection_ms)}")
    say(
        f"    gateway CPU per rejection {m.cpu_rejection_ms:.3f} ms "
        f"({m.cpu_rejection_ms / m.cpu_success_ms:.0%} of a success's {m.cpu_success_ms:.2f} ms)"
    )
    alone = m.alone
    alone_ms = 1000.0 * (alone.done - alone.sent)[alone.scheduled >= WARMUP_S]
    say(
        f"    rejections alone at the run's rejection rate ({m.alone_rate:.0f}/s, open loop, 8 s): {percentiles(alone_ms)}"
    )
    lag = [
        (upper, b - a)
        for (upper, b), (_, a) in zip(
            histogram(m.metrics_after, LAG), histogram(m.metrics_before, LAG), strict=True
        )
    ]
    say(
        f"    gateway event-loop lag in the run (100 ms probes, bucket upper bounds): "
        f"p50 ≤ {1000 * bucket_quantile(lag, 0.5):g} ms, p99 ≤ {1000 * bucket_quantile(lag, 0.99):g} ms"
    )
    say(
        f"  gateway counters in the run: shed {counter_increase(m.metrics_before, m.metrics_after, 'switchyard_shed_total')}"
    )
    say(f"    errors {counter_increase(m.metrics_before, m.metrics_after, 'switchyard_errors_total')}")
    success_ms = 1000.0 * (out.done - out.sent)[window & ok]
    say(
        f"  admitted requests, written → answer: p50 {np.percentile(success_ms, 50):.1f} ms, p99 {np.percentile(success_ms, 99):.1f} ms"
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
    lines = [f"machine: {describe_machine()}", f"code: {revision()}"]
    verdicts = {}
    for name in args.scenarios.split(","):
        measured = measure(SCENARIOS[name], args)
        if len(lines) == 2:
            lines.append(
                "layout: one gateway process (switchyard serve) on core 1; the worker and this client on core 0"
                f"{', all at niceness -10' if measured.prioritized else ''}; model auto, small bodies, non-streaming"
            )
        verdicts[name] = report(SCENARIOS[name], measured, args, lines.append)
    lines.append(
        "\n" + ", ".join(f"{name}: {'all met' if met else 'not all met'}" for name, met in verdicts.items())
    )
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
