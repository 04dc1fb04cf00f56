"""Task-type classifier: hashed byte n-grams and a linear model scored by onnxruntime.

The featurizer is defined here once and used by training (``training.task_classifier``)
and serving alike. ``hashed_ngrams`` reads at most ``max_chars`` characters: all of a
short text; of a longer one its head and its last ``TAIL_CHARS`` characters (where an
instruction after a pasted document, "... summarize the above", sits). It lower-cases
them, maps digits to ``0``, encodes them as UTF-8 padded with one space on each side, and
emits one bucket index per occurrence of every byte 3-gram and 5-gram, plus the n-grams of
the first ``HEAD_BYTES`` bytes once more under their own key (the request is usually
stated first, before any pasted material). Keys are hashed into ``2**bits``
buckets with a fixed multiplicative hash (not the salted ``hash()``), so the same text
gives the same indices in every process and on every machine.

The feature row of a text is its bucket counts divided by ``sqrt(number of n-grams)``:
every occurrence weighs ``occurrence_weight(n)``. The model is an ONNX graph over the
occurrences: ``Gather`` the weight rows of the buckets, ``MatMul`` by the occurrence
weights (duplicates add up to counts), add the bias, ``Softmax``. Scoring costs
O(n-grams), never a dense ``2**bits`` vector. The graph's metadata records the labels and
the featurizer parameters; ``TaskClassifier`` refuses a model whose featurizer version or
labels differ from this code's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import cache, cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from features.schema import TASK_TYPES

FEATURIZER_VERSION = "1"
DEFAULT_BITS = 15
DEFAULT_MAX_CHARS = 1000
TAIL_CHARS = 200
HEAD_BYTES = 160
NGRAM_SIZES = (3, 5)
MODEL_RESOURCE = "models/task_type.onnx"
"""The packaged model, relative to the ``features`` package."""

FLOAT32_UNIT_ROUNDOFF = 2.0**-24
SUMS_TOLERANCE = 1e-3
"""How far (absolute) ``labels_from_sums`` allows the caller's float64 sums to be from the exact ones."""
SOFTMAX_ALLOWANCE = 1e-4
"""Logit gap beyond which float32 softmax keeps the order (its rounding is ~1e-6 of a logit)."""

INPUT_INDICES = "indices"
INPUT_VALUES = "values"
OUTPUT_PROBABILITIES = "probabilities"

_MASKS = {size: np.uint64((1 << (8 * size)) - 1) for size in NGRAM_SIZES}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEAD_SALT = np.uint64(0xA5A5A5A5A5A5A5A5)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_PAD = b"\0" * 8


def window_lengths(max_chars: int = DEFAULT_MAX_CHARS) -> tuple[int, int]:
    """(head, tail): a text longer than ``max_chars`` is read as its first ``head`` and last ``tail`` characters."""
    tail = min(TAIL_CHARS, max_chars // 2)
    return max_chars - tail, tail


def read_window(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The characters the featurizer reads: all of a short text, else its head and tail joined by a space."""
    if len(text) <= max_chars:
        return text
    head, tail = window_lengths(max_chars)
    return text[:head] + " " + text[-tail:]


def normalized_bytes(text: str) -> bytes:
    """``text`` lower-cased, as UTF-8, with the digits 1-9 mapped to 0."""
    return text.lower().encode("utf-8", "replace").translate(_DIGITS_TO_ZERO)


def featurized_bytes(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> bytes:
    """The bytes whose n-grams are the features: the normalized window, one space on each side."""
    return b" " + normalized_bytes(read_window(text, max_chars)) + b" "


def _windows(data: bytes) -> np.ndarray:
    # Little-endian uint64 windows starting at every byte: window i holds bytes i..i+7, so
    # the n-gram at i is the window's low n bytes (a distinct integer per n-gram and size).
    return np.ndarray((len(data),), dtype="<u8", buffer=data + _PAD, strides=(1,))


def ngram_keys(data: bytes, n: int) -> np.ndarray:
    """The n-gram starting at every position of ``data`` as a little-endian integer (uint64)."""
    return _windows(data)[: max(len(data) - n + 1, 0)] & _MASKS[n]


def ngram_buckets(keys: np.ndarray, *, head: bool, bits: int = DEFAULT_BITS) -> np.ndarray:
    """Bucket indices (int64) of n-gram keys; ``head`` for those of the first ``HEAD_BYTES`` bytes."""
    if head:
        keys = keys ^ _HEAD_SALT
    return ((keys * _GOLDEN) >> np.uint64(64 - bits)).astype(np.int64)  # Fibonacci hashing


def ngram_count(size: np.ndarray | int) -> np.ndarray | int:
    """How many n-gram occurrences ``hashed_ngrams`` emits for ``size`` featurized bytes (element-wise)."""
    head = np.minimum(size, HEAD_BYTES)
    return sum(np.maximum(size - n + 1, 0) + np.maximum(head - n + 1, 0) for n in NGRAM_SIZES)


def hashed_ngrams(text: str, bits: int = DEFAULT_BITS, max_chars: int = DEFAULT_MAX_CHARS) -> np.ndarray:
    """One bucket index (int64, in ``[0, 2**bits)``) per byte n-gram occurrence, unsorted."""
    data = featurized_bytes(text, max_chars)
    size = len(data)
    windows = _windows(data)
    head = min(size, HEAD_BYTES)
    keys = np.concatenate(
        [windows[: max(size - n + 1, 0)] & _MASKS[n] for n in NGRAM_SIZES]
        + [(windows[: max(head - n + 1, 0)] & _MASKS[n]) ^ _HEAD_SALT for n in NGRAM_SIZES]
    )
    keys *= _GOLDEN  # Fibonacci hashing: the top bits of key * 2^64/phi
    return (keys >> np.uint64(64 - bits)).astype(np.int64)


def occurrence_weight(ngrams: int) -> float:
    """Each n-gram occurrence adds this to its bucket: counts / sqrt(number of n-grams)."""
    return 1.0 / math.sqrt(max(ngrams, 1))


def feature_row(
    text: str, bits: int = DEFAULT_BITS, max_chars: int = DEFAULT_MAX_CHARS
) -> tuple[np.ndarray, np.ndarray]:
    """The sparse row the model sees (sorted buckets, float64 values), as training needs it."""
    indices = hashed_ngrams(text, bits, max_chars)
    buckets, counts = np.unique(indices, return_counts=True)
    return buckets, counts * occurrence_weight(indices.size)


def model_metadata(labels: tuple[str, ...], bits: int, max_chars: int) -> dict[str, str]:
    """What the ONNX file records about itself (its ``metadata_props``)."""
    featurizer = {"version": FEATURIZER_VERSION, "bits": bits, "max_chars": max_chars}
    return {"labels": json.dumps(list(labels)), "featurizer": json.dumps(featurizer)}


class TaskClassifier:
    """Scores the task type of a prompt with the packaged (or a given) ONNX model."""

    def __init__(
        self, session: ort.InferenceSession, labels: tuple[str, ...], bits: int, max_chars: int, model: bytes
    ):
        self._session = session
        self._outputs = [OUTPUT_PROBABILITIES]
        self._model = model
        self.labels = labels
        self.bits = bits
        self.max_chars = max_chars

    @classmethod
    def from_bytes(cls, model: bytes, expected_labels: tuple[str, ...] = TASK_TYPES) -> TaskClassifier:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        metadata = session.get_modelmeta().custom_metadata_map
        featurizer = json.loads(metadata["featurizer"])
        labels = tuple(json.loads(metadata["labels"]))
        if featurizer["version"] != FEATURIZER_VERSION:
            raise ValueError(
                f"task classifier built for featurizer {featurizer['version']}, code has {FEATURIZER_VERSION}"
            )
        if labels != expected_labels:
            raise ValueError(f"task classifier labels {labels} differ from {expected_labels}")
        return cls(session, labels, int(featurizer["bits"]), int(featurizer["max_chars"]), model)

    @classmethod
    def load(cls, path: Path | str | None = None) -> TaskClassifier:
        """The model at ``path``; by default the one packaged with ``features``."""
        if path is None:
            return cls.from_bytes(resources.files("features").joinpath(MODEL_RESOURCE).read_bytes())
        return cls.from_bytes(Path(path).read_bytes())

    def score(self, indices: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, in ``labels`` order) of the n-gram bucket indices."""
        values = np.full((1, indices.size), occurrence_weight(indices.size), dtype=np.float32)
        return self._session.run(self._outputs, {INPUT_INDICES: indices, INPUT_VALUES: values})[0][0]

    def probabilities(self, text: str) -> np.ndarray:
        return self.score(hashed_ngrams(text, self.bits, self.max_chars))

    def predict_proba(self, text: str) -> dict[str, float]:
        return dict(zip(self.labels, self.probabilities(text).tolist(), strict=True))

    def predict(self, text: str) -> str:
        return self.labels[int(np.argmax(self.probabilities(text)))]

    def predict_indices(self, texts: Iterable[str]) -> np.ndarray:
        """The label index of each text, exactly as :meth:`predict` (a loop: the graph scores one text per run)."""
        return np.array([int(np.argmax(self.probabilities(text))) for text in texts], dtype=np.int64)

    @cached_property
    def _linear_model(self) -> tuple[np.ndarray, np.ndarray]:
        import onnx.numpy_helper  # only the batch path needs the weights as arrays; serving never imports onnx

        initializers = {
            tensor.name: onnx.numpy_helper.to_array(tensor)
            for tensor in onnx.load_from_string(self._model).graph.initializer
        }
        weights = initializers["weights"].astype(np.float64)
        table = np.column_stack([weights, np.abs(weights).max(axis=1)])
        return table, initializers["bias"].astype(np.float64)

    @property
    def weight_table(self) -> np.ndarray:
        """float64 ``[2**bits, len(labels) + 1]``: each bucket's weights, then their largest magnitude.

        Its rows summed over a text's n-gram occurrences are what :meth:`labels_from_sums`
        reads: a caller that can add those sums up faster than featurizing every text (the
        simulator, whose prompts are made of cached pieces) scores many texts at once.
        """
        return self._linear_model[0]

    def labels_from_sums(self, sums: np.ndarray, ngrams: np.ndarray) -> np.ndarray:
        """Label indices from ``sums`` (``[texts, len(labels) + 1]``: rows of :attr:`weight_table`
        summed over each text's n-gram occurrences, within ``SUMS_TOLERANCE``) and ``ngrams``
        (occurrences per text); -1 where :meth:`predict` might give another label.

        onnxruntime scores in float32. Whatever its summation order, its logit ``c`` is within
        ``γ(N+1)·(v·Σ|w_c| + |b_c|)`` of the exact value, ``γ(m) = m·u/(1 − m·u)``, ``u = 2⁻²⁴``,
        ``v`` the occurrence weight, and ``Σ|w_c|`` at most the sums' last column. Where the
        best logit leads the second by more than twice that (plus ``v · SUMS_TOLERANCE`` for the
        caller's rounding) and an allowance for the softmax's rounding, onnxruntime's argmax is
        the same label.
        """
        bias = self._linear_model[1]
        ngrams = np.asarray(ngrams, dtype=np.int64)
        # the float32 occurrence weight the graph is fed (float64 1/sqrt is correctly rounded, as in Python)
        v = (1.0 / np.sqrt(np.maximum(ngrams, 1))).astype(np.float32).astype(np.float64)
        logits = bias + v[:, None] * sums[:, :-1]
        m = ngrams + 1.0
        gamma = m * FLOAT32_UNIT_ROUNDOFF / (1.0 - m * FLOAT32_UNIT_ROUNDOFF)
        bound = gamma * (v * (sums[:, -1] + SUMS_TOLERANCE) + np.abs(bias).max()) + v * SUMS_TOLERANCE
        ordered = np.sort(logits, axis=1)
        certain = ordered[:, -1] - ordered[:, -2] > 2.0 * bound + SOFTMAX_ALLOWANCE
        return np.where(certain, np.argmax(logits, axis=1), -1)


@cache
def default_task_classifier() -> TaskClassifier:
    """The packaged model, loaded on first use (never at import) and then shared."""
    return TaskClassifier.load()


def predict_task_type(text: str) -> str:
    """The task type of ``text`` (the last user turn): the request feature ``task_type``."""
    return default_task_classifier().predict(text)


def predict_task_types(texts: Iterable[str]) -> list[str]:
    """``predict_task_type`` of each text."""
    classifier = default_task_classifier()
    return [classifier.labels[index] for index in classifier.predict_indices(texts)]
