"""``switchyard eval world``: the champion against the baselines on real outcomes.

On a bootstrap of the real-outcomes world (``simulator.real_world``), the truth of every
(held-out request, SKU) pair is the real score of the model the SKU stands for on the request's
real prompt (``eval.sim_truth`` regenerates it, refusing other data than the logs were made
from). On the held-out window (the last ``eval_days`` logged days, ``offline.logged.time_split``,
whose prompts no training day saw) this program reports, on true quality and expected serving
cost per request:

- ``champion``: the registered champion (``router_model.registry``), scored through its ONNX
  artifact on the logged candidates with their Feast store features (``offline.rows``) and
  replayed with the routing policy at the λ the budget pacer would settle on
  (``offline.replay.paced_choices``);
- ``logging``: what the exploring logging policy actually chose;
- ``rules``, ``cheapest``, ``random``, ``always_best`` and the truth-using ``oracle`` /
  ``oracle_slo`` (``eval.simulated.compare_policies``);
- the champion traced over λ (``frontier``) and matched to each baseline's cost
  (``eval.matched_cost``): the champion wins a comparison at equal or lower cost.

I/O in :func:`evaluate_world` only; the rest are pure functions over frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from eval.baselines import logged_candidates
from eval.matched_cost import matched_cost_table
from eval.sim_truth import GroundTruthMismatch, regenerate_ground_truth
from eval.simulated import EvaluationSet, compare_policies, evaluate_choices, evaluation_set, frontier
from features.catalog import load_catalog
from offline.feast_adapter import store_lookup
from offline.logged import load_window, time_split
from offline.replay import expected_costs, paced_choices, policy_choices
from offline.rows import evaluation_rows
from router_model.policy import PolicyParams
from router_model.registry import RouterRegistry, tracking_uri_for
from router_model.scorer import RouterScorer

WORLD_LAMBDAS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
CHAMPION, LOGGING = "champion", "logging"


@dataclass(frozen=True, eq=False)
class ChampionScores:
    """The champion's per-candidate predictions on the held-out rows, ready for policy replay."""

    version: str
    router_version: str
    frame: pl.DataFrame  # offline.rows.evaluation_rows frame, one row per (request, candidate)
    predictions: dict[str, np.ndarray]
    costs: np.ndarray  # expected serving cost per row at the predicted output tokens

    def choices(self, params: PolicyParams, cost_multiplier: float) -> pl.DataFrame:
        replayed = policy_choices(
            self.frame, self.predictions, self.costs, replace(params, cost_multiplier=cost_multiplier)
        )
        return replayed.select("request_id", "sku")

    def paced(self, params: PolicyParams) -> tuple[float, pl.DataFrame]:
        lam, replayed = paced_choices(self.frame, self.predictions, self.costs, params)
        return lam, replayed.select("request_id", "sku")


@dataclass(frozen=True, eq=False)
class WorldReport:
    test_start: datetime
    requests: int
    champion_version: str
    router_version: str
    paced_lambda: float
    outcomes_digest: str
    sku_models: dict[str, str]
    comparison: pl.DataFrame  # one row per policy (eval.simulated.PolicyReport columns)
    frontier: pl.DataFrame  # the champion and the oracles over λ
    matched_cost: pl.DataFrame  # each baseline against the champion's frontier at its cost


def real_world_evaluation(
    logs: Path, test_start: datetime, *, outcomes_data: Path | None, noise_seed: int = 0
) -> EvaluationSet:
    """The held-out requests of a real-outcomes bootstrap with the real truth of every candidate."""
    truth = regenerate_ground_truth(Path(logs), outcomes_data=outcomes_data)
    if "p_good_by_sku" not in truth.columns:
        raise GroundTruthMismatch(f"{logs} is not a bootstrap of the real-outcomes world")
    candidates = logged_candidates(Path(logs), test_start)
    evaluation = evaluation_set(truth, candidates, test_start, noise_seed=noise_seed)
    if not evaluation.truth["heldout_prompt"].all():
        raise GroundTruthMismatch("a held-out request carries a training-side prompt: the split leaks")
    return evaluation


def restrict(evaluation: EvaluationSet, request_ids: pl.Series) -> EvaluationSet:
    """The evaluation set on ``request_ids`` only (a sampled held-out window)."""
    keep = pl.col("request_id").is_in(request_ids.implode())
    return replace(
        evaluation,
        truth=evaluation.truth.filter(keep),
        candidates=evaluation.candidates.filter(keep),
        truth_by_candidate=evaluation.truth_by_candidate.filter(keep),
    )


def logging_choices(evaluation: EvaluationSet) -> pl.DataFrame:
    """What the logging policy chose for each held-out request."""
    return evaluation.truth.select("request_id", pl.col("logged_chosen_sku").alias("sku"))


def compare_on_truth(
    evaluation: EvaluationSet,
    champion: pl.DataFrame,
    champion_for_lambda: ChampionScores | None,
    params: PolicyParams,
    *,
    lambdas: Sequence[float] = WORLD_LAMBDAS,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(comparison, frontier, matched-cost) tables; ``champion`` is the champion's paced choices."""
    comparison = compare_policies(
        None, None, champion, evaluation=evaluation, cache_replay=False, seed=seed
    ).with_columns(pl.col("policy").replace("learned", CHAMPION))
    logged = evaluate_choices(evaluation.truth_by_candidate, logging_choices(evaluation))
    names = load_catalog().names
    row = {"policy": LOGGING, "uses_truth": False, "cost_multiplier": None, **logged.as_row()}
    row["share_by_sku"] = {name: logged.share_by_sku.get(name, 0.0) for name in names}
    comparison = pl.concat([comparison, pl.DataFrame([row], schema=comparison.schema)])

    def choices_for(lam: float) -> pl.DataFrame:
        assert champion_for_lambda is not None
        return champion_for_lambda.choices(params, lam)

    points = frontier(evaluation, choices_for if champion_for_lambda else None, lambdas)
    baselines = comparison.filter(pl.col("policy") != CHAMPION)
    return comparison, points, matched_cost_table(points, baselines, policy="learned")


def score_champion(
    logs: Path, mlruns: Path, feature_repo: Path, test_start: datetime, *, max_requests: int | None, seed: int
) -> ChampionScores:
    """The champion's predictions on every logged candidate of the held-out window."""
    registered = RouterRegistry(tracking_uri_for(mlruns)).load()
    if registered is None:
        raise ValueError(f"{mlruns}: no champion registered (run `switchyard train` first)")
    requests = load_window(Path(logs), test_start, None, max_requests=max_requests, seed=seed)
    rows = evaluation_rows(requests, store_lookup(Path(feature_repo)))
    predictions = RouterScorer(registered.artifact).score(rows.features)
    costs = expected_costs(rows.frame, predictions["output_tokens"], load_catalog())
    return ChampionScores(
        registered.version, registered.artifact.router_version, rows.frame, predictions, costs
    )


def evaluate_world(
    logs: Path,
    mlruns: Path,
    feature_repo: Path,
    *,
    outcomes_data: Path | None = None,
    eval_days: int = 1,
    max_requests: int | None = None,
    seed: int = 0,
    lambdas: Sequence[float] = WORLD_LAMBDAS,
) -> WorldReport:
    """The real-outcomes evaluation of the champion in ``mlruns`` on the held-out days of ``logs``."""
    split = time_split(Path(logs), eval_days)
    evaluation = real_world_evaluation(logs, split.test_start, outcomes_data=outcomes_data, noise_seed=seed)
    champion = score_champion(
        logs, mlruns, feature_repo, split.test_start, max_requests=max_requests, seed=seed
    )
    evaluation = restrict(evaluation, champion.frame["request_id"].unique())
    params = PolicyParams(epsilon=0.0)
    lam, paced = champion.paced(params)
    comparison, points, matched = compare_on_truth(
        evaluation, paced, champion, params, lambdas=sorted({*lambdas, lam}), seed=seed
    )
    manifest = json.loads((Path(logs) / "_manifest.json").read_text())
    return WorldReport(
        test_start=split.test_start,
        requests=evaluation.truth.height,
        champion_version=champion.version,
        router_version=champion.router_version,
        paced_lambda=lam,
        outcomes_digest=manifest["outcomes_digest"],
        sku_models=manifest["sku_models"],
        comparison=comparison,
        frontier=points,
        matched_cost=matched,
    )


def format_report(report: WorldReport) -> str:
    """The report as text: the comparison, the champion's frontier and the matched-cost verdicts."""
    lines = [
        f"real-outcomes world, held out from {report.test_start:%Y-%m-%d %H:%M}Z: {report.requests:,} requests "
        f"(data digest {report.outcomes_digest})",
        f"champion v{report.champion_version} ({report.router_version}), paced λ = {report.paced_lambda:g}",
        "",
        f"{'policy':<12} {'quality':>8} {'cost/req':>10} {'list/req':>10} {'ttft p99':>9}  top SKUs",
    ]
    order = [CHAMPION, LOGGING, "rules", "cheapest", "random", "always_best", "oracle", "oracle_slo"]
    table = report.comparison.with_columns(
        pl.col("policy").replace_strict(order, list(range(len(order))), default=99).alias("_order")
    ).sort("_order")
    for row in table.iter_rows(named=True):
        top = sorted(row["share_by_sku"].items(), key=lambda item: -item[1])[:3]
        shares = ", ".join(f"{name} {share:.0%}" for name, share in top if share > 0)
        lines.append(
            f"{row['policy']:<12} {row['quality']:8.4f} {row['cost_per_request_usd']:10.5f} "
            f"{row['list_price_per_request_usd']:10.5f} {row['ttft_p99_ms']:8.0f}  {shares}"
        )
    lines += ["", "champion over λ (cost/request, quality):"]
    for row in report.frontier.filter(pl.col("policy") == "learned").iter_rows(named=True):
        lines.append(
            f"  λ={row['cost_multiplier']:<6g} {row['cost_per_request_usd']:.5f}  {row['quality']:.4f}"
        )
    lines += ["", "matched cost (the champion's frontier at each baseline's cost):"]
    for row in report.matched_cost.iter_rows(named=True):
        margin = "" if row["margin"] is None else f"{row['margin']:+.4f}"
        pure = (
            ""
            if row["pure_margin"] is None
            else f"{row['pure_margin']:+.4f} at λ={row['pure_cost_multiplier']:g}"
        )
        lines.append(
            f"  {row['baseline']:<12} {row['verdict']:<12} {margin:>8}   one λ at no more cost: "
            f"{row['pure_verdict']} {pure}"
        )
    return "\n".join(lines)


def report_document(report: WorldReport) -> dict[str, object]:
    """The report as JSON-ready data."""
    return {
        "test_start": report.test_start.isoformat(),
        "requests": report.requests,
        "champion_version": report.champion_version,
        "router_version": report.router_version,
        "paced_lambda": report.paced_lambda,
        "outcomes_digest": report.outcomes_digest,
        "sku_models": report.sku_models,
        "comparison": report.comparison.to_dicts(),
        "frontier": report.frontier.to_dicts(),
        "matched_cost": report.matched_cost.to_dicts(),
    }
