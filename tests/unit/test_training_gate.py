"""The promotion gate on hand-made numbers."""

import math

from training.gate import GateRules, ModelEvaluation, decide


def evaluation(
    log_loss: float = 0.60, value: float = 0.50, ess: float = 500.0, cost: float = 0.008
) -> ModelEvaluation:
    return ModelEvaluation(log_loss, value, 0.01, ess, cost)


def test_a_better_candidate_replaces_the_champion():
    verdict = decide(
        evaluation(0.59, 0.52), evaluation(0.60, 0.50), logged_value=0.4, base_rate_log_loss=0.65
    )
    assert verdict.promote and verdict.alias == "champion" and verdict.compared_with == "champion"
    assert not verdict.failed and len(verdict.passed) == 4


def test_log_loss_may_be_slightly_worse_but_not_by_more_than_one_percent():
    champion = evaluation(0.600, 0.50)
    assert decide(evaluation(0.6059, 0.51), champion, logged_value=0.4, base_rate_log_loss=0.65).promote
    refused = decide(evaluation(0.6061, 0.51), champion, logged_value=0.4, base_rate_log_loss=0.65)
    assert not refused.promote and refused.alias == "challenger"
    assert len(refused.failed) == 1 and refused.failed[0].startswith("log-loss 0.6061 vs champion 0.6000")


def test_a_lower_policy_value_is_refused_with_the_reason():
    refused = decide(
        evaluation(0.59, 0.49), evaluation(0.60, 0.50), logged_value=0.4, base_rate_log_loss=0.65
    )
    assert not refused.promote
    assert refused.failed == ("policy value 0.4900 ± 0.0100 vs champion 0.5000 ± 0.0100",)
    assert "keep as challenger (vs champion)" in refused.summary


def test_without_a_champion_the_candidate_must_beat_the_logging_policy_and_the_base_rate():
    assert decide(evaluation(0.60, 0.50), None, logged_value=0.45, base_rate_log_loss=0.65).promote
    refused = decide(evaluation(0.66, 0.40), None, logged_value=0.45, base_rate_log_loss=0.65)
    assert refused.compared_with == "logging policy" and len(refused.failed) == 2
    assert any("vs logging policy 0.4500" in reason for reason in refused.failed)
    assert any("vs base rate 0.6500" in reason for reason in refused.failed)


def test_too_little_evidence_or_nan_never_promotes():
    thin = decide(evaluation(0.5, 0.9, ess=20), None, logged_value=0.4, base_rate_log_loss=0.65)
    assert not thin.promote and thin.failed[0].startswith("effective samples 20")
    assert decide(evaluation(0.5, 0.9, ess=20), None, logged_value=0.4, base_rate_log_loss=0.65,
                  rules=GateRules(min_effective_samples=10)).promote  # fmt: skip
    nan = decide(evaluation(0.5, math.nan), evaluation(), logged_value=0.4, base_rate_log_loss=0.65)
    assert not nan.promote


def test_a_policy_over_budget_is_refused():
    verdict = decide(
        evaluation(0.59, 0.6, cost=0.013), evaluation(), logged_value=0.4, base_rate_log_loss=0.65
    )
    assert not verdict.promote and verdict.failed == ("cost per request $0.0130 vs budget $0.0120",)


def test_input_data_flagged_by_the_drift_monitor_refuses_promotion_whatever_the_numbers():
    better = (evaluation(0.59, 0.52), evaluation(0.60, 0.50))
    flag = "drift-h12 (2026-11-02 12:00..13:00 UTC, critical skew: prompt_tokens: 100% differ)"
    refused = decide(*better, logged_value=0.4, base_rate_log_loss=0.65, data_flags=[flag])
    assert not refused.promote and refused.alias == "challenger"
    assert refused.failed == (f"input data flagged by the drift monitor: {flag}",)
    clean = decide(*better, logged_value=0.4, base_rate_log_loss=0.65, data_flags=[])
    assert clean.promote and clean.passed[0] == "input data: no critical drift verdict covers it"


def test_the_pipeline_reads_the_drift_verdicts_over_everything_it_trained_and_evaluated_on(tmp_path):
    from datetime import UTC, datetime, timedelta

    from features.drift_verdict import CheckVerdict, DriftVerdict, publish_verdict
    from offline.logged import split_dates
    from training.pipeline import data_flags, input_window

    split = split_dates(["2026-11-01", "2026-11-02", "2026-11-03"], 1)
    assert input_window(split) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))

    def verdict(day: int, status: str, check: str = "skew") -> DriftVerdict:
        start = datetime(2026, 11, day, 12, tzinfo=UTC)
        return DriftVerdict(
            f"drift-{day}-{check}",
            start,
            start,
            start + timedelta(hours=1),
            {check: CheckVerdict(status, (f"{check} reason",))},  # type: ignore[arg-type]
        )

    publish_verdict(tmp_path, verdict(2, "critical"))
    publish_verdict(tmp_path, verdict(3, "critical", "outcome_drift"))  # not a data flag
    publish_verdict(tmp_path, verdict(5, "critical", "feature_drift"))  # after the run's input
    (line,) = data_flags(tmp_path, split)
    assert line.startswith("drift-2-skew (2026-11-02 12:00..13:00 UTC, critical skew: skew reason")
