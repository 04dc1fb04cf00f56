"""Assembling model rows: one row per candidate SKU, columns in ``FEATURE_NAMES`` order.

The only place the parts of a row (request, candidate, store features) are put together,
used by serving (live values) and training (logged and point-in-time values) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.schema import CANDIDATE_FEATURE_NAMES, FEATURE_NAMES, REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES

N_REQUEST = len(REQUEST_FEATURE_NAMES)
N_CANDIDATE = len(CANDIDATE_FEATURE_NAMES)
N_STORE = len(STORE_FEATURE_NAMES)


def assemble_rows(
    request: Sequence[float],
    candidates: Sequence[Sequence[float]],
    store: Sequence[Sequence[float]] | np.ndarray,
) -> np.ndarray:
    """``[n_candidates, len(FEATURE_NAMES)]`` float32 rows; NaN marks a missing store value."""
    n = len(candidates)
    rows = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    if len(request) != N_REQUEST:
        raise ValueError(f"request vector has {len(request)} values, schema has {N_REQUEST}")
    rows[:, :N_REQUEST] = np.asarray(request, dtype=np.float32)
    candidate_block = np.asarray(candidates, dtype=np.float32).reshape(n, -1)
    if candidate_block.shape[1] != N_CANDIDATE:
        raise ValueError(
            f"candidate vectors have {candidate_block.shape[1]} values, schema has {N_CANDIDATE}"
        )
    rows[:, N_REQUEST : N_REQUEST + N_CANDIDATE] = candidate_block
    store_block = np.asarray(store, dtype=np.float32).reshape(n, -1)
    if store_block.shape[1] != N_STORE:
        raise ValueError(f"store vectors have {store_block.shape[1]} values, schema has {N_STORE}")
    rows[:, N_REQUEST + N_CANDIDATE :] = store_block
    return rows
