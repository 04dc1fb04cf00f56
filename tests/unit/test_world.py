import numpy as np
import pytest

from features.catalog import REGIONS
from features.schema import TASK_TYPES, TENANT_TIERS
from simulator.ground_truth import (
    diurnal_multiplier,
    failure_probabilities,
    load_factor,
    quality_probability,
    tpot_ms,
    ttft_ms,
)
from simulator.world import TenantParams, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(7)


def test_same_seed_builds_the_same_world_and_another_seed_does_not():
    small = TenantParams(n_tenants=300)
    first, again, other = (build_world(seed, tenant_params=small) for seed in (3, 3, 4))
    assert first.tenants == again.tenants
    assert [t.traffic_share for t in first.tenants] != [t.traffic_share for t in other.tenants]


def test_tier_and_region_traffic_shares_follow_the_configuration(world):
    params = world.tenant_params
    columns = world.columns
    assert columns.traffic_share.sum() == pytest.approx(1.0)
    for t, tier in enumerate(TENANT_TIERS):
        assert columns.traffic_share[columns.tier == t].sum() == pytest.approx(
            params.tier_traffic_share[tier]
        )
    for r, region in enumerate(REGIONS):
        assert columns.traffic_share[columns.region == r].sum() == pytest.approx(params.region_share[region])
    counts = {tier: int((columns.tier == t).sum()) for t, tier in enumerate(TENANT_TIERS)}
    for tier, share in params.tier_tenant_share.items():
        assert abs(counts[tier] - share * params.n_tenants) <= len(REGIONS)
    assert counts["internal"] == len(REGIONS)
    assert counts["free"] > counts["pro"] > counts["enterprise"]


def test_traffic_is_heavy_tailed_with_hot_tenants(world):
    shares = np.sort(world.columns.traffic_share)[::-1]
    top_percent = shares[: max(1, len(shares) // 100)].sum()
    assert top_percent > 0.2  # 1% of tenants carry more than a fifth of the traffic
    free = world.columns.traffic_share[world.columns.tier == TENANT_TIERS.index("free")]
    assert np.median(free) < np.median(shares)  # many free tenants with little traffic


def test_internal_tenants_are_the_app_and_everyone_else_the_api(world):
    for tenant in world.tenants:
        assert tenant.surface == ("app" if tenant.tier == "internal" else "api")


def test_residency_is_required_only_by_enterprise_tenants_and_mostly_in_the_eu(world):
    resident = [t for t in world.tenants if t.residency_required]
    assert resident and all(t.tier == "enterprise" for t in resident)
    by_region = {region: sum(t.region == region for t in resident) for region in REGIONS}
    assert by_region["eu"] == max(by_region.values())


def test_entitlements_depend_on_the_tier(world):
    catalog = world.catalog
    for tenant in world.tenants:
        skus = [catalog.get(name) for name in tenant.entitled_skus]
        if tenant.tier == "free":
            assert {s.tier for s in skus} <= {"small", "medium"}
        if tenant.tier in ("free", "pro"):
            assert not any(s.long_context for s in skus)
        if tenant.tier in ("enterprise", "internal"):
            assert set(tenant.entitled_skus) == set(catalog.names)
        assert all(s.deployed_in(tenant.region) for s in world.eligible_in_home_region(tenant))


def _grid(world, sku_names, difficulty, task="chat", prompt_tokens=3000):
    truth = world.truth
    return quality_probability(
        truth,
        np.array([truth.index(name) for name in sku_names]),
        np.full(len(sku_names), TASK_TYPES.index(task)),
        np.full(len(sku_names), difficulty),
        np.full(len(sku_names), prompt_tokens),
    )


def test_quality_falls_with_difficulty_for_every_sku_and_task(world):
    difficulty = np.linspace(0, 1, 11)
    for s in range(len(world.catalog)):
        for t in range(len(TASK_TYPES)):
            p = quality_probability(
                world.truth, np.full(11, s), np.full(11, t), difficulty, np.full(11, 3000)
            )
            assert np.all(np.diff(p) < 0)
            assert np.all((p > 0) & (p < 1))


def test_quality_rises_with_tier_within_a_generation_and_with_generation_within_a_tier(world):
    for task in TASK_TYPES:
        for difficulty in (0.0, 0.3, 0.6, 1.0):
            large, medium, small = _grid(
                world, ["claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5"], difficulty, task
            )
            assert large >= medium >= small
            newest, middle, oldest = _grid(
                world, ["claude-haiku-4-5", "claude-haiku-3-5", "claude-haiku-3"], difficulty, task
            )
            assert newest > middle > oldest
            sonnets = _grid(
                world,
                ["claude-sonnet-4-5", "claude-sonnet-4", "claude-sonnet-3-7", "claude-sonnet-3-5"],
                difficulty,
                task,
            )
            assert np.all(np.diff(sonnets) < 0)


def test_long_context_variants_equal_their_base_model(world):
    for variant, base in (
        ("claude-sonnet-4-5-1m", "claude-sonnet-4-5"),
        ("claude-sonnet-4-1m", "claude-sonnet-4"),
    ):
        for task in TASK_TYPES:
            assert _grid(world, [variant], 0.5, task)[0] == _grid(world, [base], 0.5, task)[0]


def test_the_value_of_a_larger_model_depends_on_the_task(world):
    gaps = {
        task: float(np.diff(_grid(world, ["claude-sonnet-4-5", "claude-opus-4-5"], 0.6, task))[0])
        for task in TASK_TYPES
    }
    assert max(gaps.values()) - min(gaps.values()) > 0.1
    small_gaps = {
        task: float(np.diff(_grid(world, ["claude-haiku-4-5", "claude-sonnet-4-5"], 0.4, task))[0])
        for task in TASK_TYPES
    }
    assert max(small_gaps.values()) - min(small_gaps.values()) > 0.1


def test_long_prompts_hurt_small_models_more(world):
    names = ["claude-opus-4-5", "claude-haiku-4-5"]
    short, long = (
        _grid(world, names, 0.3, prompt_tokens=4_000),
        _grid(world, names, 0.3, prompt_tokens=150_000),
    )
    drop = short - long
    assert drop[1] > drop[0] > 0


def test_diurnal_curve_has_mean_one_and_the_configured_peak(world):
    hours = np.linspace(0, 24, 24 * 60, endpoint=False)
    for region in REGIONS:
        curve = diurnal_multiplier(world.params, region, hours)
        assert curve.mean() == pytest.approx(1.0, rel=1e-3)
        assert curve.max() / curve.mean() == pytest.approx(world.params.diurnal_peak_to_mean, rel=1e-3)
        peak_local = (hours[np.argmax(curve)] + world.params.region_utc_offset_hours[region]) % 24
        assert peak_local == pytest.approx(world.params.diurnal_peak_local_hour, abs=0.05)


def test_latency_grows_with_tokens_and_load_and_failures_with_load(world):
    truth = world.truth
    sku = np.zeros(3, dtype=int)
    zero = np.zeros(3)
    loads = np.array([0.2, 0.5, 0.9])
    assert np.all(np.diff(ttft_ms(truth, sku, np.array([0, 5000, 50000]), np.full(3, 0.4), zero)) > 0)
    assert np.all(np.diff(ttft_ms(truth, sku, np.full(3, 1000), loads, zero)) > 0)
    assert np.all(np.diff(tpot_ms(truth, sku, loads, zero)) > 0)
    error, overloaded, timeout = failure_probabilities(truth, sku, loads)
    assert np.all(np.diff(error + overloaded + timeout) > 0)
    region = np.array([REGIONS.index("us")] * 2)
    busy = load_factor(
        truth, np.zeros(2, dtype=int), region, np.array([20.0, 8.0])
    )  # 14:00 and 02:00 in the us
    assert busy[0] > busy[1]


def test_latency_without_noise_is_the_catalogs_latency_profile(world):
    truth = world.truth
    for s, sku in enumerate(world.catalog.skus):
        for load in (0.1, 0.5, 0.9):
            index, loads = np.array([s]), np.array([load])
            wait = truth.params.queue_wait_factor * sku.latency.ttft_base_ms * load / (1 - load)
            expected_ttft = sku.latency.ttft_ms(4000, queue_wait_ms=wait)
            assert ttft_ms(truth, index, np.array([4000]), loads, np.zeros(1))[0] == pytest.approx(
                expected_ttft
            )
            expected_tpot = sku.latency.time_per_output_token_ms(batch_occupancy=load)
            assert tpot_ms(truth, index, loads, np.zeros(1))[0] == pytest.approx(expected_tpot)


def test_a_smaller_world_keeps_every_cell_populated():
    world = build_world(1, tenant_params=TenantParams(n_tenants=20))
    cells = {(t.tier, t.region) for t in world.tenants}
    assert len(cells) == len(TENANT_TIERS) * len(REGIONS)
