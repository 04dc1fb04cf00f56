"""What a training run shows people: the printed summary and the plots, from the logs alone."""

import polars as pl

from features.schema import FEATURE_NAMES
from training.gate import GateVerdict
from training.mlflow_log import write_plots
from training.pipeline import TrainResult, format_summary

SUMMARY_KEYS = (
    "quality.auc",
    "quality.log_loss",
    "quality.base_rate_log_loss",
    "quality.ece",
    "ttft_p50_ms.pinball",
    "ttft_p90_ms.pinball",
    "ttft_p50_ms.coverage",
    "ttft_p90_ms.coverage",
    "e2e_p50_ms.pinball",
    "e2e_p50_ms.coverage",
    "output_tokens.mae",
    "output_tokens.mean_actual",
    "policy.cost_multiplier",
    "policy.value",
    "policy.standard_error",
    "policy.cost_per_request_usd",
    "logged_policy.value",
    "logged_policy.cost_per_request_usd",
)


def result(metrics: dict[str, float], *, duplicate_of: str | None = None) -> TrainResult:
    return TrainResult(
        run_id="r",
        router_version="lgbm-x",
        model_sha256="0" * 64,
        version=None if duplicate_of else "2",
        duplicate_of=duplicate_of,
        champion_before="1",
        verdict=GateVerdict(False, "challenger", "champion", ("ok",), ("policy value 0.4 vs champion 0.5",)),
        metrics=metrics,
    )


def test_the_summary_says_the_gates_reasons_and_the_off_policy_comparisons():
    metrics = dict.fromkeys(SUMMARY_KEYS, 0.5) | {
        "policy.value": 0.4123,
        "champion.policy.value": 0.5001,
        "policy.value_minus_champion": -0.0878,
        "policy.value_minus_champion_se": 0.0123,
    }
    text = format_summary(result(metrics))
    assert "SNIPS reward 0.4123" in text and "champion 0.5001" in text
    assert "vs champion    SNIPS difference -0.0878 ± 0.0123 (paired)" in text
    assert "keep as challenger (vs champion): policy value 0.4 vs champion 0.5" in text
    assert "registered switchyard-router v2 → alias 'challenger'" in text
    assert "true quality" not in text and "matched cost" not in text  # the simulated world is eval's
    again = format_summary(result(metrics, duplicate_of="1"))
    assert "identical to the current champion version 1: no new version, no alias moved" in again


def test_the_run_plots_calibration_and_feature_importance(tmp_path):
    curve = pl.DataFrame({"predicted": [0.1, 0.5, 0.9], "observed": [0.15, 0.45, 0.85]})
    importance = {"p_quality": {name: 1.0 / len(FEATURE_NAMES) for name in FEATURE_NAMES}}
    written = write_plots(tmp_path, {"reliability": curve}, importance)
    assert [path.name for path in written] == ["calibration.png", "feature_importance.png"]
    assert all(path.stat().st_size > 10_000 for path in written)
