"""The benchmark program: data sets → splits → routers → metrics with intervals.

For each (data set, split) the harness fits every representation on each fold's training
texts, computes the v2 request features once per prompt, asks every router for its out-of-fold
predictions and scores them (``eval.benchmarks.evaluate``). I/O (results files, plots, MLflow)
lives in ``eval.benchmarks.results``; this module only computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.benchmarks.baselines import KnnRouter, OracleRouter, RandomRouter, TaskPriorRouter
from eval.benchmarks.datasets import TWO_MODEL_PAIRS, WIDE_CSV, load_outcomes
from eval.benchmarks.evaluate import REFERENCE, Evaluation, evaluate_predictions
from eval.benchmarks.fold_inputs import FoldInputs
from eval.benchmarks.inner_cv import InnerCvBlend, equivalent
from eval.benchmarks.learned_routers import LightGbmRouter, MatrixFactorisationRouter, SoftTaskPriorRouter
from eval.benchmarks.outcomes import OutcomeMatrix, outcome_matrix
from eval.benchmarks.representations import HashedProjection, Representation, prepare
from eval.benchmarks.request_features import request_feature_rows
from eval.benchmarks.splits import Split, cross_split, given_split, grouped_split, random_split

DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {
    "mmlu": ("grouped", "random"),
    "gsm8k": ("cross", "random"),
    "mt_bench": ("cross", "grouped", "random"),
    "llmrouter": ("given", "grouped", "random"),
    WIDE_CSV: ("grouped", "random"),
}
CROSS_TRAINING: dict[str, tuple[str, ...]] = {
    "mt_bench": ("mmlu", "gsm8k"),
    "gsm8k": ("mmlu", "mt_bench"),
    "mmlu": ("gsm8k", "mt_bench"),
}
OURS = REFERENCE
SOFT_PRIOR_K = 100
GROUP_HOLDING_SPLITS = ("grouped", "cross")
"""Splits whose test prompts come from groups (or data sets) the training prompts lack."""


@dataclass(frozen=True)
class BenchmarkConfig:
    datasets: tuple[str, ...]
    data: Path
    splits: tuple[str, ...] | None = None  # None: each data set's DEFAULT_SPLITS
    reps: int = 1000
    seed: int = 0
    representations: tuple[Representation, ...] = (HashedProjection(),)
    group_column: str | None = None


@dataclass
class BenchmarkRun:
    config: BenchmarkConfig
    evaluations: list[Evaluation] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def our_router(representation: str) -> InnerCvBlend:
    """Ours: the blend, chosen by inner cross-validation on each training fold, of the learned
    routers on the prompt embedding (+ the v2 request features)."""
    return InnerCvBlend(our_components(representation), label=OURS)


def our_components(representation: str) -> tuple:
    return (
        LightGbmRouter(representation),
        LightGbmRouter(representation, gain_target=False),
        MatrixFactorisationRouter(representation),
        KnnRouter(representation, k=SOFT_PRIOR_K),
        SoftTaskPriorRouter(representation),
    )


def router_lineup(representations: Sequence[Representation]) -> list:
    """Baselines, the components of our router, our router, then variants on other representations."""
    first = representations[0].name
    lineup: list = [
        RandomRouter(),
        TaskPriorRouter(),
        KnnRouter(first),
        LightGbmRouter(None, label="lgbm[v2 request features]"),
        *our_components(first),
        our_router(first),
    ]
    for rep in representations[1:]:
        lineup += [KnnRouter(rep.name), LightGbmRouter(rep.name)]
    lineup += [LightGbmRouter(first, knn_features=True), OracleRouter()]
    return lineup


class _Cache:
    """Outcome matrices and request features, each computed once per run."""

    def __init__(self, config: BenchmarkConfig) -> None:
        self.config = config
        self.matrices: dict[str, OutcomeMatrix] = {}
        self.request: dict[str, np.ndarray] = {}

    def matrix(self, dataset: str) -> OutcomeMatrix:
        if dataset not in self.matrices:
            frame = load_outcomes(dataset, self.config.data, self.config.group_column)
            self.matrices[dataset] = outcome_matrix(frame)
        return self.matrices[dataset]

    def request_rows(self, pool: OutcomeMatrix) -> np.ndarray:
        missing = [text for text in dict.fromkeys(pool.prompts) if text not in self.request]
        if missing:
            self.request.update(zip(missing, request_feature_rows(missing), strict=True))
        return np.stack([self.request[text] for text in pool.prompts])


def build_split(name: str, dataset: str, cache: _Cache, seed: int) -> Split:
    matrix = cache.matrix(dataset)
    if name == "grouped":
        return grouped_split(matrix)
    if name == "random":
        return random_split(matrix, seed)
    if name == "given":
        return given_split(matrix)
    if name == "cross":
        if dataset not in CROSS_TRAINING:
            raise ValueError(f"no cross-dataset split defined for {dataset}")
        return cross_split(matrix, {other: cache.matrix(other) for other in CROSS_TRAINING[dataset]})
    raise ValueError(f"unknown split {name!r}")


def out_of_fold(split: Split, lineup: list, config: BenchmarkConfig, request: np.ndarray, pair) -> dict:
    """Every router's predictions on ``split.evaluated``, in that order."""
    pool = split.pool
    prepared = {rep.name: prepare(rep, pool.prompts) for rep in config.representations}
    parts: dict[str, list[np.ndarray]] = {router.name: [] for router in lineup}
    for index, fold in enumerate(split.folds):
        train, test = pool.subset(fold.train), pool.subset(fold.test)
        embeddings = {name: texts.fit_transform(fold.train, fold.test) for name, texts in prepared.items()}
        inputs = FoldInputs(
            train=train,
            test=test,
            request_train=request[fold.train],
            request_test=request[fold.test],
            embeddings=embeddings,
            pair=pair,
            seed=config.seed + index,
            inner_grouped=split.name in GROUP_HOLDING_SPLITS,
        )
        known: dict = {}  # this fold's predictions by equivalent router: each is fitted once
        for router in lineup:
            if isinstance(router, InnerCvBlend):
                parts[router.name].append(router.predict(inputs, known))
                continue
            key = equivalent(router, inputs)
            if key not in known:
                known[key] = router.predict(inputs)
            parts[router.name].append(known[key])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def run_benchmark(config: BenchmarkConfig, log: Callable[[str], None] = print) -> BenchmarkRun:
    """Every (data set, split) of ``config``; BLAS and OpenMP pools held to one thread, since on a
    machine whose cores are busy their spin-waiting threads made the SVD fits ~3x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _run_benchmark(config, log)


def _run_benchmark(config: BenchmarkConfig, log: Callable[[str], None]) -> BenchmarkRun:
    run = BenchmarkRun(config)
    cache = _Cache(config)
    lineup = router_lineup(config.representations)
    for dataset in config.datasets:
        for split_name in config.splits or DEFAULT_SPLITS.get(dataset, ("grouped", "random")):
            started = time.perf_counter()
            split = build_split(split_name, dataset, cache, config.seed)
            pair_names = TWO_MODEL_PAIRS.get(dataset)
            pair = tuple(split.pool.models.index(m) for m in pair_names) if pair_names else None
            predictions = out_of_fold(split, lineup, config, cache.request_rows(split.pool), pair)
            evaluated = split.pool.subset(split.evaluated)
            evaluation = evaluate_predictions(
                evaluated,
                predictions,
                dataset=str(evaluated.datasets[0]),  # a wide CSV's file stem
                split=split.name,
                description=split.description,
                pair=pair,  # type: ignore[arg-type]
                reps=config.reps,
                seed=config.seed,
            )
            run.evaluations.append(evaluation)
            run.seconds[f"{dataset}/{split_name}"] = time.perf_counter() - started
            log(
                f"{dataset} / {split_name}: {evaluation.n_prompts} prompts, {time.perf_counter() - started:.1f} s"
            )
    return run
