"""The Messages request path: authenticate, validate, check policy, admit, route, call, log.

HTTP-free: :meth:`Gateway.messages` takes the raw body and headers and returns a
:class:`JsonReply` or a :class:`StreamReply`; ``serving.app`` turns those into responses.
The order of the stages is cheapest-and-most-protective first, and nothing before admission
costs more than parsing the body (the request's :class:`~features.request.ScreenFacts`: token
estimates and flags; what only the router reads, the task-type classifier and the prompt
embedding, is computed after admission, so a shed request never pays for it):

1. authenticate (``x-api-key`` or ``Authorization: Bearer``) → 401; then, while this replica
   sheds the tenant's tier (priority shedding, admission's first check), 529 at once;
2. body size → 413; JSON and Messages validation → 400; unknown model → 404;
3. policy: size caps, deny rules, pre-checks → 400/403; candidates (entitlement, residency,
   context, deployments, open circuits) → 400/403/529;
4. admission (quotas, concurrency, priority shedding) → 429/529.

From admission on the request is *accepted*: a :class:`~serving.ledger.RequestLedger`
guarantees its decision, attempts and outcome are written exactly once. Routing never fails
a request: a scoring error falls back to the static prior and is counted. Workers are tried
in the plan's order (at most ``max_attempts``) until one answers; a failure before the first
byte reaches the client is invisible to it; after that, the stream ends with an SSE
``error`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from features.catalog import Catalog
from features.eligibility import clamp_max_tokens
from features.messages_request import MessagesRequest, parse_messages_body
from features.prefix import boundary_prefix_keys
from features.request import (
    RequestFacts,
    ScreenFacts,
    prompt_segments,
    request_features,
    routing_facts,
    screen_facts,
)
from features.wire import WireError
from router_model.policy import PolicyParams
from serving.admission import Admission, PriorityShedding, token_reservation
from serving.errors import (
    ApiError,
    authentication_failed,
    error_body,
    error_headers,
    internal_error,
    overloaded,
    sse_error_event,
)
from serving.ledger import AttemptResult, RequestLedger, Usage, utc_now
from serving.metrics import GatewayMetrics
from serving.policy_checks import (
    AUTO_MODEL,
    DenyRules,
    PolicyInput,
    ResidencyRules,
    SafetyPreCheck,
    SizeCaps,
    allowed_regions,
    check_body_size,
    check_model_name,
    check_policy,
)
from serving.prompt_cache import PromptCacheEstimate
from serving.request_parts import api_key_from, conversation_key, encode_json, new_request_id
from serving.router_runtime import BudgetPacer, ChampionHolder, LoadedRouter, StaticPriorScorer
from serving.routing import Placement, Route, decide, placements
from serving.safe_mode import SafeModeMonitor
from serving.tenants import Tenant, TenantDirectory
from serving.worker_stream import WorkerStream, WorkerStreamBroken
from serving.workers import WorkerAttemptError, WorkerPool

log = logging.getLogger("switchyard.gateway")


@dataclass(frozen=True, slots=True)
class JsonReply:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class StreamReply:
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
    finish: Callable[[], None]  # idempotent; the app also runs it after the response


@dataclass
class GatewayLimits:
    max_attempts: int = 3
    request_timeout_s: float = 600.0


@dataclass
class Gateway:
    catalog: Catalog
    tenants: TenantDirectory
    admission: Admission
    caps: SizeCaps
    deny_rules: DenyRules
    residency: ResidencyRules
    pool: WorkerPool
    read_store: Callable[[str, str, Sequence[str]], Awaitable[object]]
    champion: ChampionHolder
    pacer: BudgetPacer
    policy: PolicyParams
    prompt_cache: PromptCacheEstimate
    submit: Callable[[object], None]  # the event log
    metrics: GatewayMetrics
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    pre_checks: Sequence[SafetyPreCheck] = ()
    rng: random.Random = field(default_factory=random.Random)
    open_ledgers: dict[str, RequestLedger] = field(default_factory=dict)
    safe_mode: SafeModeMonitor | None = None  # active: route with the static prior, not the champion
    # the router's facts from the screened ones, run once a request is admitted
    routing_facts: Callable[[ScreenFacts], RequestFacts] = routing_facts

    def __post_init__(self) -> None:
        # the static prior: safe mode's router, and the fallback when scoring fails
        self._static_router = LoadedRouter(StaticPriorScorer(self.catalog), None, time.time())
        self._shedding = PriorityShedding(self.admission)
        self._params: tuple[PolicyParams, float, PolicyParams] | None = None  # (policy, λ, params)
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}

    def _policy_params(self) -> PolicyParams:
        """``policy`` with the pacer's current λ; one object per (policy, λ), not one per request."""
        cost_multiplier = self.pacer.cost_multiplier
        cached = self._params
        if cached is None or cached[0] is not self.policy or cached[1] != cost_multiplier:
            cached = self._params = (
                self.policy,
                cost_multiplier,
                replace(self.policy, cost_multiplier=cost_multiplier),
            )
        return cached[2]

    def _labelled(self, metric, *values: str):
        """``metric.labels(*values)``, the child kept: prometheus_client validates and locks on
        every ``labels`` call. Bounded like the metric's own children (cleared past 10,000)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= 10_000:
                self._children.clear()
            child = self._children[key] = metric.labels(*values)
        return child

    # ------------------------------------------------------------------ the request path

    async def messages(self, body: bytes, headers: Mapping[str, str]) -> JsonReply | StreamReply:
        request_id = new_request_id()
        arrived = time.monotonic()
        received = utc_now()
        tenant: Tenant | None = None
        request: MessagesRequest | None = None
        try:
            tenant = self._authenticate(headers)
            shed = self._shedding.check(tenant.tier)  # overload: refuse before any other work
            if shed is not None:
                raise shed
            request, screen, placed = self._screen(tenant, body)
            ticket = await self.admission.admit(
                tenant, token_reservation(screen.prompt_tokens, screen.max_tokens)
            )
        except ApiError as error:
            self._count_rejection(error, tenant, request)
            return self._error_reply(error, request_id)
        mode = "auto" if request.model == AUTO_MODEL else "pinned"
        self.metrics.in_flight.inc()
        ledger: RequestLedger | None = None
        try:
            started = time.perf_counter()
            facts = self.routing_facts(screen)
            request_vector = request_features(facts, tenant_tier=tenant.tier, surface=tenant.surface)
            segments = prompt_segments(request.document)
            prefix_keys = boundary_prefix_keys(segments)
            route, params = await self._route(tenant, facts, request_vector, placed, prefix_keys)
            decision_ms = (time.perf_counter() - started) * 1000.0
            self.metrics.decision_time.observe(decision_ms / 1000.0)
            ledger = RequestLedger(
                request_id=request_id,
                received=received,
                received_monotonic=arrived,
                tenant=tenant,
                facts=facts,
                request_vector=request_vector,
                requested_model=request.model,
                conversation_key=conversation_key(tenant.tenant_id, request.document),
                route=route,
                params=params,
                decision_ms=decision_ms,
                ticket=ticket,
                sink=self.submit,
            )
            self.open_ledgers[request_id] = ledger
            deadline = arrived + self.limits.request_timeout_s
            if request.stream:
                return await self._stream(ledger, request, prefix_keys, deadline, mode)
            return await self._complete(ledger, request, prefix_keys, deadline, mode)
        except Exception as error:  # a gateway bug: the client gets a 500, the records are still written
            log.exception("request %s failed in the gateway", request_id)
            api_error = internal_error()
            if ledger is not None:
                self._finish(ledger, "error", api_error.error_type, 500, None, None, mode)
            else:
                await ticket.release(None)
                self.metrics.in_flight.dec()
            self.metrics.errors.labels(api_error.error_type).inc()
            del error
            return self._error_reply(api_error, request_id)

    def _authenticate(self, headers: Mapping[str, str]) -> Tenant:
        """Stage 1: the tenant, or 401."""
        tenant = self.tenants.authenticate(api_key_from(headers))
        if tenant is None:
            raise authentication_failed()
        return tenant

    def _screen(
        self, tenant: Tenant, body: bytes
    ) -> tuple[MessagesRequest, ScreenFacts, tuple[Placement, ...]]:
        """Stages 2-3: everything else that may reject a request before admission."""
        error = check_body_size(len(body), self.caps)
        if error is not None:
            raise error
        try:
            request = parse_messages_body(body)
        except WireError as wire_error:
            raise ApiError(wire_error.error_type, wire_error.message) from None
        error = check_model_name(request.model, self.catalog)
        if error is not None:
            raise error
        screen = screen_facts(request.document)
        messages = request.document.get("messages") or ()
        error = check_policy(
            PolicyInput(tenant, request.model, len(messages), screen.prompt_tokens, request.last_user_text),
            self.caps,
            self.deny_rules,
            self.pre_checks,
        )
        if error is not None:
            raise error
        regions = allowed_regions(tenant, self.residency)
        placed = placements(
            tenant,
            screen,
            model=request.model,
            catalog=self.catalog,
            regions=regions,
            deployed=self.pool.deployed,
            available=self.pool.available,
        )
        return request, screen, placed

    async def _route(self, tenant, facts, request_vector, placed, prefix_keys) -> tuple[Route, PolicyParams]:
        params = self._policy_params()
        router: LoadedRouter = self._static_router if self._in_safe_mode() else self.champion.current
        fetch_started = time.perf_counter()
        store = await self.read_store(tenant.tenant_id, tenant.home_region, [p.sku.name for p in placed])
        self.metrics.feature_fetch_time.observe(time.perf_counter() - fetch_started)
        kwargs = dict(
            catalog=self.catalog,
            prompt_cache=self.prompt_cache,
            params=params,
            now=time.monotonic(),
            uniform=self.rng.random(),
        )
        try:
            route = decide(placed, facts, request_vector, store, prefix_keys, router=router, **kwargs)
        except Exception:
            log.exception("router %s failed; deciding with the static prior", router.router_version)
            route = decide(
                placed, facts, request_vector, store, prefix_keys, router=self._static_router, **kwargs
            )
        return route, params

    def _in_safe_mode(self) -> bool:
        return self.safe_mode is not None and self.safe_mode.active

    # ------------------------------------------------------------------ calling workers

    def _worker_body(self, request: MessagesRequest, placement: Placement) -> bytes:
        document = dict(request.document)
        document["model"] = placement.sku.name
        document["max_tokens"] = clamp_max_tokens(placement.sku, request.max_tokens)
        return encode_json(document)

    def _plan(self, ledger: RequestLedger) -> tuple[Placement, ...]:
        return ledger.route.plan[: self.limits.max_attempts]

    def _record_failure(
        self, ledger: RequestLedger, placement: Placement, failure: WorkerAttemptError, started
    ) -> None:
        ledger.add_attempt(
            AttemptResult(
                sku=placement.sku.name,
                region=placement.region,
                replica=failure.replica or "",
                started=started,
                status=failure.status,
                error_type=failure.error_type,
                http_status=failure.http_status,
                ttft_ms=None,
                e2e_ms=failure.elapsed_ms,
                usage=Usage(),
            )
        )
        self._labelled(self.metrics.attempts, placement.sku.name, failure.status).inc()

    async def _first_answer(self, ledger, request, prefix_keys, deadline, call):
        """Try the plan in order until a worker answers (``call`` is the pool's ``complete`` or
        ``open_stream``): ``(placement, answer, started)``, or ``(None, the client's error, None)``."""
        last_error: ApiError | None = None
        for placement in self._plan(ledger):
            started = utc_now()
            try:
                answer = await call(
                    placement.sku.name,
                    placement.region,
                    self._worker_body(request, placement),
                    deadline=deadline,
                    request_id=ledger.request_id,
                    prefix_keys=prefix_keys,  # replica choice by prefix-cache affinity
                )
            except WorkerAttemptError as failure:
                for earlier in failure.earlier_failures:  # other replicas of this SKU tried first
                    self._record_failure(ledger, placement, earlier, started)
                self._record_failure(ledger, placement, failure, started)
                last_error = failure.as_api_error()
                if not failure.retryable:
                    break
                self.metrics.fallbacks.labels(placement.sku.name, failure.status).inc()
                continue
            for earlier in answer.earlier_failures:
                self._record_failure(ledger, placement, earlier, started)
            return placement, answer, started
        if last_error is None:
            last_error = overloaded("no model could serve the request", retry_after_s=1.0)
        return None, last_error, None

    def _no_answer(self, ledger: RequestLedger, error: ApiError, mode: str) -> JsonReply:
        self._finish(ledger, "error", error.error_type, error.status, None, None, mode)
        return self._error_reply(error, ledger.request_id)

    async def _complete(self, ledger, request, prefix_keys, deadline, mode) -> JsonReply:
        placement, reply, started = await self._first_answer(
            ledger, request, prefix_keys, deadline, self.pool.complete
        )
        if placement is None:
            return self._no_answer(ledger, reply, mode)
        usage = Usage(
            reply.usage.input_tokens, reply.usage.cache_read_input_tokens, reply.usage.output_tokens, True
        )
        ledger.add_attempt(
            AttemptResult(
                sku=placement.sku.name,
                region=placement.region,
                replica=reply.replica,
                started=started,
                status="ok",
                error_type=None,
                http_status=200,
                ttft_ms=None,
                e2e_ms=reply.e2e_ms,
                usage=usage,
            )
        )
        self._labelled(self.metrics.attempts, placement.sku.name, "ok").inc()
        self.prompt_cache.observe(placement.sku.name, placement.region, prefix_keys, time.monotonic())
        # The books close right after this step, once the reply is written: the client does not
        # wait for the records and metrics. (_finish is idempotent; until it runs the ledger is
        # open, so a shutdown in between still closes it once.)
        asyncio.get_running_loop().call_soon(
            self._finish, ledger, "ok", None, 200, None, reply.stop_reason, mode
        )
        return JsonReply(200, reply.body, self._route_headers(ledger, placement, len(ledger.attempts)))

    async def _stream(self, ledger, request, prefix_keys, deadline, mode) -> JsonReply | StreamReply:
        placement, stream, started = await self._first_answer(
            ledger, request, prefix_keys, deadline, self.pool.open_stream
        )
        if placement is None:
            return self._no_answer(ledger, stream, mode)
        return self._relay(ledger, placement, stream, started, prefix_keys, mode)

    def _relay(self, ledger, placement, stream: WorkerStream, started, prefix_keys, mode) -> StreamReply:
        state = {"status": "aborted", "error_type": None}

        def finish() -> None:
            if ledger.finished:
                return
            progress = stream.progress
            usage = stream.usage
            e2e = (
                stream.e2e_ms
                if stream.e2e_ms is not None
                else (time.monotonic() - progress.started_at) * 1000.0
            )
            ledger.add_attempt(
                AttemptResult(
                    sku=placement.sku.name,
                    region=placement.region,
                    replica=stream.replica,
                    started=started,
                    status=state["status"],
                    error_type=state["error_type"],
                    http_status=200,
                    ttft_ms=progress.ttft_ms,
                    e2e_ms=e2e,
                    usage=Usage(usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens, True),
                )
            )
            self._labelled(self.metrics.attempts, placement.sku.name, state["status"]).inc()
            if state["status"] == "ok":
                self.prompt_cache.observe(placement.sku.name, placement.region, prefix_keys, time.monotonic())
            client_ttft = None
            if progress.first_delta_at is not None:
                client_ttft = (progress.first_delta_at - ledger.received_monotonic) * 1000.0
            self._finish(
                ledger, state["status"], state["error_type"], 200, client_ttft, progress.stop_reason, mode
            )

        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield self._message_start(ledger, placement, stream)
                if stream.buffered:
                    yield stream.buffered
                async for chunk in stream.iter_raw():
                    yield chunk
                if stream.progress.error_type is not None:
                    state["status"], state["error_type"] = "error", stream.progress.error_type
                    self.metrics.stream_errors.labels(placement.sku.name).inc()
                else:
                    state["status"] = "ok"
            except WorkerStreamBroken as broken:
                state["status"], state["error_type"] = broken.status, "api_error"
                self.metrics.stream_errors.labels(placement.sku.name).inc()
                yield sse_error_event(
                    ApiError("api_error", "The model worker failed while streaming the response."),
                    ledger.request_id,
                )
            finally:
                await stream.aclose()
                finish()

        # the streamed attempt is recorded when the stream ends: it is attempt len + 1
        return StreamReply(self._route_headers(ledger, placement, len(ledger.attempts) + 1), chunks(), finish)

    def _message_start(self, ledger: RequestLedger, placement: Placement, stream: WorkerStream) -> bytes:
        event = dict(stream.message_start)
        message = dict(event["message"])
        message["switchyard"] = self._route_info(ledger, placement)
        event["message"] = message
        return b"event: message_start\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

    # ------------------------------------------------------------------ bookkeeping

    def _route_info(self, ledger: RequestLedger, placement: Placement) -> dict[str, str]:
        return {
            "request_id": ledger.request_id,
            "sku": placement.sku.name,
            "region": placement.region,
            "router_version": ledger.route.router_version,
        }

    def _route_headers(self, ledger: RequestLedger, placement: Placement, attempts: int) -> dict[str, str]:
        return {
            "request-id": ledger.request_id,
            "x-switchyard-sku": placement.sku.name,
            "x-switchyard-region": placement.region,
            "x-switchyard-router-version": ledger.route.router_version,
            "x-switchyard-attempts": str(attempts),
        }

    def _finish(self, ledger, status, error_type, http_status, ttft_ms, stop_reason, mode) -> None:
        outcome = ledger.finish(
            catalog=self.catalog,
            status=status,
            error_type=error_type,
            http_status=http_status,
            ttft_ms=ttft_ms,
            stop_reason=stop_reason,
        )
        if outcome is None:
            return
        self.open_ledgers.pop(ledger.request_id, None)
        self.metrics.in_flight.dec()
        tokens = outcome.input_tokens + outcome.cached_tokens + outcome.output_tokens if outcome.sku else None
        asyncio.get_running_loop().create_task(ledger.ticket.release(tokens))
        self._labelled(self.metrics.requests, str(http_status), error_type or "", mode).inc()
        if error_type:
            self._labelled(self.metrics.errors, error_type).inc()
        if outcome.sku is not None:
            self._labelled(self.metrics.responses_by_sku, outcome.sku, ledger.attempts[-1].region).inc()
            self._labelled(self.metrics.e2e, outcome.sku).observe(outcome.e2e_ms / 1000.0)
            if outcome.ttft_ms is not None:
                self._labelled(self.metrics.ttft, outcome.sku).observe(outcome.ttft_ms / 1000.0)
            self._labelled(self.metrics.cost, outcome.sku).inc(outcome.cost_usd)
            self.pacer.observe(outcome.cost_usd)

    def finish_all_open(self) -> int:
        """At shutdown: close the books of requests still open (as aborted); returns how many."""
        open_now = list(self.open_ledgers.values())
        for ledger in open_now:
            self._finish(ledger, "aborted", "api_error", 500, None, None, "shutdown")
        return len(open_now)

    def _count_rejection(
        self, error: ApiError, tenant: Tenant | None, request: MessagesRequest | None
    ) -> None:
        mode = "unknown" if request is None else ("auto" if request.model == AUTO_MODEL else "pinned")
        self.metrics.requests.labels(str(error.status), error.error_type, mode).inc()
        self.metrics.errors.labels(error.error_type).inc()
        if error.error_type in ("rate_limit_error", "overloaded_error") and tenant is not None:
            self.metrics.shed.labels(error.error_type, tenant.tier).inc()

    def _error_reply(self, error: ApiError, request_id: str) -> JsonReply:
        headers = {"request-id": request_id, **error_headers(error)}
        return JsonReply(error.status, error_body(error, request_id), headers)
