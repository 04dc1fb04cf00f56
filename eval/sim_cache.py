"""Replaying the prompt cache under a policy's own choices (a sensitivity check on cost and TTFT).

:func:`eval.sim_truth.candidate_truth` assumes each SKU holds the prefix it held in the logged
history, i.e. the cache the *logging policy's* routing left warm. A policy that routes
differently would warm other SKUs. :func:`replay_prompt_cache` recomputes, with the
bootstrap's own cache model (``simulator.prompt_cache_ttl.cached_prefix_tokens``), the prefix
every SKU would hold on each test request if the logged traffic had been served as logged
until the test start and by the policy's choices from then on (every choice assumed served:
failures and fallbacks are ignored). The result is a truth frame with ``cached_prefix_by_sku``
replaced, to pass to ``candidate_truth``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from simulator.ground_truth import GroundTruthParams
from simulator.prompt_cache_ttl import ServedEvents, cached_prefix_tokens


def cache_history(
    truth: pl.DataFrame, test_start: datetime, params: GroundTruthParams | None = None
) -> pl.DataFrame:
    """The logged requests served within the cache TTL before ``test_start`` (the cache the policy inherits)."""
    ttl = timedelta(seconds=(params or GroundTruthParams()).cache_ttl_s)
    return truth.filter(
        pl.col("ts").is_between(test_start - ttl, test_start, closed="left")
        & pl.col("logged_served_sku").is_not_null()
    ).select("ts", "tenant_id", "conversation_id", "prompt_tokens", sku="logged_served_sku")


def _events(frame: pl.DataFrame, tenants: dict[str, int], names: tuple[str, ...]) -> ServedEvents:
    index = {name: i for i, name in enumerate(names)}
    return ServedEvents(
        ts_us=frame["ts"].dt.epoch("us").to_numpy().astype(np.int64),
        sku=np.array([index[name] for name in frame["sku"]], dtype=np.int64),
        tenant=np.array([tenants[t] for t in frame["tenant_id"]], dtype=np.int64),
        conversation=frame["conversation_id"].to_numpy().astype(np.int64),
        prompt_tokens=frame["prompt_tokens"].to_numpy().astype(np.int64),
    )


def replay_prompt_cache(
    truth: pl.DataFrame,
    choices: pl.DataFrame,
    history: pl.DataFrame,
    names: tuple[str, ...],
    params: GroundTruthParams | None = None,
) -> pl.DataFrame:
    """``truth`` (test requests, arrival order) with ``cached_prefix_by_sku`` as the policy's own routing
    would have left it; ``choices`` must hold one SKU per request of ``truth``."""
    ttl_us = int((params or GroundTruthParams()).cache_ttl_s * 1_000_000)
    window = truth.select("request_id", "ts", "tenant_id", "conversation_id", "prompt_tokens").join(
        choices.select("request_id", "sku"), on="request_id", how="left", maintain_order="left"
    )
    if window["sku"].null_count():
        raise ValueError("the choices do not cover every request of the truth frame")
    ids = pl.concat([history["tenant_id"], window["tenant_id"]]).unique(maintain_order=True).to_list()
    tenants = {tenant: i for i, tenant in enumerate(ids)}
    prefix = cached_prefix_tokens(
        _events(history, tenants, names),
        _events(window, tenants, names),
        system_tokens=truth["system_tokens"].to_numpy().astype(np.int64),
        n_skus=len(names),
        ttl_us=ttl_us,
    )
    return truth.with_columns(
        pl.Series("cached_prefix_by_sku", prefix, dtype=truth.schema["cached_prefix_by_sku"])
    )
