"""Prediction and outcome drift: per SKU, did what happened move against what the router predicted?

For each SKU, over the requests it served at the first attempt (the rows where the router's
prediction and the observation are about the same SKU), the current window against the
reference (``eval.drift_data`` frames):

- **TTFT**: the median of observed/predicted TTFT now, divided by the same in the reference
  (*calibration ratio*; medians of logs, and a ratio within ``sigmas`` standard errors of 1
  counts as 1, so a rare SKU's noise is not a finding). Dividing by the prediction takes out what the router already knows
  (a longer prompt, a cache hit), so 2.0 means "this SKU is twice as slow as the router thinks,
  and it was not before". The raw median ratio is reported beside it; when the prediction
  followed the SKU (live stats), a raw ratio past the critical limit is still a warning.
- **Cost**: the median of observed/predicted serving cost, now against the reference.
- **Quality**: observed share of good answers minus mean predicted P(good) (the calibration
  gap), now minus the reference's; without predictions (a rule-based router), the observed
  share alone. Labels are a sample (judge, users), so a change must also exceed ``sigmas``
  standard errors to count.
- **SKU mix**: the router's choices now against the reference period (Jensen–Shannon distance
  and the largest share changes). A learned champion chooses differently from the policy
  that logged its training data by design, so the mix is a warning at most.

Calibration needs the reference's predictions to come from the router that served the window
(``router_version``). Otherwise (the static prior is serving, or the reference is another
policy's) the observed outcomes are compared alone, and a SKU is a warning at most: a SKU that
is now sent other requests cannot be told apart from a SKU that changed.

Every ratio needs ``min_rows`` requests of the SKU on both sides; a SKU below that is listed,
not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.spatial.distance import jensenshannon

from features.drift_verdict import CheckVerdict, Status, worst
from offline.reference import sku_shares


@dataclass(frozen=True, slots=True)
class OutcomeRules:
    min_rows: int = 50
    ttft_warn: float = 1.5  # calibration ratio (or its inverse)
    ttft_critical: float = 1.8
    cost_warn: float = 1.25
    cost_critical: float = 1.5
    quality_warn: float = 0.1  # change of the calibration gap (absolute)
    quality_critical: float = 0.2
    sigmas: float = 3.0  # a change must also exceed this many standard errors (TTFT, cost, quality)
    min_labels: int = 50
    mix_warn: float = 0.2  # Jensen–Shannon distance of the SKU mix


@dataclass(frozen=True, slots=True)
class SkuOutcome:
    sku: str
    reference_rows: int
    current_rows: int
    share_reference: float  # of chosen SKUs
    share_current: float
    ttft_median_reference: float
    ttft_median_current: float
    ttft_calibration_ratio: float  # NaN without predictions
    cost_calibration_ratio: float  # without predictions: the ratio of observed costs (1.0: not significant)
    quality_reference: float  # calibration gap (or observed share without predictions)
    quality_current: float
    quality_labels: tuple[int, int]
    severity: Status
    reasons: tuple[str, ...]

    @property
    def ttft_ratio(self) -> float:
        return _ratio(self.ttft_median_current, self.ttft_median_reference)


@dataclass(frozen=True, eq=False)
class OutcomeResult:
    skus: tuple[SkuOutcome, ...]
    mix_distance: float
    verdict: CheckVerdict
    calibrated: bool  # compared against the router's predictions (else observed outcomes only)


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _fold(ratio: float) -> float:
    """A ratio and its inverse are equally far from 1."""
    return max(ratio, 1.0 / ratio) if ratio > 0 and not math.isnan(ratio) else float("nan")


def _grade(value: float, warn: float, critical: float) -> Status:
    if math.isnan(value) or value < warn:
        return "ok"
    return "critical" if value >= critical else "warning"


def _median(values: pl.Series) -> float:
    clean = values.cast(pl.Float64).fill_nan(None).drop_nulls()
    return float(clean.median()) if clean.len() else float("nan")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _LogMedian:
    """The median of log values and its standard error (1.253 σ/√n), so a ratio of two can be tested."""

    value: float
    se: float

    @classmethod
    def of(cls, values: np.ndarray) -> _LogMedian:
        logs = np.log(values[np.isfinite(values) & (values > 0)])
        if len(logs) < 2:
            return cls(float("nan"), float("nan"))
        return cls(float(np.median(logs)), float(1.2533 * logs.std(ddof=1) / math.sqrt(len(logs))))

    def ratio_to(self, other: _LogMedian, sigmas: float) -> float:
        """exp(this − other), or 1.0 when the difference is within ``sigmas`` standard errors."""
        difference = self.value - other.value
        if math.isnan(difference):
            return float("nan")
        return math.exp(difference) if abs(difference) >= sigmas * math.hypot(self.se, other.se) else 1.0


@dataclass(frozen=True, slots=True)
class _Side:
    rows: int
    ttft_median: float
    observed_ttft: _LogMedian
    ttft: _LogMedian  # calibrated: of observed/predicted per request; else of observed
    cost: _LogMedian
    quality: float
    quality_se: float
    labels: int


def _ratios(rows: pl.DataFrame, observed: str, predicted: str, calibrated: bool) -> np.ndarray:
    values = rows[observed].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    if not calibrated:
        return values
    return values / rows[predicted].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _side(frame: pl.DataFrame, calibrated: bool) -> _Side:
    """One side's numbers; ``calibrated``: against the router's predictions, else observed alone."""
    rows = frame.filter(pl.col("first_attempt_ok"))
    labelled = rows.filter(pl.col("obs_good").is_not_null())
    good = labelled["obs_good"].cast(pl.Float64).to_numpy()
    predicted = labelled["pred_p_quality"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    quality, se = float("nan"), float("nan")
    if len(good):
        with_predictions = calibrated and not np.isnan(predicted).any()
        quality = float(good.mean() - predicted.mean()) if with_predictions else float(good.mean())
        se = float(np.sqrt(max(good.mean() * (1 - good.mean()), 1e-6) / len(good)))
    return _Side(
        rows=rows.height,
        ttft_median=_median(rows["obs_ttft_ms"]),
        observed_ttft=_LogMedian.of(_ratios(rows, "obs_ttft_ms", "pred_ttft_ms", calibrated=False)),
        ttft=_LogMedian.of(_ratios(rows, "obs_ttft_ms", "pred_ttft_ms", calibrated)),
        cost=_LogMedian.of(_ratios(rows, "obs_cost_usd", "pred_cost_usd", calibrated)),
        quality=quality,
        quality_se=se,
        labels=len(good),
    )


def sku_outcome(
    sku: str,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    shares: tuple[float, float],
    rules: OutcomeRules,
    *,
    calibrated: bool = True,
) -> SkuOutcome:
    ref, cur = _side(reference, calibrated), _side(current, calibrated)
    sigmas = rules.sigmas
    measured = cur.ttft.ratio_to(ref.ttft, sigmas)  # calibrated: observed/predicted; else observed
    ttft_calibration = measured if calibrated else float("nan")
    cost_calibration = cur.cost.ratio_to(ref.cost, sigmas)
    raw = cur.observed_ttft.ratio_to(ref.observed_ttft, sigmas)
    grades: list[Status] = []
    reasons: list[str] = []
    enough = min(ref.rows, cur.rows) >= rules.min_rows
    if enough:
        grade = _grade(_fold(measured), rules.ttft_warn, rules.ttft_critical)
        if grade == "ok" and _grade(_fold(raw), rules.ttft_warn, rules.ttft_critical) == "critical":
            grade = "warning"  # slower, but the router's predictions followed it
        if grade != "ok":
            against = (
                f"observed/predicted ×{ttft_calibration:.2f} the reference's" if calibrated else "observed"
            )
            reasons.append(
                f"SKU {sku}: TTFT median {cur.ttft_median:,.0f} ms vs {ref.ttft_median:,.0f} ms in the "
                f"reference; {against} ({cur.rows:,} vs {ref.rows:,} requests)"
            )
        grades.append(grade)
        grade = _grade(_fold(cost_calibration), rules.cost_warn, rules.cost_critical)
        if grade != "ok":
            reasons.append(
                f"SKU {sku}: serving cost is ×{cost_calibration:.2f} what the router predicts, relative "
                "to the reference"
                if calibrated
                else f"SKU {sku}: serving cost per request ×{cost_calibration:.2f} the reference's"
            )
        grades.append(grade)
    if min(ref.labels, cur.labels) >= rules.min_labels:
        change = cur.quality - ref.quality
        se = math.hypot(cur.quality_se, ref.quality_se)
        grade = _grade(abs(change), rules.quality_warn, rules.quality_critical)
        if abs(change) < sigmas * se:
            grade = "ok"
        if grade != "ok":
            reasons.append(
                f"SKU {sku}: quality calibration moved {change:+.3f} ({ref.quality:+.3f} → "
                f"{cur.quality:+.3f}; {cur.labels} vs {ref.labels} labels)"
            )
        grades.append(grade)
    severity = worst(grades)
    if not calibrated and severity == "critical":
        severity = "warning"  # without predictions, routing and the SKU's own change cannot be told apart
    return SkuOutcome(
        sku=sku,
        reference_rows=ref.rows,
        current_rows=cur.rows,
        share_reference=shares[0],
        share_current=shares[1],
        ttft_median_reference=ref.ttft_median,
        ttft_median_current=cur.ttft_median,
        ttft_calibration_ratio=ttft_calibration,
        cost_calibration_ratio=cost_calibration,
        quality_reference=ref.quality,
        quality_current=cur.quality,
        quality_labels=(ref.labels, cur.labels),
        severity=severity,
        reasons=tuple(reasons),
    )


def outcome_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    rules: OutcomeRules = OutcomeRules(),
    *,
    reference_mix: dict[str, float] | None = None,
    router_version: str | None = None,
) -> OutcomeResult:
    """Per-SKU outcome and calibration drift, and the SKU mix (``reference_mix`` or the reference's).

    ``router_version``: the router whose predictions the reference holds. Calibration is compared
    on the current requests that router decided; when it decided fewer than half of them (the
    static prior is serving, or the logs are another policy's), observed outcomes are compared
    without the predictions, and a note says so.
    """
    ref_mix = reference_mix or sku_shares(reference)
    cur_mix = sku_shares(current)
    notes: list[str] = []
    same = current.filter(pl.col("router_version") == router_version) if router_version else current.clear()
    calibrated = router_version is not None and same.height >= 0.5 * current.height
    if calibrated:
        current = same
    elif current.height:
        routers = ", ".join(current["router_version"].unique().sort().to_list())
        notes.append(
            f"predictions not compared: this window was routed by {routers}, the reference's predictions "
            f"are {router_version or 'unknown'}'s; observed outcomes only"
        )
    skus = sorted(set(ref_mix) | set(cur_mix), key=lambda s: -cur_mix.get(s, 0.0))
    results = [
        sku_outcome(
            sku,
            reference.filter(pl.col("sku") == sku),
            current.filter(pl.col("sku") == sku),
            (ref_mix.get(sku, 0.0), cur_mix.get(sku, 0.0)),
            rules,
            calibrated=calibrated,
        )
        for sku in skus
    ]
    p = np.array([ref_mix.get(s, 0.0) for s in skus])
    q = np.array([cur_mix.get(s, 0.0) for s in skus])
    distance = float(jensenshannon(p, q, base=2)) if p.sum() and q.sum() else float("nan")
    reasons = [
        reason for r in sorted(results, key=lambda r: r.severity != "critical") for reason in r.reasons
    ]
    grades = [r.severity for r in results]
    if not math.isnan(distance) and distance >= rules.mix_warn:
        moved = sorted(skus, key=lambda s: -abs(cur_mix.get(s, 0.0) - ref_mix.get(s, 0.0)))[:3]
        changes = ", ".join(f"{s} {ref_mix.get(s, 0.0):.0%} → {cur_mix.get(s, 0.0):.0%}" for s in moved)
        reasons.append(f"the router's SKU mix moved (Jensen–Shannon {distance:.2f}): {changes}")
        grades.append("warning")
    judged = [r for r in results if min(r.reference_rows, r.current_rows) >= rules.min_rows]
    if not judged:
        why = f"not evaluated: no SKU served {rules.min_rows} requests on both sides"
        return OutcomeResult(
            tuple(results), distance, CheckVerdict(worst(grades), (why, *reasons, *notes), False), calibrated
        )
    return OutcomeResult(
        tuple(results), distance, CheckVerdict(worst(grades), (*reasons, *notes)), calibrated
    )
