"""The verdict file contract: round trip, atomic publication, history, and what training reads."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from features.drift_verdict import (
    FEATURE_DRIFT,
    OUTCOME_DRIFT,
    SKEW,
    CheckVerdict,
    DriftVerdict,
    OperatorNote,
    VerdictFileError,
    flagged_windows,
    publish_verdict,
    read_verdict,
    resolve_verdict,
    verdict_history,
)

DAY = datetime(2026, 11, 3, tzinfo=UTC)


def make(hour: int, *, skew="ok", drift="ok", outcome="ok") -> DriftVerdict:
    return DriftVerdict(
        verdict_id=f"drift-h{hour:02d}",
        generated_at=DAY + timedelta(hours=hour, minutes=5),
        window_start=DAY + timedelta(hours=hour),
        window_end=DAY + timedelta(hours=hour + 1),
        checks={
            SKEW: CheckVerdict(skew, ("prompt_tokens: 100% differ",) if skew != "ok" else ()),
            FEATURE_DRIFT: CheckVerdict(drift),
            OUTCOME_DRIFT: CheckVerdict(outcome, evaluated=False),
        },
        reference="champion (v1)",
        router_versions=("lgbm-abc",),
        requests=36_000,
    )


def test_round_trip_and_status_is_the_worst_check(tmp_path):
    original = make(3, skew="warning", drift="critical")
    path = publish_verdict(tmp_path, original)
    assert path == tmp_path / "verdict.json"
    loaded = read_verdict(path)
    assert loaded == original and loaded.status == "critical"
    document = json.loads(path.read_text())
    assert document["status"] == "critical" and document["checks"]["skew"]["reasons"] == [
        "prompt_tokens: 100% differ"
    ]
    assert document["window"]["start"] == "2026-11-03T03:00:00Z"
    assert not list(tmp_path.glob(".*.tmp")) and (tmp_path / "history" / "drift-h03.json").is_file()


def test_bad_files_are_errors_not_guesses(tmp_path):
    assert read_verdict(tmp_path / "missing.json") is None
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(VerdictFileError, match="not a JSON object"):
        read_verdict(tmp_path / "a.json")
    document = make(1).to_json()
    document["checks"]["skew"]["status"] = "red"
    (tmp_path / "b.json").write_text(json.dumps(document))
    with pytest.raises(VerdictFileError, match="unknown status"):
        read_verdict(tmp_path / "b.json")


def test_training_sees_unresolved_critical_data_checks_over_its_window(tmp_path):
    publish_verdict(tmp_path, make(1, skew="critical"))
    publish_verdict(tmp_path, make(2, drift="warning"))
    publish_verdict(tmp_path, make(5, outcome="critical"))  # outcomes do not flag the data
    publish_verdict(tmp_path, make(30, drift="critical"))  # the next day
    assert [v.verdict_id for v in verdict_history(tmp_path)] == [
        "drift-h01",
        "drift-h02",
        "drift-h05",
        "drift-h30",
    ]
    window = (DAY, DAY + timedelta(days=1))
    assert [v.verdict_id for v in flagged_windows(tmp_path, *window)] == ["drift-h01"]
    resolve_verdict(tmp_path, "drift-h01", OperatorNote(DAY, "oncall", "bug fixed, window re-logged"))
    assert flagged_windows(tmp_path, *window) == []
    assert read_verdict(tmp_path / "history" / "drift-h01.json").resolved.by == "oncall"
    with pytest.raises(FileNotFoundError):
        resolve_verdict(tmp_path, "drift-nope", OperatorNote(DAY, "oncall", "-"))
