"""Safe mode: the gateway's switch to the static prior router, driven by the drift verdict file."""

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from features.drift_verdict import (
    FEATURE_DRIFT,
    OUTCOME_DRIFT,
    SKEW,
    CheckVerdict,
    DriftVerdict,
    OperatorNote,
    clear_safe_mode,
    publish_verdict,
)
from serving.safe_mode import SafeModeMonitor, SafeModePolicy, SafeModeSettings, safe_mode_state

T0 = datetime(2026, 11, 3, 12, tzinfo=UTC)


def verdict(skew="ok", drift="ok", outcome="ok", *, hour=0) -> DriftVerdict:
    def check(status, what):
        return CheckVerdict(status, (f"{what} is {status}",) if status != "ok" else ())

    return DriftVerdict(
        verdict_id=f"drift-{hour}",
        generated_at=T0 + timedelta(hours=hour),
        window_start=T0 + timedelta(hours=hour - 1),
        window_end=T0 + timedelta(hours=hour),
        checks={
            SKEW: check(skew, "prompt_tokens skew"),
            FEATURE_DRIFT: check(drift, "prompt_tokens drift"),
            OUTCOME_DRIFT: check(outcome, "SKU x latency"),
        },
    )


def test_critical_skew_turns_safe_mode_on_by_default_and_says_why():
    state = safe_mode_state(verdict(skew="critical"), SafeModePolicy())
    assert state.active and state.trigger == SKEW
    assert "critical skew" in state.reason and "prompt_tokens skew is critical" in state.reason


@pytest.mark.parametrize("check", ["drift", "outcome"])
def test_critical_drift_switches_only_when_configured(check):
    critical = verdict(**{check: "critical"})
    off = safe_mode_state(critical, SafeModePolicy())
    assert not off.active and "not configured to switch routing" in off.reason
    policy = SafeModePolicy(on_drift=check == "drift", on_outcome_drift=check == "outcome")
    assert safe_mode_state(critical, policy).active


def test_warnings_and_no_verdict_leave_the_model_serving():
    assert not safe_mode_state(None, SafeModePolicy()).active
    warned = safe_mode_state(verdict(skew="warning", drift="warning"), SafeModePolicy(on_drift=True))
    assert not warned.active and warned.verdict_status == "warning"


def test_an_operator_clearance_turns_it_off():
    cleared = DriftVerdict(
        **{
            **verdict(skew="critical").__dict__,
            "safe_mode_cleared": OperatorNote(T0, "oncall", "tokenizer change is intended"),
        }
    )
    state = safe_mode_state(cleared, SafeModePolicy())
    assert not state.active and "cleared by oncall: tokenizer change is intended" in state.reason


def test_monitor_follows_the_file_and_is_reversible(tmp_path):
    state_dir = tmp_path / "drift"
    monitor = SafeModeMonitor(state_dir / "verdict.json", SafeModePolicy())
    assert not monitor.refresh() and not monitor.active  # no file yet
    publish_verdict(state_dir, verdict(skew="critical", hour=1))
    assert monitor.refresh() and monitor.active
    assert not monitor.refresh()  # unchanged file: no re-read
    assert monitor.stats.reads == 1
    publish_verdict(state_dir, verdict(hour=2))  # a later clean verdict
    assert monitor.refresh() and not monitor.active
    publish_verdict(state_dir, verdict(skew="critical", hour=3))
    assert monitor.refresh() and monitor.active
    clear_safe_mode(state_dir, OperatorNote(T0, "oncall", "known"))  # `switchyard drift --clear-safe-mode`
    assert monitor.refresh() and not monitor.active
    detail = monitor.readyz()
    assert (
        detail["active"] is False
        and detail["verdict_id"] == "drift-3"
        and detail["checks"][SKEW] == "critical"
    )
    assert detail["policy"] == {"on_skew": True, "on_drift": False, "on_outcome_drift": False}


def test_an_unreadable_verdict_keeps_the_current_state_and_is_counted(tmp_path):
    path = tmp_path / "verdict.json"
    monitor = SafeModeMonitor(path)
    publish_verdict(tmp_path, verdict(skew="critical"))
    monitor.refresh()
    assert monitor.active
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    assert not monitor.refresh() and monitor.active
    path.write_text(json.dumps({"version": 99}))
    assert not monitor.refresh() and monitor.active
    assert monitor.stats.read_errors == 2 and "verdict version 99" in monitor.readyz()["last_error"]


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SWITCHYARD_SAFE_MODE_VERDICT_FILE", str(tmp_path / "v.json"))
    monkeypatch.setenv("SWITCHYARD_SAFE_MODE_ON_DRIFT", "true")
    settings = SafeModeSettings()
    monitor = settings.monitor()
    assert monitor.verdict_file == tmp_path / "v.json" and monitor.policy == SafeModePolicy(on_drift=True)
    assert SafeModeSettings(verdict_file=None).monitor().refresh() is False
    monkeypatch.setenv("SWITCHYARD_SAFE_MODE_VERDICT_FILE", "")
    assert SafeModeSettings().verdict_file is None  # empty: safe mode never on


def test_the_poll_loop_picks_up_a_verdict(tmp_path):
    monitor = SafeModeMonitor(tmp_path / "verdict.json", poll_interval_s=0.01)

    async def scenario():
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.05)
        publish_verdict(tmp_path, verdict(skew="critical"))
        for _ in range(200):
            if monitor.active:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert monitor.active
