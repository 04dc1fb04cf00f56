"""Decision, attempt, outcome and feedback records: the one data model of the event log.

Serving writes these records, the simulator's bootstrap writes them in exactly the same
shape, and training, evaluation and monitoring read them. The Arrow schemas are derived
from the dataclasses, so there is a single definition of each table. Change a field only
with a ``RECORD_SCHEMA_VERSION`` bump (docs/data-model.md).

No prompt text: requests are described by their feature vectors, hashes and metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import numpy as np
import pyarrow as pa

RECORD_SCHEMA_VERSION = 1

ATTEMPT_STATUSES = ("ok", "error", "timeout", "overloaded", "rate_limited", "aborted")


@dataclass(frozen=True, slots=True)
class CandidateScore:
    """One eligible SKU as the router scored it."""

    sku: str
    features: list[float]
    p_quality: float
    ttft_ms: float
    output_tokens: float
    cost_usd: float
    utility: float
    probability: float  # the logging policy's probability of choosing this SKU


@dataclass(frozen=True, slots=True, eq=False)
class CandidateScores:
    """A decision's candidates column-wise: candidate ``i`` is row ``i`` of ``features`` and
    column ``i`` of ``scores`` (one row per score, in ``SCORE_COLUMNS`` order).

    The router computes them as arrays and they stay arrays: a batch of decisions converts to
    Arrow with one concatenation for the features and one for all six scores, and the gateway
    builds one object per request instead of a dozen (ADR 0008). The Parquet layout is
    ``CandidateScore``'s.
    """

    ROW: ClassVar[type] = CandidateScore
    sku: tuple[str, ...]
    features: np.ndarray  # [n, n_candidate_features], float32
    scores: np.ndarray  # [len(SCORE_COLUMNS), n], float64

    def __post_init__(self) -> None:
        count = len(self.sku)
        if self.features.ndim != 2 or self.features.shape[0] != count:
            raise ValueError(f"features must be [{count}, k], got {self.features.shape}")
        if self.scores.shape != (len(SCORE_COLUMNS), count):
            raise ValueError(f"scores must be [{len(SCORE_COLUMNS)}, {count}], got {self.scores.shape}")

    @classmethod
    def from_columns(
        cls,
        sku: typing.Sequence[str],
        features: np.ndarray,
        *,
        p_quality: typing.Any,
        ttft_ms: typing.Any,
        output_tokens: typing.Any,
        cost_usd: typing.Any,
        utility: typing.Any,
        probability: typing.Any,
    ) -> CandidateScores:
        """From one array (or sequence) per score, each in candidate order."""
        scores = np.array(
            [p_quality, ttft_ms, output_tokens, cost_usd, utility, probability], dtype=np.float64
        )
        return cls(tuple(sku), features, scores.reshape(len(SCORE_COLUMNS), len(sku)))

    @classmethod
    def from_rows(cls, rows: typing.Sequence[CandidateScore]) -> CandidateScores:
        width = len(rows[0].features) if rows else 0
        return cls.from_columns(
            [row.sku for row in rows],
            np.array([row.features for row in rows], dtype=np.float32).reshape(len(rows), width),
            **{name: [getattr(row, name) for row in rows] for name in SCORE_COLUMNS},
        )

    def rows(self) -> list[CandidateScore]:
        columns = self.scores.tolist()
        features = self.features.tolist()
        return [CandidateScore(sku, features[i], *(c[i] for c in columns)) for i, sku in enumerate(self.sku)]

    def __len__(self) -> int:
        return len(self.sku)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CandidateScores):
            return NotImplemented
        return (
            self.sku == other.sku
            and np.array_equal(self.features, other.features, equal_nan=True)
            and np.array_equal(self.scores, other.scores, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]


# CandidateScore's score fields, in order: the rows of CandidateScores.scores
SCORE_COLUMNS = ("p_quality", "ttft_ms", "output_tokens", "cost_usd", "utility", "probability")


@dataclass(frozen=True, slots=True)
class AttemptSummary:
    sku: str
    replica: str
    status: str
    error_type: str | None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    TABLE: ClassVar[str] = "decisions"
    request_id: str
    ts: datetime
    region: str
    tenant_id: str
    tier: str
    surface: str
    stream: bool
    requested_model: str  # "auto" or a pinned SKU
    conversation_key: str  # hash of tenant + first user turn; groups multi-turn traffic
    feature_schema_version: str
    request_features: list[float]
    store_features: list[float]  # Feast values as served, NaN where unavailable
    candidates: CandidateScores
    chosen_sku: str
    propensity: float
    router_version: str
    policy_lambda: float
    policy_mu: float
    policy_epsilon: float
    fallback_skus: list[str]
    attempts: list[AttemptSummary]
    decision_ms: float
    record_version: int = RECORD_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One call to one worker: the per-SKU latency event rolling stats are computed from."""

    TABLE: ClassVar[str] = "attempts"
    request_id: str
    ts: datetime  # when the attempt started
    region: str
    sku: str
    replica: str
    attempt: int  # 0 for the first choice, 1.. for fallbacks
    status: str  # one of ATTEMPT_STATUSES
    error_type: str | None
    http_status: int | None
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    record_version: int = RECORD_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """What the client got: one per accepted request, written once."""

    TABLE: ClassVar[str] = "outcomes"
    request_id: str
    ts: datetime  # completion time
    region: str
    tenant_id: str
    sku: str | None  # None when every attempt failed
    replica: str | None
    status: str
    error_type: str | None
    http_status: int
    ttft_ms: float | None
    e2e_ms: float
    input_tokens: int  # uncached prompt tokens
    cached_tokens: int
    output_tokens: int
    cost_usd: float  # serving cost (GPU time), what the budget constrains
    list_price_usd: float  # what the request is billed at list price
    stop_reason: str | None
    attempts: int
    quality: float | None = None  # a quality signal known at completion (e.g. a judge)
    quality_source: str | None = None
    record_version: int = RECORD_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A quality signal that arrives after the response (POST /v1/feedback, a judge)."""

    TABLE: ClassVar[str] = "feedback"
    request_id: str
    ts: datetime
    region: str
    tenant_id: str
    score: float  # 0 (bad) .. 1 (good)
    source: str  # "user", "judge", ...
    record_version: int = RECORD_SCHEMA_VERSION


RECORD_TYPES: tuple[type, ...] = (DecisionRecord, AttemptRecord, OutcomeRecord, FeedbackRecord)

_SCALARS: dict[object, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(annotation: object) -> tuple[pa.DataType, bool]:
    """Arrow type of a field annotation and whether it is nullable."""
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _arrow_type(inner)[0], True
    if origin is list:
        (item,) = args
        if item is float:
            return pa.list_(pa.float32()), False
        return pa.list_(_arrow_type(item)[0]), False
    if annotation is CandidateScores:  # rows stored column-wise: a list of its row struct
        return pa.list_(pa.struct(_fields(CandidateScores.ROW))), False
    if dataclasses.is_dataclass(annotation):
        return pa.struct(_fields(annotation)), False  # type: ignore[arg-type]
    raise TypeError(f"no Arrow type for {annotation!r}")


def _fields(record_type: type) -> list[pa.Field]:
    hints = typing.get_type_hints(record_type)
    fields = []
    for item in dataclasses.fields(record_type):
        data_type, nullable = _arrow_type(hints[item.name])
        fields.append(pa.field(item.name, data_type, nullable=nullable))
    return fields


@functools.cache
def arrow_schema(record_type: type) -> pa.Schema:
    """The Arrow/Parquet schema of a record type, derived from its dataclass fields."""
    return pa.schema(_fields(record_type), metadata={"record_version": str(RECORD_SCHEMA_VERSION)})


def records_to_table(records: typing.Sequence[object], record_type: type) -> pa.Table:
    """Column-wise conversion of records of one type to an Arrow table.

    Each column is one ``pa.array`` call over plain Python values; a list column (feature
    vectors, names) is flattened into one child array plus offsets, a list of dataclasses into
    one child array per field, and the decisions' ``CandidateScores`` are concatenated matrix by
    matrix (``_candidates_column``). On a 2-core EPYC VM: ~5 µs per 12-candidate decision and ~1.5 µs per attempt or
    outcome (``bench/eventlog_throughput.py``), against ~55 µs per decision row-wise with
    candidate dataclasses (a dict per candidate, then ``Table.from_pydict``: one C call holding
    the GIL throughout, on the event log's thread, while the gateway's event loop waited for
    it); between columns the GIL can change hands.
    """
    schema = arrow_schema(record_type)
    return pa.Table.from_arrays(_columns(list(records), list(schema)), schema=schema)


def _columns(items: list[object], fields: list[pa.Field]) -> list[pa.Array]:
    """One array per field over ``items`` (dataclass instances); a None in a non-nullable field
    raises (``pa.array`` would take it as a null, which Parquet refuses later)."""
    arrays = []
    for field in fields:
        array = _column(list(map(operator.attrgetter(field.name), items)), field.type)
        if array.null_count and not field.nullable:
            raise ValueError(f"{field.name}: null in a non-nullable field")
        arrays.append(array)
    return arrays


def _column(values: list[object], data_type: pa.DataType) -> pa.Array:
    """One Arrow array of ``data_type`` from Python values (dataclass items for a list of structs)."""
    if not pa.types.is_list(data_type):
        return pa.array(values, type=data_type)
    if values and isinstance(values[0], CandidateScores):
        return _candidates_column(values, data_type)  # type: ignore[arg-type]
    # a None or a non-sequence raises here: that record does not fit its non-nullable list field
    offsets = _offsets(np.fromiter(map(len, values), dtype=np.int32, count=len(values)))  # type: ignore[arg-type]
    flat = list(itertools.chain.from_iterable(values))  # type: ignore[arg-type]
    item_type = data_type.value_type
    if pa.types.is_struct(item_type):
        fields = [item_type.field(index) for index in range(item_type.num_fields)]
        children = pa.StructArray.from_arrays(_columns(flat, fields), fields=fields)
    else:
        children = _column(flat, item_type)
    return pa.ListArray.from_arrays(offsets, children, type=data_type)


def _offsets(lengths: np.ndarray) -> pa.Array:
    """List offsets (int32, one more than ``lengths``) of consecutive lists of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.array(offsets)


def _candidates_column(values: list[CandidateScores], data_type: pa.DataType) -> pa.Array:
    """The ``candidates`` column from column-wise candidates: one concatenation for all the
    scores, one for the features, and the SKU names coded against the distinct ones."""
    offsets = _offsets(np.fromiter(map(len, values), dtype=np.int32, count=len(values)))
    scores = np.concatenate([value.scores for value in values], axis=1)  # [6, total], rows contiguous
    item_type = data_type.value_type
    children = []
    for field in item_type:
        if pa.types.is_string(field.type):
            children.append(_sku_column([value.sku for value in values]))
        elif pa.types.is_list(field.type):
            children.append(_feature_column([value.features for value in values], field.type))
        else:
            children.append(pa.array(scores[SCORE_COLUMNS.index(field.name)], type=field.type))
    items = pa.StructArray.from_arrays(children, fields=list(item_type))
    return pa.ListArray.from_arrays(offsets, items, type=data_type)


def _sku_column(names: list[tuple[str, ...]]) -> pa.Array:
    """The names of every candidate of every decision. Decisions mostly share a handful of
    candidate sets: each distinct tuple is coded once and the codes are concatenated."""
    distinct: dict[str, int] = {}
    coded: dict[tuple[str, ...], np.ndarray] = {}
    parts = []
    for sku in names:
        codes = coded.get(sku)
        if codes is None:
            codes = coded[sku] = np.fromiter(
                (distinct.setdefault(name, len(distinct)) for name in sku), dtype=np.int32, count=len(sku)
            )
        parts.append(codes)
    dictionary = pa.array(list(distinct), type=pa.string())  # a non-string name raises here
    return dictionary.take(pa.array(np.concatenate(parts))) if parts else dictionary


def _feature_column(matrices: list[np.ndarray], data_type: pa.DataType) -> pa.Array:
    """A ``[n, k]`` matrix per decision as one list of ``k`` float32 per candidate."""
    try:
        flat = np.concatenate(matrices)  # [total, k] when every decision has the same k
        widths = np.full(flat.shape[0], flat.shape[1], dtype=np.int32)
    except ValueError:  # ragged widths across decisions
        widths = np.repeat([m.shape[1] for m in matrices], [m.shape[0] for m in matrices]).astype(np.int32)
        flat = np.concatenate([m.ravel() for m in matrices])
    values = pa.array(flat.ravel().astype(np.float32, copy=False))
    return pa.ListArray.from_arrays(_offsets(widths), values, type=data_type)
