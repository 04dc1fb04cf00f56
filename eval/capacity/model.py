"""The sizing arithmetic: plain functions from typed inputs to typed results, no I/O.

Demand comes from the brief's scale table: the peak request rate, the mean (peak / peak-to-mean),
requests per day, and prompt tokens per request (the day's prompt tokens over its requests).
Then, at the peak:

- **API cores** = peak req/s × gateway CPU per request / target core utilization; the CPU per
  request is the measured whole-gateway figure plus measured surcharges (learned router over the
  static prior, shared state in Redis, stream relaying, feature-store misses), each listed with
  its source in :attr:`ApiSizing.components`;
- **Redis shards** = peak req/s × the Redis server's CPU per request / target shard utilization
  (a shard is one single-threaded Redis core);
- **feature-store nodes** = online reads/s × rows per read / (rows/s per node × utilization);
- **GPUs** per (SKU, region) = the replicas busy serving that deployment's share of the peak
  (uncached prefill, cached prefill and decode seconds per request from the catalog's serving
  profile) over the peak GPU utilization, at least ``min_replicas_per_deployment``, times GPUs
  per replica;
- **logs**: measured bytes per request × requests; replicated and retained for storage;
- **cost per request**: GPU time at the catalog's prices under the routing mix and cache hit
  rate, plus the provisioned API, Redis, feature-store and log storage, against the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from eval.capacity.inputs import Assumptions, ScaleTargets, StageCosts
from features.catalog import Catalog

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Demand:
    peak_rps: float
    mean_rps: float
    requests_per_day: float
    prompt_tokens_per_request: float
    output_tokens_per_request: float
    streaming_rps_peak: float
    open_streams_peak: float  # Little's law: streaming req/s × mean stream duration


@dataclass(frozen=True)
class CpuComponent:
    name: str
    cpu_us: float  # per request, already weighted by the share of requests that pay it
    source: str


@dataclass(frozen=True)
class ApiSizing:
    cpu_us_per_request: float
    components: tuple[CpuComponent, ...]
    busy_cores_peak: float
    cores_by_region: Mapping[str, int]
    hosts_by_region: Mapping[str, int]

    @property
    def cores(self) -> int:
        return sum(self.cores_by_region.values())

    @property
    def hosts(self) -> int:
        return sum(self.hosts_by_region.values())


@dataclass(frozen=True)
class RedisSizing:
    server_cpu_us_per_request: float
    busy_cores_peak: float
    shards_by_region: Mapping[str, int]

    @property
    def shards(self) -> int:
        return sum(self.shards_by_region.values())


@dataclass(frozen=True)
class FeatureStoreSizing:
    reads_per_s_peak: float
    rows_per_s_peak: float
    nodes_by_region: Mapping[str, int]

    @property
    def nodes(self) -> int:
        return sum(self.nodes_by_region.values())


@dataclass(frozen=True)
class GpuDeployment:
    sku: str
    region: str
    rps_peak: float
    busy_replicas: float
    replicas: int
    gpus: int
    ttft_ms: float  # no queueing, the mean prompt at the cache hit rate
    e2e_ms: float  # ttft + output tokens at the peak batch occupancy


@dataclass(frozen=True)
class GpuSizing:
    deployments: tuple[GpuDeployment, ...]

    @property
    def gpus(self) -> int:
        return sum(d.gpus for d in self.deployments)

    def gpus_by_sku(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for d in self.deployments:
            totals[d.sku] = totals.get(d.sku, 0) + d.gpus
        return totals

    def gpus_by_region(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for d in self.deployments:
            totals[d.region] = totals.get(d.region, 0) + d.gpus
        return totals


@dataclass(frozen=True)
class LogSizing:
    bytes_per_request: float
    peak_mb_per_s: float
    gb_per_day: float
    stored_tb_per_day: float  # with replication
    retained_pb: float  # replicated, over the retention


@dataclass(frozen=True)
class CostSizing:
    gpu_catalog_usd: float  # the routing mix at the catalog's serving cost per token
    gpu_provisioned_usd: float  # the provisioned GPUs' hours over the day's requests (cross-check)
    api_usd: float
    redis_usd: float
    feature_store_usd: float
    log_storage_usd: float
    budget_usd: float

    @property
    def total_usd(self) -> float:
        return (
            max(self.gpu_catalog_usd, self.gpu_provisioned_usd)
            + self.api_usd
            + self.redis_usd
            + self.feature_store_usd
            + self.log_storage_usd
        )

    @property
    def within_budget(self) -> bool:
        return self.total_usd <= self.budget_usd


@dataclass(frozen=True)
class SloFeasibility:
    sku: str
    max_uncached_prompt_tokens_for_ttft: int  # p99 TTFT budget with no queueing
    max_output_tokens_for_e2e: int  # non-streaming budget at the mean prompt and cache hit rate


@dataclass(frozen=True)
class CapacityReport:
    targets: ScaleTargets
    assumptions: Assumptions
    demand: Demand
    api: ApiSizing
    redis: RedisSizing
    feature_store: FeatureStoreSizing
    gpus: GpuSizing
    logs: LogSizing
    cost: CostSizing
    slo: tuple[SloFeasibility, ...]


def size(
    targets: ScaleTargets, assumptions: Assumptions, stages: StageCosts, catalog: Catalog
) -> CapacityReport:
    """The whole sizing for one set of inputs."""
    _check(assumptions, catalog)
    a = assumptions
    peak = targets.peak_rps * a.traffic_multiplier
    mean = peak / a.peak_to_mean
    per_day = mean * SECONDS_PER_DAY
    prompt = targets.prompt_tokens_per_day * a.traffic_multiplier / per_day
    gpus = _gpus(peak, prompt, a, catalog)
    streaming = peak * targets.streaming_share
    stream_s = sum(d.rps_peak * d.e2e_ms for d in gpus.deployments) / max(peak, 1e-9) / 1000.0
    demand = Demand(peak, mean, per_day, prompt, a.output_tokens_per_request, streaming, streaming * stream_s)
    api = _api(demand, targets, a, stages)
    redis_busy = peak * stages.cpu_us("redis_server_per_request") / 1e6 if a.shared_state_in_redis else 0.0
    redis = RedisSizing(
        stages.cpu_us("redis_server_per_request") if a.shared_state_in_redis else 0.0,
        redis_busy,
        _by_region(redis_busy / a.redis_shard_utilization, a.region_share, minimum=1),
    )
    reads = peak * a.feature_reads_per_request
    rows = reads * a.feature_rows_per_read
    feature_store = FeatureStoreSizing(
        reads,
        rows,
        _by_region(
            rows / (a.feature_rows_per_s_per_node * a.feature_node_utilization), a.region_share, minimum=1
        ),
    )
    logs = _logs(demand, a, stages.log_bytes_per_request)
    cost = _cost(demand, targets, a, catalog, api, redis, feature_store, gpus, logs)
    return CapacityReport(
        targets, a, demand, api, redis, feature_store, gpus, logs, cost, _slo(targets, a, prompt, catalog)
    )


def sensitivity(
    targets: ScaleTargets,
    assumptions: Assumptions,
    stages: StageCosts,
    catalog: Catalog,
    multipliers: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0),
    hit_rates: tuple[float, ...] = (0.25, 0.5, 0.75),
) -> list[CapacityReport]:
    """The sizing over traffic multipliers × prompt-cache hit rates (the other assumptions fixed)."""
    return [
        size(targets, replace(assumptions, traffic_multiplier=m, prompt_cache_hit_rate=h), stages, catalog)
        for m in multipliers
        for h in hit_rates
    ]


def _check(a: Assumptions, catalog: Catalog) -> None:
    unknown = sorted(set(a.routing_mix) - set(catalog.names))
    if unknown:
        raise ValueError(f"routing mix names SKUs not in the catalog: {unknown}")
    for label, shares in (("routing mix", a.routing_mix), ("region share", a.region_share)):
        if any(s < 0 for s in shares.values()) or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"{label} must be non-negative and sum to 1, got {dict(shares)}")
    if not 0.0 <= a.prompt_cache_hit_rate <= 1.0:
        raise ValueError("prompt_cache_hit_rate must be within [0, 1]")
    for name in ("traffic_multiplier", "peak_to_mean", "gpu_peak_utilization", "api_core_utilization"):
        if getattr(a, name) <= 0:
            raise ValueError(f"{name} must be positive")


def _region_mix(a: Assumptions, catalog: Catalog, region: str) -> dict[str, float]:
    """The routing mix over the SKUs deployed in ``region``, renormalized (residency: a region's
    traffic is served there)."""
    local = {name: share for name, share in a.routing_mix.items() if catalog.get(name).deployed_in(region)}
    total = sum(local.values())
    return {name: share / total for name, share in local.items()} if total > 0 else {}


def _gpus(peak: float, prompt: float, a: Assumptions, catalog: Catalog) -> GpuSizing:
    uncached, cached = prompt * (1.0 - a.prompt_cache_hit_rate), prompt * a.prompt_cache_hit_rate
    deployments = []
    for region, region_share in a.region_share.items():
        mix = _region_mix(a, catalog, region)
        for sku in catalog.in_region(region):
            rps = peak * region_share * mix.get(sku.name, 0.0)
            serving = sku.serving
            replica_s = (
                uncached / serving.prefill_tokens_per_s
                + cached / serving.cached_tokens_per_s
                + a.output_tokens_per_request / serving.decode_tokens_per_s
            )
            busy = rps * replica_s
            replicas = max(a.min_replicas_per_deployment, math.ceil(busy / a.gpu_peak_utilization - 1e-9))
            ttft = sku.latency.ttft_ms(round(uncached))
            tpot = sku.latency.time_per_output_token_ms(a.gpu_peak_utilization)
            deployments.append(
                GpuDeployment(
                    sku.name,
                    region,
                    rps,
                    busy,
                    replicas,
                    replicas * serving.gpus_per_replica,
                    ttft,
                    ttft + a.output_tokens_per_request * tpot,
                )
            )
    return GpuSizing(tuple(deployments))


def _api(demand: Demand, targets: ScaleTargets, a: Assumptions, stages: StageCosts) -> ApiSizing:
    events = a.output_tokens_per_request / a.tokens_per_stream_event + a.stream_framing_events
    components = [
        CpuComponent(
            "gateway, whole (static prior, state in memory, no Feast, non-streaming)",
            stages.cpu_us("gateway_cpu_per_request"),
            "bench/results/cpu_per_request.txt",
        )
    ]
    if a.learned_router:
        components.append(
            CpuComponent(
                "learned router over the static prior (decide)",
                stages.cpu_us("decide_learned") - stages.cpu_us("decide_static"),
                "bench/results/stage_costs.json (measured)",
            )
        )
    if a.shared_state_in_redis:
        components.append(
            CpuComponent(
                "shared state in Redis (admission, live stats, prompt-cache hints, pacer)",
                stages.cpu_us("gateway_cpu_per_request_shared_state")
                - stages.cpu_us("gateway_cpu_per_request_in_memory"),
                "bench/results/process_scaling.txt",
            )
        )
    components.append(
        CpuComponent(
            f"stream relay, {targets.streaming_share:.0%} of requests × {events:.0f} SSE events",
            targets.streaming_share * events * stages.cpu_us("relay_stream_event"),
            "bench/results/peers.txt (derived)",
        )
    )
    components.append(
        CpuComponent(
            f"feature-store reads, {a.feature_reads_per_request:.0%} of requests (SQLite figure)",
            a.feature_reads_per_request * stages.wall_p50_us("feast_read_live_miss_sqlite"),
            "bench/results/store_features_latency.txt",
        )
    )
    cpu_us = sum(c.cpu_us for c in components)
    busy = demand.peak_rps * cpu_us / 1e6
    cores = _by_region(busy / a.api_core_utilization, a.region_share, minimum=a.cores_per_api_host)
    hosts = {region: math.ceil(n / a.cores_per_api_host) for region, n in cores.items()}
    return ApiSizing(cpu_us, tuple(components), busy, cores, hosts)


def _by_region(total: float, shares: Mapping[str, float], *, minimum: int) -> dict[str, int]:
    return {region: max(minimum, math.ceil(total * share - 1e-9)) for region, share in shares.items()}


def _logs(demand: Demand, a: Assumptions, bytes_per_request: float) -> LogSizing:
    gb_per_day = demand.requests_per_day * bytes_per_request / 1e9
    return LogSizing(
        bytes_per_request,
        demand.peak_rps * bytes_per_request / 1e6,
        gb_per_day,
        gb_per_day * a.log_replication / 1e3,
        gb_per_day * a.log_replication * a.log_retention_days / 1e6,
    )


def _cost(demand, targets, a, catalog, api, redis, feature_store, gpus, logs) -> CostSizing:
    prompt = demand.prompt_tokens_per_request
    uncached, cached = (
        round(prompt * (1.0 - a.prompt_cache_hit_rate)),
        round(prompt * a.prompt_cache_hit_rate),
    )
    gpu_catalog = 0.0
    for region, share in a.region_share.items():
        for name, sku_share in _region_mix(a, catalog, region).items():
            gpu_catalog += (
                share
                * sku_share
                * catalog.request_cost_usd(
                    name,
                    input_tokens=uncached,
                    cached_tokens=cached,
                    output_tokens=round(a.output_tokens_per_request),
                )
            )
    per_day = demand.requests_per_day
    hours = 24.0
    return CostSizing(
        gpu_catalog_usd=gpu_catalog,
        gpu_provisioned_usd=gpus.gpus * a.gpu_hour_usd * hours / per_day,
        api_usd=api.cores * a.core_hour_usd * hours / per_day,
        redis_usd=redis.shards * a.redis_shard_hour_usd * hours / per_day,
        feature_store_usd=feature_store.nodes * a.redis_shard_hour_usd * hours / per_day,
        log_storage_usd=logs.retained_pb * 1e6 * a.storage_gb_month_usd / 30.0 / per_day,
        budget_usd=targets.budget_usd_per_request,
    )


def _slo(
    targets: ScaleTargets, a: Assumptions, prompt: float, catalog: Catalog
) -> tuple[SloFeasibility, ...]:
    rows = []
    uncached = round(prompt * (1.0 - a.prompt_cache_hit_rate))
    for sku in catalog.skus:
        latency = sku.latency
        ttft_room_ms = targets.p99_ttft_ms - latency.ttft_base_ms
        e2e_room_ms = targets.p99_e2e_ms - latency.ttft_ms(uncached)
        tpot = latency.time_per_output_token_ms(a.gpu_peak_utilization)
        rows.append(
            SloFeasibility(
                sku.name,
                max(0, int(ttft_room_ms * latency.prefill_tokens_per_s / 1000.0)),
                max(0, int(e2e_room_ms / tpot)),
            )
        )
    return tuple(rows)
