"""What every router sees of one fold: the training outcomes, the test prompts, their features."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.benchmarks.outcomes import OutcomeMatrix

KNN_CHUNK = 1024


@dataclass(frozen=True, eq=False)
class FoldInputs:
    """One fold. ``embeddings`` maps a representation name to (train rows, test rows), fitted on
    the training texts only; ``pair`` is (strong, weak) model indices on a two-model set;
    ``inner_grouped``: the outer split holds groups out, so an inner cross-validation on the
    training rows should too."""

    train: OutcomeMatrix
    test: OutcomeMatrix
    request_train: np.ndarray
    request_test: np.ndarray
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    pair: tuple[int, int] | None = None
    seed: int = 0
    inner_grouped: bool = False


def top_k_neighbours(train: np.ndarray, query: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """``[n_query, k]`` indices of each query row's most cosine-similar train rows (rows L2-normalised).

    With ``exclude_self`` the query is the train set and a row is never its own neighbour
    (leave-one-out). Computed in chunks, so memory stays ``KNN_CHUNK × n_train``."""
    k = min(k, train.shape[0] - (1 if exclude_self else 0))
    out = np.empty((query.shape[0], k), dtype=np.int64)
    for start in range(0, query.shape[0], KNN_CHUNK):
        block = query[start : start + KNN_CHUNK] @ train.T
        if exclude_self:
            rows = np.arange(block.shape[0])
            block[rows, start + rows] = -np.inf
        out[start : start + KNN_CHUNK] = np.argpartition(-block, k - 1, axis=1)[:, :k]
    return out


def neighbour_quality(train_quality: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``[n_query, n_models]``: mean quality of each model over the neighbours."""
    return train_quality[neighbours].mean(axis=1)
