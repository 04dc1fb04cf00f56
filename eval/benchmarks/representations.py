"""Prompt representations the routers read, fitted on a fold's training texts only.

A :class:`Representation` is fitted on texts and then turns texts into ``[n, dims]`` float32
rows. The harness fits a fresh one on every fold's training prompts, so the test prompts never
shape the projection (an honest benchmark); the shipped default is the serving path's own
transform, ``features.prompt_embedding`` fitted by ``offline.prompt_representation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Representation(Protocol):
    name: str

    def fit(self, texts: Sequence[str]) -> FittedRepresentation: ...


class FittedRepresentation(Protocol):
    def transform(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class HashedProjection:
    """The v3 prompt embedding: hashed byte n-grams → TF-IDF → SVD projection (``dims`` wide)."""

    dims: int = 32
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


def fit_transform(
    representation: Representation, train_texts: Sequence[str], test_texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of a representation fitted on ``train_texts`` only."""
    fitted = representation.fit(train_texts)
    return fitted.transform(train_texts), fitted.transform(test_texts)
