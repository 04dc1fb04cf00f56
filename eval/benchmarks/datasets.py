"""Data sets by name: the converter behind each ``--dataset`` choice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from eval.benchmarks.llmrouter import read_llmrouter
from eval.benchmarks.routellm import STRONG, WEAK, read_gsm8k, read_mmlu, read_mt_bench
from eval.benchmarks.wide_csv import read_wide_csv

READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    "mmlu": read_mmlu,
    "gsm8k": read_gsm8k,
    "mt_bench": read_mt_bench,
    "llmrouter": read_llmrouter,
}
BUILT_IN = tuple(READERS)
WIDE_CSV = "wide-csv"
TWO_MODEL_PAIRS: dict[str, tuple[str, str]] = {name: (STRONG, WEAK) for name in ("mmlu", "gsm8k", "mt_bench")}
"""(strong, weak) of the two-model sets; every other set is scored as a many-model set."""


def load_outcomes(dataset: str, data: Path, group_column: str | None = None) -> pl.DataFrame:
    """The long outcome frame of ``dataset`` read from ``data``."""
    if dataset == WIDE_CSV:
        return read_wide_csv(Path(data), group_column=group_column)
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {(*BUILT_IN, WIDE_CSV)}")
    return READERS[dataset](Path(data))
