"""Routing one request: candidates, features, one scoring call, the policy, the fallback plan.

Pure over its inputs except for the clock and the random draw, which the caller supplies,
so a decision can be replayed. The steps (ARCHITECTURE.md §2):

1. **Candidates**: entitled SKUs deployed in a region the tenant may be served in (the
   residency filter: a residency-required tenant's home region only), whose context window
   holds the prompt plus ``max_tokens`` (clamped to the SKU's output limit), and with a
   deployment whose circuit is not open. A pinned ``model`` is its only candidate.
2. **Features**: the request vector (``features.request``), each candidate's vector with
   the gateway's prompt-cache estimate, and the store features (Feast online, via the
   caller's reader) -- assembled by ``features.vector.assemble_rows``, the one row builder.
3. **Scoring**: one call of the router's scorer over all candidate rows.
4. **Policy**: ``router_model.policy.choose_sku`` (utility under the SLO and the paced λ,
   ε-exploration); the chosen SKU's probability is the propensity that gets logged.
5. **Plan**: the chosen SKU, then the others best first, each at its serving region.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from features.catalog import Catalog, Sku
from features.eligibility import eligibility_report, eligible_skus
from features.records import CandidateScores
from features.request import RequestFacts, ScreenFacts, candidate_features, expected_cache_hit
from features.vector import N_CANDIDATE, N_REQUEST, assemble_rows
from router_model.candidates import POLICY_HEADS, POLICY_TTFT_HEAD, candidate_predictions, expected_costs
from router_model.policy import PolicyParams, RoutingDecision, choose_sku
from serving.errors import overloaded, permission_denied
from serving.policy_checks import AUTO_MODEL, no_candidate_error
from serving.prompt_cache import PrefixKeys, PromptCacheEstimate
from serving.router_runtime import LoadedRouter
from serving.tenants import Tenant


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a candidate would run: the SKU and the region of the deployment."""

    sku: Sku
    region: str


@dataclass(frozen=True, slots=True)
class Route:
    decision: RoutingDecision
    candidates: CandidateScores
    plan: tuple[Placement, ...]  # chosen first, then the fallbacks
    store_features: np.ndarray  # [n_candidates, n_store], as served (NaN = unavailable)
    router_version: str

    def chosen_store_features(self) -> list[float]:
        """The chosen SKU's store features (what DecisionRecord.store_features holds)."""
        chosen = self.candidates.sku.index(self.decision.chosen_sku)
        return self.store_features[chosen].astype(float).tolist()


def placements(
    tenant: Tenant,
    facts: ScreenFacts | RequestFacts,
    *,
    model: str,
    catalog: Catalog,
    regions: Sequence[str],
    deployed: Callable[[str, str], bool],
    available: Callable[[str, str], bool],
) -> tuple[Placement, ...]:
    """Step 1: the candidate SKUs with the region each would be served in; raises ApiError if none."""
    skus = catalog.skus if model == AUTO_MODEL else tuple(s for s in catalog.skus if s.name == model)
    eligible = eligible_skus(
        skus,
        entitled=tenant.entitled_skus,
        region=regions[0],
        prompt_tokens=facts.prompt_tokens,
        max_tokens=facts.max_tokens,
        allowed_regions=regions,
    )
    any_deployed = False
    healthy: list[Placement] = []
    for sku in eligible:  # plain loops: this runs for every request, ~a dozen SKUs
        for region in regions:
            if region in sku.regions and deployed(sku.name, region):
                any_deployed = True
                if available(sku.name, region):
                    healthy.append(Placement(sku, region))
                    break
    if not any_deployed:
        verdicts = eligibility_report(
            skus,
            entitled=tenant.entitled_skus,
            region=regions[0],
            prompt_tokens=facts.prompt_tokens,
            max_tokens=facts.max_tokens,
            allowed_regions=regions,
        )
        if eligible:  # eligible by the catalog, but deployed nowhere the tenant may be served
            raise permission_denied(
                f"no deployment of the models this request may use in the regions this API key "
                f"may be served in ({', '.join(regions)})"
            )
        raise no_candidate_error(model, verdicts, regions=regions, prompt_tokens=facts.prompt_tokens)
    if not healthy:
        raise overloaded(
            f"every deployment this request may use ({', '.join(regions)}) is unavailable right now",
            retry_after_s=1.0,
        )
    return tuple(healthy)


def decide(
    candidates: Sequence[Placement],
    facts: RequestFacts,
    request_vector: Sequence[float],
    store_block: np.ndarray,
    prefix_keys: PrefixKeys,
    *,
    router: LoadedRouter,
    catalog: Catalog,
    prompt_cache: PromptCacheEstimate,
    params: PolicyParams,
    now: float,
    uniform: float,
) -> Route:
    """Steps 2-5 for the candidates of step 1."""
    hits = [
        expected_cache_hit(
            prompt_cache.cached_tokens(p.sku.name, p.region, prefix_keys, now), facts.prompt_tokens
        )
        for p in candidates
    ]
    rows = assemble_rows(
        request_vector,
        [candidate_features(p.sku, cache_hit=hit) for p, hit in zip(candidates, hits, strict=True)],
        store_block,
    )
    heads = router.scorer.score(rows, POLICY_HEADS)
    names = [p.sku.name for p in candidates]
    prompt = np.full(len(names), facts.prompt_tokens)
    costs = expected_costs(catalog, names, prompt, np.asarray(hits), heads["output_tokens"])
    predictions = candidate_predictions(names, heads, costs)
    decision = choose_sku(predictions, params, uniform)
    by_name = {p.sku.name: p for p in candidates}
    plan = (by_name[decision.chosen_sku], *(by_name[name] for name in decision.fallback_skus))
    scores = CandidateScores.from_columns(
        names,
        rows[:, N_REQUEST : N_REQUEST + N_CANDIDATE].copy(),
        p_quality=heads["p_quality"],
        ttft_ms=heads[POLICY_TTFT_HEAD],
        output_tokens=heads["output_tokens"],
        cost_usd=costs,
        utility=[decision.utilities[name] for name in names],
        probability=[decision.probabilities[name] for name in names],
    )
    return Route(decision, scores, plan, store_block, router.router_version)
