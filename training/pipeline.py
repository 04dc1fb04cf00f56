"""The nightly ``make train-router`` job, wired: one function per stage, I/O here and nowhere else.

feature tables → ``feast apply`` → dataset (Feast point-in-time join) → LightGBM heads → ONNX +
parity → held-out evaluation (heads, off-policy value vs the logging policy and the champion) →
MLflow run + registered version + gate → alias. Deterministic for a seed: the same logs give
byte-identical ONNX bytes, and a model identical to a registered version is not registered again.
"""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from features.catalog import load_catalog
from features.drift_verdict import DATA_CHECKS, flagged_windows
from features.schema import FEATURE_SCHEMA_VERSION
from offline import logged
from offline.feast_adapter import feast_cli, open_repo, point_in_time_features
from offline.reference import reference_document, sku_shares, training_reference_sample
from offline.rows import ModelRows, evaluation_rows
from router_model.artifact import parse_artifact
from router_model.policy import PolicyParams
from router_model.scorer import RouterScorer
from training.dataset import training_rows
from training.evaluation import EvaluationReport, HeldOut, evaluate_stage, gate_input
from training.feature_tables import write_feature_tables
from training.gate import GateRules, GateVerdict, decide
from training.mlflow_log import DIGEST_TAG, RunRecord, TrainingRegistry
from training.train import TrainedRouter, TrainParams, feature_importance, train_router

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    logs: Path = Path("data/logs")
    feature_repo: Path = Path("feature_repo")
    mlruns: Path = Path("mlruns")
    seed: int = 0
    eval_days: int = 1
    max_train_requests: int | None = 300_000  # seeded uniform sample of the training window
    max_eval_requests: int | None = 80_000  # seeded uniform sample of the held-out window
    weight_clip: float = 10.0
    weight_ablation: bool = True  # also fit the quality head with the other weighting and report both
    refresh_features: bool = True  # recompute the feature tables and `feast apply`
    train: TrainParams = field(default_factory=TrainParams)
    policy: PolicyParams = field(default_factory=lambda: PolicyParams(epsilon=0.0))
    gate: GateRules = field(default_factory=GateRules)
    reference_rows: int = 20_000
    drift_dir: Path | None = None  # the drift monitor's state (.switchyard/drift); None: not consulted

    def as_params(self) -> dict[str, str]:
        plain = {
            key: str(value)
            for key, value in asdict(self).items()
            if key not in {"train", "policy", "gate", "logs", "feature_repo", "mlruns", "drift_dir"}
        }
        nested = {
            f"{name}.{k}": str(v)
            for name in ("policy", "gate")
            for k, v in asdict(getattr(self, name)).items()
        }
        return plain | nested | self.train.as_params() | {"feature_schema_version": FEATURE_SCHEMA_VERSION}


@dataclass(frozen=True, eq=False)
class TrainResult:
    run_id: str
    router_version: str
    model_sha256: str
    version: str | None  # None when the model duplicated a registered version
    duplicate_of: str | None
    champion_before: str | None
    verdict: GateVerdict
    metrics: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0


class _Stages:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.progress(f"[{name}] ...")
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.progress(
            f"[{name}] done in {self.seconds[name]:.1f} s (peak RSS so far {peak_rss_mb():,.0f} MB)"
        )


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


@dataclass(frozen=True, eq=False)
class _Data:
    split: logged.TimeSplit
    train_rows: ModelRows
    held_out: HeldOut
    requests: tuple[int, int]  # training and held-out requests (after sampling)


def _load_data(config: TrainConfig, progress: Progress) -> _Data:
    logs = Path(config.logs)
    lookup = partial(point_in_time_features, open_repo(Path(config.feature_repo)))
    split = logged.time_split(logs, config.eval_days)
    train = logged.load_window(
        logs, None, split.test_start, max_requests=config.max_train_requests, seed=config.seed
    )
    held_out = logged.load_window(
        logs, split.test_start, None, max_requests=config.max_eval_requests, seed=config.seed
    )
    train_rows = training_rows(train, lookup, weight_clip=config.weight_clip)
    labels = train_rows.frame["quality_label"].drop_nulls()
    base_rate = float(labels.mean()) if labels.len() else 0.5  # type: ignore[arg-type]
    eval_rows = evaluation_rows(held_out, lookup)
    progress(
        f"  train {split.train_dates[0]}..{split.train_dates[-1]}: {train.height:,} requests → "
        f"{train_rows.frame.height:,} rows; held out {', '.join(split.eval_dates)}: "
        f"{held_out.height:,} requests → {eval_rows.frame.height:,} candidate rows"
    )
    held = HeldOut(eval_rows, logged.logged_outcomes(held_out), base_rate)
    return _Data(split, train_rows, held, (train.height, held_out.height))


def run_training(config: TrainConfig, progress: Progress = print) -> TrainResult:
    stages = _Stages(progress)
    logs, repo_path = Path(config.logs), Path(config.feature_repo)
    if config.refresh_features:
        with stages.stage("feature_tables"):
            progress(f"  {write_feature_tables(logs, logs / 'tenants.parquet', repo_path / 'data')}")
        with stages.stage("feast_apply"):
            feast_cli(repo_path, "apply")
    with stages.stage("dataset"):
        data = _load_data(config, progress)
    with stages.stage("train_export_parity"):
        split = data.split
        metadata = {
            "trained_on": f"{split.train_dates[0]}..{split.train_dates[-1]}",
            "training_rows": str(data.train_rows.frame.height),
            "seed": str(config.seed),
        }
        check_rows = np.vstack([data.held_out.rows.features, data.train_rows.features])
        trained = train_router(data.train_rows, config.train, check_rows=check_rows, extra_metadata=metadata)
        progress(f"  {trained.router_version}: parity max {max(trained.parity.values()):.2e} (limit 1e-5)")
    with stages.stage("evaluate"):
        registry = TrainingRegistry(config.mlruns)
        report = evaluate_stage(
            trained.model_bytes,
            data.held_out,
            registry,
            train_rows=data.train_rows,
            train=config.train,
            policy=config.policy,
            ablation=config.weight_ablation,
        )
    with stages.stage("mlflow_gate"):
        result = _log_and_gate(config, data, trained, report, registry, stages.seconds)
    return replace(result, seconds=stages.seconds, peak_rss_mb=peak_rss_mb())


def _log_and_gate(
    config: TrainConfig,
    data: _Data,
    trained: TrainedRouter,
    report: EvaluationReport,
    registry: TrainingRegistry,
    seconds: dict[str, float],
) -> TrainResult:
    """Gate verdict, MLflow run, and — unless the same model is already registered — version + alias."""
    verdict = decide(
        gate_input(report.candidate),
        None if report.champion is None else gate_input(report.champion),
        logged_value=report.metrics["logged_policy.value"],
        base_rate_log_loss=report.metrics["quality.base_rate_log_loss"],
        rules=replace(config.gate, budget_usd=config.policy.budget_usd),
        data_flags=None if config.drift_dir is None else data_flags(config.drift_dir, data.split),
    )
    digest = hashlib.sha256(trained.model_bytes).hexdigest()
    duplicate_of = registry.version_with_digest(digest)
    metrics = report.metrics | {f"parity.{head}": diff for head, diff in trained.parity.items()}
    metrics |= {f"rows.{head}": float(n) for head, n in trained.rows_per_head.items()}
    metrics |= {"rows.train_requests": float(data.requests[0]), "rows.eval_requests": float(data.requests[1])}
    metrics |= {f"time.{name}_s": s for name, s in seconds.items()} | {"memory.peak_rss_mb": peak_rss_mb()}
    registered = verdict.alias if duplicate_of is None else f"not registered: same model as v{duplicate_of}"
    tags = {
        "router_version": trained.router_version,
        DIGEST_TAG: digest,
        "gate.verdict": registered,
        "gate.compared_with": f"{verdict.compared_with}; champion before: {report.champion_note}",
        "gate.failed": "; ".join(verdict.failed) or "-",
        "gate.passed": "; ".join(verdict.passed) or "-",
    }
    split = data.split
    dates = {"train_dates": ",".join(split.train_dates), "eval_dates": ",".join(split.eval_dates)}
    importance = feature_importance(trained.models)
    record = RunRecord(
        params=config.as_params() | {"logs": str(config.logs)} | dates,
        metrics=metrics,
        tags=tags,
        model_bytes=trained.model_bytes,
        reference_sample=_reference_sample(data.train_rows, trained, config),
        tables=report.tables,
        importance=importance,
        reference_info=reference_document(
            router_version=trained.router_version,
            window=(input_window(split)[0], split.test_start),
            sku_mix=sku_shares(data.train_rows.frame.select("sku")),
            importance_by_head=importance,
            training_rows=data.train_rows.frame.height,
        ),
        summary={
            "verdict": asdict(verdict),
            "champion_before": report.champion_note,
            "duplicate_of": duplicate_of,
        },
    )
    run_id = registry.log_run(record, run_name=trained.router_version)
    version = None
    if duplicate_of is None:
        version = registry.register(run_id, tags)
        registry.set_alias(verdict.alias, version)
        registry.tag_run(run_id, {"registered_version": version, "alias": verdict.alias})
    return TrainResult(
        run_id=run_id,
        router_version=trained.router_version,
        model_sha256=digest,
        version=version,
        duplicate_of=duplicate_of,
        champion_before=report.champion_version,
        verdict=verdict,
        metrics=metrics,
    )


def input_window(split: logged.TimeSplit) -> tuple[datetime, datetime]:
    """``[first training midnight, the day after the last held-out date)``: every log the run reads."""
    first, last = date.fromisoformat(split.train_dates[0]), date.fromisoformat(split.eval_dates[-1])
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
    )


def data_flags(drift_dir: Path, split: logged.TimeSplit) -> list[str]:
    """The drift monitor's unresolved critical skew/drift verdicts over the run's input, one line each."""
    lines = []
    for verdict in flagged_windows(drift_dir, *input_window(split)):
        critical = [name for name in DATA_CHECKS if verdict.check(name).status == "critical"]
        first = verdict.check(critical[0]).reasons[:1]
        lines.append(
            f"{verdict.verdict_id} ({verdict.window_start:%Y-%m-%d %H:%M}..{verdict.window_end:%H:%M} UTC, "
            f"critical {', '.join(critical)}{': ' + first[0] if first else ''})"
        )
    return lines


def _reference_sample(rows: ModelRows, trained: TrainedRouter, config: TrainConfig) -> pl.DataFrame:
    """A seeded sample of the training rows with the model's predictions, for the drift monitor."""
    n = min(config.reference_rows, rows.frame.height)
    keep = np.sort(np.random.default_rng(config.seed).choice(rows.frame.height, n, replace=False))
    features = rows.features[keep]
    predictions = RouterScorer(parse_artifact(trained.model_bytes)).score(features)
    return training_reference_sample(rows.frame[keep], features, predictions, load_catalog())


def format_summary(result: TrainResult) -> str:
    m = result.metrics
    lines = [
        f"router {result.router_version}  sha256 {result.model_sha256[:16]}  run {result.run_id}",
        f"quality head   AUC {m['quality.auc']:.3f}  log-loss {m['quality.log_loss']:.4f} "
        f"(base rate {m['quality.base_rate_log_loss']:.4f})  ECE {m['quality.ece']:.4f}",
        f"TTFT p50/p90   pinball {m['ttft_p50_ms.pinball']:.1f} / {m['ttft_p90_ms.pinball']:.1f} ms  "
        f"coverage {m['ttft_p50_ms.coverage']:.3f} / {m['ttft_p90_ms.coverage']:.3f}",
        f"e2e p50        pinball {m['e2e_p50_ms.pinball']:.1f} ms  coverage {m['e2e_p50_ms.coverage']:.3f}",
        f"output tokens  MAE {m['output_tokens.mae']:.1f} (mean {m['output_tokens.mean_actual']:.1f})",
        f"policy λ={m['policy.cost_multiplier']:g}  SNIPS reward {m['policy.value']:.4f} ± "
        f"{m['policy.standard_error']:.4f}, cost ${m['policy.cost_per_request_usd']:.4f}  "
        f"(logging policy {m['logged_policy.value']:.4f}, ${m['logged_policy.cost_per_request_usd']:.4f}"
        + (f"; champion {m['champion.policy.value']:.4f})" if "champion.policy.value" in m else ")"),
    ]
    if "policy.value_minus_champion" in m:
        lines.append(
            f"vs champion    SNIPS difference {m['policy.value_minus_champion']:+.4f} ± "
            f"{m['policy.value_minus_champion_se']:.4f} (paired)"
        )
    if "ablation.quality.log_loss" in m:
        names = ("unweighted", "weighted") if m["ablation.use_weights"] else ("weighted", "unweighted")
        lines.append(
            f"quality weights  {names[0]} (used) vs {names[1]}: log-loss {m['quality.log_loss']:.4f} vs "
            f"{m['ablation.quality.log_loss']:.4f} / IPW log-loss {m['quality.log_loss_ipw']:.4f} vs "
            f"{m['ablation.quality.log_loss_ipw']:.4f} / SNIPS value {m['policy.value']:.4f} vs "
            f"{m['ablation.policy.value']:.4f}"
        )
    if result.duplicate_of is not None:
        same = "the current champion" if result.duplicate_of == result.champion_before else "registered"
        lines.append(f"identical to {same} version {result.duplicate_of}: no new version, no alias moved")
    else:
        lines.append(f"gate: {result.verdict.summary}")
        lines.append(f"registered switchyard-router v{result.version} → alias '{result.verdict.alias}'")
    timings = "  ".join(f"{name} {s:.1f}s" for name, s in result.seconds.items())
    lines.append(
        f"time: {timings}  total {sum(result.seconds.values()):.1f}s  peak RSS {result.peak_rss_mb:.0f} MB"
    )
    return "\n".join(lines)
