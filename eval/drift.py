"""The drift job (``switchyard drift``, ``make drift-report``): is the served traffic still what the
router was trained on, and is serving computing its features the way training does?

One run looks at one window of served traffic (default: the last hour of the decision log)
against a reference (default: the training sample of the MLflow ``champion``) and gives three
checks, each ``ok`` / ``warning`` / ``critical`` with reasons that name the feature or SKU:

- ``skew`` (``eval.drift_skew``, sources in ``eval.drift_replay``): served vectors against the
  same features recomputed offline, on a sample of the window;
- ``feature_drift`` (``eval.drift_features``): Evidently, per feature, weighted by importance;
- ``outcome_drift`` (``eval.drift_outcomes``): per-SKU calibration of TTFT, cost and quality,
  and the SKU mix.

Outputs (``eval.drift_report``): ``<out>/drift-<time>.html`` (Evidently's report with the verdict
on top), ``<out>/drift-<time>.json``, a one-screen text, and the verdict file serving and
training read (``features.drift_verdict``; docs/adr/0007-drift-verdict-file.md). The exit status
of the CLI is the worst check: 0 ok, 1 warning, 2 critical.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from eval.drift_data import logged_range, served_window
from eval.drift_features import FeatureDriftResult, FeatureDriftRules, feature_drift
from eval.drift_outcomes import OutcomeResult, OutcomeRules, outcome_drift
from eval.drift_reference import DriftReference, parse_range, reference_from_logs, reference_from_run
from eval.drift_replay import record_replay, store_replay
from eval.drift_skew import Recomputation, SkewResult, SkewRules, compare_served
from features.catalog import Catalog, load_catalog
from features.drift_verdict import (
    FEATURE_DRIFT,
    OUTCOME_DRIFT,
    SKEW,
    DriftVerdict,
    publish_verdict,
)
from offline.rows import StoreLookup

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DriftConfig:
    logs: Path = Path("data/gateway-logs")
    mlruns: Path = Path("mlruns")
    reference: str = "champion"  # an alias, a run id, or a date range of the logs
    window: timedelta = timedelta(hours=1)
    end: datetime | None = None  # the window ends here; None: just after the latest decision
    out: Path | None = Path("reports")  # JSON, and the HTML when ``render``; None: neither
    state_dir: Path | None = Path(".switchyard/drift")  # where the verdict is published; None: not
    feature_repo: Path | None = Path("feature_repo")  # Feast replay of store features; None: skipped
    skew_sample: int = 2_000
    simulated_replay: bool = True  # bootstrap logs: recompute request features from regenerated text
    seed: int = 0
    render: bool = True  # run Evidently's report (needed for the HTML)
    prompt_tokens_rtol: float = 0.25
    features: FeatureDriftRules = field(default_factory=FeatureDriftRules)
    skew: SkewRules = field(default_factory=SkewRules)
    outcomes: OutcomeRules = field(default_factory=OutcomeRules)


@dataclass(frozen=True, eq=False)
class DriftRun:
    verdict: DriftVerdict
    reference: DriftReference
    features: FeatureDriftResult
    skew: SkewResult
    outcomes: OutcomeResult
    seconds: dict[str, float]
    html: Path | None = None
    json: Path | None = None
    verdict_file: Path | None = None


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


def load_reference(config: DriftConfig) -> DriftReference:
    """The configured reference: a date range of the logs, or a run (alias or id) in ``mlruns``."""
    span = parse_range(config.reference)
    if span is None:
        return reference_from_run(config.mlruns, config.reference)
    importance, source = None, "uniform (no champion)"
    if (Path(config.mlruns) / "mlflow.db").exists():
        try:
            champion = reference_from_run(config.mlruns, "champion")
            importance, source = champion.importance, f"champion {champion.importance_source}"
        except LookupError:
            pass
    return reference_from_logs(
        config.logs, *span, seed=config.seed, importance=importance, importance_source=source
    )


def current_window(config: DriftConfig) -> tuple[datetime, datetime]:
    if config.end is not None:
        end = config.end if config.end.tzinfo else config.end.replace(tzinfo=UTC)
    else:
        bounds = logged_range(config.logs)
        if bounds is None:
            raise LookupError(f"no decisions under {config.logs}")
        end = bounds[1] + timedelta(microseconds=1)
    return end - config.window, end


def recomputations(
    config: DriftConfig,
    sample: pl.DataFrame,
    catalog: Catalog,
    store_lookup: StoreLookup | None,
) -> list[Recomputation]:
    sources: list[Recomputation] = []
    if config.simulated_replay:
        from eval.drift_sim_replay import simulated_request_replay

        replay = simulated_request_replay(config.logs, sample["request_id"].to_list(), catalog=catalog)
        if replay is not None:
            sources.append(replay)
    sources.append(record_replay(sample, catalog, prompt_tokens_rtol=config.prompt_tokens_rtol))
    if store_lookup is not None:
        sources.append(store_replay(sample, store_lookup))
    return sources


def feast_lookup(feature_repo: Path | None) -> StoreLookup | None:
    """Feast's point-in-time retrieval over an applied repo (opened on first use); None without one."""
    if feature_repo is None or not (Path(feature_repo) / "data" / "registry.db").exists():
        return None
    from offline.feast_adapter import store_lookup

    return store_lookup(Path(feature_repo))


def run_drift(
    config: DriftConfig,
    *,
    reference: DriftReference | None = None,
    store_lookup: StoreLookup | None = None,
    catalog: Catalog | None = None,
    now: datetime | None = None,
    progress: Progress = lambda line: None,
) -> DriftRun:
    """One window against the reference: the three checks, the outputs, the published verdict.

    ``reference`` and ``store_lookup`` default to :func:`load_reference` and Feast over
    ``config.feature_repo``; tests pass their own.
    """
    timer = _Timer()
    catalog = catalog or load_catalog()
    reference = reference or load_reference(config)
    timer.lap("reference")
    start, end = current_window(config)
    current = served_window(config.logs, start, end)
    if current.height == 0:
        raise LookupError(
            f"no served requests in {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC under {config.logs}"
        )
    progress(f"window {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC: {current.height:,} served requests")
    timer.lap("load_window")
    features = feature_drift(
        reference.frame, current, reference.importance, config.features, render=config.render
    )
    timer.lap("feature_drift")
    sample = (
        current.sample(config.skew_sample, seed=config.seed)
        if current.height > config.skew_sample
        else current
    )
    lookup = store_lookup if store_lookup is not None else feast_lookup(config.feature_repo)
    skew = compare_served(sample, recomputations(config, sample, catalog, lookup), config.skew)
    timer.lap("skew")
    outcomes = outcome_drift(
        reference.frame,
        current,
        config.outcomes,
        reference_mix=reference.sku_mix,
        router_version=reference.router_version,
    )
    timer.lap("outcome_drift")
    generated = now or datetime.now(UTC)
    verdict = DriftVerdict(
        verdict_id=f"drift-{end:%Y%m%dT%H%M%SZ}-{generated:%Y%m%dT%H%M%SZ}",
        generated_at=generated,
        window_start=start,
        window_end=end,
        checks={SKEW: skew.verdict, FEATURE_DRIFT: features.verdict, OUTCOME_DRIFT: outcomes.verdict},
        reference=reference.description,
        router_versions=tuple(current["router_version"].unique().sort().to_list()),
        requests=current.height,
    )
    run = DriftRun(verdict, reference, features, skew, outcomes, timer.seconds)
    return _write_outputs(config, run, generated, timer)


def _write_outputs(config: DriftConfig, run: DriftRun, generated: datetime, timer: _Timer) -> DriftRun:
    from dataclasses import replace

    from eval.drift_report import summary_document, write_html

    html_path = json_path = verdict_file = None
    stamp = f"{generated:%Y%m%dT%H%M%SZ}"
    if config.out is not None:
        json_path = Path(config.out) / f"drift-{stamp}.json"
        run = replace(run, json=json_path)
        if config.render:
            html_path = Path(config.out) / f"drift-{stamp}.html"
            run = replace(run, verdict=replace(run.verdict, report_html=str(html_path)), html=html_path)
            write_html(run, run.features.snapshot, html_path)
            timer.lap("html")
    if config.state_dir is not None:
        verdict_file = publish_verdict(config.state_dir, run.verdict)
    run = replace(run, verdict_file=verdict_file, seconds=timer.seconds)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary_document(run), indent=2, default=str))
    return run
