"""Health checks, metrics scraping, prefix affinity and replica retry against real servers on loopback.

Simulated workers (``simulator.worker``) export vLLM's metric names; a small aiohttp app
stands in for a worker whose ``/health`` can be made to fail. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from aiohttp import web

from features.deployment import DeploymentMap, Endpoint, SkuDeployment
from features.prefix import boundary_prefix_keys
from serving.settings import WorkerSettings
from serving.worker_probe import WorkerProbe
from serving.workers import WorkerAttemptError, WorkerPool
from simulator.worker import WorkerConfig, running_worker

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"
REGION = "us"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[str, str]]:
    # time_scale 0.2: a 300-token answer streams for a few hundred ms, long enough to be seen
    with (
        running_worker(WorkerConfig(skus=(MODEL,), time_scale=0.2, seed=1)) as first,
        running_worker(WorkerConfig(skus=(MODEL,), time_scale=0.2, seed=2)) as second,
    ):
        yield first, second


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def body(out: int = 20, *, system: str = "", stream: bool = False) -> bytes:
    document = {
        "model": MODEL,
        "max_tokens": 1000,
        "stream": stream,
        "system": system,
        "messages": [{"role": "user", "content": f"Tell me about harbours. [[sim out={out}]]"}],
    }
    return json.dumps(document).encode()


def within(seconds: float) -> float:
    return time.monotonic() + seconds


@contextlib.asynccontextmanager
async def open_pool(urls: Sequence[str], **settings: object) -> AsyncIterator[WorkerPool]:
    endpoints = tuple(Endpoint(url=url) for url in urls)
    deployment = DeploymentMap(deployments=(SkuDeployment(sku=MODEL, region=REGION, endpoints=endpoints),))
    pool = WorkerPool(deployment, WorkerSettings(**{"probe_interval_s": 0.05, **settings}))
    try:
        yield pool
    finally:
        await pool.aclose()


async def test_start_checks_every_endpoint_and_scrapes_its_load(replicas: tuple[str, str]) -> None:
    dead = dead_url()
    async with open_pool([*replicas, dead]) as pool:
        await pool.start()  # the first round has run when start returns
        rows = {row.url: row for row in pool.snapshot()}
        assert [rows[url].healthy for url in (*replicas, dead)] == [True, True, False]  # refused: out at once
        assert rows[replicas[0]].running == 0.0 and rows[replicas[0]].kv_cache_usage is not None
        assert rows[dead].running is None
        load = pool.sku_load(MODEL, REGION)
        assert (load.replicas, load.healthy_replicas, load.scraped_replicas) == (3, 2, 2)
        for _ in range(6):  # never the replica that failed its health check
            reply = await pool.complete(MODEL, REGION, body(), deadline=within(10))
            assert reply.replica in replicas and not reply.earlier_failures


async def test_the_scraper_sees_requests_running_while_they_are_in_flight(replicas: tuple[str, str]) -> None:
    async with open_pool(replicas) as pool:
        await pool.start()

        async def one_stream() -> int:
            stream = await pool.open_stream(MODEL, REGION, body(300, stream=True), deadline=within(30))
            async with stream:
                return sum([len(chunk) async for chunk in stream.iter_raw()])

        streams = [asyncio.create_task(one_stream()) for _ in range(4)]
        seen = depth = 0.0
        deadline = within(10)
        while not all(task.done() for task in streams) and time.monotonic() < deadline:
            seen = max(seen, pool.sku_load(MODEL, REGION).running)
            depth = max(depth, pool.scraped_queue_depths().get((REGION, MODEL), 0.0))
            await asyncio.sleep(0.02)
        assert all(await asyncio.gather(*streams))
        assert seen >= 1  # the worker's own vllm:num_requests_running, as scraped
        assert depth >= seen  # the live stats' sku_queue_depth: running + waiting over the replicas
        await pool.probe.probe_all()
        assert pool.sku_load(MODEL, REGION).running == 0  # and back to idle once they ended
        assert pool.scraped_queue_depths() == {(REGION, MODEL): 0.0}


async def test_a_refused_replica_is_retried_on_another_and_the_failure_travels_with_the_answer(
    replicas: tuple[str, str],
) -> None:
    dead, live = dead_url(), replicas[0]
    # no probe: the pool only learns that ``dead`` is dead by trying it (ties start at index 0)
    async with open_pool([dead, live], probe_interval_s=0) as pool:
        reply = await pool.complete(MODEL, REGION, body(), deadline=within(10))
        assert reply.replica == live
        [failure] = reply.earlier_failures
        assert (failure.replica, failure.error_type) == (dead, "connect_error")
        async with await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(10)) as stream:
            assert stream.replica == live
            assert [f.replica for f in stream.earlier_failures] == [dead]
            async for _ in stream.iter_raw():
                pass
    async with open_pool([dead, dead_url()], probe_interval_s=0) as pool:
        with pytest.raises(WorkerAttemptError) as caught:  # both replicas refuse: the last failure
            await pool.complete(MODEL, REGION, body(), deadline=within(10))
        assert caught.value.error_type == "connect_error" and len(caught.value.earlier_failures) == 1
    async with open_pool([dead, live], probe_interval_s=0, replica_attempts=1) as pool:
        with pytest.raises(WorkerAttemptError):  # one replica per call: the gateway falls back instead
            await pool.complete(MODEL, REGION, body(), deadline=within(10))


async def test_prefix_affinity_sends_a_shared_prefix_to_one_replica_and_its_cache_hits(
    replicas: tuple[str, str],
) -> None:
    systems = [f"You are assistant number {n} of the harbour office. " * 12 for n in range(8)]
    async with open_pool(replicas, probe_interval_s=0) as pool:
        served: dict[int, set[str]] = {}
        cached = 0
        for _ in range(3):
            for n, system in enumerate(systems):
                request = body(system=system)
                keys = boundary_prefix_keys([system, "Tell me about harbours. [[sim out=20]]"])
                reply = await pool.complete(MODEL, REGION, request, deadline=within(10), prefix_keys=keys)
                served.setdefault(n, set()).add(reply.replica)
                cached += reply.usage.cache_read_input_tokens
        assert all(len(urls) == 1 for urls in served.values())  # each prefix always on one replica
        assert {url for urls in served.values() for url in urls} == set(replicas)  # prefixes spread
        assert cached > 0


class FlakyWorker:
    """A worker stand-in whose ``/health`` answers what the test says."""

    def __init__(self) -> None:
        self.health_status = 200

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.health_status)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=f'vllm:num_requests_waiting{{model_name="{MODEL}"}} 3.0\n')


@contextlib.asynccontextmanager
async def flaky_worker() -> AsyncIterator[tuple[str, FlakyWorker]]:
    worker = FlakyWorker()
    app = web.Application()
    app.router.add_get("/health", worker.health)
    app.router.add_get("/metrics", worker.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", worker
    finally:
        await runner.cleanup()


async def test_health_needs_consecutive_failures_to_go_out_and_one_success_to_come_back() -> None:
    async with flaky_worker() as (url, worker):
        probe = WorkerProbe([url], interval_s=10, unhealthy_after=2)
        try:
            assert probe.healthy(url)  # not checked yet
            await probe.probe_all()
            assert probe.healthy(url) and probe.waiting(url, MODEL) == 3.0
            worker.health_status = 503
            await probe.probe_all()
            assert probe.healthy(url)  # one failure is not enough
            await probe.probe_all()
            assert not probe.healthy(url)
            assert probe.endpoints[url].last_error == "health: HTTP 503"
            worker.health_status = 200
            await probe.probe_all()
            assert probe.healthy(url) and probe.endpoints[url].consecutive_failures == 0
        finally:
            await probe.aclose()
