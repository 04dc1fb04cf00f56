"""Several gateway processes, one Redis: quotas hold across them, and losing Redis degrades, not fails.

Every gateway here is a real ``switchyard serve`` process on loopback, in front of simulated
workers, sharing one real ``redis-server``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_harness import gateway_environment, gateway_process, message, readyz, scraped_totals, steady_load
from gateway_harness import FREE_KEY, US_KEY, Fleet, running_fleet

from switchyard_cli.redis_server import RedisServer

# the hobbyist tenant (gateway_harness.write_tenants): 18 requests/minute, 10 s of burst -> 3
FREE_BURST_CAPACITY = 3
FREE_REFILL_PER_S = 18 / 60


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="module")
def fleet(folder) -> Iterator[Fleet]:
    with running_fleet(folder, time_scale=0.0) as fleet:
        yield fleet


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def burst(urls: list[str], key: str, n: int) -> tuple[Counter, float]:
    """``n`` requests one after another, round-robin over ``urls``: status counts and the burst's length."""
    statuses: Counter = Counter()
    started = time.monotonic()
    with httpx.Client(timeout=30.0) as client:
        for i in range(n):
            response = message(client, urls[i % len(urls)], key, text=f"burst {i}")
            statuses[response.status_code] += 1
            if response.status_code == 429:
                assert response.json()["error"]["type"] == "rate_limit_error"
    return statuses, time.monotonic() - started


def test_a_tenants_request_quota_holds_across_two_gateways(folder, fleet, redis_server):
    env = gateway_environment(folder, fleet, redis_server.url, processes=2)
    with gateway_process(folder, env, name="a") as a, gateway_process(folder, env, name="b") as b:
        for url in (a, b):
            assert readyz(url)["admission"] == {"shared": True, "degraded": False}
            assert readyz(url)["prompt_cache"] == {"shared": True}
        statuses, seconds = burst([a, b], FREE_KEY, 12)
    # one bucket for the tenant, whichever gateway a request reaches: what one process admits
    # (its capacity plus what refills during the burst), not twice that
    most = FREE_BURST_CAPACITY + int(seconds * FREE_REFILL_PER_S) + 1
    assert FREE_BURST_CAPACITY <= statuses[200] <= most, (statuses, seconds)
    assert statuses[200] + statuses[429] == 12


def test_without_shared_state_each_gateway_admits_its_own_quota(folder, fleet):
    """The control: the same burst against two gateways that share nothing admits each one's bucket."""
    env = gateway_environment(folder, fleet, None)
    with gateway_process(folder, env, name="c") as c, gateway_process(folder, env, name="d") as d:
        assert readyz(c)["admission"]["shared"] is False
        statuses, _ = burst([c, d], FREE_KEY, 12)
    assert statuses[200] >= 2 * FREE_BURST_CAPACITY, statuses


def test_serve_processes_runs_several_processes_on_one_port_sharing_quotas(folder, fleet, redis_server):
    env = gateway_environment(folder, fleet, redis_server.url, processes=2)
    # gateway_process waits until both processes behind the port have answered /readyz
    with gateway_process(folder, env, processes=2, name="pair") as url:
        statuses, seconds = burst([url], FREE_KEY, 12)
    most = FREE_BURST_CAPACITY + int(seconds * FREE_REFILL_PER_S) + 1
    assert FREE_BURST_CAPACITY <= statuses[200] <= most, (statuses, seconds)


def test_killing_redis_under_load_degrades_to_local_shares_and_keeps_serving(folder, fleet, redis_server):
    env = gateway_environment(
        folder, fleet, redis_server.url, processes=2, SWITCHYARD_ADMISSION_REDIS_PROBE_INTERVAL_S="0.2"
    )
    with gateway_process(folder, env, name="e") as e, gateway_process(folder, env, name="f") as f:
        statuses: list[tuple[float, int]] = []
        stop = threading.Event()

        def load(url: str) -> None:
            with httpx.Client(timeout=30.0) as client:
                i = 0
                while not stop.is_set():
                    response = message(client, url, US_KEY, text=f"load {i}")
                    statuses.append((time.monotonic(), response.status_code))
                    i += 1

        threads = [threading.Thread(target=load, args=(url,)) for url in (e, f, e, f)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.5)
            killed_at = time.monotonic()
            redis_server.stop()
            time.sleep(2.0)
            degraded = [readyz(url)["admission"]["degraded"] for url in (e, f)]
            redis_server.start()  # same port: the gateways find it again
            time.sleep(1.5)
            recovered = [readyz(url)["admission"]["degraded"] for url in (e, f)]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    after_kill = [status for at, status in statuses if at > killed_at]
    assert after_kill, "no request finished after Redis was killed"
    assert degraded == [True, True]
    assert recovered == [False, False]
    # the internal tenant's quotas are far above this load: every request is served, before,
    # during and after the outage -- degraded mode neither fails open nor fails requests
    assert Counter(status for _, status in statuses) == Counter({200: len(statuses)})


LONG_PROMPT = (
    "Write a detailed proof that there are infinitely many primes, then analyse its complexity. " * 20
)


def blended_cost(urls: list[str], seconds: float) -> tuple[float, float]:
    """Serving cost per accepted request over the next ``seconds``, all gateways together; and the count."""
    before = [scraped_totals(url) for url in urls]
    time.sleep(seconds)
    after = [scraped_totals(url) for url in urls]
    cost = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    requests = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return cost / max(requests, 1.0), requests


@pytest.mark.parametrize("budget_usd", [0.001, 1.0])
def test_the_gateways_pace_one_budget_from_their_blended_cost(folder, fleet, redis_server, budget_usd):
    """Long prompts left alone go to the priciest SKU (~$0.004 a request here); a $0.001 budget is
    held by the fleet together, one λ for both gateways; a $1 budget leaves routing unpaced."""
    env = gateway_environment(
        folder,
        fleet,
        redis_server.url,
        processes=2,
        SWITCHYARD_GATEWAY_BUDGET_USD=str(budget_usd),
        SWITCHYARD_GATEWAY_PACER_PERIOD_S="0.3",
        SWITCHYARD_GATEWAY_POLICY_EPSILON="0",
        SWITCHYARD_CLUSTER_PACER_SYNC_S="0.1",
        SWITCHYARD_CLUSTER_PACER_WINDOW_S="2",
    )
    with (
        gateway_process(folder, env, name="g") as g,
        gateway_process(folder, env, name="h") as h,
        steady_load([g, h], US_KEY, per_url=2, text=LONG_PROMPT, max_tokens=1024) as results,
    ):
        time.sleep(3.0)  # the controller's first steps
        cost_per_request, requests = blended_cost([g, h], 8.0)
        lambdas = [readyz(url)["policy_cost_multiplier"] for url in (g, h)]
        pacers = [readyz(url)["pacer"] for url in (g, h)]
    assert pacers == [{"shared": True, "degraded": False}] * 2
    assert requests > 100 and all(status == 200 for _, status in results)
    if budget_usd < 0.01:
        assert cost_per_request <= 1.3 * budget_usd, cost_per_request
        # one λ: the two readings differ by at most the step one of them has not synced yet
        assert min(lambdas) > 0 and max(lambdas) / min(lambdas) < 1.6, lambdas
    else:
        assert cost_per_request > 3 * 0.001, cost_per_request  # the unpaced blend the budget above holds down
