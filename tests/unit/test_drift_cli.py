"""`switchyard drift`: exit status for alerting, outputs, and the operator's two overrides."""

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from features.drift_verdict import read_verdict
from features.schema import ALL_FEATURES
from simulator.bootstrap import BootstrapConfig, run_bootstrap
from switchyard_cli.drift import CANNOT_RUN, parse_duration
from switchyard_cli.main import app


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-cli") / "logs"
    run_bootstrap(
        BootstrapConfig(
            days=2, requests_per_day=12_000, seed=5, out=root, start=date(2026, 11, 1), n_tenants=200
        )
    )
    return root


def drift(*args: str):
    return CliRunner().invoke(app, ["drift", *args])


def test_a_clean_window_exits_zero_or_one_and_publishes_its_verdict(logs, tmp_path):
    state, out = tmp_path / "state", tmp_path / "reports"
    result = drift(
        "--logs", str(logs), "--reference", "2026-11-01..2026-11-01", "--end", "2026-11-02T13:00",
        "--mlruns", str(tmp_path / "mlruns"), "--feature-repo", str(tmp_path / "none"),
        "--out", str(out), "--state-dir", str(state), "--skew-sample", "100", "--no-html",
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    assert "VERDICT" in result.output and "window 2026-11-02 12:00..13:00 UTC" in result.output
    verdict = read_verdict(state / "verdict.json")
    assert verdict is not None and verdict.status != "critical" and verdict.requests > 200
    assert result.exit_code == {"ok": 0, "warning": 1}[verdict.status]
    (summary,) = out.glob("drift-*.json")
    document = json.loads(summary.read_text())
    assert document["verdict"]["verdict_id"] == verdict.verdict_id and len(document["features"]) == len(
        ALL_FEATURES
    )
    embedding = document["prompt_embedding"]  # a clean window's prompts: no classifier tells them apart
    assert embedding["severity"] == "ok" and 0.4 < embedding["auc"] < 0.65 and embedding["current_rows"] > 200

    cleared = drift("--clear-safe-mode", "--state-dir", str(state), "--reason", "known tokenizer change")
    assert cleared.exit_code == 0 and "safe mode cleared" in cleared.output
    assert read_verdict(state / "verdict.json").safe_mode_cleared.reason == "known tokenizer change"
    resolved = drift("--resolve", verdict.verdict_id, "--state-dir", str(state), "--reason", "reviewed")
    assert resolved.exit_code == 0 and "training no longer refuses" in resolved.output


def test_what_cannot_run_exits_three(logs, tmp_path):
    assert drift("--logs", str(tmp_path / "none")).exit_code == CANNOT_RUN
    no_champion = drift(
        "--logs", str(logs), "--mlruns", str(tmp_path / "mlruns"), "--no-publish", "--no-html"
    )
    assert no_champion.exit_code == CANNOT_RUN and "switchyard train" in no_champion.output
    assert drift("--clear-safe-mode", "--state-dir", str(tmp_path)).exit_code == CANNOT_RUN  # no --reason


def test_durations():
    assert parse_duration("90s").total_seconds() == 90 and parse_duration("1h").total_seconds() == 3600
    assert parse_duration("2d").days == 2
