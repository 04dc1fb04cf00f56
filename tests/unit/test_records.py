import dataclasses
import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa

from features.record_store import scan_records, write_records
from features.records import (
    RECORD_SCHEMA_VERSION,
    RECORD_TYPES,
    AttemptSummary,
    CandidateScore,
    CandidateScores,
    DecisionRecord,
    OutcomeRecord,
    arrow_schema,
    records_to_table,
)
from features.schema import FEATURE_SCHEMA_VERSION, REQUEST_FEATURE_NAMES, STORE_FEATURE_NAMES

T0 = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)


def decision(request_id: str, ts: datetime, region: str) -> DecisionRecord:
    return DecisionRecord(
        request_id=request_id,
        ts=ts,
        region=region,
        tenant_id="tenant-1",
        tier="pro",
        surface="api",
        stream=True,
        requested_model="auto",
        conversation_key="c1",
        feature_schema_version=FEATURE_SCHEMA_VERSION,
        request_features=[1.0] * len(REQUEST_FEATURE_NAMES),
        store_features=[math.nan] * len(STORE_FEATURE_NAMES),
        candidates=CandidateScores.from_rows(
            [
                CandidateScore("claude-haiku-4-5", [0.5], 0.7, 300.0, 200.0, 0.001, 0.6, 0.95),
                CandidateScore("claude-sonnet-4-5", [0.25], 0.8, 500.0, 250.0, 0.004, 0.5, 0.05),
            ]
        ),
        chosen_sku="claude-haiku-4-5",
        propensity=0.95,
        router_version="rules-v1",
        policy_lambda=1.0,
        policy_mu=0.1,
        policy_epsilon=0.1,
        fallback_skus=["claude-sonnet-4-5"],
        attempts=[AttemptSummary("claude-haiku-4-5", "w0", "ok", None)],
        decision_ms=0.4,
    )


def test_every_record_type_has_a_derived_schema_with_every_field():
    for record_type in RECORD_TYPES:
        schema = arrow_schema(record_type)
        assert schema.names == [f.name for f in dataclasses.fields(record_type)]
        assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
        assert schema.metadata[b"record_version"] == str(RECORD_SCHEMA_VERSION).encode()


def test_nullable_fields_are_exactly_the_optional_ones():
    schema = arrow_schema(OutcomeRecord)
    nullable = {f.name for f in schema if f.nullable}
    assert nullable == {"sku", "replica", "error_type", "ttft_ms", "stop_reason", "quality", "quality_source"}


def test_records_round_trip_through_the_partitioned_log(tmp_path):
    records = [
        decision("r1", T0, "us"),
        decision("r2", T0 + timedelta(hours=1), "us"),
        decision("r3", T0, "eu"),
    ]
    written = write_records(tmp_path, records, DecisionRecord)
    assert sorted(p.parent.relative_to(tmp_path).as_posix() for p in written) == [
        "decisions/region=eu/date=2026-11-26",
        "decisions/region=us/date=2026-11-26",
        "decisions/region=us/date=2026-11-27",
    ]
    frame = scan_records(tmp_path, DecisionRecord).sort("request_id").collect()
    assert frame["request_id"].to_list() == ["r1", "r2", "r3"]
    assert frame["date"].to_list() == ["2026-11-26", "2026-11-27", "2026-11-26"]
    first = frame.row(0, named=True)
    assert first["candidates"][1]["sku"] == "claude-sonnet-4-5"
    assert first["candidates"][1]["probability"] == 0.05
    assert first["attempts"][0]["error_type"] is None
    assert all(math.isnan(x) for x in first["store_features"])


def test_a_crashed_write_leaves_no_visible_part(tmp_path):
    table = records_to_table([decision("r1", T0, "us")], DecisionRecord)
    directory = tmp_path / "decisions" / "region=us" / "date=2026-11-26"
    directory.mkdir(parents=True)
    (directory / ".half-written.parquet.tmp").write_bytes(b"PAR1garbage")
    write_records(tmp_path, [decision("r2", T0, "us")], DecisionRecord)
    frame = scan_records(tmp_path, DecisionRecord).collect()
    assert frame["request_id"].to_list() == ["r2"]
    assert table.num_rows == 1


def test_scanning_a_table_with_no_parts_yields_an_empty_frame_with_the_schema(tmp_path):
    (tmp_path / "outcomes").mkdir()
    frame = scan_records(tmp_path, OutcomeRecord).collect()
    assert frame.height == 0
    assert set(arrow_schema(OutcomeRecord).names) <= set(frame.columns)


def _row_wise(records: list, record_type: type) -> pa.Table:
    """An independent reference: one dict per record (nested dataclasses as dicts), from_pylist."""

    def plain(value):
        if isinstance(value, CandidateScores):
            return [plain(row) for row in value.rows()]
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    return pa.Table.from_pylist([plain(r) for r in records], schema=arrow_schema(record_type))


def _same(left: pa.Table, right: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (``pa.Table.equals`` says NaN != NaN)."""
    return left.schema == right.schema and pl.from_arrow(left).equals(pl.from_arrow(right))


def test_columnar_conversion_equals_a_row_wise_one_for_uneven_nested_lists_and_nulls():
    records = [decision(f"r{i}", T0 + timedelta(seconds=i), "us") for i in range(5)]
    records[1] = dataclasses.replace(
        records[1], candidates=CandidateScores.from_rows([]), fallback_skus=[], attempts=[]
    )
    three = [
        *records[2].candidates.rows(),
        CandidateScore("claude-opus-4-5", [1.5], 0.9, 900.0, 10.0, 0.02, 0.1, 0.0),
    ]
    records[2] = dataclasses.replace(
        records[2], candidates=CandidateScores.from_rows(three), store_features=[0.5, math.inf, -1.0]
    )
    records[3] = dataclasses.replace(
        records[3],
        attempts=[AttemptSummary("a", "w1", "error", "overloaded"), AttemptSummary("b", "w2", "ok", None)],
    )
    table = records_to_table(records, DecisionRecord)
    assert table.schema == arrow_schema(DecisionRecord)
    assert _same(table, _row_wise(records, DecisionRecord))
    assert table.column("candidates").to_pylist()[2][2]["sku"] == "claude-opus-4-5"
    assert [len(c) for c in table.column("candidates").to_pylist()] == [2, 0, 3, 2, 2]
    outcomes = [
        OutcomeRecord(
            "o1", T0, "eu", "t", None, None, "error", "overloaded", 529, None, 5.0, 0, 0, 0, 0.0, 0.0, None, 3
        ),
        OutcomeRecord(
            "o2",
            T0,
            "eu",
            "t",
            "s",
            "w",
            "ok",
            None,
            200,
            80.0,
            90.0,
            10,
            2,
            5,
            0.1,
            0.2,
            "end_turn",
            1,
            0.7,
            "judge",
        ),
    ]
    assert _same(records_to_table(outcomes, OutcomeRecord), _row_wise(outcomes, OutcomeRecord))
    assert records_to_table([], OutcomeRecord).equals(arrow_schema(OutcomeRecord).empty_table())


def test_a_record_with_a_missing_list_does_not_convert():
    broken = dataclasses.replace(decision("r1", T0, "us"), candidates=None)
    try:
        records_to_table([broken], DecisionRecord)
    except (TypeError, pa.ArrowException):
        return
    raise AssertionError("a decision without its candidate list converted")
