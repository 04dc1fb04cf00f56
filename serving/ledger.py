"""One accepted request's account: its attempts, and its decision and outcome records, written once.

A request is *accepted* once admission admits it. From then on exactly one
:class:`~features.records.DecisionRecord`, one :class:`~features.records.AttemptRecord` per
worker call and exactly one :class:`~features.records.OutcomeRecord` are written, whatever
happens: a worker failure, a fallback, a stream that breaks, a client that goes away, a bug
in the gateway. :meth:`RequestLedger.finish` is idempotent and is called from every exit
path (the handler, the stream's ``finally``, the response's background task, and at shutdown
for any ledger still open); the first call writes, later calls do nothing.

It also closes the loop on the gateway's state: the admission ticket is released with the
actual token usage, the budget pacer sees the cost, the prompt-cache estimate learns what
the serving deployment now holds, and the metrics are updated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from features.catalog import Catalog
from features.records import AttemptRecord, AttemptSummary, DecisionRecord, OutcomeRecord
from features.request import RequestFacts
from features.schema import FEATURE_SCHEMA_VERSION
from router_model.policy import PolicyParams
from serving.admission import AdmissionTicket
from serving.routing import Route
from serving.tenants import Tenant

ATTEMPT_OK = "ok"


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # uncached prompt tokens
    cached_tokens: int = 0
    output_tokens: int = 0
    known: bool = False  # False: the worker never reported usage (e.g. a stream that died)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    sku: str
    region: str
    replica: str
    started: datetime
    status: str  # features.records.ATTEMPT_STATUSES
    error_type: str | None
    http_status: int | None
    ttft_ms: float | None
    e2e_ms: float
    usage: Usage


@dataclass
class RequestLedger:
    request_id: str
    received: datetime  # wall clock at arrival
    received_monotonic: float
    tenant: Tenant
    facts: RequestFacts
    request_vector: list[float]
    requested_model: str
    conversation_key: str
    route: Route
    params: PolicyParams
    decision_ms: float
    ticket: AdmissionTicket
    sink: Callable[[object], None]  # the event log's submit
    attempts: list[AttemptResult] = field(default_factory=list)
    finished: bool = False

    def add_attempt(self, attempt: AttemptResult) -> None:
        self.attempts.append(attempt)

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.received_monotonic) * 1000.0

    def finish(
        self,
        *,
        catalog: Catalog,
        status: str,
        error_type: str | None,
        http_status: int,
        ttft_ms: float | None,
        stop_reason: str | None,
    ) -> OutcomeRecord | None:
        """Write the records (first call only); returns the outcome, or None if already finished."""
        if self.finished:
            return None
        self.finished = True
        served = next((a for a in reversed(self.attempts) if a.status == ATTEMPT_OK), None)
        usage = served.usage if served is not None else Usage()
        e2e_ms = self.elapsed_ms()
        done = self.received + timedelta(milliseconds=e2e_ms)
        for index, attempt in enumerate(self.attempts):
            self.sink(
                AttemptRecord(
                    request_id=self.request_id,
                    ts=attempt.started,
                    region=attempt.region,
                    sku=attempt.sku,
                    replica=attempt.replica,
                    attempt=index,
                    status=attempt.status,
                    error_type=attempt.error_type,
                    http_status=attempt.http_status,
                    ttft_ms=attempt.ttft_ms,
                    tpot_ms=_tpot_ms(attempt),
                    e2e_ms=attempt.e2e_ms,
                    input_tokens=attempt.usage.input_tokens,
                    cached_tokens=attempt.usage.cached_tokens,
                    output_tokens=attempt.usage.output_tokens,
                )
            )
        decision = self.route.decision
        self.sink(
            DecisionRecord(
                request_id=self.request_id,
                ts=self.received,
                region=self.tenant.home_region,
                tenant_id=self.tenant.tenant_id,
                tier=self.tenant.tier,
                surface=self.tenant.surface,
                stream=self.facts.stream,
                requested_model=self.requested_model,
                conversation_key=self.conversation_key,
                feature_schema_version=FEATURE_SCHEMA_VERSION,
                request_features=list(self.request_vector),
                store_features=self.route.chosen_store_features(),
                candidates=self.route.candidates,
                chosen_sku=decision.chosen_sku,
                propensity=decision.propensity,
                router_version=self.route.router_version,
                policy_lambda=self.params.cost_multiplier,
                policy_mu=self.params.latency_multiplier,
                policy_epsilon=self.params.epsilon,
                fallback_skus=list(decision.fallback_skus),
                attempts=[AttemptSummary(a.sku, a.replica, a.status, a.error_type) for a in self.attempts],
                decision_ms=self.decision_ms,
            )
        )
        cost = list_price = 0.0
        if served is not None:
            cost = catalog.request_cost_usd(
                served.sku,
                input_tokens=usage.input_tokens,
                cached_tokens=usage.cached_tokens,
                output_tokens=usage.output_tokens,
            )
            list_price = catalog.request_list_price_usd(
                served.sku,
                input_tokens=usage.input_tokens,
                cached_tokens=usage.cached_tokens,
                output_tokens=usage.output_tokens,
            )
        outcome = OutcomeRecord(
            request_id=self.request_id,
            ts=done,
            region=self.tenant.home_region,
            tenant_id=self.tenant.tenant_id,
            sku=served.sku if served is not None else None,
            replica=served.replica if served is not None else None,
            status=status,
            error_type=error_type,
            http_status=http_status,
            ttft_ms=ttft_ms,
            e2e_ms=e2e_ms,
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=cost,
            list_price_usd=list_price,
            stop_reason=stop_reason,
            attempts=len(self.attempts),
        )
        self.sink(outcome)
        return outcome


def _tpot_ms(attempt: AttemptResult) -> float | None:
    if attempt.ttft_ms is None or attempt.usage.output_tokens <= 1:
        return None
    value = (attempt.e2e_ms - attempt.ttft_ms) / (attempt.usage.output_tokens - 1)
    return value if math.isfinite(value) and value >= 0 else None


def utc_now() -> datetime:
    return datetime.now(UTC)
