"""From the scorer's per-candidate heads to the policy's inputs: expected cost and the TTFT used.

One definition for serving (one request's candidates) and offline evaluation (every logged
candidate row), so the policy replayed offline prices candidates exactly as the gateway does:

- **expected serving cost** = ``Catalog.request_cost_usd`` of the prompt split by the
  candidate's ``expected_cache_hit`` (cached tokens are cheaper to serve) plus the predicted
  output tokens (clipped at zero);
- **the TTFT the policy sees** is the ``ttft_p90_ms`` head: the SLO filter and the latency
  penalty act on a high quantile, because a p99 SLO is not kept by routing on medians.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from features.catalog import Catalog
from features.identity_cache import IdentityCache
from router_model.policy import CandidatePrediction

POLICY_TTFT_HEAD = "ttft_p90_ms"
POLICY_HEADS: tuple[str, ...] = ("p_quality", POLICY_TTFT_HEAD, "output_tokens")  # what the policy reads


def expected_costs(
    catalog: Catalog,
    skus: Sequence[str] | np.ndarray,
    prompt_tokens: np.ndarray,
    cache_hit: np.ndarray,
    output_tokens: np.ndarray,
) -> np.ndarray:
    """Expected serving cost (USD) of each candidate row; arrays are aligned with ``skus``.

    ``Catalog.request_cost_usd`` with the prompt split by the expected cache hit, vectorised:
    one per-token rate table per catalog, one gather and a few array operations per call (the
    gateway prices a dozen candidates per request; training, millions of rows).
    """
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    cached = prompt * np.minimum(np.maximum(np.asarray(cache_hit, dtype=np.float64), 0.0), 1.0)
    output = np.maximum(np.asarray(output_tokens, dtype=np.float64), 0.0)
    index, rates = _rate_table(catalog)
    rows = rates[[index[str(sku)] for sku in skus]] if len(skus) else np.zeros((0, 3))
    return ((prompt - cached) * rows[:, 0] + cached * rows[:, 1] + output * rows[:, 2]) / 1e6


def _build_rate_table(catalog: Catalog) -> tuple[dict[str, int], np.ndarray]:
    """``[n_skus, 3]`` USD per 1M input / cached input / output tokens."""
    index = {name: i for i, name in enumerate(catalog.names)}
    rates = np.array(
        [[c.input, c.cached_input, c.output] for c in (catalog.serving_cost(name) for name in catalog.names)],
        dtype=np.float64,
    )
    return index, rates


_rate_table = IdentityCache(_build_rate_table)  # one table per catalog object


def candidate_predictions(
    skus: Sequence[str], heads: Mapping[str, np.ndarray], costs: np.ndarray
) -> list[CandidatePrediction]:
    """The policy's view of each candidate row (``heads`` from ``RouterScorer.score``)."""
    quality = heads["p_quality"].tolist()
    ttft = heads[POLICY_TTFT_HEAD].tolist()
    tokens = heads["output_tokens"].tolist()
    cost = np.asarray(costs).tolist()
    return [CandidatePrediction(sku, quality[i], ttft[i], tokens[i], cost[i]) for i, sku in enumerate(skus)]
