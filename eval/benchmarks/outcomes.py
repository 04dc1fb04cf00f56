"""The long outcome format: one row per (prompt, model) with the outcome that model had.

Columns (``OUTCOME_SCHEMA``): ``prompt_id``, ``prompt``, ``group`` (the data set's own task or
subject label), ``dataset``, ``model``, ``quality`` in [0, 1], ``cost_usd``, and the optional
``input_tokens``, ``output_tokens``, ``latency_s`` (null where the source does not record them).
Every prompt has exactly one row per model of its data set. See docs/benchmark-format.md.

:class:`OutcomeMatrix` is the same data as dense ``[prompt, model]`` arrays, the shape the
routers and metrics work on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

OUTCOME_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "prompt": pl.String(),
    "group": pl.String(),
    "dataset": pl.String(),
    "model": pl.String(),
    "quality": pl.Float64(),
    "cost_usd": pl.Float64(),
    "input_tokens": pl.Int64(),
    "output_tokens": pl.Int64(),
    "latency_s": pl.Float64(),
}
REQUIRED_COLUMNS = ("prompt_id", "prompt", "group", "dataset", "model", "quality", "cost_usd")
OPTIONAL_COLUMNS = ("input_tokens", "output_tokens", "latency_s")


class OutcomeFormatError(ValueError):
    """A frame that does not follow the long outcome format."""


def outcome_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in the long format: optional columns added as nulls, types cast, rows validated."""
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise OutcomeFormatError(f"outcome frame lacks column(s) {missing}")
    for name in OPTIONAL_COLUMNS:
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(name))
    frame = frame.select([pl.col(name).cast(dtype) for name, dtype in OUTCOME_SCHEMA.items()])
    validate_outcomes(frame)
    return frame


def validate_outcomes(frame: pl.DataFrame) -> None:
    """Raise :class:`OutcomeFormatError` unless every rule of the format holds."""
    if dict(frame.schema) != OUTCOME_SCHEMA:
        raise OutcomeFormatError(f"schema {dict(frame.schema)} is not {OUTCOME_SCHEMA}")
    if frame.height == 0:
        raise OutcomeFormatError("outcome frame is empty")
    nulls = [name for name in REQUIRED_COLUMNS if frame[name].null_count()]
    if nulls:
        raise OutcomeFormatError(f"null values in required column(s) {nulls}")
    quality = frame["quality"]
    if quality.is_nan().any() or quality.min() < 0.0 or quality.max() > 1.0:  # type: ignore[operator]
        raise OutcomeFormatError("quality must lie in [0, 1]")
    cost = frame["cost_usd"]
    if cost.is_nan().any() or cost.min() < 0.0:  # type: ignore[operator]
        raise OutcomeFormatError("cost_usd must be a non-negative number")
    if frame.select(pl.struct("prompt_id", "model").is_duplicated().any()).item():
        raise OutcomeFormatError("a (prompt_id, model) pair appears twice")
    models_per_prompt = frame.group_by("prompt_id").agg(pl.col("model").n_unique())["model"]
    n_models = frame["model"].n_unique()
    if models_per_prompt.min() != n_models:
        raise OutcomeFormatError(f"every prompt needs an outcome for each of the {n_models} models")
    per_prompt = frame.group_by("prompt_id").agg(
        pl.col("prompt").n_unique(), pl.col("group").n_unique(), pl.col("dataset").n_unique()
    )
    if per_prompt.select(pl.max_horizontal("prompt", "group", "dataset").max()).item() != 1:
        raise OutcomeFormatError("a prompt_id carries more than one prompt text, group or dataset")


@dataclass(frozen=True, eq=False)
class OutcomeMatrix:
    """Outcomes as arrays: ``quality`` and ``cost`` are ``[n_prompts, n_models]``, models in ``models`` order."""

    prompt_ids: np.ndarray
    prompts: list[str]
    groups: np.ndarray
    datasets: np.ndarray
    models: tuple[str, ...]
    quality: np.ndarray
    cost: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray) -> OutcomeMatrix:
        """The prompts at ``rows`` (an index array), in that order."""
        return OutcomeMatrix(
            prompt_ids=self.prompt_ids[rows],
            prompts=[self.prompts[i] for i in rows],
            groups=self.groups[rows],
            datasets=self.datasets[rows],
            models=self.models,
            quality=self.quality[rows],
            cost=self.cost[rows],
        )


def outcome_matrix(frame: pl.DataFrame, models: tuple[str, ...] | None = None) -> OutcomeMatrix:
    """The long frame as arrays; prompts in first-appearance order, models sorted unless given."""
    validate_outcomes(frame)
    models = models or tuple(sorted(frame["model"].unique().to_list()))
    prompts = frame.select("prompt_id", "prompt", "group", "dataset").unique("prompt_id", maintain_order=True)
    wide_quality = frame.pivot(on="model", index="prompt_id", values="quality")
    wide_cost = frame.pivot(on="model", index="prompt_id", values="cost_usd")
    order = prompts.select("prompt_id")
    quality = order.join(wide_quality, on="prompt_id", how="left").select(models).to_numpy()
    cost = order.join(wide_cost, on="prompt_id", how="left").select(models).to_numpy()
    return OutcomeMatrix(
        prompt_ids=prompts["prompt_id"].to_numpy(),
        prompts=prompts["prompt"].to_list(),
        groups=prompts["group"].to_numpy(),
        datasets=prompts["dataset"].to_numpy(),
        models=models,
        quality=quality.astype(np.float64),
        cost=cost.astype(np.float64),
    )
