"""``switchyard eval simulated``: a registered router in the simulated world, judged on the truth.

The nightly job values a router from the logs alone (off-policy, ``offline.ope``): that is
what the gate reads. On a bootstrap's logs the simulator can say more: it regenerates the
hidden truth of every held-out request (``eval.simulated``), so any policy's choices can be
scored on their *true* quality, serving cost and TTFT. This program does that for one
registered router version:

1. the held-out window of the logs, as the nightly job splits and samples it
   (``offline.logged``: the last ``eval_days`` logged days, a seeded sample), with every
   logged candidate's features and the Feast store features as of the decision
   (``offline.rows.evaluation_rows``);
2. the router's heads on those rows (its ONNX artifact, read-only from the MLflow registry)
   and its ε = 0 policy with λ paced to the budget on predicted costs (``offline.replay``),
   exactly as the nightly job replays a candidate;
3. on the truth: the baselines side by side (``eval.simulated.compare_policies``), the learned
   policy traced over λ (``eval.simulated.frontier``), and each baseline matched at its cost
   (``eval.matched_cost``).

``eval.simulated_report`` prints the tables and logs them, the cost–quality plot and the
metrics as an evaluation run in the ``switchyard-eval-simulated`` experiment, tagged with the
router version (``offline.evaluation_runs``). Nothing is trained, registered or promoted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from eval.matched_cost import matched_cost_metrics, matched_cost_table
from eval.simulated import EvaluationSet, compare_policies, frontier, load_evaluation_set
from features.catalog import Catalog, load_catalog
from offline.logged import TimeSplit, load_window, time_split
from offline.replay import PolicyReplay, replay_policy
from offline.rows import StoreLookup, evaluation_rows
from router_model.artifact import RouterArtifact
from router_model.policy import PolicyParams
from router_model.registry import CHAMPION, RegisteredRouter, RouterRegistry, tracking_uri_for
from router_model.scorer import RouterScorer

Progress = Callable[[str], None]
PROGRAM = "simulated"
MANIFEST = "_manifest.json"  # a bootstrap's manifest: the logs come from the simulated world
BASELINE_METRICS = ("quality", "cost_per_request_usd", "ttft_p99_ms", "slo_miss_share")
# λ of the learned frontier: 0 (cost ignored; the SLO filter and latency penalty still apply) up to
# 64, where cost outweighs any quality difference, so the frontier spans the baselines' costs.
FRONTIER_LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)


class NotSimulated(ValueError):
    """The held-out window has no ground truth to regenerate."""


@dataclass(frozen=True)
class SimulatedEvalConfig:
    logs: Path
    mlruns: Path = Path("mlruns")
    feature_repo: Path = Path("feature_repo")
    version: str = CHAMPION  # an alias (champion, challenger) or a version number
    eval_days: int = 1  # as the nightly job: the latest logged days are held out
    max_requests: int | None = 80_000  # seeded sample of the held-out window (the nightly job's)
    seed: int = 0  # sampling and the simulated TTFT noise
    lambdas: tuple[float, ...] = FRONTIER_LAMBDAS
    policy: PolicyParams = field(default_factory=lambda: PolicyParams(epsilon=0.0))

    def as_params(self) -> dict[str, str]:
        return {
            "logs": str(self.logs),
            "version": self.version,
            "eval_days": str(self.eval_days),
            "max_requests": str(self.max_requests),
            "seed": str(self.seed),
            "lambdas": ",".join(f"{lam:g}" for lam in self.lambdas),
            "budget_usd": str(self.policy.budget_usd),
            "slo_ttft_ms": str(self.policy.slo_ttft_ms),
            "latency_multiplier": str(self.policy.latency_multiplier),
        }


@dataclass(frozen=True, eq=False)
class SimulatedEvaluation:
    router_version: str
    registered_version: str
    split: TimeSplit
    requests: int
    cost_multiplier: float
    metrics: dict[str, float]
    tables: dict[str, pl.DataFrame]  # baselines, frontier, matched_cost


def simulated_window(logs: Path, split: TimeSplit) -> bool:
    """Whether the held-out window is simulated traffic whose truth can be regenerated.

    True when the logs come from a bootstrap (its manifest is there) and every held-out date is
    one the bootstrap simulated. Logs the gateway added later (e.g. today's traffic on top of a
    bootstrap) have no ground truth.
    """
    manifest_path = Path(logs) / MANIFEST
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    end = date.fromisoformat(manifest["start"]) + timedelta(days=int(manifest["days"]))
    return all(date.fromisoformat(day) < end for day in split.eval_dates)


def load_router(mlruns: Path, version: str) -> RegisteredRouter:
    """The registered router of an alias or a version number (read-only); LookupError when none."""
    if not (Path(mlruns) / "mlflow.db").is_file():
        raise LookupError(f"no MLflow store in {mlruns} (train a router first: `switchyard train`)")
    registry = RouterRegistry(tracking_uri_for(mlruns))
    router = registry.load_version(version) if version.isdigit() else registry.load(version)
    if router is None:
        raise LookupError(f"no router '{version}' registered in {mlruns}")
    return router


def replay_router(
    artifact: RouterArtifact,
    frame: pl.DataFrame,
    features: np.ndarray,
    params: PolicyParams,
    catalog: Catalog,
) -> PolicyReplay:
    """Score the candidate rows with the router and replay its policy, λ paced to the budget."""
    return replay_policy(frame, RouterScorer(artifact).score(features), params, catalog, pace=True)


def restrict(world: EvaluationSet, request_ids: pl.Series) -> EvaluationSet:
    """The evaluation set on ``request_ids`` only (the held-out window was sampled)."""
    if world.truth.height == request_ids.len():
        return world
    keep = pl.col("request_id").is_in(request_ids.implode())
    return replace(
        world,
        truth=world.truth.filter(keep),
        candidates=world.candidates.filter(keep),
        truth_by_candidate=world.truth_by_candidate.filter(keep),
    )


def simulated_tables(
    world: EvaluationSet, replay: PolicyReplay, *, lambdas: tuple[float, ...], seed: int
) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """Baselines, the λ frontier (``lambdas`` and the paced λ) and the matched-cost table on the truth."""
    params = replay.params
    baselines = compare_policies(
        None,
        None,
        replay.choices,
        evaluation=world,
        budget_usd=params.budget_usd,
        slo_ttft_ms=params.slo_ttft_ms,
        latency_multiplier=params.latency_multiplier,
        seed=seed,
    )
    metrics = {
        f"baseline.{row['policy']}.{key}": float(row[key])
        for row in baselines.iter_rows(named=True)
        for key in BASELINE_METRICS
    }
    points = frontier(
        world,
        replay.choices_at,
        sorted({*lambdas, params.cost_multiplier}),
        budget_usd=params.budget_usd,
        slo_ttft_ms=params.slo_ttft_ms,
        latency_multiplier=params.latency_multiplier,
    )
    matched = matched_cost_table(points, baselines)
    metrics |= matched_cost_metrics(matched) | {"policy.cost_multiplier": params.cost_multiplier}
    return {"baselines": baselines, "frontier": points, "matched_cost": matched}, metrics


@dataclass(frozen=True, eq=False)
class HeldOutReplay:
    """The registered router replayed on the (sampled) held-out window of the logs, before any truth."""

    router: RegisteredRouter
    split: TimeSplit
    requests: pl.DataFrame
    replay: PolicyReplay

    def evaluation(self, tables: dict[str, pl.DataFrame], metrics: dict[str, float]) -> SimulatedEvaluation:
        """The evaluation of this replay with the tables and metrics computed on the truth."""
        return SimulatedEvaluation(
            router_version=self.router.artifact.router_version,
            registered_version=self.router.version,
            split=self.split,
            requests=self.requests.height,
            cost_multiplier=self.replay.params.cost_multiplier,
            metrics=metrics,
            tables=tables,
        )


def replay_held_out(
    config: SimulatedEvalConfig,
    router: RegisteredRouter,
    split: TimeSplit,
    lookup: StoreLookup,
    *,
    progress: Progress,
    truth: str,
) -> HeldOutReplay:
    """The nightly job's held-out sample, its candidate rows with store features, and the router's
    replay on them; ``truth`` names what the caller regenerates next (in the progress line)."""
    progress(
        f"router v{router.version} ({router.artifact.router_version}); held out {', '.join(split.eval_dates)}"
    )
    logs = Path(config.logs)
    requests = load_window(logs, split.test_start, None, max_requests=config.max_requests, seed=config.seed)
    rows = evaluation_rows(requests, lookup)
    replay = replay_router(router.artifact, rows.frame, rows.features, config.policy, load_catalog())
    progress(f"  {requests.height:,} requests, {rows.frame.height:,} candidate rows; regenerating {truth}")
    return HeldOutReplay(router, split, requests, replay)


def run_simulated_evaluation(
    config: SimulatedEvalConfig, lookup: StoreLookup, progress: Progress = print
) -> SimulatedEvaluation:
    """Evaluate the registered router ``config.version`` on the truth of the held-out window."""
    logs = Path(config.logs)
    router = load_router(config.mlruns, config.version)
    split = time_split(logs, config.eval_days)
    if not simulated_window(logs, split):
        raise NotSimulated(
            f"the held-out days {', '.join(split.eval_dates)} of {logs} are not simulated traffic "
            f"(no {MANIFEST}, or days the bootstrap did not simulate): there is no truth to compare with"
        )
    held_out = replay_held_out(config, router, split, lookup, progress=progress, truth="the truth")
    world = restrict(
        load_evaluation_set(logs, split.test_start, noise_seed=config.seed), held_out.requests["request_id"]
    )
    tables, metrics = simulated_tables(world, held_out.replay, lambdas=config.lambdas, seed=config.seed)
    return held_out.evaluation(tables, metrics)
