"""The simulated engine: FIFO batching, latency math, KV accounting (no HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from features.catalog import LatencyProfile, Sku, load_catalog
from features.prefix import BLOCK_TOKENS
from simulator.generation import GenerationPlan
from simulator.worker_engine import (
    BatchScheduler,
    EngineSettings,
    SkuEngine,
    prefill_seconds,
    token_seconds,
    tokens_per_event,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PROFILE = LatencyProfile(
    ttft_base_ms=100, prefill_tokens_per_s=1000, decode_tokens_per_s=50, max_num_seqs=2, batch_slowdown=1.0
)


def tiny_sku(max_num_seqs: int = 2) -> Sku:
    sku = load_catalog().get("claude-haiku-4-5")
    return sku.model_copy(update={"latency": PROFILE.model_copy(update={"max_num_seqs": max_num_seqs})})


def plan(output_tokens: int, prompt_tokens: int = 40, hashes: tuple[int, ...] = (1, 2)) -> GenerationPlan:
    return GenerationPlan(
        prompt_tokens=prompt_tokens,
        block_hashes=hashes,
        text="abc " * (output_tokens - 1) + "abc",
        output_tokens=output_tokens,
        stop_reason="end_turn",
        stop_sequence=None,
    )


def test_latency_math() -> None:
    assert prefill_seconds(PROFILE, 500) == pytest.approx(0.1 + 0.5)
    assert token_seconds(PROFILE, running=0) == pytest.approx(0.02)
    assert token_seconds(PROFILE, running=2) == pytest.approx(0.04)  # full batch: 1 + batch_slowdown
    assert token_seconds(PROFILE, running=1, slow_token_factor=3) == pytest.approx(0.09)
    assert tokens_per_event(0.02, 0.01, 16) == 1
    assert tokens_per_event(0.0002, 0.01, 16) == 16
    assert tokens_per_event(0.004, 0.01, 16) == 3
    assert tokens_per_event(0.0, 0.01, 8) == 8


async def test_scheduler_queues_beyond_max_num_seqs_in_fifo_order() -> None:
    scheduler = BatchScheduler(max_num_seqs=2)
    await scheduler.admit()
    await scheduler.admit()
    order: list[int] = []

    async def wait(index: int) -> None:
        await scheduler.admit()
        order.append(index)

    waiters = [asyncio.create_task(wait(index)) for index in range(3)]
    await asyncio.sleep(0)
    assert (scheduler.running, scheduler.waiting) == (2, 3)
    waiters[1].cancel()  # a client gives up while queued
    await asyncio.sleep(0)
    assert scheduler.waiting == 2
    scheduler.release()
    await asyncio.sleep(0)
    assert order == [0] and (scheduler.running, scheduler.waiting) == (2, 1)
    scheduler.release()
    scheduler.release()
    await asyncio.sleep(0)
    assert order == [0, 2] and (scheduler.running, scheduler.waiting) == (1, 0)
    scheduler.release()
    assert scheduler.running == 0


async def run_sequence(engine: SkuEngine, output_tokens: int, events: list[tuple[str, float]]) -> float:
    seq = engine.sequence(plan(output_tokens))
    try:
        await seq.prefill()
        events.append(("first", engine.now()))
        text = ""
        while not seq.done:
            text += await seq.next_chunk()
        assert text == seq.plan.text
        return seq.first_token_at - seq.arrival
    finally:
        seq.close()


async def test_engine_queue_wait_adds_to_ttft_and_running_never_exceeds_batch() -> None:
    engine = SkuEngine(tiny_sku(max_num_seqs=2), EngineSettings(time_scale=0.02, kv_cache_blocks=1000))
    peak = {"running": 0, "waiting": 0}

    async def watch() -> None:
        while True:
            peak["running"] = max(peak["running"], engine.scheduler.running)
            peak["waiting"] = max(peak["waiting"], engine.scheduler.waiting)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    events: list[tuple[str, float]] = []
    ttfts = await asyncio.gather(*(run_sequence(engine, 20, events) for _ in range(4)))
    watcher.cancel()
    assert peak == {"running": 2, "waiting": 2}
    # unqueued: ttft_base 100 ms + 40 tokens / 1000 per s = 140 ms, x 0.02 = 2.8 ms
    assert 0.002 <= ttfts[0] < 0.05
    # queued behind a whole sequence: 2.8 ms + >= 19 tokens x 20 ms x 0.02
    assert min(ttfts[2:]) > 0.0028 + 19 * 0.02 * 0.02
    assert engine.scheduler.running == 0 and engine.scheduler.waiting == 0
    metrics = engine.metrics
    assert metrics.request_success["stop"] == 4
    assert metrics.generation_tokens == 80
    assert metrics.ttft.count == 4 and metrics.e2e.count == 4 and metrics.inter_token.count == 4 * 19


async def test_kv_accounting_and_prefix_cache_through_a_sequence() -> None:
    engine = SkuEngine(tiny_sku(), EngineSettings(time_scale=0.0, kv_cache_blocks=100))
    first = engine.sequence(plan(10, prompt_tokens=40, hashes=(1, 2)))
    await first.prefill()
    assert first.cached_tokens == 0
    assert engine.private_blocks == 3  # 40 prompt tokens
    await first.next_chunk(9)
    await first.next_chunk(9)  # 50 tokens in the sequence
    assert engine.private_blocks == 4
    assert engine.kv_cache_usage() == pytest.approx(0.04)
    first.close()
    assert engine.private_blocks == 0 and len(engine.cache) == 2
    second = engine.sequence(plan(1, prompt_tokens=40, hashes=(1, 2)))
    await second.prefill()
    assert second.cached_tokens == 2 * BLOCK_TOKENS and second.input_tokens == 40 - 32
    assert engine.private_blocks == 1  # only the uncached tail block is private
    second.close(aborted=True)
    assert engine.metrics.prefix_cache_queries == 80 and engine.metrics.prefix_cache_hits == 32
    assert engine.metrics.request_success == {"stop": 1, "length": 0, "abort": 1}


async def test_cancelled_while_queued_leaves_no_trace_in_the_batch() -> None:
    engine = SkuEngine(tiny_sku(max_num_seqs=1), EngineSettings(time_scale=0.0))
    holder = engine.sequence(plan(1))
    await holder.prefill()
    queued = engine.sequence(plan(1))
    task = asyncio.create_task(queued.prefill())
    await asyncio.sleep(0)
    assert engine.scheduler.waiting == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    queued.close(aborted=True)
    holder.close()
    assert (engine.scheduler.running, engine.scheduler.waiting, engine.private_blocks) == (0, 0, 0)
