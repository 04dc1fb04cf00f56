"""The training and evaluation sets: logged decisions and outcomes → model rows and labels.

One row per (request, SKU) in ``features.schema.FEATURE_NAMES`` order, assembled exactly as
``features.vector.assemble_rows`` does (request vector as logged, the candidate's vector from
the decision's ``candidates``, store features from Feast as of the decision time).

- **Training rows** (requests before the split): the SKU that served the request. Quality
  labels and importance weights only where the *first attempt succeeded on the chosen SKU*
  (``first_attempt_ok``): there the served SKU is the logged action and ``propensity`` is its
  probability. Requests served by a fallback keep their row for the latency and token heads
  (their labels are the successful attempt's own TTFT, end-to-end time and output tokens, a
  true observation of that SKU under that load; dropping them would hide peak-load latency)
  but get no quality label. Requests that failed on every attempt have no row.
- **Evaluation rows** (requests at or after the split): every logged candidate of every
  request, so a policy can be replayed; the served SKU's row carries the labels.
- **Quality label**: the judge score when there is one (``outcomes.quality`` or a judge
  feedback record), else the mean user feedback score; ``good = score >= 0.5``. Rows without
  any signal are excluded from the quality head only.
- **Store features**: looked up through Feast once per (tenant, SKU, region, decision time
  floored to the minute), in chunks. Feature rows are stamped on minute boundaries, so the
  floored lookup returns the same row as one at the exact decision time and can never see a
  later one; the only difference is a value that reaches its view's TTL within that minute,
  which the floored lookup still returns (0.2% of values in the integration test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, FeedbackRecord, OutcomeRecord
from features.schema import (
    CANDIDATE_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    REQUEST_FEATURE_NAMES,
    STORE_FEATURE_NAMES,
)

StoreLookup = Callable[[pl.DataFrame], pl.DataFrame]
"""Entities (request_id, tenant_id, sku, region, ts) → the same rows with ``STORE_FEATURE_NAMES``."""

KEY_RESOLUTION = "1m"
LOOKUP_CHUNK_ROWS = 50_000
LABEL_COLUMNS = ("quality_label", "ttft_ms", "e2e_ms", "output_tokens")


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Training uses decisions before ``test_start``; evaluation those at or after it."""

    test_start: datetime
    train_dates: tuple[str, ...]
    eval_dates: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ModelRows:
    """A feature matrix and, row for row, its ids, labels and weights."""

    features: np.ndarray  # [n, len(FEATURE_NAMES)] float32, NaN where a store value is missing
    frame: pl.DataFrame

    def __post_init__(self) -> None:
        if self.features.shape != (self.frame.height, len(FEATURE_NAMES)):
            raise ValueError(f"matrix {self.features.shape} does not match {self.frame.height} rows")

    def where(self, mask: pl.Series | np.ndarray) -> ModelRows:
        keep = np.asarray(mask, dtype=bool)
        return ModelRows(self.features[keep], self.frame.filter(pl.Series(keep)))


def split_dates(dates: list[str], eval_days: int) -> TimeSplit:
    """The last ``eval_days`` logged UTC dates are the evaluation window."""
    days = sorted(set(dates))
    if eval_days < 1 or len(days) <= eval_days:
        raise ValueError(
            f"need more than {eval_days} logged day(s) to hold out {eval_days}, have {len(days)}"
        )
    first_eval = date.fromisoformat(days[-eval_days])
    start = datetime(first_eval.year, first_eval.month, first_eval.day, tzinfo=UTC)
    return TimeSplit(start, tuple(days[:-eval_days]), tuple(days[-eval_days:]))


def time_split(logs_root: Path, eval_days: int) -> TimeSplit:
    dates = scan_records(logs_root, DecisionRecord).select("date").unique().collect()["date"].to_list()
    return split_dates(dates, eval_days)


def quality_labels(outcomes: pl.LazyFrame, feedback: pl.LazyFrame) -> pl.LazyFrame:
    """Per request: ``quality_score`` (judge first, else users), its ``quality_source`` and the label."""
    judged = pl.concat(
        [
            outcomes.filter(pl.col("quality").is_not_null()).select(
                "request_id", pl.col("quality").alias("s")
            ),
            feedback.filter(pl.col("source") == "judge").select("request_id", pl.col("score").alias("s")),
        ]
    )
    judge = judged.group_by("request_id").agg(pl.col("s").mean().alias("judge_score"))
    user = (
        feedback.filter(pl.col("source") != "judge")
        .group_by("request_id")
        .agg(pl.col("score").mean().alias("user_score"))
    )
    return (
        judge.join(user, on="request_id", how="full", coalesce=True)
        .select(
            "request_id",
            pl.coalesce("judge_score", "user_score").alias("quality_score"),
            pl.when(pl.col("judge_score").is_not_null())
            .then(pl.lit("judge"))
            .otherwise(pl.lit("user"))
            .alias("quality_source"),
        )
        .with_columns((pl.col("quality_score") >= 0.5).cast(pl.Int8).alias("quality_label"))
    )


def logged_requests(logs_root: Path, request_ids: pl.DataFrame | None = None) -> pl.LazyFrame:
    """One row per decision (of ``request_ids`` if given) with its served attempt, cost and quality label."""
    root = Path(logs_root)
    decisions = scan_records(root, DecisionRecord).select(
        "request_id",
        "ts",
        "region",
        "tenant_id",
        "request_features",
        "candidates",
        "chosen_sku",
        "propensity",
    )
    if request_ids is not None:
        decisions = decisions.join(request_ids.lazy().select("request_id"), on="request_id", how="semi")
    served = (
        scan_records(root, AttemptRecord)
        .filter(pl.col("status") == "ok")
        .select(
            "request_id",
            pl.col("sku").alias("served_sku"),
            pl.col("attempt").alias("served_attempt"),
            "ttft_ms",
            "e2e_ms",
            pl.col("output_tokens").cast(pl.Float64),
        )
        .unique("request_id", keep="first")
    )
    outcomes = scan_records(root, OutcomeRecord)
    costs = outcomes.select("request_id", "cost_usd", pl.col("ttft_ms").alias("outcome_ttft_ms"))
    labels = quality_labels(outcomes, scan_records(root, FeedbackRecord))
    return (
        decisions.join(served, on="request_id", how="left")
        .join(costs, on="request_id", how="left")
        .join(labels, on="request_id", how="left")
        .with_columns(
            ((pl.col("served_sku") == pl.col("chosen_sku")) & (pl.col("served_attempt") == 0))
            .fill_null(False)
            .alias("first_attempt_ok")
        )
    )


def load_window(
    logs_root: Path, start: datetime | None, end: datetime | None, *, max_requests: int | None, seed: int
) -> pl.DataFrame:
    """Logged requests with ``start <= ts < end``, a seeded uniform sample of at most ``max_requests``.

    The sample is drawn from the (ts, request_id)-ordered ids first, so only sampled requests
    are ever read in full.
    """
    decisions = (
        scan_records(Path(logs_root), DecisionRecord)
        # rows logged under another feature schema mean other things in the same columns
        .filter(pl.col("feature_schema_version") == FEATURE_SCHEMA_VERSION)
        .select("request_id", "ts")
    )
    if start is not None:
        decisions = decisions.filter(pl.col("ts") >= start)
    if end is not None:
        decisions = decisions.filter(pl.col("ts") < end)
    keys = decisions.collect().sort("ts", "request_id")
    if max_requests is not None and keys.height > max_requests:
        keys = keys.sample(max_requests, seed=seed)
    return logged_requests(logs_root, keys).collect().sort("ts", "request_id")


def importance_weights(propensity: np.ndarray, clip: float) -> np.ndarray:
    """``min(1/propensity, clip)``, scaled to mean 1 (so LightGBM's hessian limits keep their meaning)."""
    if clip < 1.0:
        raise ValueError("the weight clip must be at least 1")
    if len(propensity) == 0:
        return np.zeros(0)
    weights = np.minimum(1.0 / np.asarray(propensity, dtype=np.float64), clip)
    return weights / weights.mean()


def candidate_rows(requests: pl.DataFrame) -> pl.DataFrame:
    """One row per (request, logged candidate), in request order then logged candidate order."""
    return (
        requests.with_row_index("_request")
        .explode("candidates")
        .with_columns(
            pl.col("candidates").struct.field("sku").alias("sku"),
            pl.col("candidates").struct.field("features").alias("candidate_features"),
            pl.col("candidates").struct.field("probability").alias("logged_probability"),
        )
        .drop("candidates")
    )


def _block(column: pl.Series, width: int, name: str) -> np.ndarray:
    lengths = column.list.len()
    if column.len() and (lengths.min() != width or lengths.max() != width):
        raise ValueError(f"{name} vectors must have {width} values")
    return column.list.to_array(width).to_numpy().astype(np.float32).reshape(column.len(), width)


def assemble_matrix(rows: pl.DataFrame, store: np.ndarray) -> np.ndarray:
    """``features.vector.assemble_rows`` for many requests at once (identical values and order)."""
    n = rows.height
    matrix = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    n_request, n_candidate = len(REQUEST_FEATURE_NAMES), len(CANDIDATE_FEATURE_NAMES)
    matrix[:, :n_request] = _block(rows["request_features"], n_request, "request")
    matrix[:, n_request : n_request + n_candidate] = _block(
        rows["candidate_features"], n_candidate, "candidate"
    )
    if store.shape != (n, len(STORE_FEATURE_NAMES)):
        raise ValueError(f"store block {store.shape}, expected {(n, len(STORE_FEATURE_NAMES))}")
    matrix[:, n_request + n_candidate :] = store.astype(np.float32)
    return matrix


def lookup_keys(rows: pl.DataFrame) -> pl.DataFrame:
    """The distinct (tenant, SKU, region, minute) store lookups ``rows`` need; ``ts`` never moves later."""
    return (
        rows.select("tenant_id", "sku", "region", pl.col("ts").dt.truncate(KEY_RESOLUTION))
        .unique(maintain_order=True)
        .sort("ts", "tenant_id", "sku", "region")
        .with_row_index("_key")
        .with_columns(pl.format("k{}", "_key").alias("request_id"))
    )


def store_block(
    rows: pl.DataFrame, lookup: StoreLookup, *, chunk_rows: int = LOOKUP_CHUNK_ROWS
) -> np.ndarray:
    """``[n, len(STORE_FEATURE_NAMES)]`` store features as of each row's decision time."""
    if rows.height == 0:
        return np.zeros((0, len(STORE_FEATURE_NAMES)))
    keys = lookup_keys(rows)
    parts = [lookup(keys.slice(offset, chunk_rows)) for offset in range(0, keys.height, chunk_rows)]
    values = pl.concat(parts).select("tenant_id", "sku", "region", "ts", *STORE_FEATURE_NAMES)
    joined = rows.select("tenant_id", "sku", "region", pl.col("ts").dt.truncate(KEY_RESOLUTION)).join(
        values, on=["tenant_id", "sku", "region", "ts"], how="left", maintain_order="left"
    )
    return joined.select(STORE_FEATURE_NAMES).to_numpy().astype(np.float64)


def _labelled(rows: pl.DataFrame, store: np.ndarray, frame_columns: list[str | pl.Expr]) -> ModelRows:
    return ModelRows(assemble_matrix(rows, store), rows.select(frame_columns))


def training_rows(requests: pl.DataFrame, lookup: StoreLookup, *, weight_clip: float) -> ModelRows:
    """The served SKU's row of every served request; quality labels and weights on first-attempt rows."""
    rows = candidate_rows(requests.filter(pl.col("served_sku").is_not_null())).filter(
        pl.col("sku") == pl.col("served_sku")
    )
    quality_ok = pl.col("first_attempt_ok") & pl.col("quality_label").is_not_null()
    weighted = rows.filter(quality_ok)
    weights = pl.Series("weight", importance_weights(weighted["propensity"].to_numpy(), weight_clip))
    rows = rows.join(
        weighted.select("request_id").with_columns(weights),
        on="request_id",
        how="left",
        maintain_order="left",
    )
    columns: list[str | pl.Expr] = [
        "request_id",
        "ts",
        "sku",
        "first_attempt_ok",
        "propensity",
        pl.when(quality_ok).then(pl.col("quality_label")).alias("quality_label"),
        "quality_source",
        "weight",
        "ttft_ms",
        "e2e_ms",
        "output_tokens",
        "cost_usd",  # the outcome's serving cost (the drift monitor's reference)
    ]
    return _labelled(rows, store_block(rows, lookup), columns)


def evaluation_rows(requests: pl.DataFrame, lookup: StoreLookup) -> ModelRows:
    """Every logged candidate of every request; labels on the served SKU's row."""
    rows = candidate_rows(requests)
    served = pl.col("sku") == pl.col("served_sku")
    columns: list[str | pl.Expr] = [
        "request_id",
        "ts",
        "sku",
        "_request",
        (pl.col("sku") == pl.col("chosen_sku")).alias("is_chosen"),
        served.fill_null(False).alias("is_served"),
        "first_attempt_ok",
        "propensity",
        "logged_probability",
        pl.when(served & pl.col("first_attempt_ok")).then(pl.col("quality_label")).alias("quality_label"),
        *(pl.when(served).then(pl.col(name)).alias(name) for name in ("ttft_ms", "e2e_ms", "output_tokens")),
        pl.col("request_features")
        .list.get(REQUEST_FEATURE_NAMES.index("prompt_tokens"))
        .alias("prompt_tokens"),
        pl.col("candidate_features")
        .list.get(CANDIDATE_FEATURE_NAMES.index("expected_cache_hit"))
        .alias("expected_cache_hit"),
    ]
    return _labelled(rows, store_block(rows, lookup), columns)


def logged_outcomes(requests: pl.DataFrame) -> pl.DataFrame:
    """Per held-out request, what the logging policy did and got (for off-policy estimates)."""
    return requests.select(
        "request_id",
        "chosen_sku",
        "propensity",
        "quality_label",
        "quality_source",
        "cost_usd",
        "outcome_ttft_ms",
    )
