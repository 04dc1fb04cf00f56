"""Retrain the task classifier on a subsample of the real routing data and check its gates."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from features.schema import TASK_TYPES
from features.task_classifier import TaskClassifier
from training.task_classifier import TrainingConfig, feature_matrix, report_path, train_task_classifier
from training.task_classifier_onnx import ParityError, onnx_model_bytes, parity_max_diff


def routing_data_dir() -> Path:
    """``../shared/routing_data`` beside the checkout (every developer and CI run has it)."""
    candidates = [
        Path(os.environ["SWITCHYARD_ROUTING_DATA"]) if os.environ.get("SWITCHYARD_ROUTING_DATA") else None,
        Path(__file__).resolve().parents[3] / "shared" / "routing_data",
        Path("/work/shared/routing_data"),
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "routing data not found: expected ../shared/routing_data beside the checkout or SWITCHYARD_ROUTING_DATA"
    )


# A subsample and 2^12 buckets: about 15 s on a 2-CPU machine (the full run takes ~3 min).
QUICK = TrainingConfig(
    bits=12, per_template=3, per_group=10, gsm8k_limit=60, folds=3, max_iter=100, parity_prompts=60
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("task_classifier") / "task_type.onnx"
    report = train_task_classifier(routing_data_dir(), out, seed=7, config=QUICK)
    return out, report


def test_quick_retraining_writes_a_model_and_its_report(trained):
    out, report = trained
    assert json.loads(report_path(out).read_text()) == report
    assert report["model"]["bytes"] == out.stat().st_size
    assert report["data"]["by_source"].keys() >= {"simulated", "mmlu", "gsm8k", "mt_bench", "llmrouter"}
    assert TaskClassifier.load(out).labels == TASK_TYPES


def test_the_onnx_export_matches_scikit_learn(trained):
    _, report = trained
    assert report["parity"]["prompts"] == QUICK.parity_prompts
    assert report["parity"]["max_abs_diff"] <= 1e-5


def test_grouped_held_out_accuracy_clearly_beats_the_majority_class(trained):
    _, report = trained
    grouped = report["grouped_held_out"]
    assert grouped["folds"] == QUICK.folds
    assert grouped["accuracy"] >= grouped["majority_baseline_accuracy"] + 0.2
    assert grouped["balanced_accuracy"] >= 0.5
    matrix = grouped["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == grouped["rows"] == report["data"]["rows"]


def test_the_classifier_beats_the_keyword_rules_it_replaces(trained):
    _, report = trained
    assert report["grouped_held_out"]["accuracy"] > report["keyword_rules_baseline"]["accuracy"]


def test_the_parity_gate_fails_when_the_export_drifts():
    texts = [
        "hello there, how are you?",
        "def f(x): return x + 1  # fix this bug",
        "Summarize this memo in two lines.",
        "Extract every date from this email as JSON.",
        "If all A are B and no B is C, can an A be C? Reason it out.",
        "Write a poem about rain.",
        "Solve 2x + 1 = 9.",
        "Who painted the Mona Lisa?",
    ]
    targets = np.arange(len(TASK_TYPES))
    model = LogisticRegression(max_iter=200).fit(feature_matrix(texts, 8, 1000), targets)
    model_bytes = onnx_model_bytes(model, TASK_TYPES, bits=8, max_chars=1000)
    assert parity_max_diff(model, model_bytes, texts, TASK_TYPES) <= 1e-5
    model.intercept_ = model.intercept_ + np.linspace(0.0, 0.1, len(TASK_TYPES))  # the export is now stale
    with pytest.raises(ParityError):
        parity_max_diff(model, model_bytes, texts, TASK_TYPES)
