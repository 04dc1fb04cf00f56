"""The logged outcomes: decisions joined with their serving attempt, cost and quality label.

One join of the event log's record tables (``features.records``), used by training's dataset
builder and by the drift monitor's served windows alike:

- **decision** (one per request): what the router saw and chose, and the propensity;
- **served attempt**: the first attempt with ``status == "ok"`` (its SKU, attempt number,
  TTFT, end-to-end time, output tokens and the prompt tokens the worker counted);
- **outcome**: the serving cost (and the outcome's own TTFT);
- **quality label** (:func:`quality_labels`): the judge score when there is one
  (``outcomes.quality`` or a judge feedback record), else the mean user feedback score;
  ``good = score >= 0.5``;
- ``first_attempt_ok``: the chosen SKU served at its first attempt, the only requests where
  the served SKU is the logged action and ``propensity`` is its probability.

The time split (:func:`time_split`) holds out the last logged day(s); :func:`window_keys` picks
the (seeded, sampled) requests of a time window, and :func:`load_window` joins them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, FeedbackRecord, OutcomeRecord
from features.schema import FEATURE_SCHEMA_VERSION

DECISION_COLUMNS = (
    "request_id",
    "ts",
    "region",
    "tenant_id",
    "tier",
    "surface",
    "stream",
    "router_version",
    "request_features",
    "store_features",
    "candidates",
    "chosen_sku",
    "propensity",
)


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Training uses decisions before ``test_start``; evaluation those at or after it."""

    test_start: datetime
    train_dates: tuple[str, ...]
    eval_dates: tuple[str, ...]


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


def dates_between(start: datetime, end: datetime, *, slack_days: int = 0) -> list[str]:
    """UTC dates ``[start, end]`` (+ ``slack_days`` after), for partition pruning."""
    first, last = start.date(), (end + timedelta(days=slack_days)).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


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


def _scan(root: Path, record: type, dates: Sequence[str] | None, ids: pl.LazyFrame | None) -> pl.LazyFrame:
    scan = scan_records(root, record)
    if dates is not None:
        scan = scan.filter(pl.col("date").is_in(list(dates)))
    return scan if ids is None else scan.join(ids, on="request_id", how="semi")


def logged_requests(
    logs_root: Path,
    request_ids: pl.DataFrame | None = None,
    *,
    decision_dates: Sequence[str] | None = None,
    outcome_dates: Sequence[str] | None = None,
) -> pl.LazyFrame:
    """One row per decision (of ``request_ids`` if given) with its served attempt, cost and quality label.

    ``decision_dates`` / ``outcome_dates``: the date partitions of the decisions / of the attempts,
    outcomes and feedback to read (None: all; a label that arrives later is then not waited for).
    Columns: :data:`DECISION_COLUMNS`, ``served_sku``, ``served_attempt``, ``ttft_ms``, ``e2e_ms``,
    ``output_tokens``, ``served_prompt_tokens``, ``cost_usd``, ``outcome_ttft_ms``,
    ``quality_score``, ``quality_source``, ``quality_label``, ``first_attempt_ok``.
    """
    root = Path(logs_root)
    ids = None if request_ids is None else request_ids.lazy().select("request_id")
    decisions = _scan(root, DecisionRecord, decision_dates, ids).select(DECISION_COLUMNS)
    served = (
        _scan(root, AttemptRecord, outcome_dates, ids)
        .filter(pl.col("status") == "ok")
        .select(
            "request_id",
            pl.col("sku").alias("served_sku"),
            pl.col("attempt").alias("served_attempt"),
            "ttft_ms",
            "e2e_ms",
            pl.col("output_tokens").cast(pl.Float64),
            (pl.col("input_tokens") + pl.col("cached_tokens")).cast(pl.Float64).alias("served_prompt_tokens"),
        )
        .unique("request_id", keep="first")
    )
    outcomes = _scan(root, OutcomeRecord, outcome_dates, ids)
    costs = outcomes.select("request_id", "cost_usd", pl.col("ttft_ms").alias("outcome_ttft_ms"))
    labels = quality_labels(outcomes, _scan(root, FeedbackRecord, outcome_dates, ids))
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


def window_keys(
    logs_root: Path,
    start: datetime | None,
    end: datetime | None,
    *,
    max_requests: int | None,
    seed: int,
) -> pl.DataFrame:
    """``[request_id, ts]`` of the decisions with ``start <= ts < end`` logged under the current feature
    schema, sorted by (ts, request_id); a seeded uniform sample of at most ``max_requests``."""
    decisions = scan_records(Path(logs_root), DecisionRecord)
    if start is not None and end is not None:
        decisions = decisions.filter(pl.col("date").is_in(dates_between(start, end)))
    decisions = (
        # rows logged under another feature schema mean other things in the same columns
        decisions.filter(pl.col("feature_schema_version") == FEATURE_SCHEMA_VERSION).select(
            "request_id", "ts"
        )
    )
    if start is not None:
        decisions = decisions.filter(pl.col("ts") >= start)
    if end is not None:
        decisions = decisions.filter(pl.col("ts") < end)
    keys = decisions.collect().sort("ts", "request_id")
    if max_requests is not None and keys.height > max_requests:
        keys = keys.sample(max_requests, seed=seed).sort("ts", "request_id")
    return keys


def load_window(
    logs_root: Path, start: datetime | None, end: datetime | None, *, max_requests: int | None, seed: int
) -> pl.DataFrame:
    """Logged requests with ``start <= ts < end``, a seeded uniform sample of at most ``max_requests``.

    The sample is drawn from the (ts, request_id)-ordered ids first, so only sampled requests
    are ever read in full.
    """
    keys = window_keys(logs_root, start, end, max_requests=max_requests, seed=seed)
    return logged_requests(logs_root, keys).collect().sort("ts", "request_id")


def logged_outcomes(requests: pl.DataFrame) -> pl.DataFrame:
    """Per request, what the logging policy did and got (the input of the off-policy estimators)."""
    return requests.select(
        "request_id",
        "chosen_sku",
        "propensity",
        "quality_label",
        "quality_source",
        "cost_usd",
        "outcome_ttft_ms",
    )
