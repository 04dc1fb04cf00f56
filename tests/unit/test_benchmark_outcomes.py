"""The long outcome format, its validation, and the converters (synthetic frames + the real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from eval.benchmarks.llmrouter import inferred_source, read_llmrouter
from eval.benchmarks.outcomes import OutcomeFormatError, outcome_frame, outcome_matrix
from eval.benchmarks.routellm import STRONG, WEAK, read_mt_bench
from eval.benchmarks.wide_csv import read_wide_csv

ROUTING_DATA = Path(__file__).resolve().parents[3] / "shared" / "routing_data"


def _long(**overrides) -> pl.DataFrame:
    rows = {
        "prompt_id": ["p1", "p1", "p2", "p2"],
        "prompt": ["a", "a", "b", "b"],
        "group": ["g", "g", "h", "h"],
        "dataset": ["d"] * 4,
        "model": ["m1", "m2", "m1", "m2"],
        "quality": [1.0, 0.0, 0.5, 0.25],
        "cost_usd": [0.1, 0.2, 0.1, 0.2],
    }
    rows.update(overrides)
    return pl.DataFrame(rows)


def test_a_valid_frame_gains_the_optional_columns_and_becomes_a_matrix():
    frame = outcome_frame(_long())
    assert frame["input_tokens"].null_count() == 4
    matrix = outcome_matrix(frame)
    assert matrix.models == ("m1", "m2")
    assert matrix.quality.tolist() == [[1.0, 0.0], [0.5, 0.25]]
    assert matrix.groups.tolist() == ["g", "h"]
    assert matrix.subset(np.array([1])).prompts == ["b"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"quality": [1.5, 0.0, 0.5, 0.25]}, "quality"),
        ({"cost_usd": [-0.1, 0.2, 0.1, 0.2]}, "cost_usd"),
        ({"model": ["m1", "m1", "m1", "m2"]}, "twice"),
        ({"model": ["m1", "m2", "m1", "m3"]}, "each of the"),
        ({"group": ["g", "x", "h", "h"]}, "more than one"),
    ],
)
def test_validation_refuses_broken_frames(overrides, message):
    with pytest.raises(OutcomeFormatError, match=message):
        outcome_frame(_long(**overrides))


def test_wide_csv_scales_judge_scores_and_reads_costs(tmp_path):
    path = tmp_path / "bench.csv"
    pl.DataFrame(
        {
            "prompt": ["x", "y", "z"],
            "eval_name": ["t1", "t1", "t2"],
            "small": [1.0, 5.0, 10.0],
            "small|total_cost": [0.001, 0.001, 0.002],
            "big": [10.0, 10.0, None],
            "big|total_cost": [0.01, 0.02, 0.03],
            "small|model_response": ["r", "r", "r"],
        }
    ).write_csv(path)
    frame = read_wide_csv(path)
    assert set(frame["model"]) == {"small", "big"}
    assert frame["prompt_id"].n_unique() == 2  # z lacks a score for big
    small = frame.filter(pl.col("model") == "small").sort("prompt_id")
    assert small["quality"].to_list() == pytest.approx([0.0, 4 / 9])  # (s − 1) / (10 − 1)
    assert frame.filter(pl.col("model") == "big")["cost_usd"].sort().to_list() == [0.01, 0.02]


def test_mt_bench_from_the_real_data():
    frame = read_mt_bench(ROUTING_DATA)
    matrix = outcome_matrix(frame, models=(STRONG, WEAK))
    assert len(matrix) == 72  # 80 questions less RouteLLM's 8 contaminated ones
    assert len(set(matrix.groups)) == 8
    assert ((matrix.quality >= 0.1) & (matrix.quality <= 1.0)).all()  # mean judge score / 10
    assert (matrix.cost[:, 0] > matrix.cost[:, 1]).all()  # GPT-4 costs more on every question
    assert frame["output_tokens"].min() > 0  # read from the judged answers


def test_llmrouter_sources_and_no_text_in_both_files():
    assert inferred_source("Q: There are 3 houses in a row, numbered 1") == "zebra_puzzle"
    assert inferred_source("Write a function to find the max.") == "code_function"
    assert inferred_source("who sings the song i can't go for that") == "open_qa_lowercase"
    frame = read_llmrouter(ROUTING_DATA)
    prompts = frame.unique("prompt_id").with_columns(part=pl.col("prompt_id").str.split("/").list.get(1))
    train = set(prompts.filter(pl.col("part") == "train")["prompt"])
    test = set(prompts.filter(pl.col("part") == "test")["prompt"])
    assert len(test) > 400 and not train & test
    assert frame["model"].n_unique() == 9
