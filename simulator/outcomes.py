"""What happens after the router decides: attempts, fallbacks, latency, cache hits and quality.

Column-wise over one window of requests, in arrival order. Each request tries its chosen SKU
and then its fallbacks (at most ``1 + max_fallbacks`` attempts) until one succeeds; a failed
attempt is an error (500), an overload rejection (529) or a timeout (504), with probabilities
from :func:`simulator.ground_truth.failure_probabilities` at the SKU's load. All failures
happen before the first byte, so falling back is always allowed. The SKU that served a
request holds its prompt in the prompt cache (:mod:`simulator.prompt_cache_ttl`); latency,
cost and quality are drawn from the ground truth with the served SKU's cached tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.ground_truth import (
    SkuTruth,
    answer_tokens,
    cache_eviction_probability,
    failure_probabilities,
    load_factor,
    quality_probability,
    tpot_ms,
    truncated_quality,
    ttft_ms,
)
from simulator.prompt_cache_ttl import ServedEvents, cached_prefix_tokens

STATUS_NAMES = ("ok", "error", "overloaded", "timeout")  # subset of features.records.ATTEMPT_STATUSES
ERROR_TYPES = (None, "api_error", "overloaded_error", "timeout_error")
HTTP_STATUS = (200, 500, 529, 504)
OK, ERROR, OVERLOADED, TIMEOUT = range(4)
NOT_TRIED = -1


@dataclass(frozen=True)
class OutcomeParams:
    decision_ms_median: float = 0.5
    decision_ms_sigma: float = 0.4
    overload_reject_ms_median: float = 20.0
    judge_fraction: float = 0.5  # share of served requests an automatic judge scores
    feedback_delay_s_median: float = 120.0
    feedback_delay_s_sigma: float = 1.0
    replicas_per_sku: int = 4


@dataclass(frozen=True, eq=False)
class AttemptColumns:
    """[n, max_attempts] per attempt; ``status`` is NOT_TRIED where no attempt was made."""

    sku: np.ndarray
    status: np.ndarray
    start_us: np.ndarray
    ttft_ms: np.ndarray  # NaN unless ok
    tpot_ms: np.ndarray  # NaN unless ok
    e2e_ms: np.ndarray
    input_tokens: np.ndarray  # uncached prompt tokens sent
    cached_tokens: np.ndarray
    output_tokens: np.ndarray


@dataclass(frozen=True, eq=False)
class RequestOutcomes:
    decision_ms: np.ndarray
    attempts: AttemptColumns
    attempt_count: np.ndarray
    served_slot: np.ndarray  # which attempt served, -1 if none
    served_sku: np.ndarray  # -1 if every attempt failed
    prefix_tokens: np.ndarray  # [n, sku] cached prefix each SKU holds (the router's expected cache hit)
    completion_us: np.ndarray
    stop_max_tokens: np.ndarray
    p_good: np.ndarray  # NaN if not served
    good: np.ndarray
    judged: np.ndarray
    judge_score: np.ndarray
    feedback: np.ndarray
    feedback_score: np.ndarray
    feedback_us: np.ndarray


def simulate_outcomes(
    truth: SkuTruth,
    params: OutcomeParams,
    rng: np.random.Generator,
    *,
    ts_us: np.ndarray,
    region: np.ndarray,
    tenant: np.ndarray,
    conversation: np.ndarray,
    surface_is_app: np.ndarray,
    task: np.ndarray,
    difficulty: np.ndarray,
    prompt_tokens: np.ndarray,
    system_tokens: np.ndarray,
    output_tokens: np.ndarray,
    truncated: np.ndarray,
    attempt_skus: np.ndarray,
    cache_tail: ServedEvents,
    p_good_by_sku: np.ndarray | None = None,
) -> RequestOutcomes:
    """Simulate every attempt of every request; ``attempt_skus`` is [n, k] (chosen, fallbacks..., -1 pad).

    ``p_good_by_sku`` ([n, sku]), if given, replaces the quality formula: P(good) on the serving
    SKU is its entry (the real-outcomes world's scores), times the truncation factor if cut.
    """
    gt = truth.params
    n, k = attempt_skus.shape
    hours = (ts_us / 3.6e9) % 24
    tried_sku = np.maximum(attempt_skus, 0)
    load = load_factor(truth, tried_sku, np.repeat(region[:, None], k, 1), np.repeat(hours[:, None], k, 1))
    p_error, p_overloaded, p_timeout = failure_probabilities(truth, tried_sku, load)
    u = rng.random((n, k))
    outcome = np.full((n, k), OK)
    outcome[u < p_error + p_overloaded + p_timeout] = TIMEOUT
    outcome[u < p_error + p_overloaded] = OVERLOADED
    outcome[u < p_error] = ERROR
    exists = attempt_skus >= 0
    ok_before = np.cumsum(np.concatenate([np.ones((n, 1)), (outcome[:, :-1] != OK)], axis=1) == 0, axis=1) > 0
    status = np.where(exists & ~ok_before, outcome, NOT_TRIED)
    served = status == OK
    served_slot = np.where(served.any(axis=1), np.argmax(served, axis=1), -1)
    rows = np.arange(n)
    served_sku = np.where(served_slot >= 0, attempt_skus[rows, np.maximum(served_slot, 0)], -1)

    window = ServedEvents(
        ts_us=ts_us, sku=served_sku, tenant=tenant, conversation=conversation, prompt_tokens=prompt_tokens
    )
    prefix = cached_prefix_tokens(
        cache_tail,
        window,
        system_tokens=system_tokens,
        n_skus=len(truth.names),
        ttl_us=int(gt.cache_ttl_s * 1e6),
    )
    kept = rng.random((n, k)) >= cache_eviction_probability(gt, load)
    cached = np.where(kept & exists, prefix[rows[:, None], tried_sku], 0)
    uncached = prompt_tokens[:, None] - cached
    out, cut = answer_tokens(truth, tried_sku, output_tokens[:, None], truncated[:, None])

    ttft = ttft_ms(truth, tried_sku, uncached, load, rng.standard_normal((n, k)))
    tpot = tpot_ms(truth, tried_sku, load, rng.standard_normal((n, k)))
    e2e = np.select(
        [status == OK, status == ERROR, status == OVERLOADED, status == TIMEOUT],
        [
            ttft + tpot * np.maximum(out - 1, 0),
            ttft * rng.uniform(0.2, 1.0, (n, k)),
            params.overload_reject_ms_median * np.exp(0.5 * rng.standard_normal((n, k))),
            np.full((n, k), gt.attempt_timeout_ms),
        ],
        default=0.0,
    )
    decision_ms = params.decision_ms_median * np.exp(params.decision_ms_sigma * rng.standard_normal(n))
    elapsed_us = np.cumsum(np.where(status != NOT_TRIED, e2e, 0.0) * 1000.0, axis=1)
    start_us = (
        ts_us[:, None]
        + (decision_ms * 1000.0)[:, None]
        + np.concatenate([np.zeros((n, 1)), elapsed_us[:, :-1]], axis=1)
    )
    attempts = AttemptColumns(
        sku=attempt_skus,
        status=status,
        start_us=start_us.astype(np.int64),
        ttft_ms=np.where(served, ttft, np.nan),
        tpot_ms=np.where(served, tpot, np.nan),
        e2e_ms=e2e,
        input_tokens=np.where(status != NOT_TRIED, uncached, 0),
        cached_tokens=np.where(served, cached, 0),
        output_tokens=np.where(served, out, 0),
    )
    completion_us = ts_us + (decision_ms * 1000.0 + elapsed_us[:, -1]).astype(np.int64)

    slot = np.maximum(served_slot, 0)
    was_served = served_slot >= 0
    stop_max_tokens = was_served & cut[rows, slot]
    if p_good_by_sku is None:
        served_quality = quality_probability(
            truth, np.maximum(served_sku, 0), task, difficulty, prompt_tokens, stop_max_tokens
        )
    else:
        served_quality = truncated_quality(
            gt, p_good_by_sku[rows, np.maximum(served_sku, 0)], stop_max_tokens
        )
    p_good = np.where(was_served, served_quality, np.nan)
    good = was_served & (rng.random(n) < np.nan_to_num(p_good))
    judged = was_served & (rng.random(n) < params.judge_fraction)
    judge_score = np.where(rng.random(n) < gt.judge_flip_rate, ~good, good).astype(np.float64)
    feedback_rate = np.where(surface_is_app, gt.user_feedback_rate["app"], gt.user_feedback_rate["api"])
    feedback_rate = np.where(
        good, feedback_rate, np.minimum(1.0, feedback_rate * gt.user_feedback_bad_multiplier)
    )
    feedback = was_served & (rng.random(n) < feedback_rate)
    correct = rng.random(n) < np.where(good, gt.user_accuracy_good, gt.user_accuracy_bad)
    feedback_score = np.where(correct, good, ~good).astype(np.float64)
    delay_s = params.feedback_delay_s_median * np.exp(params.feedback_delay_s_sigma * rng.standard_normal(n))
    return RequestOutcomes(
        decision_ms=decision_ms,
        attempts=attempts,
        attempt_count=(status != NOT_TRIED).sum(axis=1),
        served_slot=served_slot,
        served_sku=served_sku,
        prefix_tokens=prefix,
        completion_us=completion_us,
        stop_max_tokens=stop_max_tokens,
        p_good=p_good,
        good=good,
        judged=judged,
        judge_score=judge_score,
        feedback=feedback,
        feedback_score=feedback_score,
        feedback_us=completion_us + (delay_s * 1e6).astype(np.int64),
    )
