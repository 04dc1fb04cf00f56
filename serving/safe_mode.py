"""Safe mode: should the gateway route with the static rule-based prior instead of the champion, and why?

The drift job (``switchyard drift``, cron-style) writes its verdict to a file
(``features.drift_verdict``, docs/adr/0007-drift-verdict-file.md); this module reads it. Serving
never imports the drift job, Evidently or the training code: the file is the whole contract.

- :func:`safe_mode_state` is the rule, pure: a verdict and a :class:`SafeModePolicy` in, a
  :class:`SafeModeState` (on/off and the reason) out. Critical training–serving skew turns safe
  mode on by default (the model is being fed vectors unlike the ones it learned from); critical
  feature drift or outcome drift only when configured (off by default: the inputs moved, the
  model may still be right). A verdict an operator cleared (``switchyard drift
  --clear-safe-mode``) turns it off, and so does any later verdict without a critical check
  the policy acts on: safe mode is reversible.
- :class:`SafeModeMonitor` is the thin reader: ``refresh()`` re-reads the file when its
  modification time or size changed (one ``stat`` otherwise) and never raises — an
  unreadable file keeps the current state and is counted, like a registry failure;
  ``run()`` polls it every ``poll_interval_s``. The request path reads ``monitor.active``
  (an attribute, no I/O).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.drift_verdict import (
    FEATURE_DRIFT,
    OUTCOME_DRIFT,
    SKEW,
    VERDICT_FILE,
    DriftVerdict,
    VerdictFileError,
    read_verdict,
)

log = logging.getLogger("switchyard.safe_mode")

DEFAULT_VERDICT_FILE = Path(".switchyard/drift") / VERDICT_FILE


class SafeModeSettings(BaseSettings):
    """``SWITCHYARD_SAFE_MODE_*``: where the verdict is and which critical checks switch routing."""

    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_SAFE_MODE_", frozen=True)

    verdict_file: Path | None = Field(
        default=DEFAULT_VERDICT_FILE, description="the drift job's latest verdict; empty: never safe mode"
    )
    poll_s: float = Field(default=15.0, gt=0, description="how often the file is checked (one stat)")
    on_skew: bool = Field(default=True, description="critical training–serving skew → safe mode")
    on_drift: bool = Field(default=False, description="critical feature drift → safe mode")
    on_outcome_drift: bool = Field(default=False, description="critical outcome drift → safe mode")

    @field_validator("verdict_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in {"", "none", "off"} else value

    def policy(self) -> SafeModePolicy:
        return SafeModePolicy(self.on_skew, self.on_drift, self.on_outcome_drift)

    def monitor(self) -> SafeModeMonitor:
        return SafeModeMonitor(self.verdict_file, self.policy(), poll_interval_s=self.poll_s)


@dataclass(frozen=True, slots=True)
class SafeModePolicy:
    on_skew: bool = True
    on_drift: bool = False
    on_outcome_drift: bool = False

    def checks(self) -> tuple[str, ...]:
        enabled = (
            (SKEW, self.on_skew),
            (FEATURE_DRIFT, self.on_drift),
            (OUTCOME_DRIFT, self.on_outcome_drift),
        )
        return tuple(name for name, on in enabled if on)


@dataclass(frozen=True, slots=True)
class SafeModeState:
    active: bool
    reason: str  # one line: why on, or why off
    trigger: str = "none"  # the check that switched it on (a metric label), "none" when off
    verdict_id: str | None = None
    verdict_status: str | None = None  # ok / warning / critical
    verdict_generated_at: float | None = None  # epoch seconds
    checks: dict[str, str] = field(default_factory=dict)  # check → status


OFF_NO_VERDICT = SafeModeState(False, "no drift verdict yet")


def safe_mode_state(verdict: DriftVerdict | None, policy: SafeModePolicy) -> SafeModeState:
    """Safe mode on exactly when the verdict has a critical check the policy acts on and is not cleared."""
    if verdict is None:
        return OFF_NO_VERDICT
    checks = {name: check.status for name, check in verdict.checks.items()}
    off = SafeModeState(
        active=False,
        reason=f"verdict {verdict.verdict_id} is {verdict.status}",
        verdict_id=verdict.verdict_id,
        verdict_status=verdict.status,
        verdict_generated_at=verdict.generated_at.timestamp(),
        checks=checks,
    )
    critical = [name for name in policy.checks() if verdict.check(name).status == "critical"]
    if not critical:
        ignored = [name for name, status in checks.items() if status == "critical"]
        if not ignored:
            return off
        return replace(
            off, reason=f"{off.reason} (critical {', '.join(ignored)}: not configured to switch routing)"
        )
    if verdict.safe_mode_cleared is not None:
        note = verdict.safe_mode_cleared
        why = f"critical {', '.join(critical)} in {verdict.verdict_id}, cleared by {note.by}: {note.reason}"
        return replace(off, reason=why)
    first = verdict.check(critical[0]).reasons
    why = f"critical {', '.join(critical)} in {verdict.verdict_id}" + (f": {first[0]}" if first else "")
    return replace(off, active=True, reason=why, trigger=critical[0])


@dataclass
class SafeModeStats:
    reads: int = 0
    read_errors: int = 0
    last_error: str | None = None
    switches: int = 0


class SafeModeMonitor:
    """The current safe-mode state from the verdict file; ``active`` is what the request path asks."""

    def __init__(
        self,
        verdict_file: Path | None,
        policy: SafeModePolicy = SafeModePolicy(),
        *,
        poll_interval_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verdict_file = None if verdict_file is None else Path(verdict_file)
        self.policy = policy
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self.state = OFF_NO_VERDICT
        self.since = clock()
        self.stats = SafeModeStats()

    @property
    def active(self) -> bool:
        return self.state.active

    def refresh(self) -> bool:
        """Re-read the verdict if the file changed; True when safe mode switched. Never raises."""
        if self.verdict_file is None:
            return False
        try:
            info = self.verdict_file.stat()
        except FileNotFoundError:
            return self._apply(None, None)
        except OSError as error:
            return self._failed(error)
        seen = (info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return False
        try:
            verdict = read_verdict(self.verdict_file)
        except (OSError, VerdictFileError) as error:
            return self._failed(error)
        self.stats.reads += 1
        return self._apply(verdict, seen)

    def _failed(self, error: Exception) -> bool:
        self.stats.read_errors += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        log.warning("safe mode: cannot read %s, keeping the current state: %s", self.verdict_file, error)
        return False

    def _apply(self, verdict: DriftVerdict | None, seen: tuple[int, int] | None) -> bool:
        self._seen = seen
        state = safe_mode_state(verdict, self.policy)
        switched = state.active != self.state.active
        self.state = state
        if switched:
            self.since = self._clock()
            self.stats.switches += 1
            (log.error if state.active else log.warning)(
                "safe mode %s: %s", "ON (static prior router)" if state.active else "off", state.reason
            )
        return switched

    async def run(self) -> None:
        """Poll forever (cancel to stop); the file is read in a thread."""
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(self.poll_interval_s)

    def readyz(self) -> dict[str, Any]:
        """The ``safe_mode`` object of ``/readyz``."""
        state, now = self.state, self._clock()
        age = None if state.verdict_generated_at is None else round(now - state.verdict_generated_at, 1)
        return {
            "active": state.active,
            "reason": state.reason,
            "trigger": state.trigger,
            "since_s": round(now - self.since, 1),
            "verdict_file": None if self.verdict_file is None else str(self.verdict_file),
            "verdict_id": state.verdict_id,
            "verdict_status": state.verdict_status,
            "verdict_age_s": age,
            "checks": dict(state.checks),
            "policy": {
                "on_skew": self.policy.on_skew,
                "on_drift": self.policy.on_drift,
                "on_outcome_drift": self.policy.on_outcome_drift,
            },
            "read_errors": self.stats.read_errors,
            "last_error": self.stats.last_error,
        }
