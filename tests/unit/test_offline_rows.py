"""Logged windows and model rows (offline) and the training rows built on them, on hand-made logs:
row assembly, labels, the time split and importance weights."""

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from features.record_store import write_records
from features.records import (
    AttemptRecord,
    AttemptSummary,
    CandidateScore,
    CandidateScores,
    DecisionRecord,
    FeedbackRecord,
    OutcomeRecord,
)
from features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES
from features.vector import assemble_rows
from offline import logged
from offline import rows as model_rows
from training import dataset

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
SKUS = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")


def decision(i: int, day: int, chosen: str, propensity: float) -> DecisionRecord:
    ts = T0 + timedelta(days=day, minutes=10 * i, seconds=7)
    request = [float(i), 10.0, 5.0, 1.0, 1024.0, 0.0, 1.0, 1.0, 0.0, float(i % 8), 1.0, 0.0]
    request += [0.01 * (i + k) for k in range(len(REQUEST_FEATURE_NAMES) - len(request))]  # the embedding
    candidates = CandidateScores.from_rows(
        [
            CandidateScore(
                sku,
                [2.0 - k, 4.5, 0.0, 1.0 + k, 5.0 + k, 0.1 * k + i / 100],
                *[float("nan")] * 2,
                300.0,
                0.001,
                float("nan"),
                propensity if sku == chosen else (1 - propensity) / 2,
            )
            for k, sku in enumerate(SKUS)
        ]
    )
    return DecisionRecord(
        request_id=f"r{day}-{i}", ts=ts, region="eu", tenant_id=f"t{i % 2}", tier="pro", surface="api",
        stream=True, requested_model="auto", conversation_key=f"c{i}", feature_schema_version=FEATURE_SCHEMA_VERSION,
        request_features=request, store_features=[float("nan")] * len(STORE_FEATURE_NAMES),
        candidates=candidates, chosen_sku=chosen, propensity=propensity, router_version="rules-v1",
        policy_lambda=0.0, policy_mu=0.0, policy_epsilon=0.1, fallback_skus=[],
        attempts=[AttemptSummary(chosen, "w0", "ok", None)], decision_ms=0.5,
    )  # fmt: skip


def attempt(
    d: DecisionRecord, sku: str, number: int, status: str = "ok", ttft: float = 300.0
) -> AttemptRecord:
    ok = status == "ok"
    return AttemptRecord(
        request_id=d.request_id, ts=d.ts + timedelta(milliseconds=number), region="eu", sku=sku, replica="w0",
        attempt=number, status=status, error_type=None if ok else "overloaded_error",
        http_status=200 if ok else 529, ttft_ms=ttft if ok else None, tpot_ms=10.0 if ok else None,
        e2e_ms=ttft + 1000.0, input_tokens=100, cached_tokens=0, output_tokens=200 + number,
    )  # fmt: skip


def outcome(d: DecisionRecord, sku: str | None, quality: float | None) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=d.request_id, ts=d.ts + timedelta(seconds=2), region="eu", tenant_id=d.tenant_id, sku=sku,
        replica="w0", status="ok" if sku else "error", error_type=None, http_status=200, ttft_ms=305.0,
        e2e_ms=1305.0, input_tokens=100, cached_tokens=0, output_tokens=200, cost_usd=0.003,
        list_price_usd=0.01, stop_reason="end_turn", attempts=1, quality=quality,
        quality_source="judge" if quality is not None else None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two days: day 0 trains, day 1 is held out. Request 1 of each day falls back; 2 has only user feedback."""
    root = tmp_path_factory.mktemp("logs")
    decisions, attempts, outcomes, feedback = [], [], [], []
    for day in (0, 1):
        for i in range(6):
            chosen = SKUS[i % 3]
            d = decision(i, day, chosen, 0.02 if i % 3 else 0.9)
            decisions.append(d)
            if i == 1:  # the chosen SKU was overloaded; served by the next
                attempts += [attempt(d, chosen, 0, "overloaded"), attempt(d, SKUS[2], 1, ttft=700.0)]
                outcomes.append(outcome(d, SKUS[2], 1.0))
            elif i == 5:  # every attempt failed
                attempts.append(attempt(d, chosen, 0, "overloaded"))
                outcomes.append(outcome(d, None, None))
            else:
                attempts.append(attempt(d, chosen, 0, ttft=100.0 * (i + 1)))
                outcomes.append(outcome(d, chosen, None if i in (2, 4) else float(i % 2)))
            if i == 2:
                feedback.append(
                    FeedbackRecord(d.request_id, d.ts + timedelta(minutes=5), "eu", d.tenant_id, 0.8, "user")
                )
            if i == 3:  # a user disagrees with the judge: the judge wins
                feedback.append(
                    FeedbackRecord(d.request_id, d.ts + timedelta(minutes=5), "eu", d.tenant_id, 0.0, "user")
                )
    for records, kind in ((decisions, DecisionRecord), (attempts, AttemptRecord), (outcomes, OutcomeRecord)):
        write_records(root, records, kind)
    write_records(root, feedback, FeedbackRecord)
    return root


def store_values(entities: pl.DataFrame) -> pl.DataFrame:
    """A fake Feast: each store feature is a function of (sku, minute) so misplaced rows show."""
    sku_index = entities["sku"].replace_strict(list(SKUS), list(range(len(SKUS))), return_dtype=pl.Float64)
    base = sku_index * 1000 + entities["ts"].dt.minute()
    return entities.with_columns(*(pl.Series(name, base + k) for k, name in enumerate(STORE_FEATURE_NAMES)))


@pytest.fixture(scope="module")
def windows(logs):
    split = logged.time_split(logs, 1)
    train = logged.load_window(logs, None, split.test_start, max_requests=None, seed=0)
    held_out = logged.load_window(logs, split.test_start, None, max_requests=None, seed=0)
    return split, train, held_out


def test_the_last_day_is_held_out_and_training_sees_only_earlier_requests(windows):
    split, train, held_out = windows
    assert split.train_dates == ("2026-11-01",) and split.eval_dates == ("2026-11-02",)
    assert split.test_start == datetime(2026, 11, 2, tzinfo=UTC)
    assert train["ts"].max() < split.test_start <= held_out["ts"].min()
    assert not set(train["request_id"]) & set(held_out["request_id"])
    rows = dataset.training_rows(train, store_values, weight_clip=10.0)
    assert rows.frame["ts"].max() < split.test_start


def test_split_needs_more_days_than_it_holds_out():
    with pytest.raises(ValueError, match="more than 1"):
        logged.split_dates(["2026-11-01"], 1)
    assert logged.split_dates(["2026-11-03", "2026-11-01", "2026-11-02"], 2).train_dates == ("2026-11-01",)


def test_vectorised_rows_equal_assemble_rows_for_every_candidate(windows):
    _, _, held_out = windows
    rows = model_rows.evaluation_rows(held_out, store_values)
    assert rows.features.shape == (6 * len(SKUS), len(FEATURE_NAMES))
    for request in held_out.iter_rows(named=True):
        mine = rows.frame["request_id"].to_numpy() == request["request_id"]
        candidates = [c["features"] for c in request["candidates"]]
        entities = pl.DataFrame(
            {
                "tenant_id": request["tenant_id"],
                "sku": [c["sku"] for c in request["candidates"]],
                "region": request["region"],
                "ts": [request["ts"]] * len(candidates),
            }
        ).with_columns(pl.col("ts").dt.truncate("1m"))
        store = store_values(entities).select(STORE_FEATURE_NAMES).to_numpy()
        expected = assemble_rows(request["request_features"], candidates, store)
        np.testing.assert_array_equal(rows.features[mine], expected)


def test_training_rows_are_the_served_sku_with_labels_where_they_are_sound(windows):
    _, train, _ = windows
    rows = dataset.training_rows(train, store_values, weight_clip=10.0)
    frame = rows.frame.sort("request_id")
    by_id = {row["request_id"]: row for row in frame.iter_rows(named=True)}
    assert "r0-5" not in by_id  # failed on every attempt: no row at all
    fallback = by_id["r0-1"]
    assert fallback["sku"] == SKUS[2] and not fallback["first_attempt_ok"]
    assert fallback["quality_label"] is None and fallback["weight"] is None  # not the logged action
    assert fallback["ttft_ms"] == 700.0 and fallback["output_tokens"] == 201.0  # the serving attempt's own
    assert by_id["r0-0"]["quality_label"] == 0 and by_id["r0-3"]["quality_label"] == 1  # judge beats user
    assert by_id["r0-2"]["quality_label"] == 1 and by_id["r0-2"]["quality_source"] == "user"
    assert by_id["r0-4"]["quality_label"] is None  # no quality signal: latency heads only
    assert by_id["r0-4"]["ttft_ms"] == 500.0


def test_importance_weights_are_clipped_and_mean_one():
    weights = dataset.importance_weights(np.array([0.9, 0.02, 0.5]), clip=10.0)
    raw = np.array([1 / 0.9, 10.0, 2.0])
    np.testing.assert_allclose(weights, raw / raw.mean())
    assert weights.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        dataset.importance_weights(np.array([0.5]), clip=0.5)


def test_weights_are_on_labelled_first_attempt_rows_only(windows):
    _, train, _ = windows
    frame = dataset.training_rows(train, store_values, weight_clip=10.0).frame
    weighted = frame.filter(pl.col("weight").is_not_null())
    assert weighted["request_id"].sort().to_list() == ["r0-0", "r0-2", "r0-3"]
    assert weighted["weight"].mean() == pytest.approx(1.0)
    low = weighted.filter(pl.col("propensity") < 0.5)["weight"].to_list()
    high = weighted.filter(pl.col("propensity") > 0.5)["weight"].to_list()
    assert min(low) > max(high)  # rarely logged actions count more


def test_store_lookups_are_deduplicated_by_minute_and_never_later(windows):
    _, train, _ = windows
    rows = model_rows.candidate_rows(train)
    keys = model_rows.lookup_keys(rows)
    assert keys.height == keys.select("tenant_id", "sku", "region", "ts").unique().height
    assert (keys["ts"].dt.truncate("1m") == keys["ts"]).all()
    calls = []

    def counting(entities: pl.DataFrame) -> pl.DataFrame:
        calls.append(entities.height)
        return store_values(entities)

    one_chunk = model_rows.store_block(rows, counting)
    many_chunks = model_rows.store_block(rows, counting, chunk_rows=4)
    np.testing.assert_array_equal(one_chunk, many_chunks)
    assert calls[0] == keys.height and max(calls[1:]) <= 4
    minutes = rows["ts"].dt.minute().to_numpy()
    assert (one_chunk[:, 0] % 1000 == minutes).all()  # looked up at the decision's own minute


def test_sampling_is_seeded_and_keeps_time_order(logs):
    first = logged.load_window(logs, None, None, max_requests=5, seed=3)
    again = logged.load_window(logs, None, None, max_requests=5, seed=3)
    other = logged.load_window(logs, None, None, max_requests=5, seed=4)
    assert first["request_id"].to_list() == again["request_id"].to_list()
    assert first["request_id"].to_list() != other["request_id"].to_list()
    assert first["ts"].is_sorted()


def test_request_feature_layout_is_the_schema(windows):
    _, _, held_out = windows
    rows = model_rows.evaluation_rows(held_out, store_values)
    assert rows.frame["prompt_tokens"].to_list()[:3] == [float(0)] * 3
    assert REQUEST_FEATURE_NAMES[0] == "prompt_tokens"


def test_decisions_logged_under_another_feature_schema_are_not_read(tmp_path):
    current = [decision(i, 0, SKUS[0], 0.5) for i in range(3)]
    stale = [
        dataclasses.replace(decision(i, 0, SKUS[0], 0.5), request_id=f"old-{i}", feature_schema_version="1")
        for i in range(4)
    ]
    write_records(tmp_path, current + stale, DecisionRecord)
    loaded = logged.load_window(tmp_path, None, None, max_requests=None, seed=0)
    assert sorted(loaded["request_id"].to_list()) == sorted(d.request_id for d in current)


def test_the_drift_monitor_reads_the_join_training_reads(logs):
    from eval.drift_data import served_window

    start, end = T0, T0 + timedelta(days=2)
    served = served_window(logs, start, end)
    requests = logged.load_window(logs, start, end, max_requests=None, seed=0)
    assert served["request_id"].to_list() == requests["request_id"].to_list()
    assert served["sku"].to_list() == requests["chosen_sku"].to_list()
    for mine, theirs in (
        ("obs_good", "quality_label"),
        ("obs_cost_usd", "cost_usd"),
        ("obs_ttft_ms", "ttft_ms"),
        ("obs_output_tokens", "output_tokens"),
        ("first_attempt_ok", "first_attempt_ok"),
    ):
        assert served[mine].to_list() == requests[theirs].cast(served[mine].dtype).to_list(), mine
    # the fixture's labels: judge scores, a user score where no judge, nothing where neither
    assert served["obs_good"].null_count() == 4 and served["obs_good"].drop_nulls().len() == 8
