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
from functools import cache
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

INPUT_INDICES = "indices"
INPUT_VALUES = "values"
OUTPUT_PROBABILITIES = "probabilities"

_MASKS = {size: np.uint64((1 << (8 * size)) - 1) for size in NGRAM_SIZES}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEAD_SALT = np.uint64(0xA5A5A5A5A5A5A5A5)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_PAD = b"\0" * 8


def hashed_ngrams(text: str, bits: int = DEFAULT_BITS, max_chars: int = DEFAULT_MAX_CHARS) -> np.ndarray:
    """One bucket index (int64, in ``[0, 2**bits)``) per byte n-gram occurrence, unsorted."""
    if len(text) > max_chars:
        tail = min(TAIL_CHARS, max_chars // 2)
        text = text[: max_chars - tail] + " " + text[-tail:]
    data = (" " + text.lower() + " ").encode("utf-8", "replace").translate(_DIGITS_TO_ZERO)
    size = len(data)
    # Little-endian uint64 windows starting at every byte: window i holds bytes i..i+7, so
    # the n-gram at i is the window's low n bytes (a distinct integer per n-gram and size).
    windows = np.ndarray((size,), dtype="<u8", buffer=data + _PAD, strides=(1,))
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

    def __init__(self, session: ort.InferenceSession, labels: tuple[str, ...], bits: int, max_chars: int):
        self._session = session
        self._outputs = [OUTPUT_PROBABILITIES]
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
        return cls(session, labels, int(featurizer["bits"]), int(featurizer["max_chars"]))

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


@cache
def default_task_classifier() -> TaskClassifier:
    """The packaged model, loaded on first use (never at import) and then shared."""
    return TaskClassifier.load()


def predict_task_type(text: str) -> str:
    """Drop-in for ``features.text_signals.keyword_task_type``: the task type of ``text``."""
    return default_task_classifier().predict(text)
