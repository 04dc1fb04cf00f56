"""The drift monitor's verdict file: the contract between the drift job, the gateway and training.

``switchyard drift`` (``eval/drift.py``) writes one :class:`DriftVerdict` per run as JSON, the
gateway's safe-mode switch (``serving/safe_mode.py``) reads the latest one, and the nightly
training reads the history to refuse promoting a model trained on flagged data
(docs/adr/0007-drift-verdict-file.md). None of them imports another: this module is the one
definition of the file, at the bottom layer.

Layout under the drift state directory (default ``.switchyard/drift``)::

    verdict.json                 the latest verdict (what serving polls)
    history/<verdict_id>.json    every verdict ever written (what training reads)

Every write is atomic (a temp file in the same directory, fsynced, then renamed), so a reader
sees the previous file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

VERDICT_VERSION = 1
VERDICT_FILE = "verdict.json"
HISTORY_DIR = "history"

Status = Literal["ok", "warning", "critical"]
STATUSES: tuple[Status, ...] = ("ok", "warning", "critical")
SKEW, FEATURE_DRIFT, OUTCOME_DRIFT = "skew", "feature_drift", "outcome_drift"
CHECKS: tuple[str, ...] = (SKEW, FEATURE_DRIFT, OUTCOME_DRIFT)
DATA_CHECKS: tuple[str, ...] = (SKEW, FEATURE_DRIFT)
"""Checks whose critical verdict flags the logged data itself (training refuses to promote on it).
Outcome drift is not one: learning the world's new outcomes is how the router adapts to them."""
EXIT_CODES: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


class VerdictFileError(ValueError):
    """A verdict file that is not valid JSON or not this contract."""


def worst(statuses: Iterable[str]) -> Status:
    """The most severe of ``statuses`` (``ok`` for none)."""
    ranked = [STATUSES.index(s) for s in statuses]  # type: ignore[arg-type]
    return STATUSES[max(ranked, default=0)]


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    """One check's status and its reasons, one line each, naming the feature or SKU."""

    status: Status
    reasons: tuple[str, ...] = ()
    evaluated: bool = True  # False: not enough data, or no source to compare with (status "ok")


@dataclass(frozen=True, slots=True)
class OperatorNote:
    """An operator's action on a verdict: who, when, why (``--clear-safe-mode`` or ``--resolve``)."""

    at: datetime
    by: str
    reason: str


@dataclass(frozen=True)
class DriftVerdict:
    verdict_id: str  # "drift-<window end, UTC>-<generated>", also the history file name
    generated_at: datetime
    window_start: datetime  # the served traffic the verdict is about: [start, end)
    window_end: datetime
    checks: Mapping[str, CheckVerdict]  # by CHECKS name
    reference: str = ""  # what "normal" was: an MLflow run or a date range of the logs
    router_versions: tuple[str, ...] = ()
    requests: int = 0
    report_html: str | None = None
    safe_mode_cleared: OperatorNote | None = None  # serving ignores this verdict from then on
    resolved: OperatorNote | None = None  # training no longer treats its window as flagged
    version: int = VERDICT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return worst([check.status for check in self.checks.values()])

    def check(self, name: str) -> CheckVerdict:
        return self.checks.get(name, CheckVerdict("ok", evaluated=False))

    def covers(self, start: datetime, end: datetime) -> bool:
        """True when this verdict's window overlaps ``[start, end)``."""
        return self.window_start < end and start < self.window_end

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "verdict_id": self.verdict_id,
            "status": self.status,
            "generated_at": _iso(self.generated_at),
            "window": {"start": _iso(self.window_start), "end": _iso(self.window_end)},
            "checks": {
                name: {"status": c.status, "evaluated": c.evaluated, "reasons": list(c.reasons)}
                for name, c in self.checks.items()
            },
            "reference": self.reference,
            "router_versions": list(self.router_versions),
            "requests": self.requests,
            "report_html": self.report_html,
            "safe_mode_cleared": _note_json(self.safe_mode_cleared),
            "resolved": _note_json(self.resolved),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DriftVerdict:
        try:
            if int(data["version"]) != VERDICT_VERSION:
                raise VerdictFileError(
                    f"verdict version {data['version']}, this code reads {VERDICT_VERSION}"
                )
            checks = {}
            for name, check in data["checks"].items():
                if check["status"] not in STATUSES:
                    raise VerdictFileError(f"check {name}: unknown status {check['status']!r}")
                checks[name] = CheckVerdict(
                    check["status"], tuple(check.get("reasons", ())), bool(check.get("evaluated", True))
                )
            return cls(
                verdict_id=str(data["verdict_id"]),
                generated_at=_parse(data["generated_at"]),
                window_start=_parse(data["window"]["start"]),
                window_end=_parse(data["window"]["end"]),
                checks=checks,
                reference=str(data.get("reference", "")),
                router_versions=tuple(data.get("router_versions", ())),
                requests=int(data.get("requests", 0)),
                report_html=data.get("report_html"),
                safe_mode_cleared=_note(data.get("safe_mode_cleared")),
                resolved=_note(data.get("resolved")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, VerdictFileError):
                raise
            raise VerdictFileError(f"not a drift verdict: {type(error).__name__}: {error}") from None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _note_json(note: OperatorNote | None) -> dict[str, str] | None:
    return None if note is None else {"at": _iso(note.at), "by": note.by, "reason": note.reason}


def _note(data: Mapping[str, str] | None) -> OperatorNote | None:
    return None if not data else OperatorNote(_parse(data["at"]), str(data["by"]), str(data["reason"]))


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> Path:
    """``document`` as JSON at ``path``: temp file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_verdict(path: Path) -> DriftVerdict | None:
    """The verdict at ``path``; None when there is no file. Raises :class:`VerdictFileError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise VerdictFileError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise VerdictFileError(f"{path}: not a JSON object")
    return DriftVerdict.from_json(data)


def publish_verdict(state_dir: Path, verdict: DriftVerdict) -> Path:
    """Write ``verdict`` to the history, then make it the latest (``verdict.json``)."""
    state_dir = Path(state_dir)
    write_json_atomic(state_dir / HISTORY_DIR / f"{verdict.verdict_id}.json", verdict.to_json())
    return write_json_atomic(state_dir / VERDICT_FILE, verdict.to_json())


def clear_safe_mode(state_dir: Path, note: OperatorNote) -> DriftVerdict | None:
    """Mark the latest verdict as cleared for serving (its history entry stays as it was)."""
    latest = read_verdict(Path(state_dir) / VERDICT_FILE)
    if latest is None:
        return None
    cleared = replace(latest, safe_mode_cleared=note)
    write_json_atomic(Path(state_dir) / VERDICT_FILE, cleared.to_json())
    return cleared


def resolve_verdict(state_dir: Path, verdict_id: str, note: OperatorNote) -> DriftVerdict:
    """Mark a historical verdict as resolved: training no longer refuses its window."""
    path = Path(state_dir) / HISTORY_DIR / f"{verdict_id}.json"
    verdict = read_verdict(path)
    if verdict is None:
        raise FileNotFoundError(f"no verdict {verdict_id} under {path.parent}")
    resolved = replace(verdict, resolved=note)
    write_json_atomic(path, resolved.to_json())
    latest = read_verdict(Path(state_dir) / VERDICT_FILE)
    if latest is not None and latest.verdict_id == verdict_id:
        write_json_atomic(Path(state_dir) / VERDICT_FILE, replace(latest, resolved=note).to_json())
    return resolved


def verdict_history(state_dir: Path) -> list[DriftVerdict]:
    """Every readable verdict of the history, oldest window first (unreadable files are skipped)."""
    folder = Path(state_dir) / HISTORY_DIR
    verdicts = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            verdict = read_verdict(path)
        except VerdictFileError:
            continue
        if verdict is not None:
            verdicts.append(verdict)
    return sorted(verdicts, key=lambda v: (v.window_start, v.generated_at))


def flagged_windows(
    state_dir: Path, start: datetime, end: datetime, checks: tuple[str, ...] = DATA_CHECKS
) -> list[DriftVerdict]:
    """Unresolved verdicts with a critical ``checks`` whose window overlaps ``[start, end)``."""
    return [
        v
        for v in verdict_history(state_dir)
        if v.resolved is None
        and v.covers(start, end)
        and any(v.check(name).status == "critical" for name in checks)
    ]
