"""Prompt representations the routers read, fitted on a fold's training texts only.

A :class:`Representation` is fitted on texts and then turns texts into ``[n, dims]`` float32
rows. The harness fits a fresh one on every fold's training prompts, so the test prompts never
shape the projection (an honest benchmark); the shipped default is the serving path's own
transform, ``features.prompt_embedding`` fitted by ``offline.prompt_representation``.

Per split the harness calls :func:`prepare` once on the split's whole pool of prompts and then
:meth:`PreparedTexts.fit_transform` per fold with row indices. For the hashed embedding,
``prepare`` hashes every prompt once (``offline.prompt_representation.term_frequency_rows``) and
each fold fits from the training rows (``fit_from_term_frequencies``) and embeds from the rows
(``PromptEmbedder.embed_term_frequencies``): the same vectors as fitting on the texts and
embedding them, without hashing each prompt again for every fold and side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from features.schema import PROMPT_EMBEDDING_DIMS


class Representation(Protocol):
    name: str

    def fit(self, texts: Sequence[str]) -> FittedRepresentation: ...


class FittedRepresentation(Protocol):
    def transform(self, texts: Sequence[str]) -> np.ndarray: ...


class PreparedTexts(Protocol):
    """A representation bound to one pool of texts, fitted per fold on row indices of that pool."""

    def fit_transform(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


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

    def prepare(self, texts: Sequence[str]) -> PreparedTexts:
        from offline.prompt_representation import term_frequency_rows

        return _HashedRows(self, term_frequency_rows(texts))


@dataclass(frozen=True, eq=False)
class _HashedRows:
    """Each text of a pool hashed once; a fold's embedding fitted from its training rows."""

    representation: HashedProjection
    rows: list[tuple[np.ndarray, np.ndarray]]

    def fit_transform(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from offline.prompt_representation import fit_from_term_frequencies

        rep = self.representation
        embedder = fit_from_term_frequencies([self.rows[i] for i in train], dims=rep.dims, seed=rep.seed)
        return tuple(  # type: ignore[return-value]
            np.stack([embedder.embed_term_frequencies(*self.rows[i]) for i in side]).reshape(
                len(side), rep.dims
            )
            for side in (train, test)
        )


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


def fit_transform(
    representation: Representation, train_texts: Sequence[str], test_texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of a representation fitted on ``train_texts`` only."""
    fitted = representation.fit(train_texts)
    return fitted.transform(train_texts), fitted.transform(test_texts)


@dataclass(frozen=True, eq=False)
class _RefitOnTexts:
    """A representation without per-text preparation: fitted on each fold's training texts."""

    representation: Representation
    texts: list[str]

    def fit_transform(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fit_transform(
            self.representation, [self.texts[i] for i in train], [self.texts[i] for i in test]
        )


def prepare(representation: Representation, texts: Sequence[str]) -> PreparedTexts:
    """``representation`` bound to the pool ``texts``: what it computes per text, computed once."""
    if isinstance(representation, HashedProjection):
        return representation.prepare(texts)
    return _RefitOnTexts(representation, list(texts))
