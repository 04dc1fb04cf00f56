"""The FastAPI application: ``create_app`` wires every part in its lifespan; handlers stay thin.

Endpoints: ``POST /v1/messages`` (Anthropic Messages, stream and not), ``GET /v1/models``,
``POST /v1/feedback``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``. Every error,
including unknown paths and methods, is Anthropic-shaped JSON; no stack trace leaves the
process.

The composition root is :func:`build_gateway` (called by the lifespan): settings → catalog,
tenants, admission, policy rules, worker pool, store-feature reader, router, event log.
Background tasks: the champion poll, the event-log writer, the live-stats push. Shutdown
stops accepting, lets streams finish their bookkeeping, closes the books of anything still
open (as aborted), flushes the event log last.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import random
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.catalog import REGIONS, Catalog, load_catalog
from features.prompt_embedding import embed_prompt
from features.records import AttemptRecord, FeedbackRecord
from features.schema import STORE_FEATURE_NAMES
from features.task_classifier import predict_task_type
from router_model.policy import PolicyParams
from router_model.registry import RouterRegistry, tracking_uri_for
from serving.admission_redis import RedisAdmission, build_admission
from serving.background_threads import background_executor
from serving.errors import ApiError, authentication_failed, error_body, invalid_request, not_found
from serving.eventlog import EventLog
from serving.gateway import Gateway, GatewayLimits
from serving.health import readiness, refresh_gauges
from serving.loop_lag import LoopLagMonitor
from serving.messages_endpoint import GatewayApp
from serving.metrics import GatewayMetrics
from serving.pacer_redis import ClusterPacer, build_pacer
from serving.prompt_cache import PromptCacheEstimate
from serving.request_parts import api_key_from, new_request_id
from serving.router_runtime import ChampionHolder, StaticPriorScorer
from serving.safe_mode import SafeModeMonitor, SafeModeSettings
from serving.settings import (
    AdmissionSettings,
    ClusterSettings,
    EventLogSettings,
    FeatureStoreSettings,
    GatewaySettings,
    PolicySettings,
    TenantSettings,
    WorkerSettings,
)
from serving.workers import WorkerPool

log = logging.getLogger("switchyard.app")

_JSON = "application/json"
FEEDBACK_SOURCES = ("user", "judge")


@dataclass
class AppSettings:
    """Every component's settings; by default each reads its ``SWITCHYARD_*`` variables."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    tenants: TenantSettings = field(default_factory=TenantSettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    eventlog: EventLogSettings = field(default_factory=EventLogSettings)
    safe_mode: SafeModeSettings = field(default_factory=SafeModeSettings)
    feast: FeatureStoreSettings = field(default_factory=FeatureStoreSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    def admission_settings(self) -> AdmissionSettings:
        """Admission's own Redis if it names one, else the cluster's; its local share is 1 / processes."""
        update: dict[str, object] = {}
        if not self.admission.redis_url and self.cluster.redis_url:
            update["redis_url"] = self.cluster.redis_url
        if self.cluster.processes > self.admission.expected_processes:
            update["expected_processes"] = self.cluster.processes
        return self.admission.model_copy(update=update) if update else self.admission


def nan_store(n_skus: int) -> np.ndarray:
    return np.full((n_skus, len(STORE_FEATURE_NAMES)), np.nan, dtype=np.float32)


async def _no_store(tenant_id: str, region: str, skus: Sequence[str]) -> np.ndarray:
    return nan_store(len(skus))


@dataclass
class Runtime:
    gateway: Gateway
    pool: WorkerPool
    eventlog: EventLog
    champion: ChampionHolder
    safe_mode: SafeModeMonitor
    tasks: list[asyncio.Task] = field(default_factory=list)
    closers: list = field(default_factory=list)
    store_stats: object | None = None  # the StoreFeatureReader, when Feast is used
    router_labels: set[tuple[str, str]] = field(default_factory=set)
    live: object | None = None  # the LivePusher or LiveSharer, when Feast is used


async def build_runtime(settings: AppSettings, catalog: Catalog | None = None) -> Runtime:
    """The composition root: every part built from settings, background tasks started."""
    catalog = catalog or load_catalog()
    gw = settings.gateway
    sys.setswitchinterval(gw.gil_switch_interval_s)  # process-wide; see GatewaySettings
    # every asyncio.to_thread from here on runs below the event loop's priority
    asyncio.get_running_loop().set_default_executor(background_executor(gw.background_thread_nice))
    tenants = settings.tenants.directory(catalog)
    await asyncio.to_thread(predict_task_type, "warm up")  # load the classifier now, not on request 1
    await asyncio.to_thread(embed_prompt, "warm up")  # and the prompt embedding
    # pyarrow imports pandas on its first timestamp conversion: here, not in the event log's first
    # flush, where the import holds the GIL for most of a second of serving
    await asyncio.to_thread(pa.array, [datetime.now(UTC)], pa.timestamp("us", tz="UTC"))
    pool = WorkerPool.from_settings(settings.workers)
    await pool.start()  # one /health + /metrics round of every endpoint before serving
    metrics = GatewayMetrics()
    eventlog = settings.eventlog.event_log(gw.log_dir)
    await eventlog.start()
    registry_factory = None
    if gw.router_model_file is None and gw.mlruns is not None:
        uri = tracking_uri_for(gw.mlruns)
        registry_factory = lambda: RouterRegistry(uri)  # noqa: E731
    champion = ChampionHolder(
        StaticPriorScorer(catalog),
        registry=registry_factory,
        model_file=str(gw.router_model_file) if gw.router_model_file else None,
        poll_interval_s=gw.router_poll_s,
    )
    await champion.refresh()
    safe_mode = settings.safe_mode.monitor()
    await asyncio.to_thread(safe_mode.refresh)  # a critical verdict already on disk applies from request 1
    initial_lambda = gw.initial_cost_multiplier
    pacer = build_pacer(
        gw.budget_usd,
        initial_lambda=initial_lambda,
        redis_url=settings.cluster.redis_url,
        timeout_s=settings.cluster.redis_timeout_s,
        sync_period_s=settings.cluster.pacer_sync_s,
        period_s=gw.pacer_period_s,
        window_s=settings.cluster.pacer_window_s,
        registry=metrics.registry,
    )
    read_store = _no_store
    closers: list = []
    live = None
    if gw.feature_store:
        read_store, live, closers = await _feature_store(
            settings.feast, settings.cluster, catalog, tenants, metrics, pool
        )
    admission = build_admission(settings.admission_settings(), metrics)
    prompt_cache = PromptCacheEstimate(ttl_s=gw.prompt_cache_ttl_s)
    if settings.cluster.redis_url:
        prompt_cache = _shared_prompt_cache(settings.cluster, prompt_cache, metrics, closers)
    if isinstance(admission, RedisAdmission):
        closers.append(admission.aclose)
    gateway = Gateway(
        catalog=catalog,
        tenants=tenants,
        admission=admission,
        caps=settings.policy.size_caps(),
        deny_rules=settings.policy.deny_rules(),
        residency=settings.policy.residency_rules(),
        pool=pool,
        read_store=read_store,
        champion=champion,
        pacer=pacer,
        policy=PolicyParams(
            cost_multiplier=initial_lambda,
            latency_multiplier=gw.policy_latency_multiplier,
            epsilon=gw.policy_epsilon,
            slo_ttft_ms=gw.slo_ttft_ms,
            budget_usd=gw.budget_usd,
        ),
        prompt_cache=prompt_cache,
        submit=eventlog.submit,
        metrics=metrics,
        limits=GatewayLimits(max_attempts=gw.max_attempts, request_timeout_s=gw.request_timeout_s),
        rng=random.Random(gw.seed),
        safe_mode=safe_mode,
    )
    runtime = Runtime(gateway, pool, eventlog, champion, safe_mode, closers=closers)
    if isinstance(pacer, ClusterPacer):
        runtime.tasks.append(asyncio.create_task(pacer.run(), name="pacer-sync"))
        runtime.closers.append(pacer.aclose)
    runtime.tasks.append(asyncio.create_task(champion.run(), name="champion-poll"))
    runtime.tasks.append(asyncio.create_task(safe_mode.run(), name="safe-mode-poll"))
    loop_lag = LoopLagMonitor(metrics.loop_lag.observe)
    runtime.tasks.append(asyncio.create_task(loop_lag.run(), name="loop-lag"))
    runtime.live = live
    if live is not None:
        observe = live.observe
        eventlog.add_listener(lambda record: observe(record) if isinstance(record, AttemptRecord) else None)
        runtime.tasks.append(live.start())
    runtime.store_stats = getattr(read_store, "__self__", None)
    if gw.gc_freeze:
        # Everything loaded so far (libraries, models, catalogs) lives as long as the process:
        # out of the collector's sight, a full collection walks only what requests allocate
        # instead of millions of start-up objects (a pause of tens of ms in the p99).
        gc.collect()
        gc.freeze()
    return runtime


async def _feature_store(
    feast: FeatureStoreSettings,
    cluster: ClusterSettings,
    catalog: Catalog,
    tenants,
    metrics: GatewayMetrics,
    pool: WorkerPool,
):
    """The Feast reader (warmed for every tenant and SKU) and the live-stats pusher.

    With a cluster Redis the online store is that Redis (``feature_store.redis.yaml`` unless
    ``SWITCHYARD_FEAST_YAML`` names another Redis config) and live stats go through the shared
    attempt stream and its leader (serving/live_share.py); else this process pushes its own.
    """
    from serving.live_push import LivePusher
    from serving.store_features import StoreFeatureReader, open_feature_store

    def build():
        if cluster.redis_url:
            from serving.feast_redis import REDIS_YAML, open_feature_store_on_redis

            store = open_feature_store_on_redis(feast.repo_path, cluster.redis_url, feast.yaml or REDIS_YAML)
        else:
            store = open_feature_store(feast.repo_path, feast.yaml)
        reader = StoreFeatureReader(store, feast.cache_policy(), on_fetch=metrics.feature_fetch_time.observe)
        warmed = reader.warm([t.tenant_id for t in tenants], list(REGIONS), list(catalog.names))
        log.info("feature store: %s, %d keys warmed", feast.repo_path, warmed)
        return store, reader

    store, reader = await asyncio.to_thread(build)
    if cluster.redis_url:
        from serving.live_share import LiveShareConfig, LiveShareMetrics, LiveSharer

        sharer = LiveSharer.connect(
            cluster.redis_url,
            store,
            reader=reader,
            config=LiveShareConfig(
                period_s=feast.push_period_s, max_rows=feast.live_max_rows, timeout_s=cluster.redis_timeout_s
            ),
            queue_depths=pool.scraped_queue_depths,
            metrics=LiveShareMetrics(metrics.registry),
        )
        return reader.read, sharer, [sharer.aclose]
    pusher = LivePusher(
        store,
        reader=reader,
        period_s=feast.push_period_s,
        max_rows=feast.live_max_rows,
        queue_depths=pool.scraped_queue_depths,
    )
    return reader.read, pusher, [pusher.stop]


def _shared_prompt_cache(
    cluster: ClusterSettings, estimate: PromptCacheEstimate, metrics: GatewayMetrics, closers
):
    """The estimate replicated between the cluster's processes (serving.prompt_cache_share)."""
    from serving.prompt_cache_share import SharedPromptCache

    shared = SharedPromptCache.connect(
        cluster.redis_url,
        estimate,
        timeout_s=cluster.redis_timeout_s,
        on_shared=lambda on: metrics.prompt_cache_shared.set(1 if on else 0),
    )
    shared.start()
    closers.append(shared.aclose)
    return shared


async def close_runtime(runtime: Runtime) -> None:
    for task in runtime.tasks:
        task.cancel()
    for task in runtime.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    aborted = runtime.gateway.finish_all_open()
    if aborted:
        log.warning("shutdown: closed the books of %d requests still open (as aborted)", aborted)
    for closer in runtime.closers:
        with contextlib.suppress(Exception):
            await closer()
    await runtime.pool.aclose()
    await runtime.eventlog.close()


def _error(error: ApiError, request_id: str | None = None) -> Response:
    request_id = request_id or new_request_id()
    return Response(
        error_body(error, request_id),
        status_code=error.status,
        headers={"request-id": request_id},
        media_type=_JSON,
    )


def create_app(settings: AppSettings | None = None, *, catalog: Catalog | None = None) -> FastAPI:
    """The gateway app; nothing is built until the lifespan runs (no work at import or here)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings or AppSettings(), catalog)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await close_runtime(runtime)

    # POST /v1/messages, the hot path, is answered before FastAPI's own layers (serving.messages_endpoint)
    app = GatewayApp(title="Switchyard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return _error(
                ApiError("not_found_error", f"method {request.method} is not allowed on {request.url.path}")
            )
        return _error(not_found(f"no such endpoint: {request.method} {request.url.path}"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return _error(ApiError("api_error", "Internal server error"))

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        tenant = runtime.gateway.tenants.authenticate(api_key_from(request.headers))
        if tenant is None:
            return _error(authentication_failed())
        created = datetime(2025, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
        ids = ["auto", *(s.name for s in runtime.gateway.catalog.skus if s.name in tenant.entitled_skus)]
        data = [{"type": "model", "id": i, "display_name": i, "created_at": created} for i in ids]
        return _json({"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]})

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        tenant = runtime.gateway.tenants.authenticate(api_key_from(request.headers))
        if tenant is None:
            return _error(authentication_failed())
        try:
            record = _feedback_record(await request.body(), tenant)
        except ApiError as error:
            return _error(error)
        runtime.eventlog.submit(record)
        return _json({"type": "feedback", "request_id": record.request_id, "recorded": True})

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        detail = readiness(runtime)
        return _json(detail, status=200 if detail["ready"] else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        refresh_gauges(runtime)
        return Response(runtime.gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _json(document: object, status: int = 200) -> Response:
    import json

    return Response(
        json.dumps(document, separators=(",", ":")).encode(), status_code=status, media_type=_JSON
    )


def _feedback_record(body: bytes, tenant) -> FeedbackRecord:
    import json

    try:
        document = json.loads(body or b"null")
    except ValueError:
        raise invalid_request("feedback: the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise invalid_request("feedback: expected a JSON object")
    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not request_id.startswith("req_"):
        raise invalid_request("request_id: a request id from a response's request-id header is required")
    score = document.get("score")
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not 0.0 <= float(score) <= 1.0
        or math.isnan(score)
    ):
        raise invalid_request("score: a number between 0 (bad) and 1 (good) is required")
    source = document.get("source", "user")
    if source not in FEEDBACK_SOURCES:
        raise invalid_request(f"source: one of {', '.join(FEEDBACK_SOURCES)}")
    if source == "judge" and tenant.tier != "internal":
        raise ApiError("permission_error", "source: only internal keys may submit judge scores")
    return FeedbackRecord(
        request_id=request_id,
        ts=datetime.now(UTC),
        region=tenant.home_region,
        tenant_id=tenant.tenant_id,
        score=float(score),
        source=source,
    )
