"""Replaying a router's policy over logged candidates: its choice per request, as serving would make it.

Pure functions over arrays and polars frames. The policy is ``router_model.policy`` itself
(``choose_sku`` at ε = 0), fed each candidate's predictions (``offline.rows.evaluation_rows``
scored by the router): ``p_quality``, ``ttft_p90_ms`` as the TTFT the SLO filter and latency
penalty see (a p90 keeps the p99 SLO honest where a median would not), and the expected
serving cost of the predicted output tokens plus the request's prompt tokens split by the
candidate's expected cache hit (``Catalog.request_cost_usd``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from features.catalog import Catalog
from router_model.candidates import candidate_predictions
from router_model.candidates import expected_costs as candidate_costs
from router_model.policy import PolicyParams, choose_sku

PACING_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def expected_costs(frame: pl.DataFrame, output_tokens: np.ndarray, catalog: Catalog) -> np.ndarray:
    """Serving cost of each candidate row: its prompt split by expected cache hit, predicted output."""
    return candidate_costs(
        catalog,
        frame["sku"].to_numpy(),
        frame["prompt_tokens"].to_numpy(),
        frame["expected_cache_hit"].to_numpy(),
        output_tokens,
    )


def policy_choices(
    frame: pl.DataFrame, predictions: dict[str, np.ndarray], costs: np.ndarray, params: PolicyParams
) -> pl.DataFrame:
    """``[request_id, sku, expected_cost_usd]``: ``choose_sku`` at ε = 0 over each request's candidate rows."""
    params = replace(params, epsilon=0.0)
    request = frame["_request"].to_numpy()
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    ends = np.r_[starts[1:], len(request)]
    skus = frame["sku"].to_list()
    ids = frame["request_id"].to_list()
    candidates_all = candidate_predictions(skus, predictions, costs)
    cost = costs.tolist()
    chosen, chosen_cost = [], []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        sku = choose_sku(candidates_all[start:end], params, 0.0).chosen_sku
        chosen.append(sku)
        chosen_cost.append(cost[start + skus[start:end].index(sku)])
    return pl.DataFrame(
        {"request_id": [ids[i] for i in starts.tolist()], "sku": chosen, "expected_cost_usd": chosen_cost}
    )


def paced_choices(
    frame: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    costs: np.ndarray,
    params: PolicyParams,
    grid: tuple[float, ...] = PACING_GRID,
) -> tuple[float, pl.DataFrame]:
    """The smallest λ of ``grid`` whose *predicted* mean cost is within budget, and its choices.

    Offline, this is where serving's budget pacer (``pace_cost_multiplier``) settles: λ only
    as high as the budget needs. With no λ within budget, the largest.
    """
    lam, choices = 0.0, pl.DataFrame()
    for lam in sorted(grid):
        choices = policy_choices(frame, predictions, costs, replace(params, cost_multiplier=lam))
        if choices["expected_cost_usd"].mean() <= params.budget_usd:  # type: ignore[operator]
            break
    return lam, choices


@dataclass(frozen=True, eq=False)
class PolicyReplay:
    """A router's heads over candidate rows and its policy's ε = 0 choices at ``params`` (λ paced or given)."""

    frame: pl.DataFrame  # offline.rows.evaluation_rows frame
    predictions: dict[str, np.ndarray]
    costs: np.ndarray  # expected serving cost per candidate row
    params: PolicyParams
    choices: pl.DataFrame  # [request_id, sku, expected_cost_usd]

    def choices_at(self, cost_multiplier: float) -> pl.DataFrame:
        """The same router's choices at another λ."""
        if cost_multiplier == self.params.cost_multiplier:
            return self.choices
        params = replace(self.params, cost_multiplier=cost_multiplier)
        return policy_choices(self.frame, self.predictions, self.costs, params)


def replay_policy(
    frame: pl.DataFrame,
    predictions: dict[str, np.ndarray],
    params: PolicyParams,
    catalog: Catalog,
    *,
    pace: bool,
) -> PolicyReplay:
    """Expected costs from the predicted output tokens, then the choices: λ paced to the budget on
    predicted costs when ``pace``, else ``params.cost_multiplier``."""
    costs = expected_costs(frame, predictions["output_tokens"], catalog)
    if pace:
        lam, choices = paced_choices(frame, predictions, costs, params)
        params = replace(params, cost_multiplier=lam)
    else:
        choices = policy_choices(frame, predictions, costs, params)
    return PolicyReplay(frame, predictions, costs, params, choices)
