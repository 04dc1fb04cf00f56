import numpy as np
import pytest

from features.request import RequestFacts
from features.schema import TASK_TYPES, TENANT_TIERS
from simulator.logging_policy import (
    LoggingPolicyConfig,
    SkuAttributes,
    action_probabilities,
    eligible_skus,
    logging_policy,
    preferred_tier,
    rank_keys,
    sample_actions,
)
from simulator.world import build_world


@pytest.fixture(scope="module")
def world():
    return build_world(5)


def facts(**overrides):
    values = {
        "prompt_tokens": 3000,
        "system_tokens": 500,
        "last_user_tokens": 400,
        "turns": 1,
        "max_tokens": 4096,
        "has_code": False,
        "has_tools": False,
        "stream": True,
        "script": "latin",
        "task_type": "chat",
    }
    values.update(overrides)
    return RequestFacts(**values)


def tenant_of(world, tier, region=None, residency=None):
    for tenant in world.tenants:
        if tenant.tier != tier or (region and tenant.region != region):
            continue
        if residency is not None and tenant.residency_required != residency:
            continue
        return tenant
    raise LookupError(tier)


def test_probabilities_cover_every_eligible_sku_and_sum_to_one(world):
    tenant = tenant_of(world, "enterprise", "us")
    request = facts(task_type="reasoning", prompt_tokens=8000)
    eligible = eligible_skus(world.catalog, tenant, request)
    decision = logging_policy(
        request, tenant, eligible, np.random.default_rng(0), LoggingPolicyConfig(epsilon=0.2)
    )
    assert set(decision.probabilities) == {sku.name for sku in eligible}
    assert sum(decision.probabilities.values()) == pytest.approx(1.0)
    share = 0.2 / len(eligible)
    for name, probability in decision.probabilities.items():
        assert probability == pytest.approx(share + (0.8 if name == decision.greedy else 0.0))
    assert decision.propensity == decision.probabilities[decision.chosen]
    assert decision.chosen not in decision.fallbacks and len(decision.fallbacks) == 2


def test_choice_frequencies_match_the_logged_probabilities(world):
    tenant = tenant_of(world, "pro", "eu")
    request = facts(task_type="code", has_code=True)
    eligible = eligible_skus(world.catalog, tenant, request)
    rng = np.random.default_rng(1)
    draws = 8_000
    counts: dict[str, int] = {}
    probabilities = {}
    for _ in range(draws):
        decision = logging_policy(request, tenant, eligible, rng, LoggingPolicyConfig(epsilon=0.3))
        counts[decision.chosen] = counts.get(decision.chosen, 0) + 1
        probabilities = decision.probabilities
    for name, p in probabilities.items():
        sigma = np.sqrt(draws * p * (1 - p))
        assert abs(counts.get(name, 0) - draws * p) < 4.5 * sigma + 1, name


def test_the_greedy_rule(world):
    greedy = LoggingPolicyConfig(epsilon=0.0)
    rng = np.random.default_rng(2)

    def choose(tier, **fact_overrides):
        tenant = tenant_of(world, tier, "us")
        request = facts(**fact_overrides)
        decision = logging_policy(request, tenant, eligible_skus(world.catalog, tenant, request), rng, greedy)
        assert decision.propensity == 1.0 and decision.chosen == decision.greedy
        return world.catalog.get(decision.chosen)

    assert choose("enterprise", task_type="reasoning", prompt_tokens=9000).tier == "large"
    assert choose("pro", task_type="reasoning", prompt_tokens=9000).tier == "medium"
    assert choose("enterprise", task_type="chat", prompt_tokens=900).tier == "small"
    assert choose("pro", task_type="summarization", prompt_tokens=20_000).tier == "medium"
    free_chat = choose("free", task_type="chat", prompt_tokens=900)
    cheapest_small = min(
        (s for s in world.catalog if s.tier == "small" and s.deployed_in("us")),
        key=lambda s: s.list_price.input,
    )
    assert free_chat.name == cheapest_small.name
    assert choose("free", task_type="math", prompt_tokens=9000).tier == "medium"
    huge = choose("enterprise", task_type="summarization", prompt_tokens=400_000)
    assert huge.long_context
    assert not choose("enterprise", task_type="summarization", prompt_tokens=150_000).long_context


def test_eligibility_is_entitled_home_region_and_context(world):
    resident = tenant_of(world, "enterprise", "eu", residency=True)
    for request in (facts(), facts(prompt_tokens=400_000)):
        eligible = eligible_skus(world.catalog, resident, request)
        assert all(sku.deployed_in("eu") and sku.name in resident.entitled_skus for sku in eligible)
        for sku in eligible:
            assert (
                request.prompt_tokens + min(request.max_tokens, sku.max_output_tokens) <= sku.context_window
            )
    assert all(s.long_context for s in eligible_skus(world.catalog, resident, facts(prompt_tokens=400_000)))
    free = tenant_of(world, "free", "apac")
    assert eligible_skus(world.catalog, free, facts(prompt_tokens=400_000)) == ()


def test_rank_keys_never_tie(world):
    skus = SkuAttributes.from_skus(world.catalog.skus)
    config = LoggingPolicyConfig()
    for tier in range(len(TENANT_TIERS)):
        for preferred in range(3):
            keys = rank_keys(config, skus, np.array([preferred]), np.array([tier]))
            assert len(set(keys[0].tolist())) == len(world.catalog)


def test_the_vectorised_policy_is_the_per_request_policy(world):
    """The bootstrap's column-wise policy and logging_policy() agree on random requests."""
    rng = np.random.default_rng(3)
    catalog = world.catalog
    skus = SkuAttributes.from_skus(catalog.skus)
    config = LoggingPolicyConfig(epsilon=0.15)
    for _ in range(200):
        tenant = world.tenants[rng.integers(len(world.tenants))]
        request = facts(
            prompt_tokens=int(rng.choice([500, 3000, 9000, 250_000])),
            task_type=TASK_TYPES[rng.integers(len(TASK_TYPES))],
            has_code=bool(rng.random() < 0.3),
        )
        eligible = eligible_skus(catalog, tenant, request)
        if not eligible:
            continue
        mask = np.array([[sku in eligible for sku in catalog.skus]])
        tier = np.array([TENANT_TIERS.index(tenant.tier)])
        preferred = preferred_tier(
            config,
            tier,
            np.array([TASK_TYPES.index(request.task_type)]),
            np.array([request.prompt_tokens]),
            np.array([request.has_code]),
        )
        probabilities, _ = action_probabilities(
            rank_keys(config, skus, preferred, tier), mask, config.epsilon
        )
        u = rng.random()
        chosen = sample_actions(probabilities, np.array([u]))[0]
        decision = logging_policy(request, tenant, eligible, _FixedUniform(u), config)
        assert decision.chosen == catalog.names[chosen]
        for name, p in decision.probabilities.items():
            assert probabilities[0, catalog.names.index(name)] == pytest.approx(p)


class _FixedUniform:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_sampling_never_picks_an_ineligible_sku():
    probabilities = np.array([[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for u in (0.0, 0.25, 0.5, 0.75, 0.999999999):
        chosen = sample_actions(probabilities, np.full(3, u))
        assert chosen[0] in (1, 3) and chosen[1] == 2 and chosen[2] == -1
