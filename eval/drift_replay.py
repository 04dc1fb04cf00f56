"""Offline recomputation of served features, for the skew check (``eval.drift_skew``).

Three sources, each a :class:`~eval.drift_skew.Recomputation`, strongest first:

- :func:`simulated_request_replay` (``eval.drift_sim_replay``): bootstrap logs only. The
  simulator regenerates each sampled request's Anthropic payload, and ``features.request``
  (``facts_from_request`` → ``request_features``) recomputes all twelve request features from
  the text, exactly as the gateway does. Real traffic keeps no prompt text, so this is the
  reference check of the method, not a production source.
- :func:`record_replay`: always available. What the log itself can re-derive independently of
  the gateway's feature code: ``tenant_tier``, ``surface`` and ``stream`` from the decision's
  own fields, the catalog features of the chosen SKU from ``features/skus.yaml``, and
  ``prompt_tokens`` from the worker's usage on the serving attempt (input + cached tokens: the
  worker counted the prompt it received). The simulated worker counts with the gateway's
  estimator, so it agrees exactly; real tokenizers differ from the 4-bytes-per-token estimate,
  hence the relative tolerance (``prompt_tokens_rtol``, 25%: wide enough for a real tokenizer,
  narrow enough for a unit or counting bug).
- :func:`store_replay`: the store features through Feast's point-in-time retrieval at each
  request's exact timestamp (``offline.feast_adapter.point_in_time_features``: the join the
  training set is built with). Rows served without any store feature (a router that does not
  use them, or the online store down) and rows the offline store does not cover are not
  compared but counted: low coverage makes the check a warning rather than a silent pass.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from eval.drift_skew import Recomputation, Tolerance
from features.catalog import Catalog
from features.request import candidate_features
from features.schema import CANDIDATE_FEATURE_NAMES, STORE_FEATURE_NAMES, SURFACES, TENANT_TIERS
from offline.rows import StoreLookup

STATIC_CANDIDATE_FEATURES = tuple(n for n in CANDIDATE_FEATURE_NAMES if n != "expected_cache_hit")
MIN_STORE_COVERAGE = 0.5


def record_replay(
    served: pl.DataFrame, catalog: Catalog, *, prompt_tokens_rtol: float = 0.25
) -> Recomputation:
    """Features the decision record and the worker's usage determine on their own."""
    static = {}
    for sku in served["sku"].unique().to_list():
        if sku in catalog:
            vector = candidate_features(catalog.get(sku), cache_hit=0.0)
            static[sku] = dict(zip(CANDIDATE_FEATURE_NAMES, vector, strict=True))
    columns = [
        pl.col("logged_tier")
        .replace_strict(list(TENANT_TIERS), list(range(len(TENANT_TIERS))), default=None)
        .cast(pl.Float64)
        .alias("tenant_tier"),
        pl.col("logged_surface")
        .replace_strict(list(SURFACES), list(range(len(SURFACES))), default=None)
        .cast(pl.Float64)
        .alias("surface"),
        pl.col("logged_stream").cast(pl.Float64).alias("stream"),
        pl.col("worker_prompt_tokens").cast(pl.Float64).alias("prompt_tokens"),
    ]
    for name in STATIC_CANDIDATE_FEATURES:
        mapping = {sku: values[name] for sku, values in static.items()}
        columns.append(
            pl.col("sku").replace_strict(mapping, default=None, return_dtype=pl.Float64).alias(name)
        )
    values = served.select("request_id", *columns)
    covered = values["prompt_tokens"].is_not_null().sum()
    return Recomputation(
        source="decision record, catalog and worker usage",
        values=values,
        tolerances={"prompt_tokens": Tolerance(atol=0.5, rtol=prompt_tokens_rtol)},
        notes=(f"worker usage re-counted prompt_tokens for {covered:,} of {served.height:,} requests",),
    )


def store_replay(served: pl.DataFrame, lookup: StoreLookup) -> Recomputation:
    """Store features as of each request's exact time, for rows that were served with some."""
    served_any = served.select(
        "request_id",
        pl.any_horizontal(
            [pl.col(n).is_not_nan() & pl.col(n).is_not_null() for n in STORE_FEATURE_NAMES]
        ).alias("_any"),
    )
    with_store = served.join(served_any.filter("_any"), on="request_id", how="semi")
    without = served.height - with_store.height
    notes = [
        f"{without:,} of {served.height:,} requests were served without any store feature (not compared)"
    ]
    if with_store.height == 0:
        return Recomputation(
            "feast point-in-time",
            pl.DataFrame({"request_id": []}, schema={"request_id": pl.String}),
            notes=tuple(notes),
        )
    entities = with_store.select("request_id", "tenant_id", "sku", "region", "ts")
    offline = lookup(entities).select("request_id", *STORE_FEATURE_NAMES)
    matrix = offline.select(STORE_FEATURE_NAMES).to_numpy().astype(np.float64)
    covered = ~np.isnan(matrix).all(axis=1)
    values = offline.with_columns(
        *(pl.when(pl.Series(covered)).then(pl.col(n)).otherwise(None).alias(n) for n in STORE_FEATURE_NAMES)
    )
    share = float(covered.mean()) if len(covered) else 0.0
    notes.append(
        f"the offline store had values for {covered.sum():,} of {len(covered):,} served store vectors"
    )
    warnings = ()
    if share < MIN_STORE_COVERAGE:
        warnings = (
            f"store features not checked: the offline store covers {share:.0%} of the window "
            "(recompute the feature tables over these logs: `switchyard feature-tables`)",
        )
    return Recomputation("feast point-in-time", values, notes=tuple(notes), warnings=warnings)
