"""The simulated inference engine of one SKU: continuous batching, latency model, KV accounting.

One :class:`SkuEngine` per SKU per worker, as one vLLM server per model:

- **Batching.** At most ``max_num_seqs`` sequences run; more wait in a FIFO queue
  (:class:`BatchScheduler`). A finishing sequence hands its slot to the oldest waiter.
- **Latency.** TTFT = queue wait + ``ttft_base_ms`` + uncached prompt tokens /
  ``prefill_tokens_per_s``. Every further output token takes
  ``LatencyProfile.time_per_output_token_ms(running / max_num_seqs)`` (times the fault's
  ``slow_token_factor``), re-evaluated at every decode step so the batch occupancy of the
  moment matters. All times are multiplied by ``time_scale``; at 0 nothing sleeps. Decode
  steps are paced against a deadline, so timer overshoot does not accumulate.
- **Chunking.** The first token is its own event, at the first-token time. After that a step
  carries as many tokens as fit in ``min_event_interval_s`` of (scaled) decode time, between
  1 and ``max_tokens_per_event`` -- one token per event at real speed, many when
  ``time_scale`` is small, so events stay cheap.
- **KV cache.** Prompts are looked up in the :class:`~simulator.prefix_cache.PrefixCache`
  when admitted (cached tokens = longest cached prefix x ``BLOCK_TOKENS``) and inserted
  when the sequence ends. ``kv_cache_usage`` = (blocks held privately by running sequences
  -- their uncached prompt blocks plus the blocks their output has filled -- + blocks in the
  prefix cache) / capacity, capped at 1; cached blocks are evicted (LRU) to make room for
  running ones, as vLLM reuses free cached blocks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from features.catalog import LatencyProfile, Sku
from features.prefix import BLOCK_TOKENS
from features.tokens import BYTES_PER_TOKEN
from simulator.generation import GenerationPlan
from simulator.prefix_cache import PrefixCache
from simulator.worker_metrics import SkuGauges, SkuMetrics


def prefill_seconds(profile: LatencyProfile, uncached_prompt_tokens: int) -> float:
    """First-token time of an admitted sequence (without queue wait), unscaled."""
    return profile.ttft_ms(uncached_prompt_tokens) / 1000.0


def token_seconds(profile: LatencyProfile, running: int, slow_token_factor: float = 1.0) -> float:
    """Time of one output token with ``running`` sequences in the batch, unscaled."""
    return profile.time_per_output_token_ms(running / profile.max_num_seqs) * slow_token_factor / 1000.0


def tokens_per_event(token_interval_s: float, min_event_interval_s: float, max_tokens_per_event: int) -> int:
    """How many tokens one streamed event carries at this (scaled) inter-token time."""
    if token_interval_s <= 0.0:
        return max_tokens_per_event
    return max(1, min(max_tokens_per_event, math.ceil(min_event_interval_s / token_interval_s)))


def blocks_for(tokens: int) -> int:
    return -(-tokens // BLOCK_TOKENS)


class BatchScheduler:
    """FIFO admission to ``max_num_seqs`` running slots."""

    def __init__(self, max_num_seqs: int) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        self.max_num_seqs = max_num_seqs
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def admit(self) -> None:
        """Take a running slot, waiting in FIFO order while the batch is full."""
        if self.running < self.max_num_seqs and not self._waiting:
            self.running += 1
            return
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(ticket)
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self.release()  # the slot was handed over just before the cancellation
            else:
                self._waiting.remove(ticket)
            raise

    def release(self) -> None:
        """Free a slot: hand it to the oldest waiter, else shrink the batch."""
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.running -= 1


@dataclass(frozen=True, slots=True)
class EngineSettings:
    time_scale: float = 1.0
    kv_cache_blocks: int = 32768
    max_tokens_per_event: int = 16
    min_event_interval_s: float = 0.010


class SkuEngine:
    """Batching, prefix cache, KV accounting and metrics of one SKU."""

    def __init__(
        self,
        sku: Sku,
        settings: EngineSettings,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.sku = sku
        self.profile = sku.latency
        self.settings = settings
        self.scheduler = BatchScheduler(sku.latency.max_num_seqs)
        self.cache = PrefixCache(settings.kv_cache_blocks)
        self.metrics = SkuMetrics()
        self.private_blocks = 0
        self.now = now
        self.sleep = sleep

    def kv_cache_usage(self) -> float:
        capacity = self.settings.kv_cache_blocks
        return min(1.0, (self.private_blocks + len(self.cache)) / capacity) if capacity else 1.0

    def gauges(self) -> SkuGauges:
        return SkuGauges(self.scheduler.running, self.scheduler.waiting, self.kv_cache_usage())

    def sequence(self, plan: GenerationPlan, slow_token_factor: float = 1.0) -> SimulatedSequence:
        return SimulatedSequence(self, plan, slow_token_factor)


class SimulatedSequence:
    """One request in the engine: ``await prefill()``, ``await next_chunk()``..., ``close()``."""

    __slots__ = (
        "_blocks",
        "_deadline",
        "_hit_blocks",
        "_last_emit",
        "admitted",
        "arrival",
        "cached_tokens",
        "closed",
        "emitted_chars",
        "emitted_tokens",
        "engine",
        "first_token_at",
        "plan",
        "prefilled",
        "slow_token_factor",
    )

    def __init__(self, engine: SkuEngine, plan: GenerationPlan, slow_token_factor: float) -> None:
        self.engine = engine
        self.plan = plan
        self.slow_token_factor = slow_token_factor
        self.arrival = engine.now()
        self.admitted = self.prefilled = self.closed = False
        self.cached_tokens = self.emitted_tokens = self.emitted_chars = 0
        self.first_token_at = self._deadline = self._last_emit = self.arrival
        self._blocks = self._hit_blocks = 0

    @property
    def input_tokens(self) -> int:
        """Uncached prompt tokens (Anthropic's ``input_tokens``)."""
        return self.plan.prompt_tokens - self.cached_tokens

    @property
    def done(self) -> bool:
        return self.emitted_tokens >= self.plan.output_tokens

    async def prefill(self) -> None:
        """Queue for a slot, look the prompt up in the prefix cache, wait out the first token."""
        engine = self.engine
        await engine.scheduler.admit()
        self.admitted = True
        plan = self.plan
        self._hit_blocks = engine.cache.cached_prefix_blocks(plan.block_hashes)
        self.cached_tokens = min(self._hit_blocks * BLOCK_TOKENS, plan.prompt_tokens)
        self._blocks = max(0, blocks_for(plan.prompt_tokens) - self._hit_blocks)
        engine.private_blocks += self._blocks
        metrics = engine.metrics
        metrics.prompt_tokens += plan.prompt_tokens
        metrics.prefix_cache_queries += plan.prompt_tokens
        metrics.prefix_cache_hits += self.cached_tokens
        delay = prefill_seconds(engine.profile, self.input_tokens) * engine.settings.time_scale
        if delay > 0.0:
            await engine.sleep(delay)
        self.first_token_at = self._deadline = self._last_emit = engine.now()
        metrics.ttft.observe(self.first_token_at - self.arrival)
        self.prefilled = True

    async def next_chunk(self, max_tokens: int | None = None, min_interval_s: float | None = None) -> str:
        """The next piece of text, after its decode time.

        A step carries at most ``max_tokens`` tokens and as many as fit in ``min_interval_s``
        of scaled decode time (defaults: the engine's streaming settings).
        """
        engine = self.engine
        remaining = self.plan.output_tokens - self.emitted_tokens
        if max_tokens is not None:
            remaining = min(remaining, max_tokens)
        if remaining <= 0:
            return ""
        if self.emitted_tokens == 0:
            count = min(1, remaining)  # the first token is out at the first-token time
        else:
            settings = engine.settings
            interval = (
                token_seconds(engine.profile, engine.scheduler.running, self.slow_token_factor)
                * settings.time_scale
            )
            if min_interval_s is None:
                min_interval_s, step_cap = settings.min_event_interval_s, settings.max_tokens_per_event
            else:
                step_cap = remaining
            count = min(remaining, tokens_per_event(interval, min_interval_s, step_cap))
            if interval > 0.0:
                self._deadline += count * interval
                delay = self._deadline - engine.now()
                if delay > 0.0:
                    await engine.sleep(delay)
            now = engine.now()
            engine.metrics.inter_token.observe((now - self._last_emit) / count, count)
            self._last_emit = now
        start = self.emitted_chars
        self.emitted_chars = start + count * BYTES_PER_TOKEN
        self.emitted_tokens += count
        blocks = max(0, blocks_for(self.plan.prompt_tokens + self.emitted_tokens) - self._hit_blocks)
        engine.private_blocks += blocks - self._blocks
        self._blocks = blocks
        return self.plan.text[start : self.emitted_chars]

    def close(self, *, aborted: bool = False) -> None:
        """Leave the batch: free the slot and blocks, cache the prompt, record the outcome."""
        if self.closed:
            return
        self.closed = True
        engine = self.engine
        metrics = engine.metrics
        metrics.generation_tokens += self.emitted_tokens
        if not self.admitted:
            return
        engine.scheduler.release()
        engine.private_blocks -= self._blocks
        self._blocks = 0
        if not self.prefilled:
            metrics.request_success["abort"] += 1
            return
        engine.cache.insert(self.plan.block_hashes, reserved_blocks=engine.private_blocks)
        end = engine.now()
        metrics.e2e.observe(end - self.arrival)
        if aborted:
            metrics.request_success["abort"] += 1
            return
        metrics.request_success["length" if self.plan.stop_reason == "max_tokens" else "stop"] += 1
        if self.emitted_tokens > 1:
            metrics.time_per_output_token.observe((end - self.first_token_at) / (self.emitted_tokens - 1))
