"""The drift job on a small simulated world: injected problems are caught and named, clean hours are not.

One module-scoped bootstrap (2 days × 24K requests, ~1K an hour): day 1 is the reference
(what training saw), hours of day 2 are the served windows. Each problem is injected the way it
would happen: a serving-side bug rewrites the vectors the gateway logged (the traffic is
unchanged), a traffic shift is a different workload simulated for day 2, a slower SKU is its
attempts' and outcomes' TTFT doubled.
"""

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from eval.drift import DriftConfig, run_drift
from eval.drift_reference import reference_from_logs
from eval.drift_report import text_summary
from features.drift_verdict import EXIT_CODES, read_verdict
from features.schema import REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES
from serving.safe_mode import SafeModeMonitor
from simulator.bootstrap import BootstrapConfig, run_bootstrap
from simulator.workload import WorkloadParams

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
PER_DAY, TENANTS = 24_000, 400
NOON = datetime(2026, 11, 2, 13, tzinfo=UTC)  # the window 12:00..13:00 of day 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    logs = root / "logs"
    run_bootstrap(
        BootstrapConfig(days=2, requests_per_day=PER_DAY, seed=3, out=logs, start=DAY1, n_tenants=TENANTS)
    )
    reference = reference_from_logs(
        logs, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    )
    config = DriftConfig(
        logs=logs,
        reference="unused",
        out=None,
        state_dir=None,
        feature_repo=None,
        render=False,
        skew_sample=300,
    )
    return root, reference, config


def copy_logs(world_root: Path, name: str) -> Path:
    target = world_root / name
    shutil.copytree(world_root / "logs", target)
    return target


def rewrite(logs: Path, table: str, change, day: date = DAY2) -> None:
    """Apply ``change`` (polars frame → frame) to every part of ``table`` on ``day``, same schema."""
    for part in sorted((logs / table).glob(f"region=*/date={day.isoformat()}/*.parquet")):
        original = pq.read_table(part)
        changed = change(pl.from_arrow(original))
        pq.write_table(changed.to_arrow().cast(original.schema), part)


def in_window(end: datetime = NOON) -> pl.Expr:
    return (pl.col("ts") >= end - timedelta(hours=1)) & (pl.col("ts") < end)


def set_vector(frame: pl.DataFrame, column: str, rows: pl.Series, index: int, values) -> pl.DataFrame:
    matrix = np.array(frame[column].to_list(), dtype=np.float32)
    mask = rows.to_numpy()
    matrix[mask, index] = values(matrix[mask])
    return frame.with_columns(pl.Series(column, list(matrix)))


def test_clean_hours_give_no_critical_verdict(world):
    """The false-alarm rate: every third hour of day 2 against day 1, nothing changed."""
    _, reference, config = world
    statuses = []
    for hour in range(1, 24, 3):
        end = datetime(2026, 11, 2, hour, tzinfo=UTC) + timedelta(hours=1)
        run = run_drift(replace(config, end=end, skew_sample=150), reference=reference)
        statuses.append(run.verdict.status)
        assert run.verdict.check("skew").status == "ok", run.verdict.check("skew").reasons
        assert run.verdict.status != "critical", text_summary(run)
    warnings = statuses.count("warning") / len(statuses)
    print(f"\nfalse alarms over {len(statuses)} clean hours: 0 critical, {warnings:.0%} warning")
    assert warnings <= 0.25


def test_a_token_counting_bug_in_serving_is_critical_skew_on_prompt_tokens(world):
    """The gateway counts the system prompt twice: the traffic is the same, the vector is not."""
    root, reference, config = world
    logs = copy_logs(root, "bug-tokens")
    prompt, system = (
        REQUEST_FEATURE_NAMES.index("prompt_tokens"),
        REQUEST_FEATURE_NAMES.index("system_tokens"),
    )
    rewrite(
        logs,
        "decisions",
        lambda d: set_vector(
            d,
            "request_features",
            d.select(in_window()).to_series(),
            prompt,
            lambda m: m[:, prompt] + m[:, system],
        ),
    )
    state = root / "state-tokens"
    out = root / "reports"
    run = run_drift(
        replace(config, logs=logs, end=NOON, out=out, state_dir=state, render=True), reference=reference
    )
    skew = run.verdict.check("skew")
    assert skew.status == "critical" and skew.reasons[0].startswith("prompt_tokens:"), skew.reasons
    flagged = {s.name for s in run.skew.features if s.severity != "ok"}
    assert flagged == {"prompt_tokens"}  # one feature, named; system_tokens itself is right
    assert EXIT_CODES[run.verdict.status] == 2
    # the verdict file is what serving reads: safe mode switches on, with the reason
    monitor = SafeModeMonitor(state / "verdict.json")
    monitor.refresh()
    assert monitor.active and "prompt_tokens" in monitor.state.reason
    assert read_verdict(state / "verdict.json").report_html == str(run.html)
    # the HTML report: Evidently's page with the verdict on top
    page = run.html.read_text()
    assert 'id="switchyard-drift" data-status="critical"' in page
    assert 'data-check="skew" data-status="critical"' in page and "prompt_tokens" in page
    assert page.count("<script") >= 2 and 'src="http' not in page  # self-contained
    assert run.json is not None and run.json.is_file()


def test_a_unit_change_in_a_store_feature_is_critical_skew_on_that_feature(world):
    """Serving reads sku_ttft_p95_15m_ms in seconds; Feast's point-in-time value is in milliseconds."""
    root, reference, config = world
    logs = copy_logs(root, "bug-units")
    bugged = STORE_FEATURE_NAMES.index("sku_ttft_p95_15m_ms")

    def offline(entities: pl.DataFrame) -> pl.DataFrame:  # a fake Feast: values from (sku, minute)
        base = entities["sku"].str.len_chars().cast(pl.Float64) * 100 + entities["ts"].dt.minute()
        return entities.with_columns(pl.Series(n, base + 10 * k) for k, n in enumerate(STORE_FEATURE_NAMES))

    def served(decisions: pl.DataFrame) -> pl.DataFrame:
        window = decisions.select(in_window()).to_series()
        values = offline(
            decisions.select("request_id", "tenant_id", pl.col("chosen_sku").alias("sku"), "region", "ts")
        )
        matrix = values.select(STORE_FEATURE_NAMES).to_numpy().astype(np.float32)
        matrix[:, bugged] /= 1000.0
        stored = np.where(window.to_numpy()[:, None], matrix, np.float32("nan"))
        return decisions.with_columns(pl.Series("store_features", list(stored)))

    rewrite(logs, "decisions", served)
    run = run_drift(replace(config, logs=logs, end=NOON), reference=reference, store_lookup=offline)
    flagged = [s for s in run.skew.features if s.severity != "ok"]
    assert [s.name for s in flagged] == ["sku_ttft_p95_15m_ms"]
    assert flagged[0].severity == "critical" and flagged[0].median_ratio == pytest.approx(0.001, rel=1e-3)
    assert run.verdict.check("skew").status == "critical"


def test_a_traffic_shift_is_feature_drift_on_the_prompt_features(world):
    """Code snippets three times as common and prompts twice as long, simulated for day 2."""
    root, reference, config = world
    base = WorkloadParams(requests_per_day=PER_DAY)
    shifted = replace(
        base,
        code_snippet_share={task: min(1.0, 3 * share) for task, share in base.code_snippet_share.items()},
        first_turn_median={task: 2 * tokens for task, tokens in base.first_turn_median.items()},
        document_median=2 * base.document_median,
        follow_up_median=2 * base.follow_up_median,
    )
    logs = root / "shifted"
    run_bootstrap(
        BootstrapConfig(days=1, requests_per_day=PER_DAY, seed=3, out=logs, start=DAY2, n_tenants=TENANTS),
        workload=shifted,
    )
    run = run_drift(replace(config, logs=logs, end=NOON, simulated_replay=False), reference=reference)
    drift = run.verdict.check("feature_drift")
    assert drift.status in {"warning", "critical"}, text_summary(run)
    assert "last_user_tokens" in drift.reasons[0] or "prompt_tokens" in drift.reasons[0]
    drifted = {f.name for f in run.features.features if f.severity != "ok"}
    assert {"last_user_tokens", "prompt_tokens"} <= drifted
    assert run.verdict.check("skew").status == "ok"  # the features are computed right: it is the traffic


def test_a_sku_twice_as_slow_is_outcome_drift_on_that_sku(world):
    root, reference, config = world
    logs = copy_logs(root, "slow-sku")
    sku = reference.frame["sku"].value_counts(sort=True)["sku"][1]  # a SKU with plenty of traffic

    def slower(frame: pl.DataFrame) -> pl.DataFrame:
        hit = in_window() & (pl.col("sku") == sku) & pl.col("ttft_ms").is_not_null()
        extra = pl.when(hit).then(pl.col("ttft_ms")).otherwise(0.0)
        return frame.with_columns(pl.col("e2e_ms") + extra, pl.col("ttft_ms") + extra)

    rewrite(logs, "attempts", slower)
    rewrite(logs, "outcomes", slower)
    run = run_drift(replace(config, logs=logs, end=NOON), reference=reference)
    outcome = run.verdict.check("outcome_drift")
    assert outcome.status == "critical" and outcome.reasons[0].startswith(f"SKU {sku}: TTFT"), outcome.reasons
    by_sku = {o.sku: o for o in run.outcomes.skus}
    assert by_sku[sku].ttft_calibration_ratio == pytest.approx(2.0, rel=0.15)
    assert [o.sku for o in run.outcomes.skus if o.severity != "ok"] == [sku]
    assert run.verdict.check("skew").status == "ok"
