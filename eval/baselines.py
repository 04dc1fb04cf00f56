"""Baseline routing policies over logged candidate sets, and the truth-using oracle.

Each choice function takes the logged candidates (one row per request × eligible SKU, as
:func:`logged_candidates` reads them from the decision log) and returns one row per request:
``DataFrame[request_id, sku]``. Only :func:`oracle` reads the truth (``candidate_truth``); the
others use what a router has: the logged request features, the candidate features and the
catalog. Ties go to the SKU earlier in catalog order, so every function is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from eval.sim_truth import keyed_uniforms
from features.catalog import Catalog, load_catalog
from features.record_store import scan_records
from features.records import DecisionRecord
from features.schema import CANDIDATE_FEATURE_NAMES, REQUEST_FEATURE_NAMES
from router_model.policy import PolicyParams, utility_of
from simulator.logging_policy import (
    LoggingPolicyConfig,
    SkuAttributes,
    action_probabilities,
    candidate_priors,
    preferred_tier,
    rank_keys,
)

_REQUEST_COLUMNS = ("prompt_tokens", "max_tokens", "task_type", "has_code", "tenant_tier")


def logged_candidates(logs_root: Path, since: datetime | None = None) -> pl.DataFrame:
    """One row per (logged request at or after ``since``, eligible SKU) with what a router knew."""
    scan = scan_records(Path(logs_root), DecisionRecord)
    if since is not None:
        scan = scan.filter(pl.col("ts") >= since)
    cache_hit = CANDIDATE_FEATURE_NAMES.index("expected_cache_hit")
    return (
        scan.select(
            "request_id",
            "ts",
            *(
                pl.col("request_features")
                .list.get(REQUEST_FEATURE_NAMES.index(name))
                .cast(pl.Int64)
                .alias(name)
                for name in _REQUEST_COLUMNS
            ),
            "candidates",
        )
        .explode("candidates")
        .select(
            pl.exclude("candidates"),
            pl.col("candidates").struct.field("sku"),
            pl.col("candidates")
            .struct.field("features")
            .list.get(cache_hit)
            .cast(pl.Float64)
            .alias("expected_cache_hit"),
            pl.col("candidates").struct.field("probability").alias("logged_probability"),
        )
        .sort("ts", "request_id", "sku")
        .collect()
    )


@dataclass(frozen=True, eq=False)
class _Dense:
    """Candidates as [request, sku] matrices in catalog order."""

    request_id: pl.Series  # [n]
    first_row: np.ndarray  # [n] a candidate row of each request
    row: np.ndarray  # candidate row -> request
    sku: np.ndarray  # candidate row -> sku index
    eligible: np.ndarray  # [n, k]

    @classmethod
    def of(cls, candidates: pl.DataFrame, names: tuple[str, ...]) -> _Dense:
        index = {name: i for i, name in enumerate(names)}
        unknown = set(candidates["sku"].unique().to_list()) - set(index)
        if unknown:
            raise ValueError(f"unknown SKUs {sorted(unknown)}")
        request_id = candidates["request_id"]
        row = (request_id.rank("dense").to_numpy() - 1).astype(np.int64)
        n = int(row.max()) + 1 if len(row) else 0
        sku = np.array([index[name] for name in candidates["sku"]], dtype=np.int64)
        eligible = np.zeros((n, len(names)), dtype=bool)
        eligible[row, sku] = True
        first_row = np.unique(row, return_index=True)[1].astype(np.int64)
        return cls(request_id.gather(first_row), first_row, row, sku, eligible)

    def per_request(self, values: pl.Series | np.ndarray) -> np.ndarray:
        return np.asarray(values)[self.first_row]

    def matrix(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full(self.eligible.shape, fill, dtype=np.float64)
        out[self.row, self.sku] = values
        return out

    def choose(self, best: np.ndarray, names: tuple[str, ...]) -> pl.DataFrame:
        if not self.eligible[np.arange(len(best)), best].all():
            raise AssertionError("a policy chose a SKU outside the candidate set")
        return pl.DataFrame({"request_id": self.request_id, "sku": np.array(names)[best]}).sort("request_id")

    def lowest(self, score: np.ndarray, names: tuple[str, ...]) -> pl.DataFrame:
        """The eligible SKU with the lowest [n, k] ``score`` (ties: catalog order)."""
        return self.choose(np.argmin(np.where(self.eligible, score, np.inf), axis=1), names)


def random_choice(candidates: pl.DataFrame, *, seed: int = 0, catalog: Catalog | None = None) -> pl.DataFrame:
    """Uniform over each request's candidates, keyed by (seed, request_id, sku): order-independent."""
    names = (catalog or load_catalog()).names
    dense = _Dense.of(candidates, names)
    u = keyed_uniforms(candidates["request_id"], candidates["sku"], seed=seed, streams=1)[:, 0]
    return dense.lowest(dense.matrix(u, np.inf), names)


def cheapest(candidates: pl.DataFrame, *, catalog: Catalog | None = None) -> pl.DataFrame:
    """Lowest estimated serving cost from the logged features and the catalog.

    The estimate is the logging policy's prior (``candidate_priors``): the catalog's serving rates
    applied to the logged prompt tokens split by the logged ``expected_cache_hit``, and a per-hint
    answer length capped by ``max_tokens`` and the SKU.
    """
    catalog = catalog or load_catalog()
    dense = _Dense.of(candidates, catalog.names)
    priors = candidate_priors(
        LoggingPolicyConfig(epsilon=0.0),
        catalog,
        dense.per_request(candidates["task_type"]),
        dense.per_request(candidates["prompt_tokens"]),
        dense.per_request(candidates["max_tokens"]),
        np.nan_to_num(dense.matrix(candidates["expected_cache_hit"].to_numpy(), 0.0)),
    )
    return dense.lowest(priors.cost_usd, catalog.names)


def always_best(candidates: pl.DataFrame, *, catalog: Catalog | None = None) -> pl.DataFrame:
    """The most capable candidate by catalog facts: highest tier, then newest generation, then
    standard before long-context (same model, pricier), then higher list price."""
    catalog = catalog or load_catalog()
    skus = SkuAttributes.from_skus(catalog.skus)
    key = (
        skus.tier_index * 1e6 - skus.generation * 1e4 + skus.long_context * 1e3 - skus.price_input
    )  # SKU_TIERS is large, medium, small: a lower index is more capable
    dense = _Dense.of(candidates, catalog.names)
    return dense.lowest(np.broadcast_to(key, dense.eligible.shape), catalog.names)


def rules(candidates: pl.DataFrame, *, catalog: Catalog | None = None) -> pl.DataFrame:
    """The logging policy's greedy choice (``rules-v1`` at ε = 0) from the logged features."""
    catalog = catalog or load_catalog()
    config = LoggingPolicyConfig(epsilon=0.0)
    dense = _Dense.of(candidates, catalog.names)
    tenant_tier = dense.per_request(candidates["tenant_tier"])
    preferred = preferred_tier(
        config,
        tenant_tier,
        dense.per_request(candidates["task_type"]),
        dense.per_request(candidates["prompt_tokens"]),
        dense.per_request(candidates["has_code"]).astype(bool),
    )
    keys = rank_keys(config, SkuAttributes.from_skus(catalog.skus), preferred, tenant_tier)
    _, greedy = action_probabilities(keys, dense.eligible, 0.0)
    return dense.choose(greedy, catalog.names)


def oracle(
    truth_by_candidate: pl.DataFrame,
    *,
    budget_usd: float = 0.012,
    cost_multiplier: float | None = None,
    latency_multiplier: float = 0.0,
    slo_ttft_ms: float | None = None,
    catalog: Catalog | None = None,
) -> tuple[pl.DataFrame, float]:
    """USES THE TRUTH. Per request, the eligible SKU of highest true utility
    (``router_model.policy.utility_of`` of ``p_good``, ``cost_usd`` and ``ttft_expected_ms``).

    With ``slo_ttft_ms`` set, candidates whose expected TTFT misses it are dropped unless all do
    (then the fastest stays), and μ prices lateness: ``router_model.policy`` at ε = 0, fed the
    truth. With ``cost_multiplier`` None, λ is the smallest value (bisection) whose mean expected
    cost is within the budget (0 if λ = 0 already is). Returns (choices, λ).
    """
    names = (catalog or load_catalog()).names
    frame = truth_by_candidate.filter(pl.col("eligible"))
    dense = _Dense.of(frame, names)
    quality = dense.matrix(frame["p_good"].to_numpy())
    cost_usd = dense.matrix(frame["cost_usd"].to_numpy())
    allowed = dense.eligible
    known_ttft = np.zeros(allowed.shape)  # no SLO: lateness is not priced
    if slo_ttft_ms is not None:
        ttft = dense.matrix(frame["ttft_expected_ms"].to_numpy(), np.inf)
        feasible = allowed & (ttft <= slo_ttft_ms)
        fastest = np.zeros_like(allowed)
        fastest[np.arange(len(ttft)), np.argmin(ttft, axis=1)] = True
        allowed = np.where(feasible.any(axis=1)[:, None], feasible, fastest)
        known_ttft = np.where(dense.eligible, ttft, 0.0)  # ineligible cells are never chosen
    params = PolicyParams(
        latency_multiplier=latency_multiplier if slo_ttft_ms is not None else 0.0,
        epsilon=0.0,
        slo_ttft_ms=slo_ttft_ms or 1.0,
        budget_usd=budget_usd,
    )
    budget_share = cost_usd / budget_usd

    def pick(lam: float) -> tuple[np.ndarray, float]:
        utility = utility_of(quality, cost_usd, known_ttft, replace(params, cost_multiplier=lam))
        best = np.argmin(np.where(allowed, -utility, np.inf), axis=1)
        return best, float(budget_share[np.arange(len(best)), best].mean()) if len(best) else 0.0

    if cost_multiplier is None:
        low, high = 0.0, 1.0
        if pick(0.0)[1] <= 1.0:
            high = 0.0
        else:
            while pick(high)[1] > 1.0 and high < 1e6:
                low, high = high, high * 2.0
            for _ in range(50):
                middle = (low + high) / 2.0
                low, high = (low, middle) if pick(middle)[1] <= 1.0 else (middle, high)
        cost_multiplier = high
    return dense.choose(pick(cost_multiplier)[0], names), cost_multiplier
