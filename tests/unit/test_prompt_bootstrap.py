"""Intervals over resampled held-out prompts (eval.prompt_bootstrap)."""

import numpy as np
import polars as pl
import pytest

from eval.prompt_bootstrap import matched_margin_intervals, prompt_bootstrap


def world(prompts: int = 40, per_prompt: int = 5, seed: int = 0):
    """Requests of ``prompts`` prompts; SKU ``a`` is good on even prompts, ``b`` on every prompt at 0.5."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i}" for i in range(prompts * per_prompt)]
    prompt = np.repeat(np.arange(prompts), per_prompt)
    truth = pl.DataFrame({"request_id": ids, "prompt_id": prompt})
    quality_a = np.where(prompt % 2 == 0, 1.0, 0.0) * rng.uniform(0.8, 1.0, len(ids))
    by_candidate = pl.concat(
        [
            pl.DataFrame({"request_id": ids, "sku": "a", "p_good": quality_a, "cost_usd": 2.0}),
            pl.DataFrame({"request_id": ids, "sku": "b", "p_good": 0.5, "cost_usd": 1.0}),
        ]
    )
    return truth, by_candidate, prompt


def choose(truth: pl.DataFrame, skus) -> pl.DataFrame:
    return truth.select("request_id").with_columns(sku=pl.Series(list(skus)))


def test_replicates_are_means_over_resampled_prompts():
    truth, by_candidate, _ = world()
    policies = {"a": choose(truth, ["a"] * truth.height), "b": choose(truth, ["b"] * truth.height)}
    replicated = prompt_bootstrap(truth, by_candidate, policies, replicates=400, seed=1)
    assert replicated["a"].shape == (400, 2)
    assert np.allclose(replicated["b"], [0.5, 1.0])  # b is the same on every prompt: no spread
    quality_a = replicated["a"][:, 0]
    full = by_candidate.filter(pl.col("sku") == "a")["p_good"].mean()
    assert (
        quality_a.std() > 0.03 and abs(quality_a.mean() - full) < 0.02
    )  # prompt-level spread around the mean
    with pytest.raises(ValueError, match="choices with truth"):
        prompt_bootstrap(truth, by_candidate, {"short": choose(truth.head(3), ["a"] * 3)})


def test_a_router_that_knows_the_prompt_beats_at_equal_cost_in_every_replicate():
    truth, by_candidate, prompt = world()
    even = prompt % 2 == 0
    policies = {
        "cheap": choose(truth, ["b"] * truth.height),  # λ large: always b
        "smart": choose(truth, np.where(even, "a", "b")),  # λ small: a where it is good
        "baseline": choose(
            truth, np.where(np.arange(truth.height) % 4 == 0, "a", "b")
        ),  # a blind quarter mix
    }
    replicated = prompt_bootstrap(truth, by_candidate, policies, replicates=300, seed=2)
    table = matched_margin_intervals(replicated, {8.0: "cheap", 0.0: "smart"}, ["baseline"])
    row = table.row(0, named=True)
    assert row["margin_defined_share"] == 1.0  # its cost lies inside the frontier's in every replicate
    assert row["margin_low"] > 0 and row["margin_positive_share"] == 1.0
    blind = matched_margin_intervals(replicated, {8.0: "cheap", 0.0: "baseline"}, ["smart"])
    assert blind.row(0, named=True)["pure_margin_high"] < 0  # the blind mix never matches the smart one
