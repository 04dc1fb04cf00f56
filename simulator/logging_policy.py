"""The exploring rule-based logging policy (``rules-v1``): the router before any model is trained.

Greedy rule, over the eligible SKUs only (entitled, deployed in the tenant's home region,
context fits):

- a *preferred tier*: ``large`` for hard-looking requests (task hint reasoning/math/code with
  a long prompt or code in it) from enterprise and internal tenants; ``small`` for short
  chat/extraction/knowledge requests, and for everything free-tier that does not look hard;
  ``medium`` otherwise;
- SKUs are ranked by distance from the preferred tier, then standard before long-context
  (a long-context SKU wins only when nothing else fits), then newest generation first
  (cheapest list price first for free-tier tenants); the greedy choice is the first.

With probability ``epsilon`` the choice is instead uniform over the eligible set, so every
eligible SKU has probability ``epsilon / |E|`` and the greedy one ``1 - epsilon + epsilon / |E|``;
the logged propensity is exactly the chosen SKU's probability. The fallback order is the
rank order without the chosen SKU.

The vectorised functions are the definition; :func:`logging_policy` (one request, plain
objects) calls them with one row, so the bootstrap and a per-request caller cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from features.catalog import Catalog, Sku
from features.eligibility import context_fits_matrix
from features.eligibility import eligible_skus as shared_eligible_skus
from features.request import RequestFacts
from features.schema import SKU_TIERS, TASK_TYPES, TENANT_TIERS
from simulator.world import Tenant

ROUTER_VERSION = "rules-v1"
_NO_SKU = -1


@dataclass(frozen=True)
class LoggingPolicyConfig:
    epsilon: float = 0.1
    router_version: str = ROUTER_VERSION
    hard_tasks: tuple[str, ...] = ("reasoning", "math", "code")
    hard_min_prompt_tokens: int = 2000
    small_tasks: tuple[str, ...] = ("chat", "extraction", "knowledge")
    small_max_prompt_tokens: int = 4000
    large_tenant_tiers: tuple[str, ...] = ("enterprise", "internal")
    cheapest_first_tenant_tiers: tuple[str, ...] = ("free",)
    max_fallbacks: int = 2
    # the policy's prior on answer length per task hint, used only for the logged candidate priors
    output_tokens_prior: dict[str, float] = field(
        default_factory=lambda: {
            "chat": 250,
            "code": 550,
            "summarization": 300,
            "extraction": 200,
            "reasoning": 600,
            "creative": 450,
            "math": 450,
            "knowledge": 350,
        }
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")


@dataclass(frozen=True, eq=False)
class SkuAttributes:
    """What the rule reads about SKUs, as arrays in a fixed SKU order."""

    names: tuple[str, ...]
    tier_index: np.ndarray
    generation: np.ndarray
    long_context: np.ndarray
    price_input: np.ndarray
    context_window: np.ndarray
    max_output_tokens: np.ndarray

    @classmethod
    def from_skus(cls, skus: Sequence[Sku]) -> SkuAttributes:
        return cls(
            names=tuple(sku.name for sku in skus),
            tier_index=np.array([SKU_TIERS.index(sku.tier) for sku in skus], dtype=np.int64),
            generation=np.array([float(sku.generation) for sku in skus]),
            long_context=np.array([sku.long_context for sku in skus], dtype=bool),
            price_input=np.array([sku.list_price.input for sku in skus]),
            context_window=np.array([sku.context_window for sku in skus], dtype=np.int64),
            max_output_tokens=np.array([sku.max_output_tokens for sku in skus], dtype=np.int64),
        )


def context_fits(skus: SkuAttributes, prompt_tokens: np.ndarray, max_tokens: np.ndarray) -> np.ndarray:
    """[n, sku]: the prompt plus the (SKU-capped) answer fit the SKU's context window (the shared rule)."""
    return context_fits_matrix(skus.context_window, skus.max_output_tokens, prompt_tokens, max_tokens)


def eligible_skus(catalog: Catalog, tenant: Tenant, facts: RequestFacts) -> tuple[Sku, ...]:
    """Entitled, deployed in the tenant's home region (residency or not), and the context fits.

    The rule is :func:`features.eligibility.eligible_skus`, the one serving uses; the simulated
    world never serves outside the home region, so no extra regions are allowed here.
    """
    return shared_eligible_skus(
        catalog,
        entitled=tenant.entitled_skus,
        region=tenant.region,
        prompt_tokens=facts.prompt_tokens,
        max_tokens=facts.max_tokens,
    )


def _member(vocabulary: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """Boolean lookup table: is vocabulary[i] one of ``names``."""
    return np.array([name in names for name in vocabulary])


def preferred_tier(
    config: LoggingPolicyConfig,
    tenant_tier: np.ndarray,
    task_hint: np.ndarray,
    prompt_tokens: np.ndarray,
    has_code: np.ndarray,
) -> np.ndarray:
    """Index into SKU_TIERS of the tier the rule prefers for each request."""
    hard = _member(TASK_TYPES, config.hard_tasks)[task_hint] & (
        (np.asarray(prompt_tokens) >= config.hard_min_prompt_tokens) | has_code
    )
    large = hard & _member(TENANT_TIERS, config.large_tenant_tiers)[tenant_tier]
    short_easy = _member(TASK_TYPES, config.small_tasks)[task_hint] & (
        np.asarray(prompt_tokens) < config.small_max_prompt_tokens
    )
    cheapest_first = _member(TENANT_TIERS, config.cheapest_first_tenant_tiers)[tenant_tier]
    small = ~large & (short_easy | (cheapest_first & ~hard))
    tier = np.full(len(tenant_tier), SKU_TIERS.index("medium"))
    tier[large] = SKU_TIERS.index("large")
    tier[small] = SKU_TIERS.index("small")
    return tier


# distance of each SKU tier (columns, SKU_TIERS order) from the preferred tier (rows)
_TIER_DISTANCE = {
    "large": {"large": 0, "medium": 1, "small": 2},
    "medium": {"medium": 0, "small": 1, "large": 2},
    "small": {"small": 0, "medium": 1, "large": 2},
}
_TIER_DISTANCE_MATRIX = np.array([[_TIER_DISTANCE[p][s] for s in SKU_TIERS] for p in SKU_TIERS])


def rank_keys(
    config: LoggingPolicyConfig, skus: SkuAttributes, preferred: np.ndarray, tenant_tier: np.ndarray
) -> np.ndarray:
    """[n, sku] rank of each SKU for each request; lower is better; distinct within a row."""
    distance = _TIER_DISTANCE_MATRIX[preferred][:, skus.tier_index]
    cheapest_first = _member(TENANT_TIERS, config.cheapest_first_tenant_tiers)[tenant_tier]
    newest = -skus.generation[None, :]
    cheapest = skus.price_input[None, :] - 0.01 * skus.generation[None, :]
    within = np.where(cheapest_first[:, None], cheapest, newest)
    return 1000.0 * distance + 100.0 * skus.long_context[None, :] + within


def action_probabilities(
    keys: np.ndarray, eligible: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """([n, sku] probabilities, [n] greedy index); rows without an eligible SKU are all zero / -1."""
    masked = np.where(eligible, keys, np.inf)
    greedy = np.argmin(masked, axis=1)
    count = eligible.sum(axis=1)
    has_any = count > 0
    probabilities = np.where(eligible, epsilon / np.maximum(count, 1)[:, None], 0.0)
    rows = np.flatnonzero(has_any)
    probabilities[rows, greedy[rows]] += 1.0 - epsilon
    return probabilities, np.where(has_any, greedy, _NO_SKU)


def sample_actions(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The index drawn for each row with one uniform each (-1 where the row is empty)."""
    cumulative = np.cumsum(probabilities, axis=1)
    chosen = (uniforms[:, None] >= cumulative).sum(axis=1)
    nonzero = probabilities > 0
    last = probabilities.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    chosen = np.minimum(chosen, last)  # guards float round-off at the top of the cumulative sum
    return np.where(nonzero.any(axis=1), chosen, _NO_SKU)


def fallback_order(keys: np.ndarray, eligible: np.ndarray, chosen: np.ndarray, count: int) -> np.ndarray:
    """[n, count] SKU indices to fall back to, best rank first, -1 padded."""
    masked = np.where(eligible, keys, np.inf)
    rows = np.flatnonzero(chosen >= 0)
    masked[rows, chosen[rows]] = np.inf
    order = np.argsort(masked, axis=1, kind="stable")[:, :count]
    return np.where(np.isfinite(np.take_along_axis(masked, order, axis=1)), order, _NO_SKU)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    chosen: str
    propensity: float
    probabilities: dict[str, float]  # every eligible SKU
    greedy: str
    fallbacks: tuple[str, ...]


def logging_policy(
    facts: RequestFacts,
    tenant: Tenant,
    eligible: Sequence[Sku],
    rng: np.random.Generator,
    config: LoggingPolicyConfig | None = None,
) -> PolicyDecision:
    """Choose a SKU for one request; ``eligible`` must be non-empty (see :func:`eligible_skus`)."""
    if not eligible:
        raise ValueError("no eligible SKU")
    config = config or LoggingPolicyConfig()
    skus = SkuAttributes.from_skus(eligible)
    tenant_tier = np.array([TENANT_TIERS.index(tenant.tier)])
    preferred = preferred_tier(
        config,
        tenant_tier,
        np.array([TASK_TYPES.index(facts.task_type)]),
        np.array([facts.prompt_tokens]),
        np.array([facts.has_code]),
    )
    keys = rank_keys(config, skus, preferred, tenant_tier)
    mask = np.ones_like(keys, dtype=bool)
    probabilities, greedy = action_probabilities(keys, mask, config.epsilon)
    chosen = sample_actions(probabilities, np.array([rng.random()]))
    fallbacks = fallback_order(keys, mask, chosen, config.max_fallbacks)[0]
    return PolicyDecision(
        chosen=skus.names[chosen[0]],
        propensity=float(probabilities[0, chosen[0]]),
        probabilities={name: float(p) for name, p in zip(skus.names, probabilities[0], strict=True)},
        greedy=skus.names[greedy[0]],
        fallbacks=tuple(skus.names[i] for i in fallbacks if i >= 0),
    )


@dataclass(frozen=True, eq=False)
class CandidatePriors:
    """What the rule policy knew about each candidate, as [n, sku] arrays (logged, not used to choose)."""

    ttft_ms: np.ndarray  # catalog latency prior: base + uncached prompt / prefill rate (no queueing)
    output_tokens: np.ndarray  # the task hint's prior answer length, capped by max_tokens and the SKU
    cost_usd: np.ndarray  # serving cost of those tokens with the expected cache hit
    p_quality: np.ndarray  # NaN: the rule has no quality model
    utility: np.ndarray  # NaN: the rule does not score utility


def candidate_priors(
    config: LoggingPolicyConfig,
    catalog: Catalog,
    task_hint: np.ndarray,
    prompt_tokens: np.ndarray,
    max_tokens: np.ndarray,
    cache_hit: np.ndarray,
) -> CandidatePriors:
    skus = catalog.skus
    attributes = SkuAttributes.from_skus(skus)
    prior_by_task = np.array([config.output_tokens_prior[name] for name in TASK_TYPES])
    output = np.minimum(
        np.minimum(prior_by_task[task_hint], np.asarray(max_tokens))[:, None],
        attributes.max_output_tokens[None, :],
    ).astype(np.float64)
    cached = np.floor(np.asarray(prompt_tokens)[:, None] * cache_hit)
    uncached = np.asarray(prompt_tokens)[:, None] - cached
    ttft = (
        np.array([sku.latency.ttft_base_ms for sku in skus])[None, :]
        + 1000.0 * uncached / np.array([sku.latency.prefill_tokens_per_s for sku in skus])[None, :]
    )
    rates = np.array(
        [[c.input, c.cached_input, c.output] for c in (catalog.serving_cost(sku) for sku in skus)]
    )
    cost = (uncached * rates[:, 0] + cached * rates[:, 1] + output * rates[:, 2]) / 1e6
    nan = np.full(cost.shape, math.nan)
    return CandidatePriors(
        ttft_ms=ttft, output_tokens=output, cost_usd=cost, p_quality=nan, utility=nan.copy()
    )
