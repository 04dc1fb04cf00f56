"""Evaluating routing policies in the simulated world, where the truth is known.

``switchyard eval simulated`` (``eval.simulated_router``) asks: on the held-out later window of
the bootstrap logs, how does a registered router's policy compare with simple baselines on
*true* quality, serving cost per request and TTFT? The logs cannot say (they only hold the outcome of the SKU the logging policy chose,
and no quality truth); the simulator can. So:

1. :func:`load_evaluation_set` regenerates the hidden truth of every logged request
   (:func:`eval.sim_truth.regenerate_ground_truth`), keeps the requests at or after the test
   start, reads their logged candidate sets and evaluates the truth of every candidate
   (:func:`eval.sim_truth.candidate_truth`);
2. a policy is a frame of choices ``[request_id, sku]`` (one per request, among its
   candidates); :func:`evaluate_choices` turns it into a :class:`PolicyReport`;
3. :func:`compare_policies` reports random, cheapest, always_best, rules, learned and the
   truth-using oracle side by side; :func:`frontier` traces cost against quality over λ.

Pure functions over polars frames; I/O only in :func:`load_evaluation_set` (and the entry
points that call it). See docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from eval.baselines import always_best, cheapest, logged_candidates, oracle, random_choice, rules
from eval.sim_cache import cache_history, replay_prompt_cache
from eval.sim_truth import (
    GroundTruthMismatch,
    candidate_truth,
    eligible_pairs,
    keyed_uniforms,
    regenerate_ground_truth,
)
from features.catalog import load_catalog
from router_model.policy import PolicyParams

__all__ = [
    "BUDGET_USD",
    "DEFAULT_LAMBDAS",
    "SLO_TTFT_MS",
    "EvaluationSet",
    "GroundTruthMismatch",
    "PolicyReport",
    "always_best",
    "candidate_truth",
    "cheapest",
    "compare_policies",
    "eligible_pairs",
    "evaluate_choices",
    "evaluation_set",
    "frontier",
    "keyed_uniforms",
    "load_evaluation_set",
    "logged_candidates",
    "oracle",
    "random_choice",
    "regenerate_ground_truth",
    "replayed_report",
    "rules",
]

_REPLAY_METRICS = ("cost_per_request_usd", "ttft_p99_ms", "slo_miss_share", "meets_budget")
BUDGET_USD = 0.012  # blended serving cost per request (ARCHITECTURE.md §1)
SLO_TTFT_MS = 900.0  # p99 TTFT
DEFAULT_LAMBDAS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class PolicyReport:
    """What one policy's choices are truly worth on a set of requests."""

    requests: int
    quality: float  # mean true P(good answer): the expected share of good answers
    cost_per_request_usd: float  # mean expected serving cost
    list_price_per_request_usd: float
    ttft_p50_ms: float  # of the sampled TTFTs (linear interpolation)
    ttft_p99_ms: float
    slo_miss_share: float  # share of requests whose sampled TTFT is over the SLO
    meets_budget: bool  # cost_per_request_usd <= budget_usd
    budget_usd: float
    slo_ttft_ms: float
    share_by_sku: dict[str, float]  # chosen share, largest first

    def as_row(self) -> dict[str, object]:
        return asdict(self)


def evaluate_choices(
    truth_by_candidate: pl.DataFrame,
    choices: pl.DataFrame,
    *,
    budget_usd: float = BUDGET_USD,
    slo_ttft_ms: float = SLO_TTFT_MS,
) -> PolicyReport:
    """Metrics of one choice per request; every choice must be an eligible candidate with truth."""
    if choices["request_id"].n_unique() != choices.height:
        raise ValueError("more than one choice for a request")
    chosen = choices.select("request_id", "sku").join(
        truth_by_candidate, on=["request_id", "sku"], how="left", maintain_order="left"
    )
    invalid = chosen.filter(pl.col("eligible").is_null() | ~pl.col("eligible"))
    if invalid.height:
        row = invalid.row(0, named=True)
        raise ValueError(
            f"{invalid.height:,} choices are not eligible candidates (e.g. {row['sku']} for {row['request_id']})"
        )
    n = chosen.height
    ttft = chosen["ttft_sampled_ms"].to_numpy()
    shares = chosen["sku"].value_counts(sort=True, normalize=True, name="share")
    return PolicyReport(
        requests=n,
        quality=float(chosen["p_good"].mean()) if n else float("nan"),
        cost_per_request_usd=float(chosen["cost_usd"].mean()) if n else float("nan"),
        list_price_per_request_usd=float(chosen["list_price_usd"].mean()) if n else float("nan"),
        ttft_p50_ms=float(np.percentile(ttft, 50)) if n else float("nan"),
        ttft_p99_ms=float(np.percentile(ttft, 99)) if n else float("nan"),
        slo_miss_share=float((ttft > slo_ttft_ms).mean()) if n else float("nan"),
        meets_budget=bool(n and chosen["cost_usd"].mean() <= budget_usd),
        budget_usd=budget_usd,
        slo_ttft_ms=slo_ttft_ms,
        share_by_sku=dict(zip(shares["sku"].to_list(), shares["share"].to_list(), strict=True)),
    )


@dataclass(frozen=True, eq=False)
class EvaluationSet:
    """The held-out requests with their truth, logged candidates and candidate truth."""

    test_start: datetime
    truth: pl.DataFrame  # one row per test request (eval.sim_truth.regenerate_ground_truth columns)
    candidates: pl.DataFrame  # logged candidates of the test requests (eval.baselines.logged_candidates)
    truth_by_candidate: pl.DataFrame  # candidate_truth of every logged (request, candidate)
    history: pl.DataFrame  # logged requests served within the cache TTL before test_start (eval.sim_cache)
    noise_seed: int = 0

    @property
    def request_ids(self) -> pl.Series:
        return self.truth["request_id"]


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def evaluation_set(
    truth: pl.DataFrame, candidates: pl.DataFrame, test_start: datetime, *, noise_seed: int = 0
) -> EvaluationSet:
    """Restrict regenerated truth and logged candidates to ``ts >= test_start`` and evaluate the candidates."""
    start = _utc(test_start)
    history = cache_history(truth, start)
    truth = truth.filter(pl.col("ts") >= start)
    candidates = candidates.filter(pl.col("ts") >= start)
    if candidates["request_id"].n_unique() != truth.height:
        raise GroundTruthMismatch("the logged test requests and the regenerated truth differ")
    by_candidate = candidate_truth(truth, candidates.select("request_id", "sku"), noise_seed=noise_seed)
    if not by_candidate["eligible"].all():
        raise GroundTruthMismatch("a logged candidate is not eligible in the regenerated world")
    return EvaluationSet(start, truth, candidates, by_candidate, history, noise_seed)


def replayed_report(
    evaluation: EvaluationSet,
    choices: pl.DataFrame,
    *,
    budget_usd: float = BUDGET_USD,
    slo_ttft_ms: float = SLO_TTFT_MS,
) -> PolicyReport:
    """The report with the prompt cache replayed under the policy's own choices (eval.sim_cache)."""
    names = load_catalog().names
    truth = replay_prompt_cache(evaluation.truth, choices, evaluation.history, names)
    by_candidate = candidate_truth(
        truth, choices.select("request_id", "sku"), noise_seed=evaluation.noise_seed
    )
    return evaluate_choices(by_candidate, choices, budget_usd=budget_usd, slo_ttft_ms=slo_ttft_ms)


def load_evaluation_set(logs_root: Path, test_start_ts: datetime, *, noise_seed: int = 0) -> EvaluationSet:
    """Regenerate the truth of a bootstrap's logs and evaluate the candidates of requests at or after
    ``test_start_ts`` (a naive datetime is taken as UTC)."""
    truth = regenerate_ground_truth(Path(logs_root))
    return evaluation_set(
        truth, logged_candidates(Path(logs_root), _utc(test_start_ts)), test_start_ts, noise_seed=noise_seed
    )


def _row(
    policy: str, report: PolicyReport, *, uses_truth: bool, cost_multiplier: float | None
) -> dict[str, object]:
    names = load_catalog().names
    row = {"policy": policy, "uses_truth": uses_truth, "cost_multiplier": cost_multiplier, **report.as_row()}
    row["share_by_sku"] = {name: report.share_by_sku.get(name, 0.0) for name in names}
    return row


def _check_coverage(evaluation: EvaluationSet, choices: pl.DataFrame, policy: str) -> None:
    missing = evaluation.request_ids.filter(~evaluation.request_ids.is_in(choices["request_id"].implode()))
    extra = choices.filter(~pl.col("request_id").is_in(evaluation.request_ids.implode()))
    if missing.len() or extra.height:
        raise ValueError(
            f"{policy} choices must cover the {evaluation.truth.height:,} test requests exactly: "
            f"{missing.len():,} missing, {extra.height:,} outside the test window"
        )


def compare_policies(
    logs_root: Path | None,
    test_start_ts: datetime | None,
    learned_choices: pl.DataFrame | None,
    *,
    evaluation: EvaluationSet | None = None,
    budget_usd: float = BUDGET_USD,
    slo_ttft_ms: float = SLO_TTFT_MS,
    latency_multiplier: float = PolicyParams().latency_multiplier,
    cache_replay: bool = True,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per policy on the test requests: random, cheapest, always_best, rules, learned, and two
    truth-using references: ``oracle`` (max true quality − λ·cost, λ set to meet the budget) and
    ``oracle_slo`` (the router's own policy, SLO filter and latency penalty μ included, fed the truth).

    Pass ``evaluation`` (from :func:`load_evaluation_set`) to reuse a regenerated truth; otherwise
    it is loaded from ``logs_root`` and ``test_start_ts`` (``seed`` then also seeds the TTFT noise).
    ``learned_choices`` ([request_id, sku], exactly one per test request, among its logged
    candidates) may be None to compare the baselines only. Columns: the :class:`PolicyReport`
    fields, ``policy``, ``uses_truth``, ``cost_multiplier`` (the oracles' λ) and, with
    ``cache_replay``, ``replay_*`` metrics under the policy's own prompt-cache state.
    """
    if evaluation is None:
        if logs_root is None or test_start_ts is None:
            raise ValueError("pass logs_root and test_start_ts, or an evaluation set")
        evaluation = load_evaluation_set(logs_root, test_start_ts, noise_seed=seed)
    if learned_choices is not None:
        _check_coverage(evaluation, learned_choices, "learned")
    candidates, by_candidate = evaluation.candidates, evaluation.truth_by_candidate
    policies: list[tuple[str, pl.DataFrame, bool, float | None]] = [
        ("random", random_choice(candidates, seed=seed), False, None),
        ("cheapest", cheapest(candidates), False, None),
        ("always_best", always_best(candidates), False, None),
        ("rules", rules(candidates), False, None),
    ]
    if learned_choices is not None:
        policies.append(("learned", learned_choices.select("request_id", "sku"), False, None))
    for name, latency in _oracles(latency_multiplier, slo_ttft_ms):
        choices, lam = oracle(by_candidate, budget_usd=budget_usd, **latency)
        policies.append((name, choices, True, lam))
    rows = []
    for name, choices, uses_truth, lam in policies:
        _check_coverage(evaluation, choices, name)
        report = evaluate_choices(by_candidate, choices, budget_usd=budget_usd, slo_ttft_ms=slo_ttft_ms)
        row = _row(name, report, uses_truth=uses_truth, cost_multiplier=lam)
        if cache_replay:
            replayed = replayed_report(evaluation, choices, budget_usd=budget_usd, slo_ttft_ms=slo_ttft_ms)
            row |= {f"replay_{key}": getattr(replayed, key) for key in _REPLAY_METRICS}
        rows.append(row)
    return pl.DataFrame(rows)


def _oracles(latency_multiplier: float, slo_ttft_ms: float) -> tuple[tuple[str, dict[str, float]], ...]:
    return (
        ("oracle", {}),
        ("oracle_slo", {"latency_multiplier": latency_multiplier, "slo_ttft_ms": slo_ttft_ms}),
    )


def frontier(
    evaluation: EvaluationSet,
    choices_for_lambda: Callable[[float], pl.DataFrame] | None,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    *,
    include_oracle: bool = True,
    budget_usd: float = BUDGET_USD,
    slo_ttft_ms: float = SLO_TTFT_MS,
    latency_multiplier: float = PolicyParams().latency_multiplier,
) -> pl.DataFrame:
    """Cost–quality points, one row per (policy, λ): the learned policy's ``choices_for_lambda(λ)`` and,
    for reference, both oracles at the same λ (cost priced in units of the budget, as in
    ``router_model.policy``). ``share_by_sku`` is left out."""
    rows = []
    for lam in lambdas:
        sources: list[tuple[str, pl.DataFrame, bool]] = []
        if choices_for_lambda is not None:
            sources.append(("learned", choices_for_lambda(float(lam)), False))
        for name, latency in _oracles(latency_multiplier, slo_ttft_ms) if include_oracle else ():
            choices = oracle(
                evaluation.truth_by_candidate, budget_usd=budget_usd, cost_multiplier=lam, **latency
            )[0]
            sources.append((name, choices, True))
        for name, choices, uses_truth in sources:
            _check_coverage(evaluation, choices, f"{name} (λ={lam})")
            report = evaluate_choices(
                evaluation.truth_by_candidate, choices, budget_usd=budget_usd, slo_ttft_ms=slo_ttft_ms
            )
            rows.append(_row(name, report, uses_truth=uses_truth, cost_multiplier=float(lam)))
    return pl.DataFrame(rows).drop("share_by_sku") if rows else pl.DataFrame()
