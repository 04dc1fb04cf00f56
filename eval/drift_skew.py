"""Training–serving skew: the vector the gateway served against the same features recomputed offline.

Drift asks "is the traffic different?"; skew asks "did serving compute the features the way
training does?" A gateway that counts tokens differently, reads a store feature in seconds
instead of milliseconds or serves stale online values feeds the model vectors it never learned
from, even when the traffic is unchanged. So for a sample of served requests each feature is
recomputed offline (``eval.drift_replay``: the same ``features/`` transforms, Feast's
point-in-time retrieval at the request's timestamp, the catalog, the worker's own token count)
and compared value by value with what the decision record says was served.

A value *mismatches* when ``|served − offline| > atol + rtol·|offline|`` (categorical and
binary features: when they differ at all); a value present on one side only mismatches too.
Per feature: the mismatch rate, the median served/offline ratio of the mismatches (1000 reads
"a unit change") and an example. A feature is critical when at least ``critical_rate`` of at
least ``min_rows`` compared values mismatch, a warning from ``warn_rate``; the check is as bad
as its worst feature. Rows a source cannot recompute (null) are not compared; a source that
covers too few rows says so instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from features.drift_verdict import CheckVerdict, Status
from features.schema import ALL_FEATURES, FeatureSpec


@dataclass(frozen=True, slots=True)
class Tolerance:
    atol: float = 0.0
    rtol: float = 0.0


EXACT = Tolerance(atol=1e-6)
FLOAT32 = Tolerance(atol=1e-4, rtol=1e-5)  # the decision record stores float32 vectors


# Instantaneous gauges: served is read at the last push (every few seconds), offline is the
# value at the minute boundary; a real bug (a unit, a wrong source) is far outside this.
GAUGE_TOLERANCE: Mapping[str, Tolerance] = {"sku_queue_depth": Tolerance(atol=2.0, rtol=0.5)}


def default_tolerance(spec: FeatureSpec) -> Tolerance:
    if spec.kind != "numeric":
        return EXACT
    if spec.name in GAUGE_TOLERANCE:
        return GAUGE_TOLERANCE[spec.name]
    if spec.group in {"tenant", "sku_live", "tenant_sku"}:
        return Tolerance(atol=1e-3, rtol=0.02)  # float32 plus online/offline window edges
    return FLOAT32


@dataclass(frozen=True, eq=False)
class Recomputation:
    """One offline source: ``values`` has ``request_id`` and a column per feature it recomputes.

    Null means "not recomputable for this row" (not compared); NaN is a recomputed missing value.
    """

    source: str
    values: pl.DataFrame
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # informational, e.g. how many rows it covered
    warnings: tuple[str, ...] = ()  # the source could not do its job (the check is a warning at least)

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(c for c in self.values.columns if c != "request_id")


@dataclass(frozen=True, slots=True)
class SkewRules:
    warn_rate: float = 0.01
    critical_rate: float = 0.05
    min_rows: int = 50


@dataclass(frozen=True, slots=True)
class FeatureSkew:
    name: str
    source: str
    compared: int
    mismatches: int
    median_ratio: float  # served / offline over mismatching values (NaN when none or undefined)
    median_abs_diff: float
    example: str  # "req_… served 20480 vs offline 5120"
    severity: Status
    tolerance: Tolerance

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else float("nan")

    def describe(self) -> str:
        ratio = "" if math.isnan(self.median_ratio) else f", served/offline median ×{self.median_ratio:.3g}"
        return (
            f"{self.name}: {self.rate:.1%} of {self.compared:,} served values differ from the offline "
            f"recomputation ({self.source}{ratio}; e.g. {self.example})"
        )


@dataclass(frozen=True, eq=False)
class SkewResult:
    features: tuple[FeatureSkew, ...]
    verdict: CheckVerdict
    sampled: int
    notes: tuple[str, ...]


def _severity(rate: float, compared: int, rules: SkewRules) -> Status:
    if compared < rules.min_rows or math.isnan(rate) or rate < rules.warn_rate:
        return "ok"
    return "critical" if rate >= rules.critical_rate else "warning"


def _compare(
    spec: FeatureSpec, served: np.ndarray, offline: np.ndarray, ids: np.ndarray, tolerance: Tolerance
) -> tuple[int, np.ndarray, float, float, str]:
    """Compared count, mismatch mask, median ratio and |diff| of mismatches, and an example."""
    both_nan = np.isnan(served) & np.isnan(offline)
    one_nan = np.isnan(served) ^ np.isnan(offline)
    with np.errstate(invalid="ignore"):
        diff = np.abs(served - offline)
        if spec.kind == "numeric":
            bad = diff > tolerance.atol + tolerance.rtol * np.abs(offline)
        else:
            bad = diff > EXACT.atol
    mismatch = one_nan | (bad & ~both_nan & ~one_nan)
    ratio, size, example = float("nan"), float("nan"), "-"
    if mismatch.any():
        valued = mismatch & ~one_nan
        if valued.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = served[valued] / offline[valued]
            finite = ratios[np.isfinite(ratios)]
            ratio = float(np.median(finite)) if finite.size else float("nan")
            size = float(np.median(diff[valued]))
        i = int(np.flatnonzero(mismatch)[0])
        example = f"{ids[i]} served {_show(spec, served[i])} vs offline {_show(spec, offline[i])}"
    return len(served), mismatch, ratio, size, example


def _show(spec: FeatureSpec, value: float) -> str:
    if math.isnan(value):
        return "missing"
    if spec.kind == "categorical" and 0 <= value < len(spec.categories) and value == int(value):
        return spec.categories[int(value)]
    return f"{value:.6g}"


def compare_served(
    served: pl.DataFrame, recomputations: Sequence[Recomputation], rules: SkewRules = SkewRules()
) -> SkewResult:
    """Per feature and per source that recomputes it, the served values against the offline ones."""
    results = []
    for spec in ALL_FEATURES:
        for source in (r for r in recomputations if spec.name in r.features):
            results.append(_feature_skew(spec, served, source, rules))
    notes = tuple(note for r in recomputations for note in r.notes)
    warnings = tuple(warning for r in recomputations for warning in r.warnings)
    return SkewResult(tuple(results), _verdict(results, rules, notes, warnings), served.height, notes)


def _feature_skew(
    spec: FeatureSpec, served: pl.DataFrame, source: Recomputation, rules: SkewRules
) -> FeatureSkew:
    offline = source.values.select("request_id", pl.col(spec.name).cast(pl.Float64).alias("_offline"))
    joined = (
        served.select("request_id", pl.col(spec.name).cast(pl.Float64).alias("_served"))
        .join(offline, on="request_id", how="inner")
        .filter(pl.col("_offline").is_not_null())
    )
    tolerance = source.tolerances.get(spec.name, default_tolerance(spec))
    compared, mismatch, ratio, size, example = _compare(
        spec,
        joined["_served"].fill_null(float("nan")).to_numpy(),
        joined["_offline"].to_numpy(),
        joined["request_id"].to_numpy(),
        tolerance,
    )
    count = int(mismatch.sum()) if compared else 0
    rate = count / compared if compared else float("nan")
    return FeatureSkew(
        name=spec.name,
        source=source.source,
        compared=compared,
        mismatches=count,
        median_ratio=ratio,
        median_abs_diff=size,
        example=example,
        severity=_severity(rate, compared, rules),
        tolerance=tolerance,
    )


def _verdict(
    results: list[FeatureSkew], rules: SkewRules, notes: tuple[str, ...], warnings: tuple[str, ...]
) -> CheckVerdict:
    evaluated = [r for r in results if r.compared >= rules.min_rows]
    if not evaluated:
        reason = f"not evaluated: no feature had {rules.min_rows} served values to recompute"
        return CheckVerdict("warning" if warnings else "ok", (reason, *warnings, *notes), evaluated=False)
    flagged = sorted(
        (r for r in results if r.severity != "ok"), key=lambda r: (r.severity != "critical", -r.rate)
    )
    status: Status = "warning" if warnings else "ok"
    if flagged:
        status = "critical" if flagged[0].severity == "critical" else "warning"
    return CheckVerdict(status, (*(r.describe() for r in flagged), *warnings, *notes))
