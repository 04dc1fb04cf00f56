"""``switchyard eval world``: a registered router against the baselines on real outcomes.

On a bootstrap of the real-outcomes world (``simulator.real_world``), the truth of every
(held-out request, SKU) pair is the real score of the model the SKU stands for on the request's
real prompt; ``eval.sim_truth`` regenerates it and refuses other data than the logs were made
from. The held-out window is the nightly job's (the last ``eval_days`` logged days,
``offline.logged.time_split``), and its prompts are the data's held-out side, which no training
day saw (checked here: a held-out request with a training-side prompt is an error).

The program is ``switchyard eval simulated`` (``eval.simulated_router``) on that truth: the
router's heads on every logged candidate with its Feast store features, its ε = 0 policy with λ
paced to the budget, the baselines side by side (random, cheapest, always_best, rules, the
truth-using oracles), the router traced over λ and matched to each baseline's cost, plus the
**logging policy** (what the exploring rules actually chose) as one more baseline. It logs an
evaluation run in the ``switchyard-eval-world`` experiment (``offline.evaluation_runs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from eval.baselines import always_best, cheapest, logged_candidates, random_choice, rules
from eval.matched_cost import matched_cost_metrics, matched_cost_table
from eval.prompt_bootstrap import matched_margin_intervals, prompt_bootstrap
from eval.sim_truth import GroundTruthMismatch, regenerate_ground_truth
from eval.simulated import EvaluationSet, evaluate_choices, evaluation_set
from eval.simulated_report import evaluation_run, format_simulated
from eval.simulated_router import (
    MANIFEST,
    SimulatedEvalConfig,
    SimulatedEvaluation,
    load_router,
    replay_held_out,
    restrict,
    simulated_tables,
)
from features.catalog import load_catalog
from offline.evaluation_runs import log_evaluation_run
from offline.logged import time_split
from offline.replay import PolicyReplay
from offline.rows import StoreLookup

PROGRAM = "world"
# λ of the router's frontier: the nightly grid with more points at small λ, where the real world's
# router moves from the dearest SKUs to the rules' cost (~60% of the budget) and below.
WORLD_LAMBDAS = (0.0, 0.02, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
LOGGING = "logging"
Progress = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class WorldEvaluation:
    evaluation: SimulatedEvaluation  # tables: baselines (with the logging policy), frontier, matched_cost
    outcomes_data: str
    outcomes_digest: str
    sku_models: dict[str, str]  # SKU -> the real model it stands for


def real_world_evaluation(
    logs: Path, test_start: datetime, *, outcomes_data: Path | None, noise_seed: int = 0
) -> EvaluationSet:
    """The held-out requests of a real-outcomes bootstrap with the real truth of every candidate."""
    truth = regenerate_ground_truth(Path(logs), outcomes_data=outcomes_data)
    if "p_good_by_sku" not in truth.columns:
        raise GroundTruthMismatch(
            f"{logs} is a bootstrap of the invented world (use `switchyard eval simulated`)"
        )
    evaluation = evaluation_set(
        truth, logged_candidates(Path(logs), test_start), test_start, noise_seed=noise_seed
    )
    if not evaluation.truth["heldout_prompt"].all():
        raise GroundTruthMismatch("a held-out request carries a training-side prompt: the split leaks")
    return evaluation


def logging_choices(world: EvaluationSet) -> pl.DataFrame:
    """What the logging policy chose for each held-out request."""
    return world.truth.select("request_id", pl.col("logged_chosen_sku").alias("sku"))


def with_logging_policy(
    world: EvaluationSet, tables: dict[str, pl.DataFrame], metrics: dict[str, float]
) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """The tables and metrics with the logging policy as one more baseline (and matched at its cost)."""
    baselines = tables["baselines"]
    report = evaluate_choices(world.truth_by_candidate, logging_choices(world))
    row = {name: None for name in baselines.columns} | {
        "policy": LOGGING,
        "uses_truth": False,
        **report.as_row(),
    }
    row["share_by_sku"] = {name: report.share_by_sku.get(name, 0.0) for name in load_catalog().names}
    logging = pl.DataFrame([row], schema=baselines.schema)
    baselines = pl.concat([baselines, logging])
    matched = pl.concat([tables["matched_cost"], matched_cost_table(tables["frontier"], logging)])
    metrics = metrics | matched_cost_metrics(matched)
    metrics |= {f"baseline.{LOGGING}.{key}": float(row[key]) for key in ("quality", "cost_per_request_usd")}
    return {**tables, "baselines": baselines, "matched_cost": matched}, metrics


def margin_intervals(
    world: EvaluationSet, replay: PolicyReplay, config: SimulatedEvalConfig, *, replicates: int
) -> pl.DataFrame:
    """The matched-cost margins against every baseline with intervals over resampled held-out prompts."""
    candidates = world.candidates
    baselines = {
        "random": random_choice(candidates, seed=config.seed),
        "cheapest": cheapest(candidates),
        "always_best": always_best(candidates),
        "rules": rules(candidates),
        LOGGING: logging_choices(world),
    }
    lambdas = sorted({*config.lambdas, replay.params.cost_multiplier})
    learned = {f"learned λ={lam:g}": replay.choices_at(lam) for lam in lambdas}
    replicated = prompt_bootstrap(
        world.truth, world.truth_by_candidate, baselines | learned, replicates=replicates, seed=config.seed
    )
    frontier = dict(zip(lambdas, learned, strict=True))
    return matched_margin_intervals(replicated, frontier, list(baselines))


def run_world_evaluation(
    config: SimulatedEvalConfig,
    lookup: StoreLookup,
    *,
    outcomes_data: Path | None,
    progress: Progress = print,
    replicates: int = 1000,
) -> WorldEvaluation:
    """Evaluate the registered router ``config.version`` on the real truth of the held-out window."""
    logs = Path(config.logs)
    manifest = json.loads((logs / MANIFEST).read_text())
    if manifest.get("world") != "real-outcomes":
        raise GroundTruthMismatch(f"{logs} is not a bootstrap of the real-outcomes world")
    router = load_router(config.mlruns, config.version)
    split = time_split(logs, config.eval_days)
    held_out = replay_held_out(config, router, split, lookup, progress=progress, truth="the real truth")
    world = real_world_evaluation(logs, split.test_start, outcomes_data=outcomes_data, noise_seed=config.seed)
    world = restrict(world, held_out.requests["request_id"])
    replay = held_out.replay
    tables, metrics = simulated_tables(world, replay, lambdas=config.lambdas, seed=config.seed)
    tables, metrics = with_logging_policy(world, tables, metrics)
    tables["matched_cost_intervals"] = margin_intervals(world, replay, config, replicates=replicates)
    for row in tables["matched_cost_intervals"].iter_rows(named=True):
        metrics |= {f"matched.{row['baseline']}.margin_low": row["margin_low"]}
        metrics |= {f"matched.{row['baseline']}.margin_positive_share": row["margin_positive_share"]}
    evaluation = held_out.evaluation(tables, metrics)
    source = str(outcomes_data.resolve()) if outcomes_data else manifest["outcomes_data"]
    return WorldEvaluation(evaluation, source, manifest["outcomes_digest"], manifest["sku_models"])


def format_world(result: WorldEvaluation, run_id: str | None = None) -> str:
    """The real-outcomes header, then the simulated-world report of the tables."""
    mapping = ", ".join(f"{sku} → {model}" for sku, model in sorted(result.sku_models.items()))
    header = [
        f"real-outcomes world: {result.outcomes_data} (digest {result.outcomes_digest})",
        f"SKU → model: {mapping}",
    ]
    report = format_simulated(result.evaluation, run_id).replace("simulated world", "real-outcomes world")
    intervals = [
        "margins over resampled held-out prompts (95% interval; share of replicates the router wins):",
        f"  {'baseline':<12} {'at equal cost (mixing two λ)':<34} one λ at no more cost",
    ]
    for row in result.evaluation.tables["matched_cost_intervals"].iter_rows(named=True):
        mixed, pure = (
            "out of range"
            if row[f"{k}_low"] != row[f"{k}_low"]  # NaN: no replicate in range
            else f"[{row[f'{k}_low']:+.3f}, {row[f'{k}_high']:+.3f}] wins {row[f'{k}_positive_share']:.0%}"
            for k in ("margin", "pure_margin")
        )
        intervals.append(f"  {row['baseline']:<12} {mixed:<34} {pure}")
    return "\n".join([*header, report, *intervals])


def log_world_run(config: SimulatedEvalConfig, result: WorldEvaluation) -> str:
    """The evaluation as a run of the ``switchyard-eval-world`` experiment; returns its id."""
    run = evaluation_run(
        config,
        result.evaluation,
        program=PROGRAM,
        params={"outcomes_data": result.outcomes_data, "outcomes_digest": result.outcomes_digest},
        tags={"world": "real-outcomes"},
    )
    return log_evaluation_run(config.mlruns, run)
