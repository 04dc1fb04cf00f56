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
from router_model.policy import CandidatePrediction

POLICY_TTFT_HEAD = "ttft_p90_ms"


def expected_costs(
    catalog: Catalog,
    skus: Sequence[str] | np.ndarray,
    prompt_tokens: np.ndarray,
    cache_hit: np.ndarray,
    output_tokens: np.ndarray,
) -> np.ndarray:
    """Expected serving cost (USD) of each candidate row; arrays are aligned with ``skus``."""
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    cached = prompt * np.clip(np.asarray(cache_hit, dtype=np.float64), 0.0, 1.0)
    output = np.maximum(np.asarray(output_tokens, dtype=np.float64), 0.0)
    names = np.asarray(skus)
    costs = np.zeros(len(names))
    for sku in np.unique(names):
        rows = names == sku
        costs[rows] = catalog.request_cost_usd(
            str(sku),
            input_tokens=prompt[rows] - cached[rows],  # type: ignore[arg-type]
            cached_tokens=cached[rows],  # type: ignore[arg-type]
            output_tokens=output[rows],  # type: ignore[arg-type]
        )
    return costs


def candidate_predictions(
    skus: Sequence[str], heads: Mapping[str, np.ndarray], costs: np.ndarray
) -> list[CandidatePrediction]:
    """The policy's view of each candidate row (``heads`` from ``RouterScorer.score``)."""
    quality = heads["p_quality"].tolist()
    ttft = heads[POLICY_TTFT_HEAD].tolist()
    tokens = heads["output_tokens"].tolist()
    cost = np.asarray(costs).tolist()
    return [CandidatePrediction(sku, quality[i], ttft[i], tokens[i], cost[i]) for i, sku in enumerate(skus)]
