import dataclasses

import numpy as np
import pytest

from features.catalog import REGIONS
from features.prefix import prefix_block_hashes
from features.request import facts_from_request, prompt_segments, request_features
from features.schema import SCRIPTS, SURFACES, TASK_TYPES, TENANT_TIERS
from features.text_signals import detect_script, has_code, keyword_task_type
from simulator.prompts import PROMPT_SCRIPTS, HintTables, filler, parse_sim_marker
from simulator.text import parse_sim_hints
from simulator.workload import (
    US_PER_DAY,
    US_PER_HOUR,
    WorkloadParams,
    arrival_times,
    facts_columns,
    generate_conversations,
    iter_request_windows,
    iter_sim_requests,
    render_payload,
    request_feature_matrix,
)
from simulator.world import build_world

SEED_TOKENS_PER_REQUEST = 45e12 / 8.64e9  # 45T prompt tokens/day over ~100K req/s mean (the seed)
DAY0 = 1_793_491_200 * 1_000_000  # 2026-11-01T00:00Z


@pytest.fixture(scope="module")
def world():
    return build_world(11)


@pytest.fixture(scope="module")
def day(world):
    """One simulated day at 150K requests (the second window, so carried-over turns are included)."""
    windows = iter_request_windows(
        world,
        WorkloadParams(requests_per_day=150_000),
        seed=5,
        start_us=DAY0,
        window_us=US_PER_DAY,
        windows=2,
    )
    return list(windows)[1].requests


@pytest.fixture(scope="module")
def conversations(world):
    """Six hours of conversations in conversation order (every turn of each, for rendering)."""
    rng = np.random.default_rng(21)
    return generate_conversations(
        world,
        WorkloadParams(requests_per_day=40_000),
        rng,
        start_us=DAY0,
        end_us=DAY0 + 6 * US_PER_HOUR,
        first_id=0,
    )


def test_mean_prompt_tokens_match_the_seed(day):
    assert len(day) > 100_000
    assert day.prompt_tokens.mean() == pytest.approx(SEED_TOKENS_PER_REQUEST, rel=0.12)
    assert np.median(day.prompt_tokens) < day.prompt_tokens.mean()  # heavy right tail


def test_some_prompts_need_a_long_context_sku_and_none_exceed_what_the_tenant_can_use(world, day):
    long_share = float((day.prompt_tokens > 200_000).mean())
    assert 0 < long_share < 0.005
    assert np.all(day.prompt_tokens <= world.columns.max_prompt_tokens[day.tenant])


def test_streaming_share_is_the_configured_share(world, day):
    assert day.stream.mean() == pytest.approx(world.tenant_params.streaming_share, abs=0.015)


def test_request_count_per_day_is_the_configured_rate(day):
    assert len(day) == pytest.approx(150_000, rel=0.03)


def test_task_mix_of_conversations_matches_the_tenants_configured_mix(world, day):
    first_turns = day.task[day.turn == 1]
    observed = np.bincount(first_turns, minlength=len(TASK_TYPES)) / len(first_turns)
    np.testing.assert_allclose(observed, world.expected_task_mix(per="conversation"), atol=0.01)


def test_later_turns_carry_the_earlier_ones(day):
    assert (day.turn > 1).mean() > 0.2
    assert day.prompt_tokens[day.turn > 1].mean() > day.prompt_tokens[day.turn == 1].mean()


def test_diurnal_arrivals_peak_at_the_configured_ratio_in_each_region(world):
    rng = np.random.default_rng(2)
    for region in REGIONS:
        times = arrival_times(world, rng, region, 400_000, DAY0, DAY0 + US_PER_DAY)
        per_hour = np.bincount(((times - DAY0) // US_PER_HOUR).astype(int), minlength=24)
        assert per_hour.max() / per_hour.mean() == pytest.approx(world.params.diurnal_peak_to_mean, rel=0.06)


def test_generated_requests_follow_the_region_clock(world, day):
    region = world.columns.region[day.tenant]
    for r, name in enumerate(REGIONS):
        hours = ((day.ts_us[region == r] - DAY0) // US_PER_HOUR).astype(int) % 24
        per_hour = np.bincount(hours, minlength=24)
        local_peak = (np.argmax(per_hour) + 0.5 + world.params.region_utc_offset_hours[name]) % 24
        assert abs(local_peak - world.params.diurnal_peak_local_hour) <= 2
        assert per_hour.max() / per_hour.mean() == pytest.approx(world.params.diurnal_peak_to_mean, rel=0.12)


def test_same_seed_same_requests_and_another_seed_other_requests(world):
    def first_window(seed):
        windows = iter_request_windows(
            world,
            WorkloadParams(requests_per_day=20_000),
            seed=seed,
            start_us=DAY0,
            window_us=US_PER_HOUR * 4,
            windows=1,
        )
        return next(iter(windows)).requests

    a, b, c = first_window(1), first_window(1), first_window(2)
    for field in dataclasses.fields(a):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name))
    assert len(a) != len(c) or not np.array_equal(a.prompt_tokens, c.prompt_tokens)


def _sample_rows(table):
    rows = set(range(0, len(table), max(1, len(table) // 120)))
    for mask in (table.script > 0, table.turn > 2, table.code, table.has_tools, table.user_tokens < 130):
        rows.update(np.flatnonzero(mask)[:25].tolist())
    rows.update(np.argsort(table.prompt_tokens)[-2:].tolist())
    return sorted(rows)


def test_rendered_payloads_give_the_fast_path_facts(world, conversations):
    """The training-serving contract: serving's facts from the text equal the bootstrap's facts without it."""
    hints = HintTables.build()
    columns = facts_columns(world, conversations, hints)
    vectors = request_feature_matrix(columns)
    rows = _sample_rows(conversations)
    assert conversations.prompt_tokens[rows].max() > 20_000
    for row in rows:
        request = conversations.sim_request(world, row)
        served = facts_from_request(render_payload(request))
        assert dataclasses.replace(served, prefix_hashes=()) == request.facts(), row
        for name in (
            "prompt_tokens",
            "system_tokens",
            "last_user_tokens",
            "turns",
            "max_tokens",
            "has_code",
            "stream",
        ):
            assert getattr(columns, name)[row] == getattr(served, name), name
        assert SCRIPTS[columns.script[row]] == served.script
        assert TASK_TYPES[columns.task_type[row]] == served.task_type
        expected = request_features(served, tenant_tier=request.tenant.tier, surface=request.tenant.surface)
        np.testing.assert_array_equal(vectors[row], np.array(expected, dtype=np.float32))
        assert TENANT_TIERS[columns.tenant_tier[row]] == request.tenant.tier
        assert SURFACES[columns.surface[row]] == request.tenant.surface


def test_the_marker_carries_the_ground_truth_to_the_worker(world, conversations):
    for row in _sample_rows(conversations)[:40]:
        request = conversations.sim_request(world, row)
        last_user = render_payload(request)["messages"][-1]["content"]
        assert parse_sim_hints(last_user).output_tokens == request.expected_output_tokens
        marker = parse_sim_marker(last_user)
        assert marker.task == request.task
        assert marker.difficulty == pytest.approx(request.difficulty, abs=0.005)


def test_a_later_turn_extends_the_earlier_prompt_so_prefix_caching_applies(world, conversations):
    later = np.flatnonzero(conversations.turn == 3)[:10]
    assert len(later)
    for row in later:
        request = conversations.sim_request(world, row)
        previous_row = np.flatnonzero(
            (conversations.conversation_id == request.conversation_id) & (conversations.turn == 2)
        )[0]
        previous = render_payload(conversations.sim_request(world, previous_row))
        current = render_payload(request)
        assert current["messages"][: len(previous["messages"])] == previous["messages"]
        assert current.get("system") == previous.get("system")
        earlier_hashes = prefix_block_hashes(prompt_segments(previous))
        assert prefix_block_hashes(prompt_segments(current))[: len(earlier_hashes)] == earlier_hashes


def test_a_tenant_sends_the_same_system_prompt_every_time(world, conversations):
    tenant = np.bincount(conversations.tenant).argmax()
    rows = np.flatnonzero(conversations.tenant == tenant)[:5]
    systems = {render_payload(conversations.sim_request(world, row)).get("system") for row in rows}
    assert len(systems) == 1


def test_the_keyword_hint_is_right_most_but_not_all_of_the_time(world, day):
    columns = facts_columns(world, day, HintTables.build())
    latin = day.script == PROMPT_SCRIPTS.index("latin")
    accuracy = float((columns.task_type[latin] == day.task[latin]).mean())
    assert 0.6 < accuracy < 0.95
    assert (columns.task_type[~latin] == day.task[~latin]).mean() < accuracy


def test_padding_is_invisible_to_the_serving_signals():
    for seed in range(5):
        for script in PROMPT_SCRIPTS:
            text = filler(seed, 6000 + seed, script)
            assert len(text.encode("utf-8")) == 6000 + seed
            assert keyword_task_type(text) == "chat"
            assert not has_code(text)
            assert detect_script(text) == script


def test_a_load_generator_gets_requests_in_arrival_order(world):
    stream = iter_sim_requests(world, WorkloadParams(requests_per_day=10_000), seed=3, start_us=DAY0)
    requests = [next(stream) for _ in range(300)]
    times = [r.ts for r in requests]
    assert times == sorted(times)
    assert any(r.turn > 1 for r in requests)
