"""The evaluate stage of the nightly job: candidate, champion and ablation on the held-out window.

Both routers are scored through their ONNX artifacts (what serving would run) on the same
held-out rows, replayed with the same policy code, and valued with the same SNIPS estimator
(``offline.ope``): from the logs alone, which is all the gate reads. How a registered router
does on the *true* quality of a simulated world is eval's own program
(``switchyard eval simulated``, ``eval/simulated_router.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from features.catalog import load_catalog
from offline.ope import rewards, snips_difference
from offline.rows import ModelRows
from router_model.artifact import ArtifactError, parse_artifact
from router_model.policy import PolicyParams
from router_model.scorer import RouterScorer
from training.gate import ModelEvaluation
from training.metrics import RouterEvaluation, evaluate_router, reliability_curve
from training.mlflow_log import TrainingRegistry
from training.train import TrainParams, fit_quality_head


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
) -> dict[str, float]:
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
    return metrics | {"ablation.use_weights": float(other.use_weights)}


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
    train_rows: ModelRows,
    train: TrainParams,
    policy: PolicyParams,
    ablation: bool,
) -> EvaluationReport:
    """Candidate (λ paced to the budget), current champion (same λ) and the weight ablation."""
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
    if ablation:
        metrics |= weight_ablation(train, train_rows, held_out, candidate)
    tables = {"reliability": reliability(held_out, candidate)}
    return EvaluationReport(candidate, champion_eval, version, note, metrics, tables)
