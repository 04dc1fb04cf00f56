"""Inner cross-validation picks blend weights on the training fold only (eval.benchmarks.inner_cv)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.benchmarks.baselines import OracleRouter, RandomRouter
from eval.benchmarks.fold_inputs import FoldInputs
from eval.benchmarks.inner_cv import InnerCvBlend, inner_split, simplex_grid
from eval.benchmarks.outcomes import OutcomeMatrix


def _matrix(n: int, n_models: int, seed: int) -> OutcomeMatrix:
    rng = np.random.default_rng(seed)
    return OutcomeMatrix(
        prompt_ids=np.array([f"p{seed}-{i}" for i in range(n)]),
        prompts=[f"prompt {i}" for i in range(n)],
        groups=np.array([f"g{i % 6}" for i in range(n)]),
        datasets=np.array(["synthetic"] * n),
        models=tuple(f"m{m}" for m in range(n_models)),
        quality=(rng.random((n, n_models)) < np.linspace(0.4, 0.8, n_models)).astype(np.float64),
        cost=np.tile(np.geomspace(1e-4, 1e-2, n_models), (n, 1)),
    )


def _inputs(n_models: int, pair, grouped: bool = True) -> FoldInputs:
    train, test = _matrix(240, n_models, 1), _matrix(60, n_models, 2)
    return FoldInputs(
        train=train,
        test=test,
        request_train=np.zeros((240, 1), dtype=np.float32),
        request_test=np.zeros((60, 1), dtype=np.float32),
        pair=pair,
        seed=3,
        inner_grouped=grouped,
    )


@dataclass(frozen=True)
class _Sees:
    """A component that knows the outcomes of the prompts it is asked about (a stand-in for a good router)."""

    name: str = "sees"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        return OracleRouter().predict(inputs)


def test_simplex_grid_rows_are_convex_weights_single_components_first() -> None:
    grid = simplex_grid(3, 0.25)
    assert grid.shape == (15, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert (grid >= 0).all()
    np.testing.assert_array_equal(grid[:3], np.eye(3))


def test_selection_prefers_the_informative_component_on_either_kind_of_set() -> None:
    for n_models, pair in ((2, (1, 0)), (4, None)):
        blend = InnerCvBlend((RandomRouter(), _Sees()), label="blend")
        selection = blend.select(_inputs(n_models, pair))
        assert selection.weights.tolist() == [0.0, 1.0]
        assert selection.scores.max() > selection.scores[0]  # better than the random component alone
        prediction = blend.predict(_inputs(n_models, pair))
        np.testing.assert_array_equal(prediction, _inputs(n_models, pair).test.quality)


def test_inner_folds_hold_groups_out_when_the_outer_split_does() -> None:
    grouped = _inputs(2, (1, 0), grouped=True)
    for fold in inner_split(grouped, 3):
        assert not set(grouped.train.groups[fold.train]) & set(grouped.train.groups[fold.test])
    shuffled = _inputs(2, (1, 0), grouped=False)
    leaks = [
        bool(set(shuffled.train.groups[fold.train]) & set(shuffled.train.groups[fold.test]))
        for fold in inner_split(shuffled, 3)
    ]
    assert all(leaks)


def test_soft_task_prior_recovers_each_groups_quality_from_the_embedding() -> None:
    from eval.benchmarks.learned_routers import SoftTaskPriorRouter

    rng = np.random.default_rng(5)
    centres = np.eye(4, 8)  # four groups, each its own direction of an 8-wide embedding
    group_quality = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.3], [0.2, 0.7]])

    def matrix(n: int, seed: int) -> tuple[OutcomeMatrix, np.ndarray]:
        codes = np.arange(n) % 4
        base = _matrix(n, 2, seed)
        quality = (rng.random((n, 2)) < group_quality[codes]).astype(np.float64)
        rows = centres[codes] + rng.normal(0, 0.3, (n, 8))
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        groups = np.array([f"g{c}" for c in codes])
        return OutcomeMatrix(
            base.prompt_ids, base.prompts, groups, base.datasets, base.models, quality, base.cost
        ), rows

    (train, x_train), (test, x_test) = matrix(400, 1), matrix(80, 2)
    inputs = FoldInputs(
        train=train,
        test=test,
        request_train=np.zeros((400, 1), dtype=np.float32),
        request_test=np.zeros((80, 1), dtype=np.float32),
        embeddings={"e": (x_train, x_test)},
    )
    prediction = SoftTaskPriorRouter("e").predict(inputs)
    expected = group_quality[np.arange(80) % 4]
    assert np.abs(prediction - expected).mean() < 0.1
    assert (prediction.argmax(axis=1) == expected.argmax(axis=1)).mean() > 0.95
