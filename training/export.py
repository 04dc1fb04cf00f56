"""LightGBM heads → one ONNX router artifact, with a parity gate.

Each head is converted with onnxmltools, its graph is prefixed, re-wired to the shared
``features`` input and reduced to a flat ``[n]`` output (the positive-class probability
for the quality classifier); the heads are then merged into a single graph so serving
scores every candidate of a request in one onnxruntime call.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxmltools
from lightgbm import LGBMClassifier, LGBMModel
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType

from router_model.artifact import HEADS, INPUT_NAME

TARGET_OPSET = 15


class ParityError(RuntimeError):
    """ONNX and LightGBM predictions disagree beyond tolerance."""


def _head_graph(name: str, model: LGBMModel, n_features: int) -> tuple[list, list, str]:
    onnx_model = onnxmltools.convert_lightgbm(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        zipmap=False,
    )
    prefixed = onnx.compose.add_prefix(onnx_model, f"{name}__")
    nodes = list(prefixed.graph.node)
    for node in nodes:
        node.input[:] = [INPUT_NAME if value == f"{name}__{INPUT_NAME}" else value for value in node.input]
    initializers = list(prefixed.graph.initializer)
    if isinstance(model, LGBMClassifier):
        probabilities = next(o.name for o in prefixed.graph.output if "probabilities" in o.name)
        index = f"{name}__positive_index"
        initializers.append(helper.make_tensor(index, TensorProto.INT64, [], [1]))
        nodes.append(helper.make_node("Gather", [probabilities, index], [name], axis=1))
    else:
        (output,) = prefixed.graph.output
        shape = f"{name}__flat_shape"
        initializers.append(helper.make_tensor(shape, TensorProto.INT64, [1], [-1]))
        nodes.append(helper.make_node("Reshape", [output.name, shape], [name]))
    return nodes, initializers, name


def export_router(models: dict[str, LGBMModel], n_features: int, metadata: dict[str, str]) -> bytes:
    """One ONNX model with an output per head in ``HEADS`` order."""
    if set(models) != set(HEADS):
        raise ValueError(f"need exactly the heads {HEADS}, got {sorted(models)}")
    nodes: list = []
    initializers: list = []
    outputs = []
    for head in HEADS:
        head_nodes, head_initializers, output = _head_graph(head, models[head], n_features)
        nodes += head_nodes
        initializers += head_initializers
        outputs.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, [None]))
    graph = helper.make_graph(
        nodes,
        "switchyard_router",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
        outputs,
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TARGET_OPSET), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="switchyard-training",
    )
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def lightgbm_predictions(models: dict[str, LGBMModel], rows: np.ndarray) -> dict[str, np.ndarray]:
    """What each head predicts in LightGBM itself (the reference for parity)."""
    predictions = {}
    for head, model in models.items():
        if isinstance(model, LGBMClassifier):
            predictions[head] = model.predict_proba(rows)[:, 1]
        else:
            predictions[head] = model.predict(rows)
    return predictions


def check_parity(
    onnx_predictions: dict[str, np.ndarray], reference: dict[str, np.ndarray], *, tolerance: float = 1e-5
) -> dict[str, float]:
    """Largest difference per head; raises :class:`ParityError` when one exceeds ``tolerance``.

    The difference is relative to the larger of 1, the value and the head's mean magnitude over
    the rows, so float32 rounding is not mistaken for a conversion bug: ONNX sums the trees in
    float32, and its rounding grows with the partial sums, which start at the base value (about
    the head's mean). A prediction near 0 of a head whose mean is 400 tokens carries float32 noise
    of a few 1e-5 tokens; a conversion bug moves a prediction by a whole leaf value.
    """
    differences = {}
    for head, expected in reference.items():
        actual = onnx_predictions[head].astype(np.float64)
        typical = float(np.mean(np.abs(expected))) if len(expected) else 0.0
        scale = np.maximum(max(1.0, typical), np.abs(expected))
        differences[head] = float(np.max(np.abs(actual - expected) / scale)) if len(expected) else 0.0
    failed = {head: diff for head, diff in differences.items() if diff > tolerance}
    if failed:
        raise ParityError(f"ONNX and LightGBM disagree beyond {tolerance}: {failed}")
    return differences
