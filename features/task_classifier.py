"""Task-type classifier: hashed byte n-grams and a linear model scored by onnxruntime.

The featurizer is defined here once and used by training (``training.task_classifier``)
and serving alike. ``hashed_ngrams`` reads the instruction of a prompt, not the material
pasted into it (``read_window``): the first paragraph of the text, where a request usually
opens ("Summarize the following:"), and the last one, where it sometimes closes ("...
summarize the above"). Paragraphs are separated by blank lines; the first ``max_chars -
TAIL_CHARS`` characters of the first and the last ``TAIL_CHARS`` of the last are read, the
paragraphs between them are not, and a single paragraph of at most ``max_chars`` characters
is read whole. It lower-cases that window, maps digits to ``0``, encodes it as UTF-8 padded
with one space on each side, and emits one bucket index per occurrence of every byte 3-gram
and 5-gram, plus the n-grams of the first ``HEAD_BYTES`` bytes once more under their own key
(the request is usually stated first). Keys are hashed
into ``2**bits`` buckets with a fixed multiplicative hash (not the salted ``hash()``), so the
same text gives the same indices in every process and on every machine.

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
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort

from features.schema import TASK_TYPES

FEATURIZER_VERSION = "2"
"""1: the text's first 800 and last 200 characters; 2: its first and last paragraphs."""
DEFAULT_BITS = 15
DEFAULT_MAX_CHARS = 900
TAIL_CHARS = 300
HEAD_BYTES = 160
NGRAM_SIZES = (3, 5)
MODEL_RESOURCE = "models/task_type.onnx"
"""The packaged model, relative to the ``features`` package."""

INPUT_INDICES = "indices"
INPUT_VALUES = "values"
OUTPUT_PROBABILITIES = "probabilities"

_BLANK_LINES = re.compile(r"\n\s*\n")  # a newline, any whitespace, another newline: a blank line
_MASKS = {size: np.uint64((1 << (8 * size)) - 1) for size in NGRAM_SIZES}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HEAD_SALT = np.uint64(0xA5A5A5A5A5A5A5A5)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_PAD = b"\0" * 8


def window_lengths(max_chars: int = DEFAULT_MAX_CHARS) -> tuple[int, int]:
    """(head, tail): how many characters are read of the first paragraph and of the last."""
    tail = min(TAIL_CHARS, max_chars // 2)
    return max_chars - tail, tail


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs: ``\\r\\n`` read as ``\\n``, split at blank lines, stripped, empty ones dropped."""
    pieces = (piece.strip() for piece in _BLANK_LINES.split(text.replace("\r\n", "\n")))
    return [piece for piece in pieces if piece]


def instruction_window(parts: list[str], max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The window of a text with these ``paragraphs``: a single paragraph of at most ``max_chars``
    characters whole, else the first ``head`` characters of the first paragraph and the last
    ``tail`` of the last (the same paragraph if there is one), joined by a blank line."""
    if not parts:
        return ""
    if len(parts) == 1 and len(parts[0]) <= max_chars:
        return parts[0]
    head, tail = window_lengths(max_chars)
    return parts[0][:head] + "\n\n" + parts[-1][-tail:]


def read_window(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The characters the featurizer reads, ``instruction_window(paragraphs(text))``: the
    instruction, not the material pasted with it.

    A long text is not split whole: only its first ``2 * head + 4`` and last ``2 * tail + 4``
    characters (after stripping) are looked at, which hold the window whatever the line endings,
    so the cost does not grow with the text (tested against the definition).
    """
    text = text.strip()
    if len(text) <= 4 * max_chars:
        return instruction_window(paragraphs(text), max_chars)
    head, tail = window_lengths(max_chars)
    first = _first_paragraph_head(text[: 2 * head + 4], head)
    last = _last_paragraph_tail(text[-(2 * tail + 4) :], tail)
    if first is None or last is None:  # a long run of whitespace at the edge of a piece: split it all
        return instruction_window(paragraphs(text), max_chars)
    # more than 2 * max_chars characters, so more than max_chars once normalized: never one short paragraph
    return first + "\n\n" + last


def _first_paragraph_head(piece: str, head: int) -> str | None:
    """The first ``head`` characters of the first paragraph of a text that starts with ``piece``
    (which starts with a non-space); None if ``piece`` cannot tell."""
    found = _BLANK_LINES.search(piece)
    if found:  # the paragraph ends inside the piece
        return piece[: found.start()].replace("\r\n", "\n").strip()[:head]
    # no blank line ends in the piece: the paragraph runs at least to its last non-space
    prefix = piece.replace("\r\n", "\n").rstrip()
    return prefix[:head] if len(prefix) >= head else None


def _last_paragraph_tail(piece: str, tail: int) -> str | None:
    """The last ``tail`` characters of the last paragraph of a text that ends with ``piece``
    (which ends with a non-space); None if ``piece`` cannot tell."""
    blank_lines = list(_BLANK_LINES.finditer(piece))
    if blank_lines:  # the paragraph starts inside the piece
        return piece[blank_lines[-1].end() :].replace("\r\n", "\n").strip()[-tail:]
    suffix = piece.replace("\r\n", "\n").lstrip()
    return suffix[-tail:] if len(suffix) >= tail else None


def normalized_bytes(text: str) -> bytes:
    """``text`` lower-cased, as UTF-8, with the digits 1-9 mapped to 0."""
    return text.lower().encode("utf-8", "replace").translate(_DIGITS_TO_ZERO)


def featurized_bytes(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> bytes:
    """The bytes whose n-grams are the features: the normalized window, one space on each side."""
    return b" " + normalized_bytes(read_window(text, max_chars)) + b" "


def hashed_ngrams(text: str, bits: int = DEFAULT_BITS, max_chars: int = DEFAULT_MAX_CHARS) -> np.ndarray:
    """One bucket index (int64, in ``[0, 2**bits)``) per byte n-gram occurrence, unsorted."""
    data = featurized_bytes(text, max_chars)
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

    def predict_indices(self, texts: Iterable[str]) -> np.ndarray:
        """The label index of each text, exactly as :meth:`predict` (a loop: the graph scores one text per run)."""
        return np.array([int(np.argmax(self.probabilities(text))) for text in texts], dtype=np.int64)


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
