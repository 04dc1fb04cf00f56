"""Prompt representations the routers read, fitted on a fold's training texts only.

A :class:`Representation` is fitted on texts and then turns texts into ``[n, dims]`` float32
rows. The harness fits a fresh one on every fold's training prompts, so the test prompts never
shape the projection (an honest benchmark); the shipped default is the serving path's own
transform, ``features.prompt_embedding`` fitted by ``offline.prompt_representation``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from features.schema import PROMPT_EMBEDDING_DIMS


class Representation(Protocol):
    name: str

    def fit(self, texts: Sequence[str]) -> FittedRepresentation: ...


class FittedRepresentation(Protocol):
    def transform(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class HashedProjection:
    """The v3 prompt embedding: hashed byte n-grams → TF-IDF → SVD projection (``dims`` wide)."""

    dims: int = PROMPT_EMBEDDING_DIMS
    seed: int = 0

    @property
    def name(self) -> str:
        return f"hashed{self.dims}"

    def fit(self, texts: Sequence[str]) -> FittedRepresentation:
        from offline.prompt_representation import fit_prompt_embedding

        embedder = fit_prompt_embedding(list(texts), dims=self.dims, seed=self.seed)
        return _EmbedderTransform(embedder)


@dataclass(frozen=True)
class _EmbedderTransform:
    embedder: object

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed_many(texts)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MiniLmSentences:
    """all-MiniLM-L6-v2 mean-pooled sentence vectors (``offline.minilm_embedding``; 384 wide).

    Pretrained on outside text, so nothing is fitted per fold; an offline comparator only (a
    numpy forward pass per prompt, far over the gateway's budget), and it needs the optional
    wheel named in that module."""

    name: str = "minilm"

    def fit(self, texts: Sequence[str]) -> FittedRepresentation:
        from offline.minilm_embedding import MiniLmEncoder

        return _MemoisedTransform(_encoder(MiniLmEncoder), _MINILM_MEMO)


_ENCODERS: dict[type, object] = {}
_MINILM_MEMO: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class _MemoisedTransform:
    """A fit-free encoder's vectors, kept per text for the process (each fold asks again)."""

    encoder: object
    memo: dict[str, np.ndarray]

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.encoder.embed_many(missing), strict=True))  # type: ignore[attr-defined]
        return np.stack([self.memo[text] for text in texts])


def _encoder(kind: type) -> object:
    if kind not in _ENCODERS:
        _ENCODERS[kind] = kind.load()  # type: ignore[attr-defined]
    return _ENCODERS[kind]


def representation_named(name: str, seed: int = 0) -> Representation:
    """``hashed<dims>`` (the v3 prompt embedding at that width) or ``minilm``."""
    if name == "minilm":
        return MiniLmSentences()
    if name.startswith("hashed") and name.removeprefix("hashed").isdigit():
        return HashedProjection(int(name.removeprefix("hashed")), seed)
    raise ValueError(f"unknown representation {name!r}: hashed<dims> or minilm")


@contextmanager
def memoised_hashing() -> Iterator[None]:
    """While open, the per-text hashing step of the prompt embedding keeps its result per text.

    ``features.prompt_embedding.signed_term_frequencies`` is the first step of both the fit
    (``offline.prompt_representation``) and the transform (``PromptEmbedder.embed``), and the
    harness would otherwise hash every prompt again for each fold, representation and side
    (fit, train rows, test rows) — 30 times per MMLU prompt. Inside this context both modules call
    the same function through a memo, so each (text, bits) is hashed once and the vectors are
    exactly those of the unmemoised code (tests/unit/test_benchmark_run.py checks it). The memo
    lives as long as the context: the harness opens one per split.
    """
    import features.prompt_embedding as embedding
    import offline.prompt_representation as fitting

    original = embedding.signed_term_frequencies
    memo: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def memoised(text: str, bits: int = embedding.DEFAULT_BITS) -> tuple[np.ndarray, np.ndarray]:
        key = (text, bits)
        if key not in memo:
            memo[key] = original(text, bits)
        return memo[key]

    embedding.signed_term_frequencies = memoised
    fitting.signed_term_frequencies = memoised
    try:
        yield
    finally:
        embedding.signed_term_frequencies = original
        fitting.signed_term_frequencies = original


def fit_transform(
    representation: Representation, train_texts: Sequence[str], test_texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of a representation fitted on ``train_texts`` only."""
    fitted = representation.fit(train_texts)
    return fitted.transform(train_texts), fitted.transform(test_texts)
