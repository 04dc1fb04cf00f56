"""The gateway's Prometheus metrics: one registry per app, nothing global.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms). Buckets
are chosen for what they measure: TTFT and end-to-end times span 10 ms .. 2 min; the router
decision and the feature fetch span 20 µs .. 50 ms.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    0.9,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_FAST_BUCKETS = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "switchyard_requests_total",
            "Messages requests by outcome (status code class, error type) and requested model kind",
            ["status", "error_type", "mode"],
            registry=r,
        )
        self.responses_by_sku = Counter(
            "switchyard_responses_total",
            "Accepted requests by the SKU that served them",
            ["sku", "region"],
            registry=r,
        )
        self.ttft = Histogram(
            "switchyard_ttft_seconds",
            "Time to first token seen by the client",
            ["sku"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "switchyard_e2e_seconds", "End-to-end request time", ["sku"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.shed = Counter(
            "switchyard_shed_total",
            "Requests rejected by admission, by reason and tier",
            ["error_type", "tier"],
            registry=r,
        )
        self.errors = Counter(
            "switchyard_errors_total", "Error responses by Anthropic error type", ["error_type"], registry=r
        )
        self.decision_time = Histogram(
            "switchyard_router_decision_seconds",
            "Routing decision: candidates, features, scoring, policy",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.feature_fetch_time = Histogram(
            "switchyard_feature_fetch_seconds",
            "Store-feature read (cache or Feast online)",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "switchyard_fallbacks_total",
            "Attempts that moved on to the next candidate, by failed SKU and status",
            ["sku", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "switchyard_worker_attempts_total",
            "Worker attempts by SKU and status",
            ["sku", "status"],
            registry=r,
        )
        self.stream_errors = Counter(
            "switchyard_stream_errors_total",
            "Streams that ended with an in-band error event",
            ["sku"],
            registry=r,
        )
        self.cost = Counter(
            "switchyard_serving_cost_usd_total", "Serving cost of accepted requests", ["sku"], registry=r
        )
        self.loop_lag = Histogram(
            "switchyard_event_loop_lag_seconds",
            "How late the event loop woke from a 100 ms sleep (its stalls: CPU starvation, blocking calls)",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("switchyard_in_flight_requests", "Admitted requests in flight", registry=r)
        self.prompt_cache_shared = Gauge(
            "switchyard_prompt_cache_shared",
            "1 while the prompt-cache estimate is replicated between gateway processes through Redis",
            registry=r,
        )
        self.admission_degraded = Gauge(
            "switchyard_admission_degraded",
            "1 while shared (Redis) admission is unavailable and this process enforces its local share",
            registry=r,
        )
        self.admission_degraded_decisions = Counter(
            "switchyard_admission_degraded_decisions_total",
            "Admission decisions made on the local share while degraded",
            registry=r,
        )
        self.router_info = Gauge(
            "switchyard_router_info",
            "The router in use (value 1)",
            ["router_version", "registry_version"],
            registry=r,
        )
        self.policy_lambda = Gauge("switchyard_policy_cost_multiplier", "λ of the routing policy", registry=r)
        self.router_reloads = Counter("switchyard_router_reloads_total", "Champion swaps", registry=r)
        self.router_load_errors = Gauge(
            "switchyard_router_load_errors", "Failed champion loads so far", registry=r
        )
        self.safe_mode = Gauge(
            "switchyard_safe_mode",
            "1 while a drift/skew verdict has switched routing to the static prior",
            registry=r,
        )
        self.drift_check_status = Gauge(
            "switchyard_drift_check_status",
            "Latest drift verdict per check: 0 ok, 1 warning, 2 critical",
            ["check"],
            registry=r,
        )
        self.safe_mode_switches = Gauge(
            "switchyard_safe_mode_switches", "Safe-mode switches (on or off) since start", registry=r
        )
        self.safe_mode_read_errors = Gauge(
            "switchyard_safe_mode_read_errors", "Failed reads of the drift verdict file", registry=r
        )
        endpoint = ["sku", "region", "endpoint", "kind"]
        self.worker_healthy = Gauge(
            "switchyard_worker_healthy",
            "1 healthy, 0 failing its /health checks, -1 not checked",
            endpoint,
            registry=r,
        )
        self.worker_in_flight = Gauge(
            "switchyard_worker_in_flight",
            "Requests this gateway has open at the endpoint",
            endpoint,
            registry=r,
        )
        self.worker_circuit_open = Gauge(
            "switchyard_worker_circuit_open",
            "1 while the endpoint's circuit breaker is open",
            endpoint,
            registry=r,
        )
        self.worker_scraped = Gauge(
            "switchyard_worker_scraped",
            "The endpoint's own metrics, as last scraped (running, waiting, kv_cache_usage, prefix_cache_hit_rate)",
            [*endpoint, "signal"],
            registry=r,
        )
        self.eventlog = Gauge("switchyard_eventlog", "Event log counters", ["counter"], registry=r)
        self.store_features = Gauge(
            "switchyard_store_features", "Store-feature reader counters", ["counter"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
