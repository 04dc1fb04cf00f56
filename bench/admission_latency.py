"""Latency of in-process admission: µs per admit + release, p50/p99, over 1M calls across 1K tenants.

    .venv/bin/python bench/admission_latency.py [--calls 1000000] [--tenants 1000] [--rate 2000] [--open 1000]

Tenants get the simulated world's tier mix (72% free, 22% pro, ~6% enterprise, a few internal)
and their tier's default quotas; each call picks a tenant by the tiers' traffic shares (free
12%, pro 23%, enterprise 35%, internal 30%) and reserves a lognormal ~5K-token prompt plus a
max_tokens of 256/1K/4K, reconciled to 30–100% of that on release. The buckets run on a
simulated clock advancing ``1/rate`` per call (``--rate`` req/s for this replica), so the
admitted/rejected mix is what that load would produce rather than what this loop's speed would;
reading it costs about what ``time.monotonic`` does. ``--open`` tickets stay in flight (FIFO),
so every timed step is one admit plus the release of the oldest ticket. Each step is timed
with ``perf_counter_ns`` (its own ~50–100 ns included). Scenarios:

- ``sync``: ``admit_now`` + ``release_now(ticket, actual_tokens)`` (the whole decision);
- ``async``: ``await admit`` + ``await ticket.release(actual)`` in one event loop, as a handler does;
- ``saturated``: in-flight held above the free tier's high-water mark, so free requests are shed (529).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque

import numpy as np
from machine import describe_machine

from serving.admission import AdmissionLimits, AdmissionTicket, InProcessAdmission
from serving.errors import ApiError
from serving.tenants import DEFAULT_QUOTAS, Tenant

TENANT_SHARE = {"free": 0.72, "pro": 0.22, "enterprise": 0.057, "internal": 0.003}
TRAFFIC_SHARE = {"free": 0.12, "pro": 0.23, "enterprise": 0.35, "internal": 0.30}


class SimulatedClock:
    """Seconds since start at the offered request rate: advances ``1/rate`` per admit."""

    def __init__(self, rate: float) -> None:
        self.step = 1.0 / rate
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.step


def machine() -> str:
    return describe_machine()


def make_tenants(count: int, rng: np.random.Generator) -> list[Tenant]:
    tiers = rng.choice(list(TENANT_SHARE), size=count, p=list(TENANT_SHARE.values()))
    tiers[: len(TENANT_SHARE)] = list(TENANT_SHARE)  # every tier present
    return [
        Tenant(
            tenant_id=f"t{index:05d}",
            tier=str(tier),
            home_region="us",
            residency_required=False,
            surface="api",
            entitled_skus=frozenset({"claude-haiku-4-5"}),
            quotas=DEFAULT_QUOTAS[str(tier)],
        )
        for index, tier in enumerate(tiers)
    ]


def summary(label: str, samples_ns: list[int]) -> str:
    if not samples_ns:
        return f"{label:<40} (none)"
    micros = np.array(samples_ns) / 1e3
    p50, p99, p999 = np.percentile(micros, [50, 99, 99.9])
    return (
        f"{label:<40} n={len(micros):>8,}  p50 {p50:6.2f} µs  p99 {p99:6.2f} µs  "
        f"p99.9 {p999:6.2f} µs  mean {micros.mean():6.2f} µs"
    )


def workload(
    tenants: list[Tenant], calls: int, rng: np.random.Generator
) -> tuple[list[Tenant], list[int], list[int]]:
    tier_counts = {tier: sum(t.tier == tier for t in tenants) for tier in TRAFFIC_SHARE}
    weights = np.array([TRAFFIC_SHARE[t.tier] / tier_counts[t.tier] for t in tenants])
    picks = rng.choice(len(tenants), size=calls, p=weights / weights.sum())
    prompt = rng.lognormal(np.log(4000), 0.8, size=calls)
    reserved = (prompt + rng.choice([256, 1024, 4096], size=calls)).astype(int)
    actual = (reserved * rng.uniform(0.3, 1.0, size=calls)).astype(int)
    return [tenants[i] for i in picks], reserved.tolist(), actual.tolist()


Timings = tuple[list[int], list[int]]


def run_sync(
    admission: InProcessAdmission,
    clock: SimulatedClock,
    calls: tuple[list[Tenant], list[int], list[int]],
    open_tickets: int,
) -> Timings:
    admitted: list[int] = []
    rejected: list[int] = []
    in_flight: deque[tuple[AdmissionTicket, int]] = deque()
    timer = time.perf_counter_ns
    for tenant, tokens, used in zip(*calls, strict=True):
        clock.tick()
        start = timer()
        try:
            ticket = admission.admit_now(tenant, tokens)
        except ApiError:
            rejected.append(timer() - start)
            continue
        in_flight.append((ticket, used))
        if len(in_flight) > open_tickets:
            oldest, oldest_used = in_flight.popleft()
            admission.release_now(oldest, oldest_used)
        admitted.append(timer() - start)
    for ticket, used in in_flight:
        admission.release_now(ticket, used)
    return admitted, rejected


async def run_async(
    admission: InProcessAdmission,
    clock: SimulatedClock,
    calls: tuple[list[Tenant], list[int], list[int]],
    open_tickets: int,
) -> Timings:
    admitted: list[int] = []
    rejected: list[int] = []
    in_flight: deque[tuple[AdmissionTicket, int]] = deque()
    timer = time.perf_counter_ns
    for tenant, tokens, used in zip(*calls, strict=True):
        clock.tick()
        start = timer()
        try:
            ticket = await admission.admit(tenant, tokens)
        except ApiError:
            rejected.append(timer() - start)
            continue
        in_flight.append((ticket, used))
        if len(in_flight) > open_tickets:
            oldest, oldest_used = in_flight.popleft()
            await oldest.release(oldest_used)
        admitted.append(timer() - start)
    for ticket, used in in_flight:
        await ticket.release(used)
    return admitted, rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="offered req/s on this replica")
    parser.add_argument("--open", type=int, default=1_000, help="tickets held in flight")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tenants = make_tenants(args.tenants, rng)
    calls = workload(tenants, args.calls, rng)
    print(f"machine: {machine()}")
    print(
        f"{args.calls:,} admit+release steps across {args.tenants:,} tenants (tier default quotas), "
        f"offered {args.rate:,.0f} req/s, {args.open:,} in flight\n"
    )

    warm = tuple(column[:20_000] for column in calls)
    run_sync(InProcessAdmission(clock=(clock := SimulatedClock(args.rate))), clock, warm, args.open)
    clock = SimulatedClock(args.rate)
    started = time.perf_counter()
    admitted, rejected = run_sync(InProcessAdmission(clock=clock), clock, calls, args.open)
    elapsed = time.perf_counter() - started
    print(summary("sync admit+release (admitted)", admitted))
    print(summary("sync admit (429 rejected)", rejected))
    print(f"{'':<36} {args.calls / elapsed:,.0f} steps/s on one core, timer and loop included\n")

    clock = SimulatedClock(args.rate)
    admitted, rejected = asyncio.run(run_async(InProcessAdmission(clock=clock), clock, calls, args.open))
    print(summary("async admit+release (admitted)", admitted))
    print(summary("async admit (429 rejected)", rejected), "\n")

    clock = SimulatedClock(args.rate)
    limits = AdmissionLimits(max_in_flight=2 * args.open)
    saturated = InProcessAdmission(limits, clock=clock)
    internal = next(t for t in tenants if t.tier == "internal")
    held = [saturated.admit_now(internal, 1) for _ in range(limits.shed_at("free"))]
    admitted, shed = run_sync(saturated, clock, calls, limits.shed_at("pro") - limits.shed_at("free") - 1)
    print(summary("saturated: admit+release (pro and up)", admitted))
    print(summary("saturated: rejected (529 free, some 429)", shed))
    for ticket in held:
        saturated.release_now(ticket)


if __name__ == "__main__":
    main()
