"""The promotion gate: does a trained router replace the champion? (docs/adr/0003)

Pure: numbers in, a verdict with reasons out. Both the candidate and the current champion are
evaluated by the caller on the *same* held-out window, with the same features and the same
policy code. The candidate becomes ``champion`` only if every check passes:

1. enough evidence: the SNIPS estimate of the candidate's policy rests on at least
   ``min_effective_samples`` effective logged requests;
2. quality head: held-out log-loss not worse than the champion's by more than
   ``max_log_loss_regression`` (relative; 1%) — with no champion, better than predicting the
   training base rate;
3. policy: the SNIPS estimate of mean reward (quality − λ·cost/budget − μ·lateness) at least
   the champion's plus ``min_value_gain`` — with no champion, above the logging policy's own
   mean reward on the same requests plus ``min_value_gain``;
4. budget: the SNIPS estimate of its serving cost per request within the budget (λ is paced
   to the budget on *predicted* costs; this checks it on logged ones);
5. input data: no unresolved critical skew or feature-drift verdict of the drift monitor covers
   the logs the run read (``features.drift_verdict.flagged_windows``; checked when the caller
   passes ``data_flags``).

Otherwise the candidate is registered as ``challenger`` and the failed checks say why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from router_model.registry import CHALLENGER, CHAMPION


@dataclass(frozen=True, slots=True)
class ModelEvaluation:
    """One router on the held-out window."""

    log_loss: float  # quality head on labelled served rows
    policy_value: float  # SNIPS mean reward of its ε = 0 policy
    policy_standard_error: float
    effective_samples: float
    cost_per_request_usd: float  # SNIPS estimate of its serving cost


@dataclass(frozen=True, slots=True)
class GateRules:
    max_log_loss_regression: float = 0.01
    min_value_gain: float = 0.0
    min_effective_samples: float = 100.0
    budget_usd: float = 0.012


@dataclass(frozen=True, slots=True)
class GateVerdict:
    promote: bool
    alias: str
    compared_with: str  # "champion" or "logging policy"
    passed: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def summary(self) -> str:
        verdict = f"promote to {CHAMPION}" if self.promote else f"keep as {CHALLENGER}"
        why = self.failed if self.failed else self.passed
        return f"{verdict} (vs {self.compared_with}): " + "; ".join(why)


def _check(ok: bool, text: str, passed: list[str], failed: list[str]) -> None:
    (passed if ok else failed).append(text)


def _finite(*values: float) -> bool:
    return all(math.isfinite(value) for value in values)


def decide(
    candidate: ModelEvaluation,
    champion: ModelEvaluation | None,
    *,
    logged_value: float,
    base_rate_log_loss: float,
    rules: GateRules = GateRules(),
    data_flags: Sequence[str] | None = None,
) -> GateVerdict:
    """The verdict for ``candidate`` against ``champion`` (or, with none, the logging policy).

    ``data_flags``: the drift monitor's critical verdicts covering the run's input, one line
    each (None: not checked). Any flag refuses promotion, whatever the numbers say.
    """
    passed: list[str] = []
    failed: list[str] = []
    if data_flags is not None:
        _check(
            not data_flags,
            "input data flagged by the drift monitor: " + "; ".join(data_flags)
            if data_flags
            else "input data: no critical drift verdict covers it",
            passed,
            failed,
        )
    _check(
        candidate.effective_samples >= rules.min_effective_samples,
        f"effective samples {candidate.effective_samples:.0f} vs minimum {rules.min_effective_samples:.0f}",
        passed,
        failed,
    )
    if champion is None:
        _check(
            _finite(candidate.log_loss, base_rate_log_loss) and candidate.log_loss < base_rate_log_loss,
            f"log-loss {candidate.log_loss:.4f} vs base rate {base_rate_log_loss:.4f}",
            passed,
            failed,
        )
        _check(
            _finite(candidate.policy_value, logged_value)
            and candidate.policy_value > logged_value + rules.min_value_gain,
            f"policy value {candidate.policy_value:.4f} ± {candidate.policy_standard_error:.4f} "
            f"vs logging policy {logged_value:.4f}",
            passed,
            failed,
        )
        compared_with = "logging policy"
    else:
        limit = champion.log_loss * (1.0 + rules.max_log_loss_regression)
        _check(
            _finite(candidate.log_loss, limit) and candidate.log_loss <= limit,
            f"log-loss {candidate.log_loss:.4f} vs champion {champion.log_loss:.4f} "
            f"(limit {limit:.4f}, +{rules.max_log_loss_regression:.0%})",
            passed,
            failed,
        )
        needed = champion.policy_value + rules.min_value_gain
        _check(
            _finite(candidate.policy_value, needed) and candidate.policy_value >= needed,
            f"policy value {candidate.policy_value:.4f} ± {candidate.policy_standard_error:.4f} "
            f"vs champion {champion.policy_value:.4f} ± {champion.policy_standard_error:.4f}",
            passed,
            failed,
        )
        compared_with = "champion"
    _check(
        _finite(candidate.cost_per_request_usd) and candidate.cost_per_request_usd <= rules.budget_usd,
        f"cost per request ${candidate.cost_per_request_usd:.4f} vs budget ${rules.budget_usd:.4f}",
        passed,
        failed,
    )
    promote = not failed
    return GateVerdict(
        promote, CHAMPION if promote else CHALLENGER, compared_with, tuple(passed), tuple(failed)
    )
