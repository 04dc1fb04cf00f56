"""Export the task-type logistic regression to ONNX and prove the export scores the same.

The graph takes the n-gram bucket indices ``features.task_classifier.hashed_ngrams`` makes
and their ``occurrence_weight`` instead of a dense ``2**bits`` vector: it gathers the
weight rows of the n-grams and multiplies by the weights, so scoring costs O(n-grams), not
O(buckets). skl2onnx would need the dense vector, which is why the graph is built by hand
with onnx.helper (four nodes: each node costs onnxruntime a few microseconds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from features.task_classifier import (
    INPUT_INDICES,
    INPUT_VALUES,
    OUTPUT_PROBABILITIES,
    TaskClassifier,
    feature_row,
    model_metadata,
)

OPSET = 17
IR_VERSION = 8
PARITY_TOLERANCE = 1e-5


class ParityError(AssertionError):
    """The ONNX model and the scikit-learn model disagree on some row."""


def onnx_model_bytes(model: LogisticRegression, labels: tuple[str, ...], bits: int, max_chars: int) -> bytes:
    """Serialised ONNX graph: Softmax(values @ W[indices] + b)."""
    if tuple(int(c) for c in model.classes_) != tuple(range(len(labels))):
        raise ValueError("the model must be trained on every label, encoded as 0..n-1")
    weights = np.ascontiguousarray(model.coef_.T, dtype=np.float32)  # (buckets, classes)
    if weights.shape[0] != 1 << bits:
        raise ValueError(f"model has {weights.shape[0]} features, featurizer makes {1 << bits}")
    bias = model.intercept_.astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["weights", INPUT_INDICES], ["rows"], axis=0),
        helper.make_node("MatMul", [INPUT_VALUES, "rows"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_PROBABILITIES], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "task_type_classifier",
        inputs=[
            helper.make_tensor_value_info(INPUT_INDICES, TensorProto.INT64, ["ngrams"]),
            helper.make_tensor_value_info(INPUT_VALUES, TensorProto.FLOAT, [1, "ngrams"]),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT_PROBABILITIES, TensorProto.FLOAT, [1, len(labels)])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="switchyard.training.task_classifier",
        doc_string="Task-type classifier over hashed n-grams (features.task_classifier).",
    )
    onnx_model.ir_version = IR_VERSION
    helper.set_model_props(onnx_model, model_metadata(labels, bits, max_chars))
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


def parity_max_diff(
    model: LogisticRegression, model_bytes: bytes, texts: Sequence[str], labels: tuple[str, ...]
) -> float:
    """Largest |p_sklearn - p_onnxruntime| over ``texts``; raises ``ParityError`` past 1e-5."""
    classifier = TaskClassifier.from_bytes(model_bytes, expected_labels=labels)
    worst = 0.0
    for text in texts:
        indices, values = feature_row(text, classifier.bits, classifier.max_chars)
        row = np.zeros((1, 1 << classifier.bits), dtype=np.float64)
        row[0, indices] = values
        expected = model.predict_proba(row)[0]
        got = classifier.probabilities(text)
        worst = max(worst, float(np.max(np.abs(expected - got))))
    if worst > PARITY_TOLERANCE:
        raise ParityError(f"ONNX and scikit-learn probabilities differ by {worst:.2e} > {PARITY_TOLERANCE}")
    return worst
