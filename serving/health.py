"""What ``/readyz`` and ``/metrics`` report about a running gateway process (its :class:`~serving.app.Runtime`).

Readiness is the process's own: behind one port with ``switchyard serve --processes N`` it answers
for the process that accepted the connection, and says which (``process``), with the mode of each
piece of state shared through Redis (shared or degraded; ADR 0015).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import TYPE_CHECKING

from serving.admission_redis import RedisAdmission
from serving.pacer_redis import ClusterPacer

if TYPE_CHECKING:
    from serving.app import Runtime

READY_MAX_UNWRITTEN_AGE_S = 30.0
_CHECK_LEVELS = {"ok": 0, "warning": 1, "critical": 2}
_SCRAPED_SIGNALS = ("running", "waiting", "kv_cache_usage", "prefix_cache_hit_rate")


def readiness(runtime: Runtime) -> dict[str, object]:
    endpoints = runtime.pool.snapshot()
    serving = [e for e in endpoints if e.breaker_state != "open" and e.healthy is not False]
    events = runtime.eventlog.stats()
    router = runtime.champion.current
    detail = {
        "router": {
            "router_version": router.router_version,
            "registry_version": router.registry_version,
            "trained": runtime.champion.has_trained_router,
            **asdict(runtime.champion.stats),
        },
        "workers": {"endpoints": len(endpoints), "serving": len(serving)},
        "eventlog": asdict(events),
        "policy_cost_multiplier": runtime.gateway.pacer.cost_multiplier,
        "pacer": {
            "shared": isinstance(runtime.gateway.pacer, ClusterPacer),
            "degraded": bool(getattr(runtime.gateway.pacer, "degraded", False)),
        },
        "process": os.getpid(),  # which of the processes behind the port answered
        "live_stats": _live_stats_mode(runtime),
        "prompt_cache": {"shared": bool(getattr(runtime.gateway.prompt_cache, "shared", False))},
        "admission": {
            "shared": isinstance(runtime.gateway.admission, RedisAdmission),
            "degraded": bool(getattr(runtime.gateway.admission, "degraded", False)),
        },
        # safe mode still serves (with the static prior): it is in the detail, not in "ready"
        "safe_mode": runtime.safe_mode.readyz(),
    }
    # not ready while records wait too long to become durable (the writer is behind or the
    # disk refuses); recovers by itself, unlike the monotone ``dropped`` counter
    detail["ready"] = bool(serving) and events.oldest_unwritten_age_s < READY_MAX_UNWRITTEN_AGE_S
    return detail


def _live_stats_mode(runtime: Runtime) -> dict[str, object]:
    live = runtime.live
    if live is None:
        return {"mode": "off"}
    if not hasattr(live, "degraded"):
        return {"mode": "own"}  # a single process pushing its own stats
    return {"mode": "degraded" if live.degraded else "shared", "leader": bool(getattr(live, "leader", False))}


def refresh_gauges(runtime: Runtime) -> None:
    m = runtime.gateway.metrics
    router = runtime.champion.current
    # the router in use is 1, routers served before are 0 (no .clear(): Feast's import switches
    # prometheus_client to multi-process mode, where clearing labels is not implemented)
    labels = (router.router_version, router.registry_version or "")
    for previous in runtime.router_labels - {labels}:
        m.router_info.labels(*previous).set(0)
    runtime.router_labels.add(labels)
    m.router_info.labels(*labels).set(1)
    m.policy_lambda.set(runtime.gateway.pacer.cost_multiplier)
    m.router_load_errors.set(runtime.champion.stats.load_errors)
    safe = runtime.safe_mode
    m.safe_mode.set(1 if safe.active else 0)
    m.safe_mode_switches.set(safe.stats.switches)
    m.safe_mode_read_errors.set(safe.stats.read_errors)
    for check, status in safe.state.checks.items():
        m.drift_check_status.labels(check).set(_CHECK_LEVELS.get(status, 0))
    for endpoint in runtime.pool.snapshot():
        labels = (endpoint.sku, endpoint.region, endpoint.url, endpoint.kind)
        m.worker_healthy.labels(*labels).set(-1 if endpoint.healthy is None else int(endpoint.healthy))
        m.worker_in_flight.labels(*labels).set(endpoint.in_flight)
        m.worker_circuit_open.labels(*labels).set(int(endpoint.breaker_state == "open"))
        for signal in _SCRAPED_SIGNALS:
            value = getattr(endpoint, signal)
            if value is not None:
                m.worker_scraped.labels(*labels, signal).set(value)
    for name, value in asdict(runtime.eventlog.stats()).items():
        m.eventlog.labels(name).set(value)
    if runtime.store_stats is not None:
        for name, value in asdict(runtime.store_stats.stats()).items():
            m.store_features.labels(name).set(value)
