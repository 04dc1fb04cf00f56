"""Feature drift: the served feature vectors against the reference, per feature, with Evidently.

One Evidently ``Report`` (``DataDriftPreset``) over every feature of ``features.schema``, with a
test suited to each kind:

- **numeric**: the Wasserstein distance normed by the reference's standard deviation
  (``wasserstein``). Heavy-tailed counts, times and money (``LOG_SCALE``) are compared as
  ``log1p(x)``, so "prompts twice as long" is a shift of ln 2 in the bulk of the distribution
  rather than a wiggle hidden by a few 100K-token documents;
- **categorical and binary**: the Jensen–Shannon distance between the category shares
  (``jensenshannon``), on readable labels (``code``, ``true``).

Both are distances with sample-size-free thresholds. A p-value test (K–S, chi-square) at 36K
rows an hour flags differences nobody should be paged for. Severity per feature:
``warn_threshold`` (Evidently's drift flag) and ``critical_threshold``.

**Which reference rows.** Request features describe the traffic whatever the router does, so
they are compared with the reference as is. Candidate and store features belong to the chosen
SKU, and the champion chooses differently from the policy that logged its training data. So
for those the reference is re-drawn to the current window's SKU mix (:func:`restratify`). The
SKU mix itself is the outcome check's job (``eval.drift_outcomes``).

**Verdict, weighted by importance.** ``importance`` is the champion's share of split gain per
feature (``eval.drift_reference.combined_importance``). The *key* features are the smallest
set holding ``key_importance`` of it (at most ``max_key_features``). The check is critical when
a key feature is past its critical threshold, or when the drifted features hold at least
``critical_share`` of the importance. It is a warning when a key feature is past its warning
threshold, any feature is past its critical one, or the drifted share reaches ``warn_share``.
A minor feature drifting on its own is reported and stays a warning at most.

**The prompt embedding as a whole** (``eval.drift_embedding``): besides its dimensions one by one,
a domain classifier on all of them. Past its warning threshold the check is a warning at least;
past its critical one it is critical when the embedding holds at least ``warn_share`` of the
importance, else a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from eval.drift_embedding import EmbeddingDrift, EmbeddingDriftRules, embedding_drift
from features.drift_verdict import CheckVerdict, Status
from features.schema import ALL_FEATURES, PROMPT_EMBEDDING_FEATURE_NAMES, FeatureSpec

LOG_SCALE: frozenset[str] = frozenset(
    {
        "prompt_tokens",
        "system_tokens",
        "last_user_tokens",
        "turns",
        "max_tokens",
        "tenant_spend_7d_usd",
        "sku_ttft_p50_1m_ms",
        "sku_ttft_p95_1m_ms",
        "sku_ttft_p95_15m_ms",
        "sku_tpot_p50_15m_ms",
        "sku_queue_depth",
        "tenant_sku_ttft_p50_30d_ms",
        "tenant_sku_requests_30d",
    }
)
SKU_CONDITIONAL_GROUPS = frozenset({"candidate", "sku_live", "tenant_sku"})
NUMERIC_METHOD, CATEGORICAL_METHOD = "wasserstein", "jensenshannon"


@dataclass(frozen=True, slots=True)
class FeatureDriftRules:
    numeric_warn: float = 0.2  # normed Wasserstein, on log1p for LOG_SCALE features
    numeric_critical: float = 0.3
    categorical_warn: float = 0.1  # Jensen–Shannon distance (Evidently's default threshold)
    categorical_critical: float = 0.2
    key_importance: float = 0.8
    max_key_features: int = 8
    warn_share: float = 0.2  # importance share of drifted features
    critical_share: float = 0.5
    min_rows: int = 200  # per side, non-missing values
    reference_rows: int = 20_000
    seed: int = 0
    embedding: EmbeddingDriftRules = field(default_factory=EmbeddingDriftRules)

    def thresholds(self, spec: FeatureSpec) -> tuple[float, float]:
        if spec.kind == "numeric":
            return self.numeric_warn, self.numeric_critical
        return self.categorical_warn, self.categorical_critical


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    name: str
    kind: str
    group: str
    column: str  # the column Evidently saw, e.g. "log1p(prompt_tokens)"
    method: str
    score: float  # NaN when not compared
    warn_threshold: float
    critical_threshold: float
    importance: float
    key: bool
    severity: Status
    reference_rows: int
    current_rows: int
    reference_mean: float  # on the original scale (category index for categoricals)
    current_mean: float
    note: str = ""

    @property
    def compared(self) -> bool:
        return not math.isnan(self.score)

    def describe(self) -> str:
        what = "key feature" if self.key else "feature"
        if self.kind == "numeric":
            change = f"mean {self.reference_mean:,.4g} → {self.current_mean:,.4g}"
        else:
            change = "category shares moved"
        return (
            f"{what} {self.name} drifted ({self.method} {self.score:.3f} ≥ "
            f"{self.warn_threshold if self.severity == 'warning' else self.critical_threshold:g}; "
            f"{change}; importance {self.importance:.1%})"
        )


@dataclass(frozen=True, eq=False)
class FeatureDriftResult:
    features: tuple[FeatureDrift, ...]
    verdict: CheckVerdict
    drifted_importance: float  # importance share of features at warning or worse
    snapshot: Any  # evidently Snapshot (save_html / dict); None when nothing was compared
    unmatched_skus: tuple[str, ...]  # current SKUs with no reference rows (SKU columns not restratified)
    embedding: EmbeddingDrift | None = None  # the prompt embedding as a whole (eval.drift_embedding)


def evidently_column(spec: FeatureSpec) -> str:
    return f"log1p({spec.name})" if spec.name in LOG_SCALE else spec.name


def key_features(importance: Mapping[str, float], rules: FeatureDriftRules) -> frozenset[str]:
    """The most important features holding ``key_importance`` of the total (uniform: all of them)."""
    ranked = sorted(importance.items(), key=lambda item: -item[1])
    total = sum(value for _, value in ranked) or 1.0
    if len({round(value, 12) for _, value in ranked}) <= 1:
        return frozenset(name for name, _ in ranked)
    keys, held = [], 0.0
    for name, value in ranked:
        if held >= rules.key_importance * total or len(keys) >= rules.max_key_features:
            break
        keys.append(name)
        held += value
    return frozenset(keys)


def restratify(reference: pl.DataFrame, skus: pl.Series, n: int, seed: int) -> tuple[pl.DataFrame, list[str]]:
    """``n`` reference rows drawn to the SKU mix of ``skus``; also the SKUs the reference lacks."""
    counts = skus.value_counts(sort=True)
    have = set(reference["sku"].unique().to_list())
    unmatched = [s for s in counts["sku"].to_list() if s not in have]
    counts = counts.filter(pl.col("sku").is_in(list(have)))
    if counts.height == 0:
        return reference.sample(n, with_replacement=reference.height < n, seed=seed), unmatched
    shares = counts["count"].to_numpy() / counts["count"].sum()
    exact = shares * n
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take))[: n - int(take.sum())]] += 1  # largest remainders
    parts = []
    for offset, (sku, k) in enumerate(zip(counts["sku"].to_list(), take, strict=True)):
        if k == 0:
            continue
        pool = reference.filter(pl.col("sku") == sku)
        parts.append(pool.sample(int(k), with_replacement=pool.height < k, seed=seed + offset))
    return pl.concat(parts), unmatched


def _labels(spec: FeatureSpec, values: pl.Series) -> pl.Series:
    if spec.kind == "categorical":
        mapping = {float(i): label for i, label in enumerate(spec.categories)}
        return values.replace_strict(mapping, default="unknown", return_dtype=pl.String)
    flag = pl.when(pl.col("v").is_null()).then(None).when(pl.col("v") > 0.5).then(pl.lit("true"))
    return pl.DataFrame({"v": values}).select(flag.otherwise(pl.lit("false"))).to_series()


def _column(spec: FeatureSpec, frame: pl.DataFrame) -> pl.Series:
    values = frame[spec.name].cast(pl.Float64).fill_nan(None)
    if spec.kind != "numeric":
        return _labels(spec, values).alias(evidently_column(spec))
    if spec.name in LOG_SCALE:
        values = values.clip(lower_bound=0.0).log1p()
    return values.alias(evidently_column(spec))


@dataclass(frozen=True, eq=False)
class DriftFrames:
    reference: pl.DataFrame  # what Evidently compares: one column per feature (labels, log scale)
    current: pl.DataFrame
    reference_rows: pl.DataFrame  # the reference rows behind each group: as sampled ...
    reference_by_sku: pl.DataFrame  # ... and re-drawn to the current SKU mix
    unmatched_skus: list[str]

    def source(self, spec: FeatureSpec) -> pl.DataFrame:
        return self.reference_by_sku if spec.group in SKU_CONDITIONAL_GROUPS else self.reference_rows


def drift_frames(reference: pl.DataFrame, current: pl.DataFrame, rules: FeatureDriftRules) -> DriftFrames:
    """The two frames Evidently compares, with equal schemas, and the reference rows behind them."""
    n = min(reference.height, rules.reference_rows)
    base = reference.sample(n, seed=rules.seed) if reference.height > n else reference
    by_sku, unmatched = restratify(reference, current["sku"], n, rules.seed)
    ref_columns, cur_columns = [], []
    for spec in ALL_FEATURES:
        source = by_sku if spec.group in SKU_CONDITIONAL_GROUPS else base
        ref_columns.append(_column(spec, source))
        cur_columns.append(_column(spec, current))
    return DriftFrames(pl.DataFrame(ref_columns), pl.DataFrame(cur_columns), base, by_sku, unmatched)


def _severity(score: float, warn: float, critical: float) -> Status:
    if math.isnan(score) or score < warn:
        return "ok"
    return "critical" if score >= critical else "warning"


def _mean(values: pl.Series) -> float:
    clean = values.cast(pl.Float64).fill_nan(None).drop_nulls()
    return float(clean.mean()) if clean.len() else float("nan")  # type: ignore[arg-type]


def run_evidently(ref: pl.DataFrame, cur: pl.DataFrame, columns: list[FeatureSpec], rules: FeatureDriftRules):
    """Evidently's DataDriftPreset over ``columns``: the snapshot and each column's score."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [evidently_column(spec) for spec in columns]
    numeric = [evidently_column(s) for s in columns if s.kind == "numeric"]
    categorical = [evidently_column(s) for s in columns if s.kind != "numeric"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=names,
        per_column_method={
            evidently_column(s): NUMERIC_METHOD if s.kind == "numeric" else CATEGORICAL_METHOD
            for s in columns
        },
        per_column_threshold={evidently_column(s): rules.thresholds(s)[0] for s in columns},
        drift_share=rules.warn_share,
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(cur.select(names).to_pandas(), data_definition=definition),
        Dataset.from_pandas(ref.select(names).to_pandas(), data_definition=definition),
    )
    scores: dict[str, tuple[float, str]] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = (float(metric["value"]), str(config.get("method")))
    return snapshot, scores


def evidently_scores(
    ref: pl.DataFrame, cur: pl.DataFrame, columns: list[FeatureSpec], rules: FeatureDriftRules
) -> dict[str, tuple[float, str]]:
    """The same scores as :func:`run_evidently` from Evidently's stat tests alone, without the report.

    The report renders a plotly figure per column (~0.15 s each); a job that only needs the
    verdict (the false-alarm measurement, a tight cron) skips that. A unit test checks both
    paths give the same scores.
    """
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    scores = {}
    for spec in columns:
        column = evidently_column(spec)
        kind = ColumnType.Numerical if spec.kind == "numeric" else ColumnType.Categorical
        method = NUMERIC_METHOD if spec.kind == "numeric" else CATEGORICAL_METHOD
        reference, current = ref[column].drop_nulls().to_pandas(), cur[column].drop_nulls().to_pandas()
        test = get_stattest(reference, current, kind, method)
        result = test(reference, current, kind, rules.thresholds(spec)[0])
        scores[column] = (float(result.drift_score), method)
    return scores


def feature_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    importance: Mapping[str, float],
    rules: FeatureDriftRules = FeatureDriftRules(),
    *,
    render: bool = True,
) -> FeatureDriftResult:
    """Per-feature drift of ``current`` against ``reference`` (frames of ``eval.drift_data``).

    ``render``: run Evidently's report (its snapshot makes the HTML); else only its stat tests.
    """
    frames = drift_frames(reference, current, rules)
    ref, cur = frames.reference, frames.current
    total = sum(importance.get(spec.name, 0.0) for spec in ALL_FEATURES) or 1.0
    weights = {spec.name: importance.get(spec.name, 0.0) / total for spec in ALL_FEATURES}
    keys = key_features(weights, rules)
    comparable = [
        spec
        for spec in ALL_FEATURES
        if ref[evidently_column(spec)].drop_nulls().len() >= rules.min_rows
        and cur[evidently_column(spec)].drop_nulls().len() >= rules.min_rows
    ]
    snapshot, scores = None, {}
    if comparable and render:
        snapshot, scores = run_evidently(ref, cur, comparable, rules)
    elif comparable:
        scores = evidently_scores(ref, cur, comparable, rules)
    results = []
    for spec in ALL_FEATURES:
        column = evidently_column(spec)
        warn, critical = rules.thresholds(spec)
        default_method = NUMERIC_METHOD if spec.kind == "numeric" else CATEGORICAL_METHOD
        score, method = scores.get(column, (float("nan"), default_method))
        note = "" if column in scores else f"not compared: fewer than {rules.min_rows} values on a side"
        results.append(
            FeatureDrift(
                name=spec.name,
                kind=spec.kind,
                group=spec.group,
                column=column,
                method=method,
                score=score,
                warn_threshold=warn,
                critical_threshold=critical,
                importance=weights[spec.name],
                key=spec.name in keys,
                severity=_severity(score, warn, critical),
                reference_rows=ref[column].drop_nulls().len(),
                current_rows=cur[column].drop_nulls().len(),
                reference_mean=_mean(frames.source(spec)[spec.name]),
                current_mean=_mean(current[spec.name]),
                note=note,
            )
        )
    embedding = embedding_drift(frames.reference_rows, current, rules.embedding)
    return _verdict(
        tuple(results),
        rules,
        snapshot,
        tuple(frames.unmatched_skus),
        evaluated=bool(comparable),
        embedding=embedding,
    )


def _verdict(
    results: tuple[FeatureDrift, ...],
    rules: FeatureDriftRules,
    snapshot: Any,
    unmatched: tuple[str, ...],
    *,
    evaluated: bool,
    embedding: EmbeddingDrift | None = None,
) -> FeatureDriftResult:
    drifted = [r for r in results if r.severity != "ok"]
    share = sum(r.importance for r in drifted)
    ordered = sorted(drifted, key=lambda r: (r.severity != "critical", not r.key, -r.importance))
    status: Status = "ok"
    reasons = [r.describe() for r in ordered]
    if any(r.key and r.severity == "critical" for r in drifted) or share >= rules.critical_share:
        status = "critical"
    elif (
        any(r.key for r in drifted)
        or any(r.severity == "critical" for r in drifted)
        or share >= rules.warn_share
    ):
        status = "warning"
    if embedding is not None and embedding.severity != "ok":
        weight = sum(r.importance for r in results if r.name in _EMBEDDING_NAMES)
        worst: Status = (
            "critical" if embedding.severity == "critical" and weight >= rules.warn_share else "warning"
        )
        status = "critical" if "critical" in (status, worst) else "warning"
        reasons.insert(0, embedding.describe() + f"; the embedding holds {weight:.0%} of the importance")
    if drifted:
        reasons.append(f"drifted features hold {share:.0%} of the model's importance")
    if not evaluated:
        reasons = [f"not evaluated: fewer than {rules.min_rows} served rows in the window"]
    verdict = CheckVerdict(status, tuple(reasons), evaluated=evaluated)
    return FeatureDriftResult(results, verdict, share, snapshot, unmatched, embedding)


_EMBEDDING_NAMES = frozenset(PROMPT_EMBEDDING_FEATURE_NAMES)
