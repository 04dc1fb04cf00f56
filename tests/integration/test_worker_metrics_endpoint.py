"""The worker's /metrics under load: running/waiting gauges, prefix-cache counters, aborts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from features.catalog import Catalog, load_catalog
from simulator.worker import WorkerConfig, running_worker

MODEL = "claude-opus-4-5"  # the slowest decoder: 55 tokens/s


def narrow_catalog(max_num_seqs: int) -> Catalog:
    """The packaged catalog with MODEL's batch shrunk, so a few requests fill it."""
    catalog = load_catalog()
    skus = tuple(
        sku.model_copy(update={"latency": sku.latency.model_copy(update={"max_num_seqs": max_num_seqs})})
        if sku.name == MODEL
        else sku
        for sku in catalog
    )
    return catalog.model_copy(update={"skus": skus})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_worker(WorkerConfig(skus=(MODEL,), time_scale=0.1), narrow_catalog(max_num_seqs=2)) as url:
        yield url


def metric(text: str, name: str, extra_labels: str = "") -> float:
    labels = f'model_name="{MODEL}"' + (f",{extra_labels}" if extra_labels else "")
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{labels}}} not in /metrics"
    return float(match.group(1))


def body(text: str, out: int, stream: bool = False) -> dict:
    return {
        "model": MODEL,
        "max_tokens": 1000,
        "stream": stream,
        "system": "Metrics test system prompt, long enough to fill several prefix blocks. " * 4,
        "messages": [{"role": "user", "content": f"{text} [[sim out={out}]]"}],
    }


def test_running_and_waiting_while_requests_are_in_flight(base_url: str) -> None:
    statuses: list[int] = []

    def call(index: int) -> None:
        # 40 tokens at 55 tokens/s x 0.1 ~ 75 ms of decoding each
        response = httpx.post(f"{base_url}/v1/messages", json=body(f"in flight {index}", 40), timeout=20)
        statuses.append(response.status_code)

    before = httpx.get(f"{base_url}/metrics").text
    threads = [threading.Thread(target=call, args=(index,)) for index in range(5)]
    for thread in threads:
        thread.start()
    peak_running = peak_waiting = peak_usage = 0.0
    while any(thread.is_alive() for thread in threads):
        text = httpx.get(f"{base_url}/metrics").text
        peak_running = max(peak_running, metric(text, "vllm:num_requests_running"))
        peak_waiting = max(peak_waiting, metric(text, "vllm:num_requests_waiting"))
        peak_usage = max(peak_usage, metric(text, "vllm:kv_cache_usage_perc"))
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    assert statuses == [200] * 5
    assert peak_running == 2  # max_num_seqs
    assert peak_waiting >= 1
    assert 0 < peak_usage <= 1
    after = httpx.get(f"{base_url}/metrics").text
    assert metric(after, "vllm:num_requests_running") == 0
    assert metric(after, "vllm:num_requests_waiting") == 0
    success = 'finished_reason="stop"'
    assert (
        metric(after, "vllm:request_success_total", success)
        - metric(before, "vllm:request_success_total", success)
        == 5
    )
    generated = metric(after, "vllm:generation_tokens_total") - metric(before, "vllm:generation_tokens_total")
    assert generated == 5 * 40
    ttft_count = metric(after, "vllm:time_to_first_token_seconds_count")
    assert ttft_count - metric(before, "vllm:time_to_first_token_seconds_count") == 5


def test_prefix_cache_counters_move(base_url: str) -> None:
    before = httpx.get(f"{base_url}/metrics").text
    for _ in range(2):
        assert httpx.post(f"{base_url}/v1/messages", json=body("cache me", 2), timeout=20).status_code == 200
    after = httpx.get(f"{base_url}/metrics").text
    queries = metric(after, "vllm:prefix_cache_queries_total") - metric(
        before, "vllm:prefix_cache_queries_total"
    )
    hits = metric(after, "vllm:prefix_cache_hits_total") - metric(before, "vllm:prefix_cache_hits_total")
    prompt = metric(after, "vllm:prompt_tokens_total") - metric(before, "vllm:prompt_tokens_total")
    assert queries == prompt > 0
    assert hits >= queries / 2 * 0.8  # the second request is served from the cache almost entirely
    assert metric(after, "vllm:kv_cache_usage_perc") > 0  # cached blocks stay resident


def test_a_client_that_disconnects_frees_its_slot(base_url: str) -> None:
    before = httpx.get(f"{base_url}/metrics").text
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "POST", f"{base_url}/v1/messages", json=body("walk away", 2000, stream=True)
        ) as response,
    ):
        chunks = response.iter_raw()  # keep the iterator: closing it closes the connection
        next(chunks)  # the stream has started: the sequence is running
        assert metric(httpx.get(f"{base_url}/metrics").text, "vllm:num_requests_running") == 1
        next(chunks)
    deadline = time.monotonic() + 5
    while metric(httpx.get(f"{base_url}/metrics").text, "vllm:num_requests_running") != 0:
        assert time.monotonic() < deadline, "the aborted sequence still holds its slot"
        time.sleep(0.01)
    after = httpx.get(f"{base_url}/metrics").text
    abort = 'finished_reason="abort"'
    assert (
        metric(after, "vllm:request_success_total", abort)
        - metric(before, "vllm:request_success_total", abort)
        == 1
    )
