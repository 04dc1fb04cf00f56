"""Train the task-type classifier offline, evaluate it honestly, export it to ONNX.

    python -m training.task_classifier --routing-data ../shared/routing_data \\
        --out features/models/task_type.onnx

Data: simulated prompts (``training.task_prompts``) plus labelled real prompts from the
routing data (``training.task_corpus``). Model: multinomial logistic regression on the
hashed n-gram rows of ``features.task_classifier``. Evaluation: out-of-fold predictions
of a K-fold split grouped by template / subject / dataset (no group is ever scored by a
model that trained on it), and a cross-dataset check (train without MT-Bench, score
MT-Bench). The shipped model is refitted on all rows, exported, and must match
scikit-learn within 1e-5 on prompts it never saw before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from features.schema import TASK_TYPES
from features.task_classifier import DEFAULT_BITS, DEFAULT_MAX_CHARS, feature_row
from features.text_signals import keyword_task_type
from training.task_classifier_onnx import onnx_model_bytes, parity_max_diff
from training.task_corpus import LabelledPrompt, routing_data_prompts
from training.task_prompts import simulated_prompts

CROSS_DATASET_SOURCE = "mt_bench"


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    bits: int = DEFAULT_BITS
    max_chars: int = DEFAULT_MAX_CHARS
    regularisation_c: float = 3.0
    max_iter: int = 300
    folds: int = 5
    per_template: int = 40
    """Simulated prompts per template (before deduplication)."""
    per_group: int | None = 150
    """Cap on prompts per real group (an MMLU subject, an LLMRouter source)."""
    gsm8k_limit: int | None = 1000
    parity_prompts: int = 300


def labelled_prompts(routing_data: Path | None, config: TrainingConfig, seed: int) -> list[LabelledPrompt]:
    rows = simulated_prompts(config.per_template, seed)
    if routing_data is not None:
        rows += routing_data_prompts(routing_data, config.per_group, config.gsm8k_limit)
    return rows


def feature_matrix(texts: Sequence[str], bits: int, max_chars: int) -> sparse.csr_matrix:
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for text in texts:
        row_indices, row_values = feature_row(text, bits, max_chars)
        indices.append(row_indices)
        values.append(row_values)
        indptr.append(indptr[-1] + row_indices.size)
    return sparse.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(texts), 1 << bits),
    )


def fit(
    features: sparse.csr_matrix, targets: np.ndarray, config: TrainingConfig
) -> tuple[LogisticRegression, bool]:
    """(model, converged): class-balanced multinomial logistic regression."""
    model = LogisticRegression(C=config.regularisation_c, max_iter=config.max_iter, class_weight="balanced")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, targets)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, converged


def accuracy_summary(truth: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> dict[str, object]:
    """Accuracy overall and per class, the confusion matrix (rows: truth), the majority baseline."""
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = {
        label: {
            "recall": round(float(confusion[k, k] / support[k]), 4) if support[k] else None,
            "precision": round(float(confusion[k, k] / confusion[:, k].sum()), 4)
            if confusion[:, k].sum()
            else None,
            "support": int(support[k]),
        }
        for k, label in enumerate(labels)
    }
    recalls = [v["recall"] for v in per_class.values() if v["recall"] is not None]
    return {
        "rows": int(truth.size),
        "accuracy": round(float(np.mean(truth == predicted)), 4) if truth.size else None,
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else None,
        "majority_baseline_accuracy": round(float(support.max() / truth.size), 4) if truth.size else None,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "rows_are": "truth", "matrix": confusion.tolist()},
    }


def grouped_out_of_fold(
    features: sparse.csr_matrix, targets: np.ndarray, groups: np.ndarray, config: TrainingConfig, seed: int
) -> tuple[np.ndarray, bool]:
    """Every row predicted by a model that never saw its group."""
    predicted = np.empty_like(targets)
    converged = True
    folds = GroupKFold(n_splits=config.folds, shuffle=True, random_state=seed)
    for train, test in folds.split(features, targets, groups):
        model, fold_converged = fit(features[train], targets[train], config)
        predicted[test] = model.predict(features[test])
        converged &= fold_converged
    return predicted, converged


def _by_source(rows: Sequence[LabelledPrompt], truth: np.ndarray, predicted: np.ndarray) -> dict[str, object]:
    sources = np.array([row.source for row in rows])
    hits = truth == predicted
    return {
        str(source): {
            "rows": int(np.sum(sources == source)),
            "accuracy": round(float(np.mean(hits[sources == source])), 4),
        }
        for source in sorted(set(sources))
    }


def _cross_dataset(
    rows: Sequence[LabelledPrompt], features: sparse.csr_matrix, targets: np.ndarray, config: TrainingConfig
) -> dict[str, object] | None:
    held = np.array([row.source == CROSS_DATASET_SOURCE for row in rows])
    if not held.any():
        return None
    model, converged = fit(features[~held], targets[~held], config)
    predicted = model.predict(features[held])
    summary = accuracy_summary(targets[held], predicted, TASK_TYPES)
    groups = np.array([row.group for row in rows])[held]
    summary["per_group_accuracy"] = {
        str(group): round(float(np.mean(predicted[groups == group] == targets[held][groups == group])), 4)
        for group in sorted(set(groups))
    }
    summary["converged"] = converged
    return summary


def train_task_classifier(
    routing_data_dir: Path | None, out: Path, seed: int, config: TrainingConfig | None = None
) -> dict[str, object]:
    """Train, evaluate, export to ``out`` and write ``<out stem>.report.json`` beside it."""
    config = config or TrainingConfig()
    started = time.perf_counter()
    rows = labelled_prompts(routing_data_dir, config, seed)
    targets = np.array([TASK_TYPES.index(row.label) for row in rows])
    groups = np.array([row.group for row in rows])
    features = feature_matrix([row.text for row in rows], config.bits, config.max_chars)

    out_of_fold, cv_converged = grouped_out_of_fold(features, targets, groups, config, seed)
    grouped = accuracy_summary(targets, out_of_fold, TASK_TYPES)
    grouped |= {"folds": config.folds, "groups": len(set(groups)), "converged": cv_converged}
    grouped["by_source"] = _by_source(rows, targets, out_of_fold)
    real = np.array([row.source != "simulated" for row in rows])
    grouped["real_prompts_only"] = accuracy_summary(targets[real], out_of_fold[real], TASK_TYPES)
    keyword = np.array([TASK_TYPES.index(keyword_task_type(row.text)) for row in rows])

    model, converged = fit(features, targets, config)
    model_bytes = onnx_model_bytes(model, TASK_TYPES, config.bits, config.max_chars)
    trained_on = {row.text for row in rows}
    fresh = (row.text for row in simulated_prompts(2, seed + 1) if row.text not in trained_on)
    unseen = list(islice(fresh, config.parity_prompts))
    parity = parity_max_diff(model, model_bytes, unseen, TASK_TYPES)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model_bytes)
    report: dict[str, object] = {
        "model": {
            "file": out.name,
            "bytes": len(model_bytes),
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "labels": list(TASK_TYPES),
            "kind": "multinomial logistic regression over hashed n-grams, scored as Gather+MatMul+Softmax",
            "converged": converged,
            "iterations": int(np.max(model.n_iter_)),
        },
        "config": asdict(config) | {"seed": seed},
        "data": {
            "rows": len(rows),
            "by_label": dict(Counter(row.label for row in rows)),
            "by_source": dict(Counter(row.source for row in rows)),
            "groups": len(set(groups)),
            "routing_data": routing_data_dir is not None,
        },
        "grouped_held_out": grouped,
        "cross_dataset_mt_bench": _cross_dataset(rows, features, targets, config),
        "keyword_rules_baseline": accuracy_summary(targets, keyword, TASK_TYPES),
        "parity": {"prompts": len(unseen), "max_abs_diff": parity, "tolerance": 1e-5},
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    report_path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def report_path(model_path: Path) -> Path:
    """``task_type.onnx`` -> ``task_type.report.json``."""
    return model_path.with_name(model_path.stem + ".report.json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--routing-data",
        type=Path,
        default=None,
        help="routing_data folder; omit to train on simulated prompts only",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the ONNX model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bits", type=int, default=DEFAULT_BITS, help="log2 of the number of hash buckets")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="characters read per prompt")
    args = parser.parse_args(argv)
    config = TrainingConfig(bits=args.bits, max_chars=args.max_chars)
    report = train_task_classifier(args.routing_data, args.out, args.seed, config)
    grouped = report["grouped_held_out"]
    assert isinstance(grouped, dict)
    headline = ("accuracy", "balanced_accuracy", "majority_baseline_accuracy")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {report_path(args.out)}")
    print("grouped held-out:", json.dumps({key: grouped[key] for key in headline}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
