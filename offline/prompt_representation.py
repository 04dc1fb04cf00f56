"""Fitting the prompt embedding (``features.prompt_embedding``): texts in, a model out.

``fit_prompt_embedding`` is a pure, deterministic function of the texts, the dimension and the
seed: it hashes every text exactly as the request path does
(``features.prompt_embedding.signed_term_frequencies``), takes the inverse document frequency of
each bucket, L2-normalises each TF-IDF row over its (bucket, sign) pairs as ``PromptEmbedder.embed``
does, and keeps the top ``dims`` right singular vectors of that matrix (randomized SVD with a fixed
seed) as the projection and the mean projected row as the centre. The returned
:class:`~features.prompt_embedding.PromptEmbedder` embeds like the packaged artifact and can be
saved as one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from features.prompt_embedding import (
    DEFAULT_BITS,
    DEFAULT_DIMS,
    EMBEDDING_VERSION,
    MAX_CHARS,
    NGRAM_SIZES,
    PromptEmbedder,
    corpus_digest,
    signed_term_frequencies,
)


def hashed_tf_matrix(texts: Sequence[str], bits: int = DEFAULT_BITS) -> tuple[sp.csr_matrix, np.ndarray]:
    """(signed sublinear tf ``[n_texts, 2**bits]`` with each (bucket, sign) pair an entry, row of each entry)."""
    rows, columns, values = [], [], []
    for row, text in enumerate(texts):
        buckets, tf = signed_term_frequencies(text, bits)
        rows.append(np.full(buckets.size, row, dtype=np.int64))
        columns.append(buckets)
        values.append(tf)
    row_index = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    matrix = sp.coo_matrix(
        (
            np.concatenate(values) if values else np.zeros(0),
            (row_index, np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)),
        ),
        shape=(len(texts), 1 << bits),
    )
    return matrix, row_index


def inverse_document_frequency(matrix: sp.coo_matrix) -> np.ndarray:
    """Smoothed idf of each bucket: ``ln((1 + n) / (1 + df)) + 1``, df counting texts with the bucket."""
    presence = sp.csr_matrix((np.ones(matrix.nnz), (matrix.row, matrix.col)), shape=matrix.shape)
    presence.data[:] = 1.0  # duplicates of a bucket within a row were summed
    df = np.asarray(presence.sum(axis=0)).ravel()
    return np.log((1.0 + matrix.shape[0]) / (1.0 + df)) + 1.0


def fit_prompt_embedding(
    texts: Sequence[str],
    dims: int = DEFAULT_DIMS,
    seed: int = 0,
    bits: int = DEFAULT_BITS,
    n_iter: int = 6,
    sources: dict[str, int] | None = None,
) -> PromptEmbedder:
    """The prompt embedding fitted on ``texts``; ``sources`` (texts per corpus) goes into its metadata."""
    if len(texts) <= dims:
        raise ValueError(f"need more than {dims} texts to fit {dims} dimensions, got {len(texts)}")
    tf, row_index = hashed_tf_matrix(texts, bits)
    idf = inverse_document_frequency(tf).astype(np.float32)
    # the same arithmetic as PromptEmbedder.embed: float32 weights, norm over (bucket, sign) pairs
    weights = (tf.data * idf[tf.col]).astype(np.float32)
    norms = np.sqrt(np.bincount(row_index, weights.astype(np.float64) ** 2, minlength=len(texts)))
    norms[norms == 0] = 1.0
    normalised = sp.csr_matrix(
        (weights / norms[row_index].astype(np.float32), (tf.row, tf.col)), shape=tf.shape, dtype=np.float32
    )
    _, _, components = randomized_svd(normalised, dims, n_iter=n_iter, random_state=seed)
    projection = components.T.astype(np.float16).astype(np.float32)
    mean = np.asarray(normalised @ projection).mean(axis=0)
    metadata: dict[str, object] = {
        "version": EMBEDDING_VERSION,
        "dims": dims,
        "bits": bits,
        "ngram_sizes": list(NGRAM_SIZES),
        "max_chars": MAX_CHARS,
        "seed": seed,
        "n_texts": len(texts),
        "corpus_sha256": corpus_digest(texts),
        "sources": dict(sources or {}),
        "kind": "signed hashed byte n-grams, sublinear tf-idf, truncated SVD projection, centred, L2-normalised",
    }
    return PromptEmbedder.from_arrays(idf, projection, mean, metadata)
