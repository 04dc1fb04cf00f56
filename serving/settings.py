"""Typed settings for tenants, admission and the policy stage, read from ``SWITCHYARD_*`` variables.

One class per component, each with its own prefix; built in the composition root (the app's
lifespan), never at import. Collections are JSON in the environment, e.g.::

    SWITCHYARD_TENANTS_FILE=config/tenants.yaml
    SWITCHYARD_ADMISSION_MAX_IN_FLIGHT=8192
    SWITCHYARD_ADMISSION_SHED_FRACTION='{"free":0.6,"pro":0.8,"enterprise":1,"internal":1}'
    SWITCHYARD_POLICY_DENY_PATTERNS='{"no-secrets":"BEGIN (RSA|OPENSSH) PRIVATE KEY"}'
    SWITCHYARD_POLICY_FALLBACK_REGIONS='{"apac":["us"]}'

The defaults run on a laptop; the only secret-bearing setting (the tenant file) has no
default outside development: without ``SWITCHYARD_TENANTS_FILE`` the gateway starts only when
``SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true``, with the development tenant alone.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.catalog import REGIONS, Catalog
from serving.admission import AdmissionLimits
from serving.policy_checks import DenyRules, ResidencyRules, SizeCaps
from serving.tenants import TenantConfigError, TenantDirectory, development_directory, load_tenant_directory

_DEFAULT_LIMITS = AdmissionLimits()
_DEFAULT_CAPS = SizeCaps()


class TenantSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_TENANTS_", frozen=True)

    file: Path | None = Field(default=None, description="tenant YAML/JSON with hashed API keys")
    allow_development_key: bool = Field(
        default=False, description="development only: accept the well-known development key"
    )

    def directory(self, catalog: Catalog) -> TenantDirectory:
        """Load the tenant directory these settings describe (start-up work: reads a file)."""
        if self.file is None:
            if not self.allow_development_key:
                raise TenantConfigError(
                    "no tenant file: set SWITCHYARD_TENANTS_FILE, or "
                    "SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true for local development"
                )
            return development_directory(catalog)
        directory = load_tenant_directory(self.file, catalog)
        if directory.accepts_development_key and not self.allow_development_key:
            raise TenantConfigError(
                f"{self.file}: contains the development tenant's well-known key; refusing to serve it "
                "unless SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true"
            )
        return directory


class ClusterSettings(BaseSettings):
    """Several gateway processes (``switchyard serve --processes N``, or many hosts) as one service.

    ``redis_url`` is the Redis (or Valkey) that holds the state the processes share: admission
    buckets and concurrency (unless ``SWITCHYARD_ADMISSION_REDIS_URL`` names another), the budget
    pacer's cluster-wide cost and λ, the live per-SKU attempt stream the stats leader merges into
    the Feast online store, and the prompt-cache estimate's replicated prefixes. Unset, each
    process keeps all of it in its own memory (one process is the whole service). ``processes`` is
    how many gateway processes share the quotas; a process that loses Redis enforces
    ``quota / processes`` locally until it is back (ADR 0005, docs/gateway.md).
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_CLUSTER_", frozen=True)

    redis_url: str | None = Field(default=None, description="redis://host:port/db of the shared state")
    processes: int = Field(default=1, ge=1, description="gateway processes sharing the quotas")
    redis_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="background syncs (pacer, live stats, prompt cache) give up after this",
    )
    pacer_sync_s: float = Field(
        default=1.0, gt=0, description="how often each process syncs the budget pacer"
    )
    pacer_window_s: float = Field(
        default=10.0, gt=0, description="sliding window of the cluster's cost/request"
    )


class AdmissionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_ADMISSION_", frozen=True)

    max_in_flight: int = Field(default=_DEFAULT_LIMITS.max_in_flight, ge=1)
    shed_fraction: dict[str, float] = Field(default_factory=lambda: dict(_DEFAULT_LIMITS.shed_fraction))
    request_burst_s: float = Field(default=_DEFAULT_LIMITS.request_burst_s, gt=0)
    token_burst_s: float = Field(default=_DEFAULT_LIMITS.token_burst_s, gt=0)
    overload_retry_after_s: float = Field(default=_DEFAULT_LIMITS.overload_retry_after_s, ge=0)
    concurrency_retry_after_s: float = Field(default=_DEFAULT_LIMITS.concurrency_retry_after_s, ge=0)
    # Cluster-wide quotas (serving.admission_redis); unset: in-process buckets, per process.
    redis_url: str | None = None
    redis_timeout_s: float = Field(
        default=0.05,
        gt=0,
        description="a Redis call slower than this (wall time, the loop included) degrades",
    )
    redis_probe_interval_s: float = Field(default=1.0, gt=0)
    redis_slot_lease_s: float = Field(default=600.0, gt=0)
    expected_processes: int = Field(default=1, ge=1, description="degraded mode enforces quota / this")

    @model_validator(mode="after")
    def _valid_limits(self) -> AdmissionSettings:
        self.limits()
        return self

    def limits(self) -> AdmissionLimits:
        return AdmissionLimits(
            max_in_flight=self.max_in_flight,
            shed_fraction=dict(self.shed_fraction),
            request_burst_s=self.request_burst_s,
            token_burst_s=self.token_burst_s,
            overload_retry_after_s=self.overload_retry_after_s,
            concurrency_retry_after_s=self.concurrency_retry_after_s,
        )


class PolicySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_POLICY_", frozen=True)

    max_body_bytes: int = Field(default=_DEFAULT_CAPS.max_body_bytes, ge=1)
    max_messages: int = Field(default=_DEFAULT_CAPS.max_messages, ge=1)
    max_prompt_tokens: int = Field(default=_DEFAULT_CAPS.max_prompt_tokens, ge=1)
    blocked_tenant_ids: list[str] = Field(default_factory=list)
    blocked_models_by_tier: dict[str, list[str]] = Field(default_factory=dict)
    deny_patterns: dict[str, str] = Field(default_factory=dict, description="rule name → regex")
    fallback_regions: dict[str, list[str]] = Field(
        default_factory=dict, description="home region → regions non-residency tenants may spill into"
    )

    @model_validator(mode="after")
    def _valid_rules(self) -> PolicySettings:
        self.deny_rules()
        for home, regions in self.fallback_regions.items():
            unknown = [region for region in (home, *regions) if region not in REGIONS]
            if unknown:
                raise ValueError(f"fallback_regions: unknown region {unknown[0]!r}")
        return self

    def size_caps(self) -> SizeCaps:
        return SizeCaps(
            max_body_bytes=self.max_body_bytes,
            max_messages=self.max_messages,
            max_prompt_tokens=self.max_prompt_tokens,
        )

    def deny_rules(self) -> DenyRules:
        return DenyRules.from_config(
            blocked_tenant_ids=self.blocked_tenant_ids,
            blocked_models_by_tier=self.blocked_models_by_tier,
            deny_patterns=self.deny_patterns,
        )

    def residency_rules(self) -> ResidencyRules:
        return ResidencyRules(
            fallback_regions={home: tuple(regions) for home, regions in self.fallback_regions.items()}
        )


class WorkerSettings(BaseSettings):
    """The gateway's client to the model workers (``serving.workers.WorkerPool``).

    Timeouts, for LLM serving: ``connect_timeout_s`` is short because workers sit on the same
    network (a refused or unroutable endpoint should fail over at once);
    ``first_event_timeout_s`` bounds a streamed attempt up to its ``message_start`` — long
    enough for a 200K-token prefill on the slowest SKU plus queueing (callers pass a tighter
    per-attempt value when the router predicts a short TTFT); ``idle_timeout_s`` bounds the
    silence between chunks once a stream flows (decode steps arrive every few tens of ms;
    30 s of nothing is a stalled worker); ``response_timeout_s`` bounds a non-streamed
    attempt (vLLM sends nothing until it is done). The caller's absolute deadline applies on
    top of all of them; sending the request body is bounded by the attempt's timeout (aiohttp
    has no write timeout). ``max_connections`` counts connections in use; a released one
    stays pooled for ``keepalive_expiry_s``, which stays below vLLM's 5 s server keep-alive
    so the client never reuses a connection the server is closing (0: no keep-alive).

    Replicas (``serving.replica_choice``, ``serving.worker_probe``): a request goes to a
    replica by prefix affinity unless that one carries more than ``affinity_load_factor`` ×
    the mean load; a replica that fails before answering is retried on another replica of
    the same SKU (at most ``replica_attempts`` replicas per call) before the gateway falls back
    to its next candidate; every endpoint's ``/health`` and ``/metrics`` are read each
    ``probe_interval_s``, and ``unhealthy_after`` failed checks in a row take it out.
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_WORKERS_", frozen=True)

    deployment_file: Path | None = Field(
        default=None, description="the deployment map; None: features.deployment.DEFAULT_DEPLOYMENT_PATH"
    )
    connect_timeout_s: float = Field(default=1.0, gt=0)
    pool_timeout_s: float = Field(
        default=1.0, gt=0, description="waiting for a free connection when max_connections are in use"
    )
    first_event_timeout_s: float = Field(default=60.0, gt=0, description="stream: request → message_start")
    idle_timeout_s: float = Field(default=30.0, gt=0, description="stream: longest gap between chunks")
    response_timeout_s: float = Field(default=600.0, gt=0, description="non-stream: the whole response")
    max_connections: int = Field(default=4096, ge=1, description="connections in use to all workers")
    keepalive_expiry_s: float = Field(default=4.0, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1, description="consecutive failures that open")
    breaker_cooldown_s: float = Field(default=10.0, ge=0, description="open → one probe after this long")
    breaker_probe_timeout_s: float = Field(
        default=90.0, gt=0, description="a probe without a verdict after this long is presumed lost"
    )
    replica_attempts: int = Field(
        default=2, ge=1, description="replicas of one SKU tried per call when one fails before answering"
    )
    affinity_load_factor: float = Field(
        default=1.25, ge=1, description="prefix affinity yields when a replica passes this × the mean load"
    )
    probe_interval_s: float = Field(
        default=1.0, ge=0, description="/health and /metrics of every endpoint this often; 0: no probing"
    )
    probe_timeout_s: float = Field(default=2.0, gt=0, description="one health check or scrape")
    unhealthy_after: int = Field(
        default=2, ge=1, description="failed health checks that take an endpoint out"
    )


class GatewaySettings(BaseSettings):
    """The gateway itself: where its router, logs and features come from, and its request limits.

    ``mlruns`` is the MLflow store (``sqlite:///<mlruns>/mlflow.db``) whose ``champion`` alias
    of ``switchyard-router`` is served and polled every ``router_poll_s``; ``router_model_file``
    serves a fixed ONNX artifact instead (benchmarks, air-gapped deployments). With
    ``feature_store`` the store features come from the Feast repo of ``FeatureStoreSettings``
    (online store materialized) and live per-SKU stats are pushed to it; without it they are
    NaN (exactly as training sees a missing value). ``log_dir`` receives the event log in the
    layout training reads.
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_GATEWAY_", frozen=True)

    mlruns: Path | None = Field(default=Path("mlruns"), description="MLflow store with the champion")
    router_model_file: Path | None = Field(default=None, description="serve this ONNX router, no polling")
    router_poll_s: float = Field(default=10.0, gt=0)
    feature_store: bool = Field(
        default=False, description="read store features from Feast (SWITCHYARD_FEAST_*) and push live stats"
    )
    log_dir: Path = Field(default=Path("data/gateway-logs"))
    max_attempts: int = Field(default=3, ge=1, description="worker attempts per request, fallbacks included")
    request_timeout_s: float = Field(default=600.0, gt=0)
    prompt_cache_ttl_s: float = Field(default=300.0, gt=0, description="how long a deployment holds a prefix")
    policy_epsilon: float = Field(default=0.05, ge=0, le=1, description="exploration share")
    policy_latency_multiplier: float = Field(default=0.5, ge=0)
    initial_cost_multiplier: float = Field(default=0.25, ge=0, description="λ before the pacer has data")
    budget_usd: float = Field(default=0.012, gt=0, description="serving cost budget per request")
    pacer_period_s: float = Field(default=5.0, gt=0, description="one budget-controller step per period")
    slo_ttft_ms: float = Field(default=900.0, gt=0)
    seed: int | None = Field(default=None, description="exploration RNG seed (None: random)")
    gil_switch_interval_s: float = Field(
        default=0.0005,
        gt=0,
        description="sys.setswitchinterval for the process: how long the event-log thread may keep "
        "the GIL when the event loop wants it (CPython's default, 5 ms, shows up in the p99)",
    )
    background_thread_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="nice increment of the threads asyncio.to_thread uses (event log, polls, Feast). "
        "Keep 0 unless the gateway has its cores to itself: on busy cores a lowered thread that "
        "holds the GIL stalls the event loop (ADR 0011)",
    )
    gc_freeze: bool = Field(
        default=True, description="gc.freeze() after start-up: collections skip the start-up objects"
    )

    @field_validator("mlruns", "router_model_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``SWITCHYARD_GATEWAY_MLRUNS=`` (empty) means no registry: the static prior until a file is named."""
        return None if value == "" else value


class FeatureStoreSettings(BaseSettings):
    """The Feast online store the gateway reads store features from and pushes live stats to.

    ``repo_path`` is an applied feature repo (``feast apply``); ``yaml`` picks another config in
    it, e.g. ``feature_store.redis.yaml`` for several replicas sharing one online store. The TTLs
    are the in-process cache's (``serving.store_features.StoreCachePolicy``): tenant and
    tenant × SKU values change hourly at most, live SKU stats every push.
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_FEAST_", frozen=True)

    repo_path: Path = Field(default=Path("feature_repo"), description="an applied Feast repo")
    yaml: Path | None = Field(default=None, description="another feature_store.yaml, relative to the repo")
    tenant_ttl_s: float = Field(default=60.0, ge=0)
    sku_live_ttl_s: float = Field(default=2.0, ge=0)
    tenant_sku_ttl_s: float = Field(default=60.0, ge=0)
    fetch_timeout_s: float = Field(default=0.010, gt=0, description="async reads wait this long for Feast")
    error_backoff_s: float = Field(default=1.0, ge=0, description="no Feast calls this long after a failure")
    max_keys_per_group: int = Field(default=200_000, ge=1)
    push_period_s: float = Field(default=5.0, gt=0, description="live stats push period")
    live_max_rows: int = Field(default=1_000_000, ge=1, description="attempts kept for live stats")

    def cache_policy(self):  # -> serving.store_features.StoreCachePolicy
        from serving.store_features import StoreCachePolicy

        return StoreCachePolicy(
            tenant_ttl_s=self.tenant_ttl_s,
            sku_live_ttl_s=self.sku_live_ttl_s,
            tenant_sku_ttl_s=self.tenant_sku_ttl_s,
            fetch_timeout_s=self.fetch_timeout_s,
            error_backoff_s=self.error_backoff_s,
            max_keys_per_group=self.max_keys_per_group,
        )


class EventLogSettings(BaseSettings):
    """The event log's batching and memory limits (``serving.eventlog.EventLog``).

    Where it writes is ``GatewaySettings.log_dir``. ``flush_interval_s`` is also the most a
    SIGKILL loses in a healthy state (plus one write's duration); ``max_queued`` pending records
    spill to the disk spool; past ``max_retained`` held in memory (the disk refusing both Parquet
    and the spool), new records are dropped, counted and logged. A DecisionRecord with a dozen
    candidates holds ~4 KB, so the default ``max_retained`` is ~400 MB at worst.
    """

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_EVENTLOG_", frozen=True)

    flush_interval_s: float = Field(default=1.0, gt=0, description="seal and write pending records")
    max_batch: int = Field(default=5_000, ge=1, description="write as soon as this many are pending")
    max_queued: int = Field(default=20_000, ge=1, description="pending records before spilling to the spool")
    max_retained: int = Field(default=100_000, ge=1, description="records held in memory before dropping")
    retry_interval_s: float = Field(default=1.0, ge=0, description="first backoff after a failed write")
    max_retry_interval_s: float = Field(default=30.0, ge=0, description="the backoff doubles up to this")
    idle_writer: bool = Field(
        default=False,
        description="convert and write in a SCHED_IDLE thread while the writer keeps up (ADR 0009). "
        "Only for a gateway with its cores to itself: on busy cores the idle thread that holds the "
        "GIL stalls the event loop (ADR 0011)",
    )

    @model_validator(mode="after")
    def _valid_limits(self) -> EventLogSettings:
        if not self.max_batch <= self.max_queued <= self.max_retained:
            raise ValueError("need max_batch <= max_queued <= max_retained")
        if self.max_retry_interval_s < self.retry_interval_s:
            raise ValueError("need retry_interval_s <= max_retry_interval_s")
        return self

    def event_log(self, root: Path):  # -> serving.eventlog.EventLog (imported here: append-only file)
        from serving.eventlog import EventLog

        return EventLog(
            root,
            flush_interval_s=self.flush_interval_s,
            max_batch=self.max_batch,
            max_queued=self.max_queued,
            max_retained=self.max_retained,
            retry_interval_s=self.retry_interval_s,
            max_retry_interval_s=self.max_retry_interval_s,
            idle_writer=self.idle_writer,
        )
