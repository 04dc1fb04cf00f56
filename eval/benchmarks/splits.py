"""Train/test splits that do not leak: grouped by task, across data sets, or the files' own split.

Every split is a list of :class:`Fold` over one pool of prompts (an :class:`OutcomeMatrix`);
each evaluated prompt is in the test part of exactly one fold, so a router's out-of-fold
predictions cover the evaluated prompts once.

- ``grouped``: ``GroupKFold`` over the data set's ``group`` (MMLU subject, MT-Bench category,
  LLMRouter's inferred source): no test prompt shares a task with a training prompt.
- ``cross``: train on other data sets, test on this one (MT-Bench ← MMLU + GSM8K; GSM8K ← MMLU +
  MT-Bench; MMLU ← GSM8K + MT-Bench); one fold.
- ``given``: the source's own train/test files (prompt ids ``…/train/…`` and ``…/test/…``); tasks
  are shared between the two, the prompts are not.
- ``random``: shuffled ``KFold``; tasks leak, shown only beside a split above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

from eval.benchmarks.outcomes import OutcomeMatrix

SPLITS = ("grouped", "cross", "given", "random")
MAX_FOLDS = 5


@dataclass(frozen=True, eq=False)
class Fold:
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, eq=False)
class Split:
    """``folds`` over ``pool``; ``evaluated`` = the test rows of all folds, in fold order."""

    name: str
    description: str
    pool: OutcomeMatrix
    folds: list[Fold]

    @property
    def evaluated(self) -> np.ndarray:
        return np.concatenate([fold.test for fold in self.folds])


def concat_matrices(parts: list[OutcomeMatrix]) -> OutcomeMatrix:
    models = parts[0].models
    if any(part.models != models for part in parts):
        raise ValueError("data sets with different models cannot share a split")
    return OutcomeMatrix(
        prompt_ids=np.concatenate([part.prompt_ids for part in parts]),
        prompts=[prompt for part in parts for prompt in part.prompts],
        groups=np.concatenate([part.groups for part in parts]),
        datasets=np.concatenate([part.datasets for part in parts]),
        models=models,
        quality=np.concatenate([part.quality for part in parts]),
        cost=np.concatenate([part.cost for part in parts]),
    )


def grouped_split(matrix: OutcomeMatrix, n_folds: int = MAX_FOLDS) -> Split:
    groups = matrix.groups
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("a grouped split needs at least two groups")
    k = min(n_folds, n_groups)
    folds = [Fold(train, test) for train, test in GroupKFold(n_splits=k).split(groups, groups=groups)]
    return Split("grouped", f"GroupKFold({k}) over {n_groups} groups", matrix, folds)


def random_split(matrix: OutcomeMatrix, seed: int, n_folds: int = MAX_FOLDS) -> Split:
    kfold = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [Fold(train, test) for train, test in kfold.split(np.arange(len(matrix)))]
    return Split("random", f"shuffled KFold({n_folds}); tasks leak", matrix, folds)


def cross_split(test: OutcomeMatrix, train_sets: dict[str, OutcomeMatrix]) -> Split:
    pool = concat_matrices([*train_sets.values(), test])
    n_train = len(pool) - len(test)
    fold = Fold(np.arange(n_train), np.arange(n_train, len(pool)))
    return Split("cross", f"train on {' + '.join(train_sets)}", pool, [fold])


def given_split(matrix: OutcomeMatrix) -> Split:
    train = np.flatnonzero(np.char.find(matrix.prompt_ids.astype(str), "/train/") >= 0)
    test = np.flatnonzero(np.char.find(matrix.prompt_ids.astype(str), "/test/") >= 0)
    if not len(train) or not len(test):
        raise ValueError("the given split needs prompt ids with /train/ and /test/")
    return Split("given", "the source's own train → test files", matrix, [Fold(train, test)])
