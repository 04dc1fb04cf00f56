"""Converter for a generic wide CSV (the RouterBench layout) into the long format.

Columns: ``prompt``; a task/group column (``--group-column``; by default the first of
``eval_name``, ``task``, ``group``, ``subject``, ``category`` present); one score column per
model; and ``<model>|total_cost`` (USD for that prompt) per model. The models are exactly the
columns that have a ``|total_cost`` partner. Other columns (e.g. ``sample_id``,
``<model>|model_response``) are ignored; ``sample_id`` is the prompt id when present.

Quality: scores already in [0, 1] are kept; otherwise every score is min-max scaled over the
whole file, ``(s − min) / (max − min)`` (e.g. 1-10 judge scores), so the scale is the same for
every model. Rows with a missing score or cost are dropped.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from eval.benchmarks.outcomes import outcome_frame

COST_SUFFIX = "|total_cost"
GROUP_COLUMNS = ("eval_name", "task", "group", "subject", "category")


def wide_models(columns: list[str]) -> list[str]:
    return [name.removesuffix(COST_SUFFIX) for name in columns if name.endswith(COST_SUFFIX)]


def read_wide_csv(path: Path, group_column: str | None = None, dataset: str | None = None) -> pl.DataFrame:
    """The CSV at ``path`` in the long format; ``dataset`` defaults to the file's stem."""
    path = Path(path)
    table = pl.read_csv(path, infer_schema_length=10000)
    return wide_to_long(table, group_column=group_column, dataset=dataset or path.stem)


def wide_to_long(table: pl.DataFrame, group_column: str | None, dataset: str) -> pl.DataFrame:
    if "prompt" not in table.columns:
        raise ValueError("a wide CSV needs a 'prompt' column")
    group_column = group_column or next((name for name in GROUP_COLUMNS if name in table.columns), None)
    if group_column is None or group_column not in table.columns:
        raise ValueError(f"no group column: pass one, or name it one of {GROUP_COLUMNS}")
    models = wide_models(table.columns)
    missing = [model for model in models if model not in table.columns]
    if len(models) < 2 or missing:
        raise ValueError(
            f"need ≥ 2 models with a score and a '{COST_SUFFIX}' column; missing scores {missing}"
        )
    ids = table["sample_id"].cast(pl.String) if "sample_id" in table.columns else None
    table = table.with_columns(
        prompt_id=ids if ids is not None else pl.int_range(pl.len()).cast(pl.String),
        group=pl.col(group_column).cast(pl.String),
    )
    long = pl.concat(
        [
            table.select(
                pl.concat_str(pl.lit(f"{dataset}/"), "prompt_id").alias("prompt_id"),
                pl.col("prompt").cast(pl.String),
                "group",
                pl.lit(dataset).alias("dataset"),
                pl.lit(model).alias("model"),
                pl.col(model).cast(pl.Float64).alias("quality"),
                pl.col(f"{model}{COST_SUFFIX}").cast(pl.Float64).alias("cost_usd"),
            )
            for model in models
        ]
    )
    incomplete = long.filter(pl.any_horizontal(pl.col("quality", "cost_usd").is_null()))["prompt_id"].unique()
    long = long.filter(~pl.col("prompt_id").is_in(incomplete.implode()))
    low, high = long["quality"].min(), long["quality"].max()
    if low < 0.0 or high > 1.0:  # type: ignore[operator]
        long = long.with_columns((pl.col("quality") - low) / (high - low))  # type: ignore[operator]
    return outcome_frame(long)
