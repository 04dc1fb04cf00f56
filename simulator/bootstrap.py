"""The bootstrap job: simulate N days of traffic under the logging policy and write the event log.

Serving has no model before it has logs, and no logs before it serves; the bootstrap breaks
the loop with the simulated world. For each time window (a day, or a fraction of one when
the rate is high) it generates the requests (:mod:`simulator.workload`), computes their
request-time facts and feature vectors the way serving does, lets the exploring rule policy
(:mod:`simulator.logging_policy`) choose among the eligible SKUs, simulates attempts,
fallbacks, prompt-cache hits, latency and quality (:mod:`simulator.outcomes`), and appends
decision / attempt / outcome / feedback records to ``<out>/<table>/region=/date=`` through
``features.record_store`` in exactly the schema serving writes.

Everything is column-wise and windowed, so memory is bounded by one window. The output is
a pure function of the configuration: the same seed gives the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.catalog import Catalog, load_catalog
from features.record_store import write_table_partitioned
from features.records import RECORD_SCHEMA_VERSION, RECORD_TYPES
from features.schema import FEATURE_SCHEMA_VERSION, SURFACES
from simulator.bootstrap_tables import (
    WindowRecords,
    attempt_table,
    decision_table,
    expected_cache_hit_matrix,
    feedback_table,
    outcome_table,
    served_costs,
)
from simulator.logging_policy import (
    LoggingPolicyConfig,
    SkuAttributes,
    action_probabilities,
    candidate_priors,
    context_fits,
    fallback_order,
    preferred_tier,
    rank_keys,
    sample_actions,
)
from simulator.outcomes import OutcomeParams, RequestOutcomes, simulate_outcomes
from simulator.prompt_cache_ttl import ServedEvents, tail_after
from simulator.real_world import WORLDS, PolicyFacts, RealOutcomeWorld, build_real_world, iter_real_windows
from simulator.served_signals import ServedSignals
from simulator.sim_request import FactsColumns
from simulator.workload import (
    US_PER_DAY,
    US_PER_S,
    RequestWindow,
    WorkloadParams,
    facts_columns,
    iter_request_windows,
    request_feature_matrix,
)
from simulator.world import TenantParams, World, build_world, splitmix64

MANIFEST_NAME = "_manifest.json"
SUCCESS_NAME = "_SUCCESS"
TENANTS_NAME = "tenants.parquet"
_WINDOWS_PER_DAY = (1, 2, 3, 4, 6, 8, 12, 24)


class BootstrapError(RuntimeError):
    """The bootstrap cannot run as configured (e.g. the output already holds logs)."""


@dataclass(frozen=True)
class BootstrapConfig:
    days: int = 7
    requests_per_day: int = 143_000
    seed: int = 0
    out: Path = Path("data/logs")
    start: date = date(2026, 11, 1)
    epsilon: float = 0.1
    n_tenants: int = 2000
    max_window_requests: int = 50_000
    overwrite: bool = False
    world: str = "invented"  # or "real-outcomes" (simulator.real_world)
    outcomes_data: Path | None = None  # the real outcome data (real-outcomes world only)
    heldout_days: int = 1  # real-outcomes: the last days draw held-out prompts only

    @property
    def windows_per_day(self) -> int:
        for count in _WINDOWS_PER_DAY:
            if self.requests_per_day / count <= self.max_window_requests:
                return count
        return _WINDOWS_PER_DAY[-1]


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


def conversation_keys(seed: int, conversation_id: np.ndarray) -> pa.Array:
    """A stable opaque key per conversation (serving hashes tenant + first user turn; no text here)."""
    salt = np.uint64(splitmix64(np.array([seed]))[0])
    hashed = splitmix64(conversation_id.astype(np.uint64) ^ salt)
    return pa.array([f"{value:016x}" for value in hashed.tolist()], type=pa.string())


def _rates(catalog: Catalog, kind: str) -> np.ndarray:
    if kind == "serving":
        costs = [catalog.serving_cost(sku) for sku in catalog.skus]
        return np.array([[c.input, c.cached_input, c.output] for c in costs])
    return np.array(
        [[s.list_price.input, s.list_price.cached_input, s.list_price.output] for s in catalog.skus]
    )


def simulate_window(
    world: World,
    window: RequestWindow,
    *,
    seed: int,
    first_request: int,
    policy: LoggingPolicyConfig,
    outcome_params: OutcomeParams,
    signals: ServedSignals | None,
    cache_tail: ServedEvents,
    real: RealOutcomeWorld | None = None,
) -> WindowRecords:
    """Decisions and outcomes of one window's requests (column-wise); with ``real``, the window's
    requests are a :class:`simulator.real_world.RealTurnTable` and quality is the real scores'."""
    catalog = world.catalog
    requests = window.requests
    n = len(requests)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, window.index]))
    tenants = world.columns
    if real is None:
        assert signals is not None, "the invented world reads its signals from ServedSignals"
        facts: FactsColumns | PolicyFacts = facts_columns(world, requests, signals)
        request_features = request_feature_matrix(facts)  # type: ignore[arg-type]
        p_good_by_sku = None
    else:
        facts, request_features = real.request_facts(world, requests)  # type: ignore[arg-type]
        p_good_by_sku = real.p_good(requests.prompt)  # type: ignore[attr-defined]
    skus = SkuAttributes.from_skus(catalog.skus)
    eligible = world.tenant_sku_mask[requests.tenant] & context_fits(
        skus, requests.prompt_tokens, requests.max_tokens
    )
    if n and not eligible.any(axis=1).all():
        raise AssertionError("the workload produced a request no eligible SKU can take")
    preferred = preferred_tier(
        policy, facts.tenant_tier, facts.task_type, facts.prompt_tokens, facts.has_code
    )
    keys = rank_keys(policy, skus, preferred, facts.tenant_tier)
    probabilities, _ = action_probabilities(keys, eligible, policy.epsilon)
    chosen = sample_actions(probabilities, rng.random(n))
    attempt_skus = np.column_stack([chosen, fallback_order(keys, eligible, chosen, policy.max_fallbacks)])
    region = tenants.region[requests.tenant]
    outcomes: RequestOutcomes = simulate_outcomes(
        world.truth,
        outcome_params,
        rng,
        ts_us=requests.ts_us,
        region=region,
        tenant=requests.tenant,
        conversation=requests.conversation_id,
        surface_is_app=tenants.surface[requests.tenant] == SURFACES.index("app"),
        task=requests.task,
        difficulty=requests.difficulty,
        prompt_tokens=requests.prompt_tokens,
        system_tokens=requests.system_tokens,
        output_tokens=requests.output_tokens,
        truncated=requests.truncated,
        attempt_skus=attempt_skus,
        cache_tail=cache_tail,
        p_good_by_sku=p_good_by_sku,
    )
    cache_hit = expected_cache_hit_matrix(outcomes.prefix_tokens, requests.prompt_tokens)
    priors = candidate_priors(
        policy, catalog, facts.task_type, requests.prompt_tokens, requests.max_tokens, cache_hit
    )
    request_numbers = range(first_request, first_request + n)
    return WindowRecords(
        request_id=pa.array([f"sim{seed}-{number:010d}" for number in request_numbers], type=pa.string()),
        conversation_key=conversation_keys(seed, requests.conversation_id),
        ts_us=requests.ts_us,
        region=region,
        tenant=requests.tenant,
        tenant_ids=pa.array(tenants.tenant_ids, type=pa.string()),
        tenant_tier=facts.tenant_tier,
        surface=facts.surface,
        stream=requests.stream,
        prompt_tokens=requests.prompt_tokens,
        request_features=request_features,
        eligible=eligible,
        probabilities=probabilities,
        priors=priors,
        chosen=chosen,
        attempt_skus=attempt_skus,
        replica=(splitmix64(requests.conversation_id) % np.uint64(outcome_params.replicas_per_sku)).astype(
            np.int64
        ),
        outcomes=outcomes,
        epsilon=policy.epsilon,
        router_version=policy.router_version,
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


def _params_digest(*params: object) -> str:
    text = json.dumps([asdict(p) for p in params], sort_keys=True, default=str)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


@dataclass(frozen=True, eq=False)
class BootstrapRun:
    """Everything a bootstrap's rows are a pure function of: the config, the world and the parameters."""

    config: BootstrapConfig
    world: World
    tenant_params: TenantParams
    workload: WorkloadParams
    policy: LoggingPolicyConfig
    outcome_params: OutcomeParams
    real: RealOutcomeWorld | None = None

    @property
    def start_us(self) -> int:
        start = self.config.start
        return int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * US_PER_S

    @property
    def window_us(self) -> int:
        return US_PER_DAY // self.config.windows_per_day

    @property
    def windows(self) -> int:
        return self.config.days * self.config.windows_per_day

    @property
    def params_digest(self) -> str:
        digest = _params_digest(
            self.tenant_params, self.world.params, self.workload, self.policy, self.outcome_params
        )
        if self.real is None:
            return digest
        described = self.real.describe(self.world.catalog)
        described.pop("outcomes_data")  # where the data lives does not matter, its bytes do
        text = json.dumps([digest, described], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_run(
    config: BootstrapConfig, *, catalog: Catalog | None = None, workload: WorkloadParams | None = None
) -> BootstrapRun:
    """The world and parameters of a bootstrap run (no I/O)."""
    catalog = catalog or load_catalog()
    tenant_params = TenantParams(n_tenants=config.n_tenants)
    return BootstrapRun(
        config=config,
        world=build_world(config.seed, catalog=catalog, tenant_params=tenant_params),
        tenant_params=tenant_params,
        workload=workload or WorkloadParams(requests_per_day=config.requests_per_day),
        policy=LoggingPolicyConfig(epsilon=config.epsilon),
        outcome_params=OutcomeParams(),
        real=_real_world(config, catalog),
    )


def _real_world(config: BootstrapConfig, catalog: Catalog) -> RealOutcomeWorld | None:
    if config.world not in WORLDS:
        raise BootstrapError(f"unknown world {config.world!r}; one of {', '.join(WORLDS)}")
    if config.world == "invented":
        return None
    if config.outcomes_data is None:
        raise BootstrapError("the real-outcomes world needs the outcome data (--outcomes-data PATH)")
    if not 0 < config.heldout_days < config.days:
        raise BootstrapError("the real-outcomes world needs 1 <= held-out days < days")
    start = config.start
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * US_PER_S
    heldout_from_us = start_us + (config.days - config.heldout_days) * US_PER_DAY
    try:
        return build_real_world(catalog, config.outcomes_data, heldout_from_us=heldout_from_us)
    except (OSError, ValueError) as error:
        raise BootstrapError(f"cannot read the outcome data: {error}") from None


def iter_window_records(run: BootstrapRun) -> Iterator[tuple[RequestWindow, WindowRecords]]:
    """Each window's requests (with their ground truth) and simulated records, in order; no I/O.

    This is the bootstrap's whole simulation: :func:`run_bootstrap` writes what it yields, and
    evaluation replays it to regenerate the ground truth of logged requests.
    """
    config, world = run.config, run.world
    signals = ServedSignals.build() if run.real is None else None  # the real world classifies real text
    ttl_us = int(world.params.cache_ttl_s * US_PER_S)
    first_request = 0
    tail = ServedEvents.empty()
    windows = (iter_request_windows if run.real is None else partial(iter_real_windows, real=run.real))(
        world,
        run.workload,
        seed=config.seed,
        start_us=run.start_us,
        window_us=run.window_us,
        windows=run.windows,
    )
    for window in windows:
        records = simulate_window(
            world,
            window,
            seed=config.seed,
            first_request=first_request,
            policy=run.policy,
            outcome_params=run.outcome_params,
            signals=signals,
            cache_tail=tail,
            real=run.real,
        )
        yield window, records
        served = ServedEvents(
            ts_us=records.ts_us,
            sku=records.outcomes.served_sku,
            tenant=records.tenant,
            conversation=window.requests.conversation_id,
            prompt_tokens=records.prompt_tokens,
        )
        tail = tail_after(tail, served, window.end_us - ttl_us)
        first_request += len(records.ts_us)


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
