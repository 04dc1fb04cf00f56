"""Model rows: logged requests → the router's feature matrix, one row per (request, SKU).

Rows are in ``features.schema.FEATURE_NAMES`` order, assembled exactly as
``features.vector.assemble_rows`` does (request vector as logged, the candidate's vector from
the decision's ``candidates``, store features from Feast as of the decision time).

- **Evaluation rows** (:func:`evaluation_rows`): every logged candidate of every request, so a
  policy can be replayed; the served SKU's row carries the labels. Training's rows (the served
  SKU only, with weights) are ``training.dataset.training_rows``.
- **Store features** (:func:`store_block`): looked up once per (tenant, SKU, region, decision
  time floored to the minute), in chunks. Feature rows are stamped on minute boundaries, so the
  floored lookup returns the same row as one at the exact decision time and can never see a
  later one; the only difference is a value that reaches its view's TTL within that minute,
  which the floored lookup still returns (0.2% of values in the integration test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    FEATURE_NAMES,
    REQUEST_FEATURE_NAMES,
    STORE_FEATURE_NAMES,
)

StoreLookup = Callable[[pl.DataFrame], pl.DataFrame]
"""Entities (request_id, tenant_id, sku, region, ts) → the same rows with ``STORE_FEATURE_NAMES``."""

KEY_RESOLUTION = "1m"
LOOKUP_CHUNK_ROWS = 50_000


@dataclass(frozen=True, eq=False)
class ModelRows:
    """A feature matrix and, row for row, its ids, labels and weights."""

    features: np.ndarray  # [n, len(FEATURE_NAMES)] float32, NaN where a store value is missing
    frame: pl.DataFrame

    def __post_init__(self) -> None:
        if self.features.shape != (self.frame.height, len(FEATURE_NAMES)):
            raise ValueError(f"matrix {self.features.shape} does not match {self.frame.height} rows")

    def where(self, mask: pl.Series | np.ndarray) -> ModelRows:
        keep = np.asarray(mask, dtype=bool)
        return ModelRows(self.features[keep], self.frame.filter(pl.Series(keep)))


def candidate_rows(requests: pl.DataFrame) -> pl.DataFrame:
    """One row per (request, logged candidate), in request order then logged candidate order."""
    return (
        requests.with_row_index("_request")
        .explode("candidates")
        .with_columns(
            pl.col("candidates").struct.field("sku").alias("sku"),
            pl.col("candidates").struct.field("features").alias("candidate_features"),
            pl.col("candidates").struct.field("probability").alias("logged_probability"),
        )
        .drop("candidates")
    )


def _block(column: pl.Series, width: int, name: str) -> np.ndarray:
    lengths = column.list.len()
    if column.len() and (lengths.min() != width or lengths.max() != width):
        raise ValueError(f"{name} vectors must have {width} values")
    return column.list.to_array(width).to_numpy().astype(np.float32).reshape(column.len(), width)


def assemble_matrix(rows: pl.DataFrame, store: np.ndarray) -> np.ndarray:
    """``features.vector.assemble_rows`` for many requests at once (identical values and order)."""
    n = rows.height
    matrix = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    n_request, n_candidate = len(REQUEST_FEATURE_NAMES), len(CANDIDATE_FEATURE_NAMES)
    matrix[:, :n_request] = _block(rows["request_features"], n_request, "request")
    matrix[:, n_request : n_request + n_candidate] = _block(
        rows["candidate_features"], n_candidate, "candidate"
    )
    if store.shape != (n, len(STORE_FEATURE_NAMES)):
        raise ValueError(f"store block {store.shape}, expected {(n, len(STORE_FEATURE_NAMES))}")
    matrix[:, n_request + n_candidate :] = store.astype(np.float32)
    return matrix


def lookup_keys(rows: pl.DataFrame) -> pl.DataFrame:
    """The distinct (tenant, SKU, region, minute) store lookups ``rows`` need; ``ts`` never moves later."""
    return (
        rows.select("tenant_id", "sku", "region", pl.col("ts").dt.truncate(KEY_RESOLUTION))
        .unique(maintain_order=True)
        .sort("ts", "tenant_id", "sku", "region")
        .with_row_index("_key")
        .with_columns(pl.format("k{}", "_key").alias("request_id"))
    )


def store_block(
    rows: pl.DataFrame, lookup: StoreLookup, *, chunk_rows: int = LOOKUP_CHUNK_ROWS
) -> np.ndarray:
    """``[n, len(STORE_FEATURE_NAMES)]`` store features as of each row's decision time."""
    if rows.height == 0:
        return np.zeros((0, len(STORE_FEATURE_NAMES)))
    keys = lookup_keys(rows)
    parts = [lookup(keys.slice(offset, chunk_rows)) for offset in range(0, keys.height, chunk_rows)]
    values = pl.concat(parts).select("tenant_id", "sku", "region", "ts", *STORE_FEATURE_NAMES)
    joined = rows.select("tenant_id", "sku", "region", pl.col("ts").dt.truncate(KEY_RESOLUTION)).join(
        values, on=["tenant_id", "sku", "region", "ts"], how="left", maintain_order="left"
    )
    return joined.select(STORE_FEATURE_NAMES).to_numpy().astype(np.float64)


def model_rows(rows: pl.DataFrame, lookup: StoreLookup, frame_columns: list[str | pl.Expr]) -> ModelRows:
    """The matrix of candidate ``rows`` (store features through ``lookup``) and their ``frame_columns``."""
    return ModelRows(assemble_matrix(rows, store_block(rows, lookup)), rows.select(frame_columns))


def evaluation_rows(requests: pl.DataFrame, lookup: StoreLookup) -> ModelRows:
    """Every logged candidate of every request (``offline.logged.load_window``); labels on the served
    SKU's row."""
    rows = candidate_rows(requests)
    served = pl.col("sku") == pl.col("served_sku")
    columns: list[str | pl.Expr] = [
        "request_id",
        "ts",
        "sku",
        "_request",
        (pl.col("sku") == pl.col("chosen_sku")).alias("is_chosen"),
        served.fill_null(False).alias("is_served"),
        "first_attempt_ok",
        "propensity",
        "logged_probability",
        pl.when(served & pl.col("first_attempt_ok")).then(pl.col("quality_label")).alias("quality_label"),
        *(pl.when(served).then(pl.col(name)).alias(name) for name in ("ttft_ms", "e2e_ms", "output_tokens")),
        pl.col("request_features")
        .list.get(REQUEST_FEATURE_NAMES.index("prompt_tokens"))
        .alias("prompt_tokens"),
        pl.col("candidate_features")
        .list.get(CANDIDATE_FEATURE_NAMES.index("expected_cache_hit"))
        .alias("expected_cache_hit"),
    ]
    return model_rows(rows, lookup, columns)
