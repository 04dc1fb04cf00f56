"""Prompt embedding: what a prompt is about, as a small dense vector the gateway can afford.

The request features ``prompt_emb_00``.. of feature schema v3 (``features.schema``). A pure
request-time transform of one text (the last user turn):

1. **Text read** (``embedding_window``): the task-type classifier's instruction window
   (``features.task_classifier.read_window`` with ``MAX_CHARS``: a short single paragraph whole,
   else the head of the first paragraph and the tail of the last), whitespace runs collapsed to
   one space. The cost does not grow with the prompt, and the material pasted between the
   instruction's first and last paragraphs is not read.
2. **Normalisation**: lower-cased, UTF-8, digits 1-9 mapped to ``0`` (numbers read as their shape),
   one space of padding on each side.
3. **Signed feature hashing** (``signed_term_frequencies``): every byte n-gram of ``NGRAM_SIZES``
   is hashed with a fixed multiplicative hash (the same in every process) into ``2**bits``
   buckets, with a sign from the next hash bit; each (bucket, sign) pair counted ``c`` times
   weighs ``sign * (1 + ln c)`` (sublinear tf).
4. **TF-IDF**: each pair's weight times the fitted ``idf`` of its bucket; the vector's L2 norm is
   taken over the pairs.
5. **Projection**: the normalised TF-IDF vector times the fitted ``projection`` (``[2**bits,
   dims]``, the top right singular vectors of the fit corpus's TF-IDF matrix), minus the fit
   corpus's ``mean`` projection, L2-normalised, float32. A text with no n-gram (empty) embeds as
   the zero vector.

The fit (``offline.prompt_representation``) is an offline, deterministic function of a list of
texts; :class:`PromptEmbedder` is its result, in memory or loaded from the artifact packaged with
``features`` (``models/prompt_embedding.npz`` + ``models/prompt_embedding.json``). The projection
is stored as float16 and a fitted model already holds those rounded values, so a saved and
reloaded model gives the same vectors as the one that was fitted.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from features.schema import PROMPT_EMBEDDING_DIMS
from features.task_classifier import read_window

EMBEDDING_VERSION = "1"
"""Version of the transform above; an artifact records it and is refused by other code."""
DEFAULT_DIMS = PROMPT_EMBEDDING_DIMS
DEFAULT_BITS = 15
NGRAM_SIZES: tuple[int, ...] = (3, 4, 5)
MAX_CHARS = 900
"""Characters of the instruction window read (the task-type classifier's default too)."""
ARTIFACT_RESOURCE = "models/prompt_embedding.npz"
METADATA_RESOURCE = "models/prompt_embedding.json"
"""The packaged artifact, relative to the ``features`` package."""

_WHITESPACE = re.compile(r"\s+")
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_MASKS = {size: np.uint64((1 << (8 * size)) - 1) for size in range(1, 9)}
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_PAD = b"\0" * 8


def embedding_window(text: str) -> str:
    """The characters the embedding reads: the instruction window, whitespace runs as one space."""
    return _WHITESPACE.sub(" ", read_window(text, MAX_CHARS))


def embedding_bytes(text: str) -> bytes:
    """The normalised bytes whose n-grams are hashed: lower-cased window, digits as 0, padded."""
    window = embedding_window(text)
    return b" " + window.lower().encode("utf-8", "replace").translate(_DIGITS_TO_ZERO) + b" "


def signed_term_frequencies(text: str, bits: int = DEFAULT_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(buckets int64, signed sublinear tf float64), one entry per distinct (bucket, sign) pair."""
    data = embedding_bytes(text)
    size = len(data)
    # little-endian uint64 windows at every byte: the n-gram at i is window i's low n bytes
    windows = np.ndarray((size,), dtype="<u8", buffer=data + _PAD, strides=(1,))
    keys = np.concatenate([windows[: max(size - n + 1, 0)] & _MASKS[n] for n in NGRAM_SIZES])
    keys *= _GOLDEN  # Fibonacci hashing: the top bits of key * 2^64/phi
    codes, counts = np.unique((keys >> np.uint64(63 - bits)).astype(np.int64), return_counts=True)
    signs = 1.0 - 2.0 * (codes & 1)
    return codes >> 1, signs * (1.0 + np.log(counts))


def corpus_digest(texts: Iterable[str]) -> str:
    """sha256 of the texts in order (each UTF-8, NUL-terminated): names the fit corpus."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class PromptEmbedder:
    """A fitted prompt embedding: ``idf [2**bits]``, ``projection [2**bits, dims]``, ``mean [dims]``
    (float32; build one with :meth:`from_arrays`)."""

    idf: np.ndarray
    projection: np.ndarray
    mean: np.ndarray
    metadata: dict[str, object] = field(default_factory=dict)
    """What the fit records about itself: version, dims, bits, corpus digest and size, seed."""

    @classmethod
    def from_arrays(
        cls, idf: np.ndarray, projection: np.ndarray, mean: np.ndarray, metadata: dict[str, object]
    ) -> PromptEmbedder:
        """The model with its arrays as stored and scored: float32, the projection rounded to float16."""
        if projection.shape[0] != idf.shape[0] or projection.shape[0] & (projection.shape[0] - 1):
            raise ValueError(f"projection {projection.shape} does not fit idf {idf.shape} of 2**bits buckets")
        return cls(
            idf=np.ascontiguousarray(idf, dtype=np.float32),
            projection=np.ascontiguousarray(projection.astype(np.float16), dtype=np.float32),
            mean=np.ascontiguousarray(mean, dtype=np.float32),
            metadata=dict(metadata),
        )

    @property
    def dims(self) -> int:
        return int(self.projection.shape[1])

    @property
    def bits(self) -> int:
        return int(self.projection.shape[0]).bit_length() - 1

    def embed(self, text: str) -> np.ndarray:
        """The L2-normalised float32 embedding of ``text`` (zeros for a text without n-grams)."""
        return self.embed_term_frequencies(*signed_term_frequencies(text, self.bits))

    def embed_term_frequencies(self, buckets: np.ndarray, tf: np.ndarray) -> np.ndarray:
        """:meth:`embed` of the text whose ``signed_term_frequencies`` at this model's bits are these."""
        if buckets.size == 0:
            return np.zeros(self.dims, dtype=np.float32)
        weights = (tf * self.idf[buckets]).astype(np.float32)
        vector = weights @ self.projection[buckets] / np.sqrt(weights @ weights) - self.mean
        norm = np.sqrt(vector @ vector)
        return vector / norm if norm > 0 else vector

    def embed_many(self, texts: Iterable[str]) -> np.ndarray:
        """``[n, dims]`` float32: :meth:`embed` of each text (row for row the same values)."""
        rows = [self.embed(text) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dims), dtype=np.float32)

    def save(self, npz_path: Path | str) -> Path:
        """Write the arrays to ``npz_path`` and the metadata beside it (``.json``); the json path."""
        npz_path = Path(npz_path)
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        data = _npz_bytes(
            {
                "idf": self.idf.astype(np.float32),
                "projection": self.projection.astype(np.float16),
                "mean": self.mean.astype(np.float32),
            }
        )
        npz_path.write_bytes(data)
        metadata = {**self.metadata, "file": npz_path.name, "sha256": hashlib.sha256(data).hexdigest()}
        json_path = npz_path.with_suffix(".json")
        json_path.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return json_path

    @classmethod
    def from_bytes(cls, npz: bytes, metadata: dict[str, object]) -> PromptEmbedder:
        """The model in these bytes; refuses another transform version or a mismatched file."""
        if str(metadata.get("version")) != EMBEDDING_VERSION:
            raise ValueError(
                f"prompt embedding built for version {metadata.get('version')}, code has {EMBEDDING_VERSION}"
            )
        featurizer = {"ngram_sizes": list(NGRAM_SIZES), "max_chars": MAX_CHARS}
        recorded = {key: metadata[key] for key in featurizer if key in metadata}
        if recorded != {key: featurizer[key] for key in recorded}:
            raise ValueError(f"prompt embedding fit with featurizer {recorded}, code has {featurizer}")
        expected = metadata.get("sha256")
        if expected is not None and hashlib.sha256(npz).hexdigest() != expected:
            raise ValueError("prompt embedding arrays do not match the sha256 their metadata records")
        with np.load(io.BytesIO(npz)) as arrays:
            return cls.from_arrays(arrays["idf"], arrays["projection"], arrays["mean"], metadata)

    @classmethod
    def load(cls, npz_path: Path | str | None = None) -> PromptEmbedder:
        """The model at ``npz_path`` (metadata beside it); by default the one packaged with ``features``."""
        if npz_path is None:
            package = resources.files("features")
            npz = package.joinpath(ARTIFACT_RESOURCE).read_bytes()
            metadata = json.loads(package.joinpath(METADATA_RESOURCE).read_text(encoding="utf-8"))
            return cls.from_bytes(npz, metadata)
        npz_path = Path(npz_path)
        metadata = json.loads(npz_path.with_suffix(".json").read_text(encoding="utf-8"))
        return cls.from_bytes(npz_path.read_bytes(), metadata)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (deflated) with fixed entry timestamps: the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entry.getvalue())
    return buffer.getvalue()


@cache
def default_prompt_embedder() -> PromptEmbedder:
    """The packaged model, loaded on first use (never at import) and then shared; its dimensions
    are the feature schema's."""
    embedder = PromptEmbedder.load()
    if embedder.dims != PROMPT_EMBEDDING_DIMS:
        raise ValueError(
            f"packaged prompt embedding has {embedder.dims} dims, schema has {PROMPT_EMBEDDING_DIMS}"
        )
    return embedder


def embed_prompt(text: str) -> np.ndarray:
    """The embedding of ``text`` (the last user turn) by the packaged model."""
    return default_prompt_embedder().embed(text)


def nearest_neighbours(train: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices ``[n_query, k]``, cosine similarities) of each query row's ``k`` most similar train rows.

    Rows are L2-normalised embeddings, so the dot product is the cosine; neighbours come most
    similar first, ties broken by the lower train index."""
    k = min(k, train.shape[0])
    similarities = np.asarray(query, dtype=np.float32) @ np.asarray(train, dtype=np.float32).T
    order = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarities, order, axis=1)
