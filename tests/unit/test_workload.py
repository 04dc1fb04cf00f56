import dataclasses

import numpy as np
import pytest

from features.catalog import REGIONS
from features.prefix import prefix_block_hashes
from features.prompt_embedding import default_prompt_embedder
from features.request import facts_from_request, prompt_segments, request_features
from features.schema import SCRIPTS, SURFACES, TASK_TYPES, TENANT_TIERS
from features.task_classifier import default_task_classifier, paragraphs, read_window
from features.text_signals import detect_script, has_code, keyword_task_type
from features.tokens import BYTES_PER_TOKEN
from simulator.prompts import (
    PROMPT_SCRIPTS,
    filler,
    join_user_turn,
    lead_sentence,
    parse_sim_marker,
    sim_marker,
    user_turn_text,
    visible_lead,
)
from simulator.served_signals import MAX_OUT_DIGITS, ServedSignals, out_digits
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
def signals():
    return ServedSignals.build()


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


def _last_user_chars(world, table, rows):
    return np.array([len(table.sim_request(world, row).user_text(int(table.turn[row]))) for row in rows])


def _sample_rows(world, table, per_group=25):
    """>= 2,000 rows: every script x task with short and long last turns, every length of the
    marker's ``out``, follow-ups, code, tools, the shortest turns and the longest prompts."""
    rng = np.random.default_rng(4)
    rows = set(rng.choice(len(table), 1200, replace=False).tolist())
    long = _last_user_chars(world, table, range(len(table))) > default_task_classifier().max_chars
    for script in range(len(PROMPT_SCRIPTS)):
        for task in range(len(TASK_TYPES)):
            for is_long in (False, True):
                group = (table.script == script) & (table.task == task) & (long == is_long)
                rows.update(np.flatnonzero(group)[:per_group].tolist())
    digits = out_digits(table.output_tokens)
    for mask in [digits == d for d in np.unique(digits)] + [
        table.turn > 2,
        table.code,
        table.has_tools,
        table.user_tokens < 130,
    ]:
        rows.update(np.flatnonzero(mask)[:25].tolist())
    rows.update(np.argsort(table.prompt_tokens)[-2:].tolist())
    return sorted(rows), long


def test_rendered_payloads_give_the_fast_path_facts(world, conversations, signals):
    """The training-serving contract: serving's facts from the text equal the bootstrap's facts without it."""
    columns = facts_columns(world, conversations, signals)
    vectors = request_feature_matrix(columns)
    rows, long = _sample_rows(world, conversations)
    assert len(rows) >= 2000
    covered = set(zip(conversations.script[rows].tolist(), long[rows].tolist(), strict=True))
    assert covered == {(s, x) for s in range(len(PROMPT_SCRIPTS)) for x in (False, True)}
    covered = set(zip(conversations.task[rows].tolist(), long[rows].tolist(), strict=True))
    assert covered == {(t, x) for t in range(len(TASK_TYPES)) for x in (False, True)}
    digits = out_digits(conversations.output_tokens)
    assert set(digits[rows].tolist()) == set(digits.tolist())  # every length of ``out`` in the sample
    assert conversations.prompt_tokens[rows].max() > 20_000
    for row in rows:
        request = conversations.sim_request(world, row)
        served = facts_from_request(render_payload(request))
        assert served == request.facts(), row
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
        assert TASK_TYPES[columns.task_type[row]] == served.task_type, row
        expected = request_features(served, tenant_tier=request.tenant.tier, surface=request.tenant.surface)
        np.testing.assert_array_equal(vectors[row], np.array(expected, dtype=np.float32))
        assert TENANT_TIERS[columns.tenant_tier[row]] == request.tenant.tier
        assert SURFACES[columns.surface[row]] == request.tenant.surface


def test_the_classifier_reads_only_the_lead_and_the_marker_of_a_user_turn(signals):
    """Why the lookup table is exact: whatever a turn's padding (none, a few bytes, many tokens, any
    seed) and its marker's values, its window is the lead sentence and the marker, and the table
    holds that window's label."""
    classifier = default_task_classifier()
    embedder = default_prompt_embedder()
    rng = np.random.default_rng(8)
    for index in np.ndindex(signals.has_code.shape):
        script, task, template, code = (
            PROMPT_SCRIPTS[index[0]],
            TASK_TYPES[index[1]],
            index[2],
            bool(index[3]),
        )
        lead = visible_lead(script, task, template, code)
        for digits in range(MAX_OUT_DIGITS):
            out = int(rng.integers(10**digits, 10 ** (digits + 1)))
            marker = sim_marker(out, task, float(rng.random()))
            window = f"{lead_sentence(script, task, template)}\n\n{marker}"
            unpadded = join_user_turn(lead, "", marker)
            assert read_window(unpadded) == window
            shortest = -(-len(unpadded.encode()) // BYTES_PER_TOKEN)  # 0-3 bytes of padding
            lengths = [int(rng.integers(shortest, 3000))]
            if digits in (0, 2):
                lengths += [shortest, shortest + 1, shortest + 2]
            for tokens in lengths:
                seed = int(rng.integers(1 << 32))
                turn = user_turn_text(
                    seed, script=script, task=task, template=template, code=code, tokens=tokens, marker=marker
                )
                assert read_window(turn) == window, (index, digits, tokens)
            # the rendered turn (random out and difficulty of this length) gets the cell's label
            assert TASK_TYPES.index(classifier.predict(turn)) == signals.task_type[(*index, digits)]
            # and the cell's prompt embedding: the embedding reads the same window
            np.testing.assert_array_equal(embedder.embed(turn), signals.prompt_embedding[(*index, digits)])


def test_out_digits_is_the_length_of_the_number():
    values = np.array([0, 1, 9, 10, 99, 100, 4096, 65_535, 10**8, 10**9 - 1])
    assert out_digits(values).tolist() == [len(str(v)) - 1 for v in values]
    with pytest.raises(ValueError):
        out_digits(np.array([10**MAX_OUT_DIGITS]))


def test_the_marker_carries_the_ground_truth_to_the_worker(world, conversations):
    for row in range(0, len(conversations), len(conversations) // 40):
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


def test_the_served_task_type_says_something_about_every_task_but_is_not_the_truth(world, day, signals):
    served = facts_columns(world, day, signals).task_type
    assert 0.15 < float((served == day.task).mean()) < 0.9
    # it reads the instruction (the lead sentence), not the padding: right for most Latin turns
    latin = day.script == PROMPT_SCRIPTS.index("latin")
    assert (served[latin] == day.task[latin]).mean() > 0.7
    for task in range(len(TASK_TYPES)):
        is_task = day.task == task
        # the classifier says ``task`` more often when it is the true task than when it is not
        assert (served[is_task] == task).mean() > 1.2 * (served[~is_task] == task).mean(), TASK_TYPES[task]


def test_padding_is_one_line_invisible_to_has_code_and_to_the_keyword_rules():
    for seed in range(5):
        for script in PROMPT_SCRIPTS:
            for size in (1, 2, 3, 6000 + seed, 100_000 + 7 * seed):
                text = filler(seed, size, script)
                assert len(text.encode("utf-8")) == size
                assert "\n" not in text
                assert keyword_task_type(text) == "chat"
                assert not has_code(text)
                if size > 100:
                    assert detect_script(text) == script


def test_padding_is_drawn_from_its_seed():
    for script in PROMPT_SCRIPTS:
        assert filler(17, 500, script) == filler(17, 500, script)
        assert filler(18, 500, script) != filler(17, 500, script)
        assert len(paragraphs(filler(17, 500, script))) == 1


def test_a_load_generator_gets_requests_in_arrival_order(world):
    stream = iter_sim_requests(world, WorkloadParams(requests_per_day=10_000), seed=3, start_us=DAY0)
    requests = [next(stream) for _ in range(300)]
    times = [r.ts for r in requests]
    assert times == sorted(times)
    assert any(r.turn > 1 for r in requests)
