"""Arrow tables of decision, attempt, outcome and feedback records, built from columns.

The bootstrap simulates a window column-wise and builds each record table directly with the
schema of ``features.records.arrow_schema`` (the one definition serving writes with), without
a Python object per record. Nested columns (feature vectors, candidates, attempts) are built
from flat value arrays and offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.catalog import REGIONS, Catalog
from features.records import (
    RECORD_SCHEMA_VERSION,
    AttemptRecord,
    DecisionRecord,
    FeedbackRecord,
    OutcomeRecord,
    arrow_schema,
)
from features.request import candidate_features
from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    STORE_FEATURE_NAMES,
    SURFACES,
    TENANT_TIERS,
)
from simulator.logging_policy import CandidatePriors
from simulator.outcomes import ERROR_TYPES, HTTP_STATUS, NOT_TRIED, OK, STATUS_NAMES, RequestOutcomes

STOP_REASONS = ("end_turn", "max_tokens")


@dataclass(frozen=True, eq=False)
class WindowRecords:
    """Everything a window's record tables are built from (rows in arrival order)."""

    request_id: pa.Array
    conversation_key: pa.Array
    ts_us: np.ndarray
    region: np.ndarray
    tenant: np.ndarray
    tenant_ids: pa.Array  # by tenant index
    tenant_tier: np.ndarray
    surface: np.ndarray
    stream: np.ndarray
    prompt_tokens: np.ndarray
    request_features: np.ndarray  # [n, n_request_features]
    eligible: np.ndarray  # [n, sku]
    probabilities: np.ndarray  # [n, sku]
    priors: CandidatePriors
    chosen: np.ndarray
    attempt_skus: np.ndarray  # [n, k]: chosen, then fallbacks, -1 padded
    replica: np.ndarray  # replica number per request (prefix-cache affinity)
    outcomes: RequestOutcomes
    epsilon: float
    router_version: str


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), type=pa.timestamp("us", tz="UTC"))


def _float32_lists(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.astype(np.float32).ravel()))


def _lists(counts: np.ndarray, values: pa.Array, list_type: pa.DataType) -> pa.Array:
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, values, type=list_type)


def _take(lookup: tuple[str | None, ...], index: np.ndarray) -> pa.Array:
    return pa.array(list(lookup), type=pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def _replica_names(sku_names: pa.Array, region_names: pa.Array, replica: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(sku_names, region_names, pa.array(replica.astype(str)), "-")


def _struct(schema_type: pa.DataType, arrays: list[pa.Array]) -> pa.StructArray:
    return pa.StructArray.from_arrays(arrays, fields=list(schema_type))


def _field_type(schema: pa.Schema, name: str) -> pa.DataType:
    return schema.field(name).type


def expected_cache_hit_matrix(prefix_tokens: np.ndarray, prompt_tokens: np.ndarray) -> np.ndarray:
    """``features.request.expected_cache_hit`` for every [request, sku]."""
    share = prefix_tokens / np.maximum(prompt_tokens, 1)[:, None]
    return np.where(prompt_tokens[:, None] > 0, np.clip(share, 0.0, 1.0), 0.0)


def candidate_feature_matrix(catalog: Catalog, sku_index: np.ndarray, cache_hit: np.ndarray) -> np.ndarray:
    """[c, n_candidate_features], equal row by row to ``features.request.candidate_features``."""
    base = np.array([candidate_features(sku, cache_hit=0.0) for sku in catalog.skus])
    matrix = base[sku_index].copy()
    matrix[:, CANDIDATE_FEATURE_NAMES.index("expected_cache_hit")] = cache_hit
    return matrix


def decision_table(catalog: Catalog, records: WindowRecords) -> pa.Table:
    schema = arrow_schema(DecisionRecord)
    n = len(records.ts_us)
    names = catalog.names
    out = records.outcomes
    regions = _take(REGIONS, records.region)

    request_rows, candidate_sku = np.nonzero(records.eligible)
    cache_hit = expected_cache_hit_matrix(out.prefix_tokens, records.prompt_tokens)[
        request_rows, candidate_sku
    ]
    candidate_type = _field_type(schema, "candidates").value_type
    priors = records.priors
    candidates = _struct(
        candidate_type,
        [
            _take(names, candidate_sku),
            _float32_lists(candidate_feature_matrix(catalog, candidate_sku, cache_hit)),
            pa.array(priors.p_quality[request_rows, candidate_sku]),
            pa.array(priors.ttft_ms[request_rows, candidate_sku]),
            pa.array(priors.output_tokens[request_rows, candidate_sku]),
            pa.array(priors.cost_usd[request_rows, candidate_sku]),
            pa.array(priors.utility[request_rows, candidate_sku]),
            pa.array(records.probabilities[request_rows, candidate_sku]),
        ],
    )
    tried_rows, tried_slot = np.nonzero(out.attempts.status != NOT_TRIED)
    tried_sku = records.attempt_skus[tried_rows, tried_slot]
    tried_status = out.attempts.status[tried_rows, tried_slot]
    attempt_summaries = _struct(
        _field_type(schema, "attempts").value_type,
        [
            _take(names, tried_sku),
            _replica_names(
                _take(names, tried_sku), regions.take(pa.array(tried_rows)), records.replica[tried_rows]
            ),
            _take(STATUS_NAMES, tried_status),
            _take(ERROR_TYPES, tried_status),
        ],
    )
    fallback_rows, fallback_slot = np.nonzero(records.attempt_skus[:, 1:] >= 0)
    chosen = records.chosen
    columns = {
        "request_id": records.request_id,
        "ts": _timestamps(records.ts_us),
        "region": regions,
        "tenant_id": records.tenant_ids.take(pa.array(records.tenant)),
        "tier": _take(TENANT_TIERS, records.tenant_tier),
        "surface": _take(SURFACES, records.surface),
        "stream": pa.array(records.stream, type=pa.bool_()),
        "requested_model": pa.array(np.full(n, "auto")),
        "conversation_key": records.conversation_key,
        "feature_schema_version": pa.array(np.full(n, FEATURE_SCHEMA_VERSION)),
        "request_features": _float32_lists(records.request_features),
        "store_features": _float32_lists(np.full((n, len(STORE_FEATURE_NAMES)), np.nan)),
        "candidates": _lists(records.eligible.sum(axis=1), candidates, _field_type(schema, "candidates")),
        "chosen_sku": _take(names, chosen),
        "propensity": pa.array(records.probabilities[np.arange(n), chosen]),
        "router_version": pa.array(np.full(n, records.router_version)),
        "policy_lambda": pa.array(np.zeros(n)),
        "policy_mu": pa.array(np.zeros(n)),
        "policy_epsilon": pa.array(np.full(n, records.epsilon)),
        "fallback_skus": _lists(
            np.bincount(fallback_rows, minlength=n),
            _take(names, records.attempt_skus[:, 1:][fallback_rows, fallback_slot]),
            _field_type(schema, "fallback_skus"),
        ),
        "attempts": _lists(out.attempt_count, attempt_summaries, _field_type(schema, "attempts")),
        "decision_ms": pa.array(out.decision_ms),
        "record_version": pa.array(np.full(n, RECORD_SCHEMA_VERSION, dtype=np.int64)),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def _nullable_floats(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=np.isnan(values))


def attempt_table(catalog: Catalog, records: WindowRecords) -> pa.Table:
    schema = arrow_schema(AttemptRecord)
    attempts = records.outcomes.attempts
    rows, slot = np.nonzero(attempts.status != NOT_TRIED)
    sku = records.attempt_skus[rows, slot]
    status = attempts.status[rows, slot]
    regions = _take(REGIONS, records.region[rows])
    sku_names = _take(catalog.names, sku)
    http = np.array(HTTP_STATUS)[status]
    columns = {
        "request_id": records.request_id.take(pa.array(rows)),
        "ts": _timestamps(attempts.start_us[rows, slot]),
        "region": regions,
        "sku": sku_names,
        "replica": _replica_names(sku_names, regions, records.replica[rows]),
        "attempt": pa.array(slot.astype(np.int64)),
        "status": _take(STATUS_NAMES, status),
        "error_type": _take(ERROR_TYPES, status),
        "http_status": pa.array(http.astype(np.int64)),
        "ttft_ms": _nullable_floats(attempts.ttft_ms[rows, slot]),
        "tpot_ms": _nullable_floats(attempts.tpot_ms[rows, slot]),
        "e2e_ms": pa.array(attempts.e2e_ms[rows, slot]),
        "input_tokens": pa.array(attempts.input_tokens[rows, slot].astype(np.int64)),
        "cached_tokens": pa.array(attempts.cached_tokens[rows, slot].astype(np.int64)),
        "output_tokens": pa.array(attempts.output_tokens[rows, slot].astype(np.int64)),
        "record_version": pa.array(np.full(len(rows), RECORD_SCHEMA_VERSION, dtype=np.int64)),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def served_costs(truth_cost_per_mtok: np.ndarray, records: WindowRecords) -> np.ndarray:
    """Cost of the serving attempt of each request at the given [sku, (input, cached, output)] rates; 0 if none."""
    out = records.outcomes
    rows = np.arange(len(records.ts_us))
    slot = np.maximum(out.served_slot, 0)
    sku = np.maximum(out.served_sku, 0)
    rates = truth_cost_per_mtok[sku]
    attempts = out.attempts
    cost = (
        attempts.input_tokens[rows, slot] * rates[:, 0]
        + attempts.cached_tokens[rows, slot] * rates[:, 1]
        + attempts.output_tokens[rows, slot] * rates[:, 2]
    ) / 1e6
    return np.where(out.served_slot >= 0, cost, 0.0)


def outcome_table(
    catalog: Catalog, records: WindowRecords, cost_usd: np.ndarray, list_price_usd: np.ndarray
) -> pa.Table:
    schema = arrow_schema(OutcomeRecord)
    out = records.outcomes
    attempts = out.attempts
    n = len(records.ts_us)
    rows = np.arange(n)
    was_served = out.served_slot >= 0
    slot = np.where(was_served, out.served_slot, out.attempt_count - 1)
    status = attempts.status[rows, slot]
    regions = _take(REGIONS, records.region)
    served_names = _take(catalog.names, np.maximum(out.served_sku, 0))
    missing = pa.array(~was_served)
    served_start_ms = (attempts.start_us[rows, slot] - records.ts_us) / 1000.0
    columns = {
        "request_id": records.request_id,
        "ts": _timestamps(out.completion_us),
        "region": regions,
        "tenant_id": records.tenant_ids.take(pa.array(records.tenant)),
        "sku": pc.if_else(missing, pa.scalar(None, pa.string()), served_names),
        "replica": pc.if_else(
            missing, pa.scalar(None, pa.string()), _replica_names(served_names, regions, records.replica)
        ),
        "status": _take(STATUS_NAMES, status),
        "error_type": _take(ERROR_TYPES, status),
        "http_status": pa.array(np.array(HTTP_STATUS)[status].astype(np.int64)),
        "ttft_ms": _nullable_floats(
            np.where(was_served, served_start_ms + attempts.ttft_ms[rows, slot], np.nan)
        ),
        "e2e_ms": pa.array((out.completion_us - records.ts_us) / 1000.0),
        "input_tokens": pa.array(np.where(was_served, attempts.input_tokens[rows, slot], 0).astype(np.int64)),
        "cached_tokens": pa.array(attempts.cached_tokens[rows, slot].astype(np.int64)),
        "output_tokens": pa.array(attempts.output_tokens[rows, slot].astype(np.int64)),
        "cost_usd": pa.array(cost_usd),
        "list_price_usd": pa.array(list_price_usd),
        "stop_reason": pc.if_else(
            missing, pa.scalar(None, pa.string()), _take(STOP_REASONS, out.stop_max_tokens)
        ),
        "attempts": pa.array(out.attempt_count.astype(np.int64)),
        "quality": _nullable_floats(np.where(out.judged, out.judge_score, np.nan)),
        "quality_source": pc.if_else(
            pa.array(out.judged), pa.array(np.full(n, "judge")), pa.scalar(None, pa.string())
        ),
        "record_version": pa.array(np.full(n, RECORD_SCHEMA_VERSION, dtype=np.int64)),
    }
    assert (status[was_served] == OK).all()
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


def feedback_table(records: WindowRecords) -> pa.Table:
    schema = arrow_schema(FeedbackRecord)
    out = records.outcomes
    rows = np.flatnonzero(out.feedback)
    columns = {
        "request_id": records.request_id.take(pa.array(rows)),
        "ts": _timestamps(out.feedback_us[rows]),
        "region": _take(REGIONS, records.region[rows]),
        "tenant_id": records.tenant_ids.take(pa.array(records.tenant[rows])),
        "score": pa.array(out.feedback_score[rows]),
        "source": pa.array(np.full(len(rows), "user")),
        "record_version": pa.array(np.full(len(rows), RECORD_SCHEMA_VERSION, dtype=np.int64)),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
