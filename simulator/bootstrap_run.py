"""What a bootstrap's rows are a pure function of, and the window-by-window simulation (no I/O).

:func:`prepare_run` builds the world and parameters of a :class:`BootstrapConfig` (the invented
world, or the real-outcomes one of :mod:`simulator.real_world`); :func:`iter_window_records`
generates each time window's requests (:mod:`simulator.workload`), computes their request-time
facts and feature vectors the way serving does, lets the exploring rule policy
(:mod:`simulator.logging_policy`) choose among the eligible SKUs and simulates attempts,
fallbacks, prompt-cache hits, latency and quality (:mod:`simulator.outcomes`).
:func:`simulator.bootstrap.run_bootstrap` writes what it yields; evaluation replays it to
regenerate the ground truth of logged requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from features.catalog import Catalog, load_catalog
from features.schema import SURFACES
from simulator.bootstrap_tables import WindowRecords, expected_cache_hit_matrix
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

    @property
    def start_us(self) -> int:
        """The first simulated day's midnight (UTC), in microseconds since the epoch."""
        start = self.start
        return int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * US_PER_S


def conversation_keys(seed: int, conversation_id: np.ndarray) -> pa.Array:
    """A stable opaque key per conversation (serving hashes tenant + first user turn; no text here)."""
    salt = np.uint64(splitmix64(np.array([seed]))[0])
    hashed = splitmix64(conversation_id.astype(np.uint64) ^ salt)
    return pa.array([f"{value:016x}" for value in hashed.tolist()], type=pa.string())


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


def _params_digest(*params: object) -> str:
    text = json.dumps([asdict(p) for p in params], sort_keys=True, default=str)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
        return self.config.start_us

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
    heldout_from_us = config.start_us + (config.days - config.heldout_days) * US_PER_DAY
    try:
        return build_real_world(catalog, config.outcomes_data, heldout_from_us=heldout_from_us)
    except (OSError, ValueError) as error:
        raise BootstrapError(f"cannot read the outcome data: {error}") from None


def iter_window_records(run: BootstrapRun) -> Iterator[tuple[RequestWindow, WindowRecords]]:
    """Each window's requests (with their ground truth) and simulated records, in order; no I/O.

    This is the bootstrap's whole simulation: :func:`simulator.bootstrap.run_bootstrap` writes
    what it yields, and evaluation replays it to regenerate the ground truth of logged requests.
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
