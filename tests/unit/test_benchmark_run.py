"""The benchmark program end to end on a synthetic wide CSV and on a small slice of the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from benchmark_synthetic import synthetic_wide_csv

from eval.benchmarks.representations import HashedProjection, fit_transform, prepare
from eval.benchmarks.run import OURS, BenchmarkConfig, run_benchmark

ROUTING_DATA = Path(__file__).resolve().parents[3] / "shared" / "routing_data"


def _metric(evaluation, router: str, name: str) -> float:
    return next(score for score in evaluation.routers if score.router == router).metrics[name].value


def test_topic_signal_is_learned_on_a_random_split(tmp_path):
    path = synthetic_wide_csv(tmp_path / "synthetic.csv")
    config = BenchmarkConfig(
        datasets=("wide-csv",), data=path, splits=("random",), reps=30, representations=(HashedProjection(8),)
    )
    (evaluation,) = run_benchmark(config, log=lambda _: None).evaluations
    assert evaluation.kind == "many-model" and evaluation.n_prompts == 320
    ours, random, oracle = (_metric(evaluation, name, "aiq") for name in (OURS, "random", "oracle"))
    assert random < ours <= oracle
    # the prompt says which topic it is: our router beats the dear model at its quality on cost
    assert _metric(evaluation, OURS, "cost_saved_at_best_quality") > 0.3
    assert _metric(evaluation, "task-prior", "aiq") > random  # the topic is also the group label
    ours = next(score for score in evaluation.routers if score.router == OURS).metrics
    assert ours["aiq"].low <= ours["aiq"].value <= ours["aiq"].high
    assert (ours["aiq_vs_ours"].low, ours["aiq_vs_ours"].high) == (0.0, 0.0)  # paired with itself
    versus_random = next(score for score in evaluation.routers if score.router == "random").metrics
    assert versus_random["aiq_vs_ours"].high < 0  # paired: random is below ours on every resample's AIQ


def test_grouped_split_hides_the_task_from_the_prior(tmp_path):
    path = synthetic_wide_csv(tmp_path / "synthetic.csv", per_topic=40)
    config = BenchmarkConfig(
        datasets=("wide-csv",),
        data=path,
        splits=("grouped",),
        reps=20,
        representations=(HashedProjection(8),),
    )
    (evaluation,) = run_benchmark(config, log=lambda _: None).evaluations
    assert evaluation.description.startswith("GroupKFold(4)")
    # every test topic is unseen: the prior is one constant, no better than the best single model
    assert _metric(evaluation, "task-prior", "gain_at_best_cost") == pytest.approx(0.0, abs=1e-9)


def test_mt_bench_grouped_two_model_metrics():
    config = BenchmarkConfig(
        datasets=("mt_bench",),
        data=ROUTING_DATA,
        splits=("grouped",),
        reps=50,
        representations=(HashedProjection(16),),
    )
    (evaluation,) = run_benchmark(config, log=lambda _: None).evaluations
    assert evaluation.kind == "two-model" and evaluation.n_prompts == 72
    assert _metric(evaluation, "oracle", "apgr") == pytest.approx(0.964, abs=0.01)  # RouteLLM: 0.97 on 80
    for score in evaluation.routers:
        assert 0.0 <= score.metrics["cpt_50"].value <= 1.0
        assert score.metrics["apgr"].low <= score.metrics["apgr"].high


def test_prepared_hashed_rows_give_the_same_embeddings_as_the_texts():
    texts = [f"question {i}: what is {i} plus {i * 7}? answer with a number" for i in range(60)]
    train, test = np.arange(50), np.arange(50, 60)
    plain_train, plain_test = fit_transform(HashedProjection(8), texts[:50], texts[50:])
    prepared_train, prepared_test = prepare(HashedProjection(8), texts).fit_transform(train, test)
    assert plain_train.shape == prepared_train.shape == (50, 8) and prepared_test.shape == (10, 8)
    assert np.array_equal(plain_train, prepared_train) and np.array_equal(plain_test, prepared_test)
    # another fold of the same prepared pool: fitted on its own training rows only
    other_train, _ = prepare(HashedProjection(8), texts).fit_transform(test, train)
    assert other_train.shape == (10, 8) and not np.array_equal(other_train, prepared_test)
