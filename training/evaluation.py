"""The evaluate stage of the nightly job: candidate, champion and ablation on the held-out window.

Both routers are scored through their ONNX artifacts (what serving would run) on the same
held-out rows, replayed with the same policy code, and valued with the same SNIPS estimator.
On bootstrap logs (a simulated world) the learned policy is also compared with the baselines
on the *true* quality, cost and TTFT (``eval.simulated``), traced over λ, and matched to each
baseline's cost per request (``eval.matched_cost``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from features.catalog import load_catalog
from router_model.artifact import ArtifactError, parse_artifact
from router_model.policy import PolicyParams
from router_model.scorer import RouterScorer
from training.dataset import ModelRows, TimeSplit
from training.gate import ModelEvaluation
from training.metrics import (
    RouterEvaluation,
    evaluate_router,
    policy_choices,
    reliability_curve,
    rewards,
    snips_difference,
)
from training.mlflow_log import TrainingRegistry
from training.train import TrainParams, fit_quality_head

MANIFEST = "_manifest.json"  # a bootstrap's manifest: the logs come from the simulated world
BASELINE_METRICS = ("quality", "cost_per_request_usd", "ttft_p99_ms", "slo_miss_share")
# λ of the learned frontier: 0 (cost ignored; the SLO filter and latency penalty still apply) up to
# 64, where cost outweighs any quality difference, so the frontier spans the baselines' costs.
FRONTIER_LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)


@dataclass(frozen=True, eq=False)
class HeldOut:
    """What the evaluate stage needs: the held-out rows, the logged outcomes and the base rate."""

    rows: ModelRows
    logged: pl.DataFrame
    base_rate: float  # training share of good answers (the no-skill quality model)


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    candidate: RouterEvaluation
    champion: RouterEvaluation | None
    champion_version: str | None
    champion_note: str  # "none", "v3 (lgbm-…)" or why the champion could not be evaluated
    metrics: dict[str, float]
    tables: dict[str, pl.DataFrame]


def score_router(
    model_bytes: bytes, held_out: HeldOut, params: PolicyParams, *, pace: bool = False, threads: int = 1
) -> RouterEvaluation:
    predictions = RouterScorer(parse_artifact(model_bytes), threads=threads).score(held_out.rows.features)
    return evaluate_router(
        predictions,
        held_out.rows.frame,
        held_out.logged,
        base_rate=held_out.base_rate,
        params=params,
        catalog=load_catalog(),
        pace=pace,
    )


def gate_input(evaluation: RouterEvaluation) -> ModelEvaluation:
    value = evaluation.value
    return ModelEvaluation(
        evaluation.metrics["quality.log_loss"],
        value.value,
        value.standard_error,
        value.effective_samples,
        value.cost_per_request_usd,
    )


def weight_ablation(
    train: TrainParams, train_rows: ModelRows, held_out: HeldOut, candidate: RouterEvaluation
) -> tuple[dict[str, float], pl.DataFrame]:
    """The same router with the quality head fitted the other way (weighted ↔ unweighted)."""
    other = replace(train, use_weights=not train.use_weights)
    model = fit_quality_head(train_rows, other)
    predictions = dict(candidate.predictions, p_quality=model.predict_proba(held_out.rows.features)[:, 1])
    variant = evaluate_router(
        predictions,
        held_out.rows.frame,
        held_out.logged,
        base_rate=held_out.base_rate,
        params=candidate.params,
        catalog=load_catalog(),
    )
    keys = ("quality.auc", "quality.log_loss", "quality.log_loss_ipw", "quality.ece", "policy.value")
    metrics = {f"ablation.{key}": variant.metrics[key] for key in keys}
    return metrics | {"ablation.use_weights": float(other.use_weights)}, variant.choices


def simulated_tables(
    logs: Path,
    split: TimeSplit,
    held_out: HeldOut,
    candidate: RouterEvaluation,
    *,
    lambdas: tuple[float, ...],
    seed: int,
    other_choices: dict[str, pl.DataFrame | None] | None = None,
) -> tuple[dict[str, pl.DataFrame], dict[str, float]]:
    """Baselines, the λ frontier (``lambdas`` and the candidate's paced λ) and the matched-cost table on
    the true quality, cost and TTFT of the simulated world."""
    from eval.matched_cost import matched_cost_metrics, matched_cost_table
    from eval.simulated import compare_policies, evaluate_choices, frontier, load_evaluation_set

    world = load_evaluation_set(logs, split.test_start, noise_seed=seed)
    if world.truth.height != candidate.choices.height:  # the held-out window was sampled
        sampled = candidate.choices["request_id"].implode()
        world = replace(
            world,
            truth=world.truth.filter(pl.col("request_id").is_in(sampled)),
            candidates=world.candidates.filter(pl.col("request_id").is_in(sampled)),
            truth_by_candidate=world.truth_by_candidate.filter(pl.col("request_id").is_in(sampled)),
        )
    baselines = compare_policies(None, None, candidate.choices, evaluation=world, seed=seed)
    metrics = {
        f"baseline.{row['policy']}.{key}": float(row[key])
        for row in baselines.iter_rows(named=True)
        for key in BASELINE_METRICS
    }
    for name, choices in (other_choices or {}).items():  # e.g. the ablation's and the champion's
        if choices is not None:
            report = evaluate_choices(world.truth_by_candidate, choices)
            metrics |= {
                f"{name}.true_quality": report.quality,
                f"{name}.true_cost_usd": report.cost_per_request_usd,
            }

    def choices_for(lam: float) -> pl.DataFrame:
        if lam == candidate.params.cost_multiplier:
            return candidate.choices  # the paced policy: already replayed
        params = replace(candidate.params, cost_multiplier=lam)
        return policy_choices(held_out.rows.frame, candidate.predictions, candidate.costs, params)

    points = frontier(world, choices_for, sorted({*lambdas, candidate.params.cost_multiplier}))
    matched = matched_cost_table(points, baselines)
    metrics |= matched_cost_metrics(matched)
    return {"baselines": baselines, "frontier": points, "matched_cost": matched}, metrics


def simulated_window(logs: Path, split: TimeSplit) -> bool:
    """Whether the held-out window is simulated traffic whose truth can be regenerated.

    True when the logs come from a bootstrap (its manifest is there) and every held-out date is
    one the bootstrap simulated. Logs the gateway added later (e.g. today's traffic on top of a
    bootstrap) have no ground truth: the simulated tables are skipped for them.
    """
    manifest_path = logs / MANIFEST
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    end = date.fromisoformat(manifest["start"]) + timedelta(days=int(manifest["days"]))
    return all(date.fromisoformat(day) < end for day in split.eval_dates)


def reliability(held_out: HeldOut, evaluation: RouterEvaluation) -> pl.DataFrame:
    frame = held_out.rows.frame
    labelled = frame["is_served"].to_numpy() & frame["quality_label"].is_not_null().to_numpy()
    return reliability_curve(
        frame["quality_label"].to_numpy()[labelled], evaluation.predictions["p_quality"][labelled]
    )


def evaluate_stage(
    model_bytes: bytes,
    held_out: HeldOut,
    registry: TrainingRegistry,
    *,
    logs: Path,
    split: TimeSplit,
    train_rows: ModelRows,
    train: TrainParams,
    policy: PolicyParams,
    lambdas: tuple[float, ...],
    seed: int,
    ablation: bool,
) -> EvaluationReport:
    """Candidate (λ paced to the budget), current champion (same λ), ablation, simulated baselines."""
    candidate = score_router(model_bytes, held_out, policy, pace=True, threads=train.threads)
    metrics = dict(candidate.metrics)
    champion_eval, note = None, "none"
    version = registry.champion_version()
    if version is not None:
        try:
            champion = registry.champion()
        except ArtifactError as error:
            champion, note = None, f"v{version} not servable by this code ({error})"
        if champion is not None:
            note = f"v{champion.version} ({champion.artifact.router_version})"
            same = champion.artifact.model_bytes == model_bytes  # a rerun: no need to score it twice
            champion_eval = (
                candidate
                if same
                else score_router(
                    champion.artifact.model_bytes, held_out, candidate.params, threads=train.threads
                )
            )
            metrics |= {f"champion.{key}": value for key, value in champion_eval.metrics.items()}
            rewarded = rewards(held_out.logged, candidate.params)
            difference, se = snips_difference(candidate.choices, champion_eval.choices, rewarded)
            metrics |= {"policy.value_minus_champion": difference, "policy.value_minus_champion_se": se}
    ablation_choices = None
    if ablation:
        ablation_metrics, ablation_choices = weight_ablation(train, train_rows, held_out, candidate)
        metrics |= ablation_metrics
    tables = {"reliability": reliability(held_out, candidate)}
    if simulated_window(Path(logs), split):
        others = {
            "ablation": ablation_choices,
            "champion": None if champion_eval is None else champion_eval.choices,
        }
        simulated, simulated_metrics = simulated_tables(
            logs, split, held_out, candidate, lambdas=lambdas, seed=seed, other_choices=others
        )
        tables |= simulated
        metrics |= simulated_metrics
    return EvaluationReport(candidate, champion_eval, version, note, metrics, tables)
