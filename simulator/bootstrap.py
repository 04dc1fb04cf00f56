"""The bootstrap job: simulate N days of traffic under the logging policy and write the event log.

Serving has no model before it has logs, and no logs before it serves; the bootstrap breaks
the loop with the simulated world. :func:`run_bootstrap` takes each time window's decisions and
outcomes from the simulation (:func:`simulator.bootstrap_run.iter_window_records`: requests, the
exploring rule policy's choices, attempts, fallbacks, prompt-cache hits, latency and quality) and
appends decision / attempt / outcome / feedback records to ``<out>/<table>/region=/date=``
through ``features.record_store`` in exactly the schema serving writes; then the tenant registry,
the manifest and ``_SUCCESS``.

Everything is column-wise and windowed, so memory is bounded by one window. The output is
a pure function of the configuration: the same seed gives the same rows in the same order.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.catalog import Catalog
from features.record_store import write_table_partitioned
from features.records import RECORD_SCHEMA_VERSION, RECORD_TYPES
from features.schema import FEATURE_SCHEMA_VERSION
from simulator.bootstrap_run import (
    BootstrapConfig,
    BootstrapError,
    iter_window_records,
    prepare_run,
)
from simulator.bootstrap_tables import (
    WindowRecords,
    attempt_table,
    decision_table,
    feedback_table,
    outcome_table,
    served_costs,
)
from simulator.workload import US_PER_S, WorkloadParams
from simulator.world import World

__all__ = [
    "MANIFEST_NAME",
    "SUCCESS_NAME",
    "TENANTS_NAME",
    "BootstrapConfig",
    "BootstrapError",
    "BootstrapSummary",
    "format_summary",
    "run_bootstrap",
    "write_tenant_registry",
]

MANIFEST_NAME = "_manifest.json"
SUCCESS_NAME = "_SUCCESS"
TENANTS_NAME = "tenants.parquet"


@dataclass
class BootstrapSummary:
    requests: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {t.TABLE: 0 for t in RECORD_TYPES})  # type: ignore[attr-defined]
    served_by_sku: dict[str, int] = field(default_factory=dict)
    chosen_by_sku: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    streaming: int = 0
    failed_requests: int = 0
    fallback_requests: int = 0
    failed_attempts: int = 0
    cost_usd: float = 0.0
    list_price_usd: float = 0.0
    elapsed_s: float = 0.0
    peak_rss_mb: float = 0.0

    def add_window(
        self, records: WindowRecords, names: tuple[str, ...], cost: np.ndarray, price: np.ndarray
    ) -> None:
        out = records.outcomes
        self.requests += len(records.ts_us)
        for index, count in enumerate(np.bincount(out.served_sku[out.served_sku >= 0], minlength=len(names))):
            self.served_by_sku[names[index]] = self.served_by_sku.get(names[index], 0) + int(count)
        for index, count in enumerate(np.bincount(records.chosen, minlength=len(names))):
            self.chosen_by_sku[names[index]] = self.chosen_by_sku.get(names[index], 0) + int(count)
        self.prompt_tokens += int(records.prompt_tokens.sum())
        self.cached_tokens += int(out.attempts.cached_tokens.sum())
        self.streaming += int(records.stream.sum())
        self.failed_requests += int((out.served_slot < 0).sum())
        self.fallback_requests += int((out.attempt_count > 1).sum())
        self.failed_attempts += int((out.attempts.status > 0).sum())
        self.cost_usd += float(cost.sum())
        self.list_price_usd += float(price.sum())


def _rates(catalog: Catalog, kind: str) -> np.ndarray:
    if kind == "serving":
        costs = [catalog.serving_cost(sku) for sku in catalog.skus]
        return np.array([[c.input, c.cached_input, c.output] for c in costs])
    return np.array(
        [[s.list_price.input, s.list_price.cached_input, s.list_price.output] for s in catalog.skus]
    )


def _prepare_output(config: BootstrapConfig) -> None:
    root = config.out
    existing = [root / t.TABLE for t in RECORD_TYPES if (root / t.TABLE).exists()]  # type: ignore[attr-defined]
    existing += [
        root / name for name in (MANIFEST_NAME, SUCCESS_NAME, TENANTS_NAME) if (root / name).exists()
    ]
    if existing and not config.overwrite:
        raise BootstrapError(
            f"{root} already holds event logs ({existing[0].name}); pass --overwrite to replace them"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)


def write_tenant_registry(world: World, path: Path) -> None:
    """The world's tenants as a registry table (who they are, not their traffic or truth)."""
    tenants = world.tenants
    table = pa.table(
        {
            "tenant_id": [t.tenant_id for t in tenants],
            "tier": [t.tier for t in tenants],
            "home_region": [t.region for t in tenants],
            "residency_required": pa.array([int(t.residency_required) for t in tenants], type=pa.int64()),
            "surface": [t.surface for t in tenants],
            "entitled_skus": [list(t.entitled_skus) for t in tenants],
        }
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def run_bootstrap(
    config: BootstrapConfig,
    *,
    catalog: Catalog | None = None,
    workload: WorkloadParams | None = None,
    progress: Callable[[str], None] | None = None,
) -> BootstrapSummary:
    """Simulate ``config.days`` days and write the event log under ``config.out``."""
    began = time.perf_counter()
    run = prepare_run(config, catalog=catalog, workload=workload)
    world, policy, catalog = run.world, run.policy, run.world.catalog
    _prepare_output(config)

    serving_rates, list_rates = _rates(catalog, "serving"), _rates(catalog, "list")
    summary = BootstrapSummary()
    window_began = time.perf_counter()
    for window, records in iter_window_records(run):
        cost = served_costs(serving_rates, records)
        price = served_costs(list_rates, records)
        tables = {
            "decisions": decision_table(catalog, records),
            "attempts": attempt_table(catalog, records),
            "outcomes": outcome_table(catalog, records, cost, price),
            "feedback": feedback_table(records),
        }
        for name, table in tables.items():
            write_table_partitioned(config.out, name, table, part_prefix=f"w{window.index:05d}-")
            summary.rows[name] += table.num_rows
        summary.add_window(records, catalog.names, cost, price)
        if progress:
            when = datetime.fromtimestamp(window.start_us / US_PER_S, tz=UTC).strftime("%Y-%m-%d %H:%M")
            progress(
                f"window {window.index + 1}/{run.windows} {when}Z: {len(window.requests):,} requests "
                f"in {time.perf_counter() - window_began:.1f} s"
            )
        window_began = time.perf_counter()
    manifest = {
        "generator": "switchyard bootstrap",
        "seed": config.seed,
        "days": config.days,
        "start": config.start.isoformat(),
        "requests_per_day": config.requests_per_day,
        "windows_per_day": config.windows_per_day,
        "n_tenants": config.n_tenants,
        "router_version": policy.router_version,
        "policy_epsilon": policy.epsilon,
        "record_schema_version": RECORD_SCHEMA_VERSION,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "catalog_version": catalog.version,
        "params_digest": run.params_digest,
        "counts": dict(summary.rows),
        "world": config.world,
        "heldout_days": config.heldout_days,
    }
    if run.real is not None:
        manifest |= run.real.describe(catalog)
    write_tenant_registry(world, config.out / TENANTS_NAME)
    manifest_tmp = config.out / f".{MANIFEST_NAME}.tmp"
    manifest_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(manifest_tmp, config.out / MANIFEST_NAME)
    (config.out / SUCCESS_NAME).write_text("")
    summary.elapsed_s = time.perf_counter() - began
    summary.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return summary


def format_summary(summary: BootstrapSummary) -> str:
    n = max(summary.requests, 1)
    lines = [
        f"requests           {summary.requests:,}",
        "rows               " + ", ".join(f"{name} {count:,}" for name, count in summary.rows.items()),
        f"mean prompt tokens {summary.prompt_tokens / n:,.0f} ({summary.cached_tokens / max(summary.prompt_tokens, 1):.1%} cached)",
        f"streaming share    {summary.streaming / n:.1%}",
        f"cost / request     ${summary.cost_usd / n:.5f} serving, ${summary.list_price_usd / n:.5f} list price",
        f"fallbacks          {summary.fallback_requests / n:.2%} of requests; {summary.failed_attempts:,} failed attempts; "
        f"{summary.failed_requests:,} requests failed on every attempt",
        "served share by SKU:",
    ]
    for name, count in sorted(summary.served_by_sku.items(), key=lambda item: -item[1]):
        chosen = summary.chosen_by_sku.get(name, 0)
        lines.append(f"  {name:<22} {count / n:6.2%}  (chosen first {chosen / n:6.2%})")
    lines.append(f"elapsed            {summary.elapsed_s:.1f} s, peak RSS {summary.peak_rss_mb:,.0f} MB")
    return "\n".join(lines)
