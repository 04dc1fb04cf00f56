"""Baseline routers: random, oracle, the per-task prior and kNN.

A router's ``predict`` gives ``[n_test, n_models]`` predicted quality; the harness chooses
``argmax(prediction − λ·cost)`` per prompt on many-model sets, and ranks prompts by
``prediction[strong] − prediction[weak]`` on two-model sets. The single-model baselines
(cheapest, best single) need no router: they are the models' own points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.benchmarks.fold_inputs import FoldInputs, neighbour_quality, top_k_neighbours

DEFAULT_K = 25


@dataclass(frozen=True)
class RandomRouter:
    """Uniform random predictions: a random strong share on two-model sets, a random model per λ."""

    name: str = "random"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        rng = np.random.default_rng(inputs.seed + 7919)
        return rng.uniform(size=inputs.test.quality.shape)


@dataclass(frozen=True)
class OracleRouter:
    """The test outcomes themselves: the per-prompt best choice (an upper bound, not a router)."""

    name: str = "oracle"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        return inputs.test.quality.copy()


@dataclass(frozen=True)
class TaskPriorRouter:
    """Each model's mean training quality within the prompt's own group (task/subject label);
    the overall training mean for a group the training set lacks (every group, on a grouped split)."""

    name: str = "task-prior"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        overall = inputs.train.quality.mean(axis=0)
        means = {
            group: inputs.train.quality[inputs.train.groups == group].mean(axis=0)
            for group in np.unique(inputs.train.groups)
        }
        return np.stack([means.get(group, overall) for group in inputs.test.groups])


@dataclass(frozen=True)
class KnnRouter:
    """Mean quality per model over the ``k`` training prompts nearest in ``representation``."""

    representation: str
    k: int = 25  # DEFAULT_K

    @property
    def name(self) -> str:
        return f"knn[{self.representation}]" if self.k == DEFAULT_K else f"knn{self.k}[{self.representation}]"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        train, test = inputs.embeddings[self.representation]
        neighbours = top_k_neighbours(train, test, self.k)
        return neighbour_quality(inputs.train.quality, neighbours)
