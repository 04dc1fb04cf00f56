"""Ground truth of the simulated world: how good, how fast and how reliable each SKU really is.

Every formula the simulation draws outcomes from lives here, with its parameters in
:class:`GroundTruthParams` (documented, with the formulas, in ``docs/simulator.md``). The
router never sees these functions; it only sees outcomes drawn from them, which is what it
has to learn from. All functions are vectorised over numpy arrays indexed by the catalog's
SKU order and ``features.schema.TASK_TYPES`` order.

- quality: ``P(good) = sigmoid(capability[sku, task] - slope[task] * difficulty - long_prompt_penalty)``
  with ``capability = tier_capability[tier] + generation_slope * (generation - 4)
  + tier_task_strength[tier][task]``; a truncated answer keeps ``truncation_quality_factor`` of it.
- load: ``rho = fleet_utilization * utilization_multiplier[sku] * diurnal(region, t)``, capped.
- latency: the catalog's ``LatencyProfile`` with a queueing wait ``queue_wait_factor * ttft_base
  * rho / (1 - rho)`` and lognormal noise.
- failures: a per-SKU base error rate, an overload probability rising exponentially with load,
  and a small timeout probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from features.catalog import REGIONS, Catalog
from features.schema import SKU_TIERS, TASK_TYPES

HOURS_PER_DAY = 24.0


def _task_values(**values: float) -> dict[str, float]:
    unknown = set(values) - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown task types {sorted(unknown)}")
    return values


@dataclass(frozen=True)
class GroundTruthParams:
    """Every parameter of the ground-truth formulas; the defaults are the documented world."""

    # quality
    tier_capability: dict[str, float] = field(
        default_factory=lambda: {"large": 2.6, "medium": 2.0, "small": 1.2}
    )
    generation_slope: float = 0.6  # capability per model generation (e.g. 3.5 -> 4.5 adds 0.6)
    reference_generation: float = 4.0
    tier_task_strength: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            "large": _task_values(reasoning=0.5, math=0.5, creative=0.3, knowledge=0.3),
            "medium": _task_values(code=0.55, extraction=0.2, summarization=0.2),
            "small": _task_values(extraction=0.7, chat=0.6, summarization=0.4),
        }
    )
    difficulty_slope: dict[str, float] = field(
        default_factory=lambda: _task_values(
            chat=2.5,
            code=4.0,
            summarization=2.5,
            extraction=2.5,
            reasoning=4.5,
            creative=3.0,
            math=5.0,
            knowledge=3.0,
        )
    )
    long_prompt_reference_tokens: float = 16_000.0
    long_prompt_penalty: dict[str, float] = field(
        default_factory=lambda: {"large": 0.05, "medium": 0.15, "small": 0.35}  # per doubling above reference
    )
    truncation_quality_factor: float = 0.6
    # load and latency
    diurnal_peak_to_mean: float = 1.8
    diurnal_peak_local_hour: float = 14.0
    region_utc_offset_hours: dict[str, float] = field(
        default_factory=lambda: {"us": -6.0, "eu": 1.0, "apac": 8.0}
    )
    utilization_multiplier: dict[str, float] = field(default_factory=dict)  # per SKU name, default 1.0
    max_load: float = 0.97
    queue_wait_factor: float = 0.25
    ttft_noise_sigma: float = 0.25
    tpot_noise_sigma: float = 0.12
    # failures
    base_error_rate: float = 0.002
    sku_error_rate: dict[str, float] = field(
        default_factory=lambda: {"claude-opus-4": 0.004, "claude-sonnet-3-5": 0.004, "claude-haiku-3": 0.003}
    )
    overload_base: float = 0.0005
    overload_reference_load: float = 0.45
    overload_load_scale: float = 0.08
    overload_max: float = 0.5
    timeout_rate: float = 0.0005
    attempt_timeout_ms: float = 30_000.0
    # prompt cache (per SKU and region, see simulator.prompt_cache_ttl)
    cache_ttl_s: float = 300.0
    cache_eviction_base: float = 0.05
    cache_eviction_per_load: float = 0.15
    # quality signals
    judge_flip_rate: float = 0.05
    user_feedback_rate: dict[str, float] = field(default_factory=lambda: {"api": 0.02, "app": 0.06})
    user_feedback_bad_multiplier: float = 2.0
    user_accuracy_good: float = 0.85  # P(thumbs up | good answer)
    user_accuracy_bad: float = 0.75  # P(thumbs down | bad answer)


def _bessel_i0(x: float) -> float:
    """Modified Bessel function of the first kind, order 0 (power series; x is small here)."""
    term, total, k = 1.0, 1.0, 0
    while term > 1e-17 * total:
        k += 1
        term *= (x / (2 * k)) ** 2
        total += term
    return total


def diurnal_concentration(peak_to_mean: float) -> float:
    """The von Mises concentration ``kappa`` whose curve ``exp(kappa cos x) / I0(kappa)`` peaks at ``peak_to_mean``."""
    if peak_to_mean <= 1.0:
        return 0.0
    low, high = 0.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        if math.exp(middle) / _bessel_i0(middle) < peak_to_mean:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def diurnal_multiplier(params: GroundTruthParams, region: str, hours_utc: np.ndarray) -> np.ndarray:
    """Arrival-rate (and load) multiplier of a region at UTC hours; mean 1 over a day."""
    kappa = diurnal_concentration(params.diurnal_peak_to_mean)
    local = np.asarray(hours_utc, dtype=np.float64) + params.region_utc_offset_hours[region]
    angle = 2.0 * np.pi * (local - params.diurnal_peak_local_hour) / HOURS_PER_DAY
    return np.exp(kappa * np.cos(angle)) / _bessel_i0(kappa)


@dataclass(frozen=True, eq=False)
class SkuTruth:
    """The catalog and ground-truth parameters as arrays in catalog order (index = SKU index)."""

    params: GroundTruthParams
    names: tuple[str, ...]
    tier_index: np.ndarray  # into SKU_TIERS
    generation: np.ndarray
    long_context: np.ndarray
    context_window: np.ndarray
    max_output_tokens: np.ndarray
    capability: np.ndarray  # [sku, task]
    error_rate: np.ndarray
    utilization: np.ndarray  # mean load factor
    ttft_base_ms: np.ndarray
    prefill_tokens_per_s: np.ndarray
    decode_tokens_per_s: np.ndarray
    batch_slowdown: np.ndarray
    region_mask: np.ndarray  # [sku, region] in REGIONS order
    serving_cost_per_mtok: np.ndarray  # [sku, (input, cached_input, output)]
    list_price_per_mtok: np.ndarray  # [sku, (input, cached_input, output)]

    @classmethod
    def from_catalog(cls, catalog: Catalog, params: GroundTruthParams) -> SkuTruth:
        skus = catalog.skus
        tiers = np.array([SKU_TIERS.index(sku.tier) for sku in skus])
        generation = np.array([float(sku.generation) for sku in skus])
        capability = np.zeros((len(skus), len(TASK_TYPES)))
        for s, sku in enumerate(skus):
            strengths = params.tier_task_strength.get(sku.tier, {})
            for t, task in enumerate(TASK_TYPES):
                capability[s, t] = (
                    params.tier_capability[sku.tier]
                    + params.generation_slope * (generation[s] - params.reference_generation)
                    + strengths.get(task, 0.0)
                )
        costs = [catalog.serving_cost(sku) for sku in skus]
        return cls(
            params=params,
            names=catalog.names,
            tier_index=tiers,
            generation=generation,
            long_context=np.array([sku.long_context for sku in skus]),
            context_window=np.array([sku.context_window for sku in skus], dtype=np.int64),
            max_output_tokens=np.array([sku.max_output_tokens for sku in skus], dtype=np.int64),
            capability=capability,
            error_rate=np.array(
                [params.sku_error_rate.get(sku.name, params.base_error_rate) for sku in skus]
            ),
            utilization=np.array(
                [catalog.fleet_utilization * params.utilization_multiplier.get(sku.name, 1.0) for sku in skus]
            ),
            ttft_base_ms=np.array([sku.latency.ttft_base_ms for sku in skus]),
            prefill_tokens_per_s=np.array([sku.latency.prefill_tokens_per_s for sku in skus]),
            decode_tokens_per_s=np.array([sku.latency.decode_tokens_per_s for sku in skus]),
            batch_slowdown=np.array([sku.latency.batch_slowdown for sku in skus]),
            region_mask=np.array([[sku.deployed_in(region) for region in REGIONS] for sku in skus]),
            serving_cost_per_mtok=np.array([[c.input, c.cached_input, c.output] for c in costs]),
            list_price_per_mtok=np.array(
                [[sku.list_price.input, sku.list_price.cached_input, sku.list_price.output] for sku in skus]
            ),
        )

    def index(self, name: str) -> int:
        return self.names.index(name)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def quality_probability(
    truth: SkuTruth,
    sku_index: np.ndarray,
    task_index: np.ndarray,
    difficulty: np.ndarray,
    prompt_tokens: np.ndarray,
    truncated: np.ndarray | None = None,
) -> np.ndarray:
    """P(the answer is good) for each (SKU, task, difficulty, prompt length)."""
    params = truth.params
    sku_index = np.asarray(sku_index)
    task_index = np.asarray(task_index)
    slopes = np.array([params.difficulty_slope[task] for task in TASK_TYPES])
    penalty_per_tier = np.array([params.long_prompt_penalty[tier] for tier in SKU_TIERS])
    doublings = np.maximum(
        0.0,
        np.log2(
            np.maximum(np.asarray(prompt_tokens, dtype=np.float64), 1.0) / params.long_prompt_reference_tokens
        ),
    )
    logit = (
        truth.capability[sku_index, task_index]
        - slopes[task_index] * np.asarray(difficulty, dtype=np.float64)
        - penalty_per_tier[truth.tier_index[sku_index]] * doublings
    )
    probability = sigmoid(logit)
    if truncated is not None:
        probability = truncated_quality(params, probability, truncated)
    return probability


def truncated_quality(
    params: GroundTruthParams, probability: np.ndarray, truncated: np.ndarray
) -> np.ndarray:
    """P(good) of answers cut at ``max_tokens`` keeps ``truncation_quality_factor`` of it."""
    return np.where(truncated, probability * params.truncation_quality_factor, probability)


def answer_tokens(
    truth: SkuTruth, sku_index: np.ndarray, output_tokens: np.ndarray, truncated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens a SKU returns, whether the answer was cut at max_tokens) for a true answer length.

    The SKU caps the answer at its ``max_output_tokens``; ``truncated`` says the client's
    ``max_tokens`` already cut it. Broadcasts like numpy (e.g. [n, 1] answers against [n, k] SKUs).
    """
    returned = np.minimum(output_tokens, truth.max_output_tokens[np.asarray(sku_index)])
    return returned, np.asarray(truncated) | (returned < output_tokens)


def load_factor(
    truth: SkuTruth, sku_index: np.ndarray, region: np.ndarray, hours_utc: np.ndarray
) -> np.ndarray:
    """Busy share of a SKU's replicas in a region at a time: mean utilization times the diurnal curve."""
    region = np.asarray(region)
    multiplier = np.ones(np.shape(hours_utc), dtype=np.float64)
    for r, name in enumerate(REGIONS):
        in_region = region == r
        if in_region.any():
            multiplier[in_region] = diurnal_multiplier(truth.params, name, np.asarray(hours_utc)[in_region])
    return np.minimum(truth.utilization[np.asarray(sku_index)] * multiplier, truth.params.max_load)


def queue_wait_ms(truth: SkuTruth, sku_index: np.ndarray, load: np.ndarray) -> np.ndarray:
    return truth.params.queue_wait_factor * truth.ttft_base_ms[sku_index] * load / (1.0 - load)


def ttft_ms(
    truth: SkuTruth, sku_index: np.ndarray, uncached_tokens: np.ndarray, load: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """``LatencyProfile.ttft_ms(uncached, queue_wait)`` times ``exp(sigma * noise)`` (noise ~ N(0, 1))."""
    mean = (
        truth.ttft_base_ms[sku_index]
        + queue_wait_ms(truth, sku_index, load)
        + 1000.0 * uncached_tokens / truth.prefill_tokens_per_s[sku_index]
    )
    return mean * np.exp(truth.params.ttft_noise_sigma * noise)


def tpot_ms(truth: SkuTruth, sku_index: np.ndarray, load: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``LatencyProfile.time_per_output_token_ms(batch_occupancy=load)`` times lognormal noise."""
    occupancy = np.clip(load, 0.0, 1.0)
    mean = 1000.0 / truth.decode_tokens_per_s[sku_index] * (1.0 + truth.batch_slowdown[sku_index] * occupancy)
    return mean * np.exp(truth.params.tpot_noise_sigma * noise)


def failure_probabilities(
    truth: SkuTruth, sku_index: np.ndarray, load: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(error), P(overloaded), P(timeout)) of one attempt on a SKU at a load."""
    params = truth.params
    overloaded = np.minimum(
        params.overload_max,
        params.overload_base * np.exp((load - params.overload_reference_load) / params.overload_load_scale),
    )
    error = truth.error_rate[np.asarray(sku_index)]
    timeout = np.full(np.shape(load), params.timeout_rate)
    return error, overloaded, timeout


def cache_eviction_probability(params: GroundTruthParams, load: np.ndarray) -> np.ndarray:
    """Probability a prefix sent within the TTL was nonetheless evicted (or landed on a cold replica)."""
    return np.clip(params.cache_eviction_base + params.cache_eviction_per_load * load, 0.0, 1.0)
