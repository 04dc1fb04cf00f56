"""Fitting the prompt embedding (``features.prompt_embedding``): texts, or their hashed rows, in; a model out.

The fit needs each text only through its hashed signed term frequencies
(``features.prompt_embedding.signed_term_frequencies``: bucket ids and signed sublinear counts),
so it has two entry points:

- :func:`fit_from_term_frequencies` fits from those rows (one ``(buckets, tf)`` pair per text,
  :func:`term_frequency_rows`), for a caller that hashed the texts already (the benchmark harness
  hashes each prompt once and refits on many folds) or that holds rows and no text;
- :func:`fit_prompt_embedding` hashes the texts exactly as the request path does and fits from
  their rows, recording the corpus digest in the metadata.

Both are pure and deterministic for the rows, the dimension and the seed: the inverse document
frequency of each bucket, each TF-IDF row L2-normalised over its (bucket, sign) pairs as
``PromptEmbedder.embed`` does, the top ``dims`` right singular vectors of that matrix (randomized
SVD with a fixed seed) as the projection and the mean projected row as the centre. The returned
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

TermFrequencies = tuple[np.ndarray, np.ndarray]
"""One text's hashed row: (bucket ids int64, signed sublinear tf float64), one entry per (bucket, sign) pair."""


def term_frequency_rows(texts: Sequence[str], bits: int = DEFAULT_BITS) -> list[TermFrequencies]:
    """Each text's hashed row, as the request path computes it."""
    return [signed_term_frequencies(text, bits) for text in texts]


def hashed_tf_matrix(
    rows: Sequence[TermFrequencies], bits: int = DEFAULT_BITS
) -> tuple[sp.coo_matrix, np.ndarray]:
    """(signed sublinear tf ``[n_rows, 2**bits]`` with each (bucket, sign) pair an entry, row of each entry)."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    buckets, tf = zip(*rows, empty, strict=True)
    row_index = np.repeat(np.arange(len(rows), dtype=np.int64), [b.size for b in buckets[:-1]])
    matrix = sp.coo_matrix(
        (np.concatenate(tf), (row_index, np.concatenate(buckets))), shape=(len(rows), 1 << bits)
    )
    return matrix, row_index


def inverse_document_frequency(matrix: sp.coo_matrix) -> np.ndarray:
    """Smoothed idf of each bucket: ``ln((1 + n) / (1 + df)) + 1``, df counting texts with the bucket."""
    presence = sp.csr_matrix((np.ones(matrix.nnz), (matrix.row, matrix.col)), shape=matrix.shape)
    presence.data[:] = 1.0  # duplicates of a bucket within a row were summed
    df = np.asarray(presence.sum(axis=0)).ravel()
    return np.log((1.0 + matrix.shape[0]) / (1.0 + df)) + 1.0


def fit_from_term_frequencies(
    rows: Sequence[TermFrequencies],
    dims: int = DEFAULT_DIMS,
    seed: int = 0,
    bits: int = DEFAULT_BITS,
    n_iter: int = 6,
    metadata: dict[str, object] | None = None,
) -> PromptEmbedder:
    """The prompt embedding fitted on hashed rows (``bits`` wide); ``metadata`` is added to what the fit records."""
    if len(rows) <= dims:
        raise ValueError(f"need more than {dims} texts to fit {dims} dimensions, got {len(rows)}")
    tf, row_index = hashed_tf_matrix(rows, bits)
    idf = inverse_document_frequency(tf).astype(np.float32)
    # the same arithmetic as PromptEmbedder.embed: float32 weights, norm over (bucket, sign) pairs
    weights = (tf.data * idf[tf.col]).astype(np.float32)
    norms = np.sqrt(np.bincount(row_index, weights.astype(np.float64) ** 2, minlength=len(rows)))
    norms[norms == 0] = 1.0
    normalised = sp.csr_matrix(
        (weights / norms[row_index].astype(np.float32), (tf.row, tf.col)), shape=tf.shape, dtype=np.float32
    )
    _, _, components = randomized_svd(normalised, dims, n_iter=n_iter, random_state=seed)
    projection = components.T.astype(np.float16).astype(np.float32)
    mean = np.asarray(normalised @ projection).mean(axis=0)
    recorded: dict[str, object] = {
        "version": EMBEDDING_VERSION,
        "dims": dims,
        "bits": bits,
        "ngram_sizes": list(NGRAM_SIZES),
        "max_chars": MAX_CHARS,
        "seed": seed,
        "n_texts": len(rows),
        "kind": "signed hashed byte n-grams, sublinear tf-idf, truncated SVD projection, centred, L2-normalised",
        **(metadata or {}),
    }
    return PromptEmbedder.from_arrays(idf, projection, mean, recorded)


def fit_prompt_embedding(
    texts: Sequence[str],
    dims: int = DEFAULT_DIMS,
    seed: int = 0,
    bits: int = DEFAULT_BITS,
    n_iter: int = 6,
    sources: dict[str, int] | None = None,
) -> PromptEmbedder:
    """The prompt embedding fitted on ``texts``; ``sources`` (texts per corpus) goes into its metadata
    beside the corpus digest."""
    metadata = {"corpus_sha256": corpus_digest(texts), "sources": dict(sources or {})}
    return fit_from_term_frequencies(term_frequency_rows(texts, bits), dims, seed, bits, n_iter, metadata)
