"""A router chosen by inner cross-validation on the training fold only: a convex blend of routers.

:class:`InnerCvBlend` holds a few component routers that read the same fold inputs (LightGBM on
the prompt embedding + v2 request features, the matrix-factorisation router, kNN). Given a fold,
it splits the fold's *training* prompts into ``inner_folds`` inner folds — grouped by the group
label when the outer split holds groups out (``FoldInputs.inner_grouped``), shuffled otherwise —
collects every component's inner out-of-fold predictions, and scores each convex combination of
them on a simplex grid (``step``) by the headline metric of the set (APGR on a two-model set,
AIQ on a many-model set). The best combination's weights are then applied to the components
refitted on the whole training fold. The test prompts are never seen by the selection.

The inner folds reuse the outer fold's prompt embedding, which was fitted (without labels) on
all of the outer training texts, the inner validation texts among them; the outcome labels of an
inner validation fold are never seen by the models scored on it.

A blend is linear in the predictions, so it blends qualities on a many-model set and the
strong − weak gain on a two-model set (a LightGBM gain router predicts the gain in the strong
model's column and zero in the weak one's).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np

from eval.benchmarks.evaluate import traced_choices
from eval.benchmarks.fold_inputs import FoldInputs
from eval.benchmarks.frontier import frontier_metrics, upper_hull
from eval.benchmarks.splits import Fold, grouped_split, random_split
from eval.benchmarks.two_model import PairOutcomes, routing_order, two_model_metrics

INNER_FOLDS = 3


def equivalent(router, inputs: FoldInputs):
    """A key under which routers that predict the same on ``inputs`` are equal."""
    canonical = getattr(router, "equivalent_for", None)
    return canonical(inputs) if canonical is not None else router


def simplex_grid(n_components: int, step: float) -> np.ndarray:
    """``[k, n_components]`` weights ≥ 0 summing to 1 on a grid of ``step``; single components first."""
    ticks = round(1 / step)
    rows = [combo for combo in product(range(ticks + 1), repeat=n_components) if sum(combo) == ticks]
    rows.sort(key=lambda combo: (sum(1 for c in combo if c), [-c for c in combo]))
    return np.asarray(rows, dtype=np.float64) / ticks


def routing_score(prediction: np.ndarray, quality: np.ndarray, cost: np.ndarray, pair, seed: int) -> float:
    """The set's headline metric of ``prediction`` on these outcomes: APGR (pair) or AIQ."""
    n = len(quality)
    if pair is not None:
        strong, weak = pair
        tiebreak = np.random.default_rng(seed).permutation(n)
        order = routing_order(prediction[:, strong] - prediction[:, weak], tiebreak)
        outcomes = PairOutcomes(quality[:, strong], quality[:, weak], cost[:, strong], cost[:, weak])
        return two_model_metrics(order, outcomes, np.ones(n))["apgr"]
    chosen = traced_choices(prediction, cost)
    rows = np.arange(n)
    points_cost, points_quality = cost[rows, chosen].mean(axis=1), quality[rows, chosen].mean(axis=1)
    single_cost, single_quality = cost.mean(axis=0), quality.mean(axis=0)
    itself = upper_hull(points_cost, points_quality)
    return frontier_metrics(points_cost, points_quality, single_cost, single_quality, itself)["aiq"]


def inner_inputs(inputs: FoldInputs, train: np.ndarray, test: np.ndarray) -> FoldInputs:
    """The fold made of the outer training rows ``train`` → ``test`` (embeddings sliced, not refitted)."""
    return replace(
        inputs,
        train=inputs.train.subset(train),
        test=inputs.train.subset(test),
        request_train=inputs.request_train[train],
        request_test=inputs.request_train[test],
        embeddings={name: (rows[train], rows[test]) for name, (rows, _) in inputs.embeddings.items()},
    )


def inner_split(inputs: FoldInputs, n_folds: int) -> list[Fold]:
    """Folds over ``inputs.train`` made by the outer splits' own functions: grouped when the outer
    split holds groups out (and the training rows have ``n_folds`` groups), shuffled otherwise."""
    if inputs.inner_grouped and len(np.unique(inputs.train.groups)) >= n_folds:
        return grouped_split(inputs.train, n_folds).folds
    return random_split(inputs.train, inputs.seed, n_folds).folds


@dataclass(frozen=True)
class Selection:
    """The weights chosen and every candidate's inner score (rows of ``grid``)."""

    weights: np.ndarray
    grid: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class InnerCvBlend:
    components: tuple = field(default_factory=tuple)
    label: str = "blend"
    inner_folds: int = INNER_FOLDS
    step: float = 0.25

    @property
    def name(self) -> str:
        return self.label

    def select(self, inputs: FoldInputs) -> Selection:
        """The blend weights with the best inner-CV score on ``inputs.train`` (first on ties)."""
        n, n_models = inputs.train.quality.shape
        keys = [equivalent(component, inputs) for component in self.components]
        distinct = list(dict.fromkeys(keys))
        oof = np.zeros((len(distinct), n, n_models))
        for index, split in enumerate(inner_split(inputs, self.inner_folds)):
            fold = replace(inner_inputs(inputs, split.train, split.test), seed=inputs.seed * 31 + index)
            for c, component in enumerate(distinct):
                oof[c, split.test] = component.predict(fold)
        oof = oof[[distinct.index(key) for key in keys]]
        grid = simplex_grid(len(self.components), self.step)
        quality, cost = inputs.train.quality, inputs.train.cost
        scores = np.array(
            [routing_score(np.tensordot(w, oof, 1), quality, cost, inputs.pair, inputs.seed) for w in grid]
        )
        return Selection(grid[int(np.argmax(scores))], grid, scores)

    def predict(self, inputs: FoldInputs, known: dict | None = None) -> np.ndarray:
        """The selected blend on ``inputs.test``; ``known`` maps :func:`equivalent` keys to
        predictions already made on ``inputs`` (so a component is not fitted twice)."""
        weights = self.select(inputs).weights
        known = {} if known is None else known
        total = np.zeros(inputs.test.quality.shape)
        for w, component in zip(weights, self.components, strict=True):
            if w > 0:
                key = equivalent(component, inputs)
                if key not in known:
                    known[key] = component.predict(inputs)
                total += w * known[key]
        return total
