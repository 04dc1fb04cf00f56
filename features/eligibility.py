"""Which SKUs may serve a request: the one candidate rule for serving, the simulator and diagnostics.

A SKU is eligible for a request when all three hold:

1. **entitled** — the tenant's plan includes it;
2. **in region** — it is deployed in the tenant's home region, or in one of the extra
   ``allowed_regions`` (the residency filter in ``serving.policy_checks`` decides those; a
   tenant with ``residency_required`` never gets any);
3. **context fits** — ``prompt_tokens + clamp_max_tokens(sku, max_tokens) <= context_window``:
   the prompt plus the answer the SKU will actually be asked for fits its window.

The answer part is clamped, not the raw ``max_tokens``, because that is what is dispatched:
a worker (vLLM and the simulated one alike) rejects ``max_tokens`` above the SKU's
``max_output_tokens``, so serving sends ``clamp_max_tokens(sku, max_tokens)`` instead. The
client asked for *at most* ``max_tokens``; a SKU that stops earlier ends with
``stop_reason="max_tokens"``, which the Messages API allows. A request asking for 64K tokens
is therefore still eligible for a SKU with an 8K output cap, and the fit check uses the 8K.

:func:`eligible_skus` is the fast path (12 SKUs, plain Python); :func:`eligibility_report`
says why each excluded SKU was excluded; :func:`context_fits_matrix` is the same context rule
column-wise for the simulator's bootstrap, which evaluates it for a whole window at once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from features.catalog import Sku


class Exclusion(StrEnum):
    """Why a SKU cannot serve a request."""

    NOT_ENTITLED = "not_entitled"
    NOT_IN_REGION = "not_in_region"
    CONTEXT_TOO_SMALL = "context_too_small"


@dataclass(frozen=True, slots=True)
class SkuVerdict:
    """One SKU's eligibility for one request; ``reasons`` is empty when it is eligible."""

    sku: Sku
    reasons: tuple[Exclusion, ...]

    @property
    def eligible(self) -> bool:
        return not self.reasons


def clamp_max_tokens(sku: Sku, max_tokens: int) -> int:
    """The ``max_tokens`` to send to ``sku``: the client's value, capped at the SKU's output limit.

    Serving must dispatch this value, never the raw one: a worker rejects ``max_tokens`` above
    ``sku.max_output_tokens`` with a 400. The lower bound is not checked here (request
    validation rejects ``max_tokens < 1`` before any SKU is considered).
    """
    return min(max_tokens, sku.max_output_tokens)


def context_fits(sku: Sku, *, prompt_tokens: int, max_tokens: int) -> bool:
    """The prompt plus the (clamped) answer fit the SKU's context window."""
    return prompt_tokens + clamp_max_tokens(sku, max_tokens) <= sku.context_window


def context_fits_matrix(
    context_window: np.ndarray,
    max_output_tokens: np.ndarray,
    prompt_tokens: np.ndarray,
    max_tokens: np.ndarray,
) -> np.ndarray:
    """[request, sku] :func:`context_fits`, column-wise: SKU arrays [sku], request arrays [request]."""
    answer = np.minimum(np.asarray(max_tokens)[:, None], np.asarray(max_output_tokens)[None, :])
    return np.asarray(prompt_tokens)[:, None] + answer <= np.asarray(context_window)[None, :]


def _regions(region: str, allowed_regions: Iterable[str] | None) -> tuple[str, ...]:
    if not allowed_regions:
        return (region,)
    return (region, *(extra for extra in allowed_regions if extra != region))


def eligible_skus(
    skus: Iterable[Sku],
    *,
    entitled: Collection[str],
    region: str,
    prompt_tokens: int,
    max_tokens: int,
    allowed_regions: Iterable[str] | None = None,
) -> tuple[Sku, ...]:
    """The SKUs (in ``skus`` order, e.g. a :class:`~features.catalog.Catalog`) that may serve the request.

    ``entitled`` holds SKU names (a frozenset makes the membership test O(1)); ``region`` is the
    tenant's home region; ``allowed_regions`` are further regions the request may be served in
    (``None``: the home region only).
    """
    regions = frozenset(_regions(region, allowed_regions))
    return tuple(
        sku
        for sku in skus
        if sku.name in entitled
        and not regions.isdisjoint(sku.regions)
        and prompt_tokens + clamp_max_tokens(sku, max_tokens) <= sku.context_window  # context_fits
    )


def eligibility_report(
    skus: Iterable[Sku],
    *,
    entitled: Collection[str],
    region: str,
    prompt_tokens: int,
    max_tokens: int,
    allowed_regions: Iterable[str] | None = None,
) -> tuple[SkuVerdict, ...]:
    """Every SKU with all the reasons it is excluded (for error messages, logs and debugging).

    The eligible SKUs are exactly those :func:`eligible_skus` returns, in the same order.
    """
    regions = _regions(region, allowed_regions)
    verdicts = []
    for sku in skus:
        reasons = []
        if sku.name not in entitled:
            reasons.append(Exclusion.NOT_ENTITLED)
        if not any(r in sku.regions for r in regions):
            reasons.append(Exclusion.NOT_IN_REGION)
        if not context_fits(sku, prompt_tokens=prompt_tokens, max_tokens=max_tokens):
            reasons.append(Exclusion.CONTEXT_TOO_SMALL)
        verdicts.append(SkuVerdict(sku=sku, reasons=tuple(reasons)))
    return tuple(verdicts)


def serving_region(sku: Sku, regions: Sequence[str]) -> str | None:
    """The first of ``regions`` (home region first) where ``sku`` is deployed, or None."""
    return next((region for region in regions if region in sku.regions), None)
