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
from cluster_harness import gateway_environment, gateway_process, message, readyz
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
