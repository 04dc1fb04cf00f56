"""The capacity model's inputs: the brief's scale table, the stated assumptions, the measured stage costs.

Every assumption is a field with a default and an entry in :data:`SOURCES` saying where the
number comes from (a public page, a project ADR, or "assumption" when nothing better exists);
``docs/design-review.md`` prints that table next to the sizing, so a reader sees which
figures are measured here, which are published elsewhere and which are guesses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class ScaleTargets:
    """The brief's scale table (``seed/000_d8624b6d39711453.txt``)."""

    dau: float = 25e6
    peak_rps: float = 180_000.0
    streaming_share: float = 0.70
    active_skus: int = 12
    prompt_tokens_per_day: float = 45e12
    p99_ttft_ms: float = 900.0
    p99_e2e_ms: float = 4_500.0  # non-streaming
    budget_usd_per_request: float = 0.012


# Share of requests per SKU: a stated mix (small 45%, medium 43%, large 12%) until the simulated
# evaluation's learned-router mix (eval.simulated's share_by_sku) replaces it.
DEFAULT_ROUTING_MIX: Mapping[str, float] = MappingProxyType(
    {
        "claude-haiku-4-5": 0.30,
        "claude-haiku-3-5": 0.10,
        "claude-haiku-3": 0.05,
        "claude-sonnet-4-5": 0.25,
        "claude-sonnet-4": 0.08,
        "claude-sonnet-3-7": 0.04,
        "claude-sonnet-3-5": 0.02,
        "claude-sonnet-4-5-1m": 0.03,
        "claude-sonnet-4-1m": 0.01,
        "claude-opus-4-5": 0.10,
        "claude-opus-4-1": 0.015,
        "claude-opus-4": 0.005,
    }
)
DEFAULT_REGION_SHARE: Mapping[str, float] = MappingProxyType({"us": 0.55, "eu": 0.25, "apac": 0.20})


@dataclass(frozen=True)
class Assumptions:
    """What cannot be measured on this machine; each field's source is in :data:`SOURCES`."""

    traffic_multiplier: float = 1.0  # scales peak_rps and the daily volumes (what-if runs)
    peak_to_mean: float = 1.8
    output_tokens_per_request: float = 400.0
    prompt_cache_hit_rate: float = 0.5  # share of prompt tokens read from a prefix cache
    routing_mix: Mapping[str, float] = field(default_factory=lambda: DEFAULT_ROUTING_MIX)
    region_share: Mapping[str, float] = field(default_factory=lambda: DEFAULT_REGION_SHARE)
    # GPUs: per-replica throughputs are the catalog's serving profiles (features/skus.yaml)
    gpu_peak_utilization: float = 0.63  # busy share of provisioned GPU time at the daily peak
    min_replicas_per_deployment: int = 2  # N+1 for every (SKU, region) the catalog deploys
    # the API tier
    api_core_utilization: float = 0.6  # target busy share of a gateway core at peak
    cores_per_api_host: int = 32
    tokens_per_stream_event: float = 16.0  # output tokens per SSE delta (the simulated worker's cap)
    stream_framing_events: float = 6.0  # message_start, block start/stop, ping, message_delta/stop
    shared_state_in_redis: bool = True  # quotas, live stats, prompt-cache hints shared by the fleet
    learned_router: bool = True
    # the feature store: online reads that miss the gateway's in-process TTL cache
    feature_reads_per_request: float = 0.05
    feature_rows_per_read: float = 12.0
    feature_rows_per_s_per_node: float = 100_000.0
    feature_node_utilization: float = 0.5
    # Redis for shared state: shards sized by the server CPU each request costs
    redis_shard_utilization: float = 0.5
    # logs
    log_replication: float = 3.0
    log_retention_days: float = 400.0  # audit: a year and a margin
    # prices
    gpu_hour_usd: float = 2.50  # the catalog's (features/skus.yaml); kept equal to it by the model's caller
    core_hour_usd: float = 0.045
    redis_shard_hour_usd: float = 0.20
    storage_gb_month_usd: float = 0.023


@dataclass(frozen=True)
class StageCost:
    """One stage of the request path: CPU and wall µs per request (None: not measured)."""

    name: str
    cpu_us: float | None
    wall_p50_us: float | None
    wall_p99_us: float | None
    what: str
    source: str


@dataclass(frozen=True)
class StageCosts:
    """``bench/results/stage_costs.json``: stages measured in process and stages quoted from other benches."""

    measured: Mapping[str, StageCost]
    quoted: Mapping[str, StageCost]
    log_bytes_per_request: float
    machine: str
    command: str
    stale_quotes: tuple[str, ...] = ()

    def cpu_us(self, name: str) -> float:
        """The CPU µs of a stage, measured or quoted; KeyError if it has none."""
        stage = self.measured.get(name) or self.quoted.get(name)
        if stage is None or stage.cpu_us is None:
            raise KeyError(f"no CPU figure for stage {name!r}")
        return stage.cpu_us

    def wall_p50_us(self, name: str) -> float:
        stage = self.measured.get(name) or self.quoted.get(name)
        if stage is None or stage.wall_p50_us is None:
            raise KeyError(f"no wall-clock figure for stage {name!r}")
        return stage.wall_p50_us


SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "traffic_multiplier": "1 = the brief's scale; the sensitivity table varies it",
        "stream_framing_events": "the Anthropic SSE framing: message_start, content_block_start, ping, "
        "content_block_stop, message_delta, message_stop",
        "shared_state_in_redis": "a fleet of gateway processes shares quotas, live stats, prompt-cache hints "
        "and the pacer through Redis (ADR 0015)",
        "learned_router": "the champion router, not the static prior (adds decide_learned - decide_static)",
        "feature_rows_per_read": "one entity row per candidate SKU (12)",
        "feature_node_utilization": "assumption: a feature-store node at most 50% busy at peak",
        "peak_to_mean": "project assumption (ADR 0002: per-region peak/mean ~1.8); with the brief's 180K req/s "
        "peak it gives ~100K req/s mean and ~5.2K prompt tokens per request from 45T tokens/day",
        "output_tokens_per_request": "project assumption (ADR 0002's worked costs use ~400 output tokens)",
        "prompt_cache_hit_rate": "assumption; cached prompt tokens cost 0.1× (Anthropic's cache-read price, "
        "https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching); the sensitivity table varies it",
        "routing_mix": "assumption (small 45%, medium 43%, large 12% of requests) until the simulated "
        "evaluation's learned-router mix replaces it",
        "region_share": "assumption (us 55%, eu 25%, apac 20%)",
        "gpu throughput per replica": "features/skus.yaml serving profiles (ADR 0002: chosen so serving cost is "
        "~60-70% of list price); public anchors for H100 vLLM throughput: "
        "https://github.com/LambdaLabsML/vllm-benchmark, https://blog.vllm.ai/2024/09/05/perf-update.html",
        "gpu_peak_utilization": "0.63 = the catalog's average fleet utilization 0.35 × peak/mean 1.8, so the "
        "provisioned fleet and the catalog's cost per token agree",
        "min_replicas_per_deployment": "assumption: N+1 (two replicas) for every (SKU, region) deployed",
        "api_core_utilization": "assumption: 60% busy at peak; the measured open-loop tails explode past 80% "
        "of one core (bench/results/gateway_overhead.txt)",
        "cores_per_api_host": "assumption (a 32-vCPU host)",
        "tokens_per_stream_event": "the simulated worker's max_tokens_per_event (simulator/worker.py)",
        "feature_reads_per_request": "assumption: the gateway's TTL cache (serving/store_features.py: live stats "
        "2 s, tenant keys 60 s) absorbs ~95% of reads",
        "feature_rows_per_s_per_node": "Feast's Redis online store keeps an entity row per Redis hash "
        "(https://docs.feast.dev/reference/online-stores/redis); ~100K simple commands/s per Redis core "
        "without pipelining (https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/benchmarks/); "
        "Feast's own benchmark: https://feast.dev/blog/feast-benchmarks/",
        "redis_shard_utilization": "assumption: a shard (one Redis core) at most 50% busy at peak",
        "log_replication": "assumption: three copies (object store or replicated log)",
        "log_retention_days": "assumption: enterprise audit logs kept a year, plus margin",
        "gpu_hour_usd": "features/skus.yaml (H100 SXM, 1-3 year commitment; ADR 0002)",
        "core_hour_usd": "~$0.045 per vCPU-hour (AWS EC2 c7i on-demand, https://aws.amazon.com/ec2/pricing/on-demand/)",
        "redis_shard_hour_usd": "~$0.20 per node-hour, order of magnitude of a managed 2-vCPU cache node "
        "(https://aws.amazon.com/elasticache/pricing/)",
        "storage_gb_month_usd": "$0.023 per GB-month (S3 Standard, https://aws.amazon.com/s3/pricing/)",
    }
)
