"""ClusterPacer against a real redis-server: one λ from the blended cost, one step per period, Redis going away."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from router_model.policy import pace_cost_multiplier
from serving.pacer_redis import ClusterPacer, ClusterPacerConfig, build_pacer, pacer_keys
from serving.router_runtime import BudgetPacer

BUDGET = 0.012
EXPENSIVE, CHEAP = 0.020, 0.002  # 1:1 blend 0.011 (under budget), 3:1 blend 0.0155 (over)


def pacers(url, count=2, registries=None, **overrides):
    """``count`` processes' pacers on one fresh cluster name (so tests do not share state)."""
    settings = {
        "name": uuid.uuid4().hex[:8],
        "timeout_s": 0.5,
        "sync_period_s": 0.02,
        "period_s": 0.2,
        "bucket_s": 0.05,
        "window_buckets": 6,
        "min_requests": 10,
        **overrides,
    }
    config = ClusterPacerConfig(url=url, **settings)
    registries = registries or [None] * count
    return [ClusterPacer.connect(config, BUDGET, initial_lambda=0.25, registry=r) for r in registries]


async def sync_all(*pacers):
    for pacer in pacers:
        assert await pacer.sync()


async def agreed(*pacers):
    """Sync until every pacer read the same step count (a step may land between two syncs)."""
    for _ in range(10):
        await sync_all(*pacers)
        if len({p.steps for p in pacers}) == 1:
            return
    raise AssertionError("pacers never read the same step")


async def drive(a, b, seconds, a_traffic, b_traffic, *, alone_a=None, union=None):
    """Each tick both processes observe their own traffic and sync, as their run() loops would.

    ``alone_a`` sees what ``a`` sees (a process pacing only itself); ``union`` sees both.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for cost in a_traffic:
            a.observe(cost)
        for cost in b_traffic:
            b.observe(cost)
        for cost in a_traffic if alone_a is not None else ():
            alone_a.observe(cost)
        for cost in [*a_traffic, *b_traffic] if union is not None else ():
            union.observe(cost)
        await sync_all(a, b)
        await asyncio.sleep(0.02)


def local_pacer():
    return BudgetPacer(BUDGET, initial_lambda=0.25, period_s=0.2, half_life_requests=50, min_requests=10)


def test_keys_share_one_cluster_slot():
    state, window = pacer_keys("fleet")
    assert state != window
    assert state.split("}")[0] == window.split("}")[0] == "switchyard:pacer:{fleet"


def test_two_processes_pace_one_lambda_on_the_blended_cost(redis_server):
    async def scenario():
        a, b = pacers(redis_server.url)  # a serves only expensive requests, b only cheap ones
        union, alone_a = local_pacer(), local_pacer()
        await sync_all(a, b)
        # blend 1:1 = 0.011, under budget: λ falls for the fleet, though a alone runs over budget
        await drive(a, b, 1.2, [EXPENSIVE] * 5, [CHEAP] * 5, alone_a=alone_a, union=union)
        await agreed(a, b)
        under = (a.cost_multiplier, b.cost_multiplier, a.steps, a.observed_cost_usd, union.cost_multiplier)
        assert alone_a.cost_multiplier > 0.25  # what pacing per process would do to a
        # blend 3:1 = 0.0155, over budget: λ rises again
        await drive(a, b, 1.2, [EXPENSIVE] * 9, [CHEAP] * 3, union=union)
        await agreed(a, b)
        over = (a.cost_multiplier, b.cost_multiplier, a.steps, b.observed_cost_usd, union.cost_multiplier)
        await a.aclose()
        await b.aclose()
        return under, over

    (a_under, b_under, steps_under, cost_under, union_under), over = asyncio.run(scenario())
    a_over, b_over, steps_over, cost_over, union_over = over
    assert a_under == b_under and a_over == b_over  # one λ for the fleet
    assert cost_under == pytest.approx(0.011, rel=0.15) and cost_over == pytest.approx(0.0155, rel=0.15)
    assert steps_under >= 3 and steps_over >= steps_under + 3
    assert a_under < 0.25 and a_over > a_under  # the direction the blend asks for
    assert union_under < 0.25 and union_over > union_under  # as one process fed all traffic does


def test_the_fleet_steps_once_per_period_however_many_processes_sync(redis_server):
    period, seconds, cost = 0.1, 1.0, 0.018  # ratio 1.5: each step multiplies λ by 1.25

    async def run(count):
        fleet = pacers(redis_server.url, count=count, period_s=period, sync_period_s=0.005)
        await sync_all(*fleet)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for pacer in fleet:
                for _ in range(4):
                    pacer.observe(cost)
            await sync_all(*fleet)
            await asyncio.sleep(0.005)
        await agreed(*fleet)
        result = fleet[0].steps, fleet[0].cost_multiplier
        for pacer in fleet:
            await pacer.aclose()
        return result

    steps_one, _ = asyncio.run(run(1))
    steps_three, lam = asyncio.run(run(3))
    assert steps_three <= seconds / period + 1
    assert abs(steps_three - steps_one) <= 2  # not three times as many
    expected = 0.25
    for _ in range(steps_three):
        expected = pace_cost_multiplier(expected, cost, BUDGET)
    assert lam == pytest.approx(expected, rel=1e-9)  # each step is one application of the control law


def test_redis_down_paces_locally_and_recovers(own_redis_server, caplog):
    registries = [CollectorRegistry(), CollectorRegistry()]

    def gauge(i):
        return registries[i].get_sample_value("switchyard_pacer_degraded")

    async def scenario():
        a, b = pacers(own_redis_server.url, registries=registries, timeout_s=0.05, min_requests=5)
        tasks = [asyncio.create_task(p.run()) for p in (a, b)]

        async def traffic(seconds):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for _ in range(5):
                    a.observe(EXPENSIVE)
                    b.observe(CHEAP)
                    assert a.cost_multiplier >= 0 and b.cost_multiplier >= 0
                await asyncio.sleep(0.01)

        async def until(condition, seconds=5.0, with_traffic=True):
            deadline = time.monotonic() + seconds
            while not condition() and time.monotonic() < deadline:
                await (traffic(0.02) if with_traffic else asyncio.sleep(0.02))
            assert condition()

        await traffic(0.3)
        assert not a.degraded and not b.degraded and gauge(0) == gauge(1) == 0.0
        await asyncio.sleep(0.4)  # traffic pauses: the window empties, so no step is proposed
        shared = a.cost_multiplier
        assert b.cost_multiplier == shared and shared != 0.25
        own_redis_server.stop()
        await until(lambda: a.degraded and b.degraded, with_traffic=False)
        assert gauge(0) == gauge(1) == 1.0
        assert a.cost_multiplier == b.cost_multiplier == shared  # both start from the last cluster λ
        await traffic(0.8)  # each now paces on its own traffic: a runs over budget, b under
        assert a.cost_multiplier > shared > b.cost_multiplier
        assert a.observed_cost_usd > BUDGET > b.observed_cost_usd
        own_redis_server.start()
        await until(lambda: not a.degraded and not b.degraded)
        assert gauge(0) == gauge(1) == 0.0
        await until(lambda: a.steps == b.steps and a.cost_multiplier == b.cost_multiplier)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.aclose()
        await b.aclose()

    with caplog.at_level(logging.WARNING, logger="serving.pacer_redis"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.pacer_redis"]
    assert sum("Redis unavailable" in line for line in lines) == 2  # one per process per transition
    assert sum("answers again" in line for line in lines) == 2


def test_a_redis_slower_than_the_timeout_counts_as_down():
    registry = CollectorRegistry()

    async def scenario():
        async def never_answer(reader, writer):
            await reader.read(1 << 16)
            await asyncio.sleep(5)

        silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        (pacer,) = pacers(f"redis://127.0.0.1:{port}/0", count=1, registries=[registry], timeout_s=0.05)
        pacer.observe(EXPENSIVE)
        started = time.monotonic()
        assert await pacer.sync() is False
        waited = time.monotonic() - started
        assert pacer.degraded and pacer.cost_multiplier == 0.25
        await pacer.aclose()
        silent.close()
        return waited

    assert asyncio.run(scenario()) < 0.5
    assert registry.get_sample_value("switchyard_pacer_degraded") == 1.0
    assert registry.get_sample_value("switchyard_pacer_sync_failures_total") == 1.0


def test_build_pacer_picks_the_backend(redis_server):
    assert isinstance(build_pacer(BUDGET), BudgetPacer)
    pacer = build_pacer(BUDGET, initial_lambda=0.5, redis_url=redis_server.url, window_s=20.0)
    assert isinstance(pacer, ClusterPacer)
    assert (pacer.config.bucket_s, pacer.config.window_buckets) == (1.0, 20)
    assert pacer.cost_multiplier == 0.5 and pacer.budget_usd == BUDGET
    asyncio.run(pacer.aclose())
