"""Learned routers: matrix factorisation in RouteLLM's style, and LightGBM quality models.

- :class:`MatrixFactorisationRouter`: ``q̂(x, m) = σ(b_m + v_mᵀ (W x))`` — a learned embedding
  ``v_m`` per model against a learned projection ``W`` of the prompt's representation ``x``
  (RouteLLM's MF router scores a model by the same bilinear form; here it is fitted to each
  model's quality with cross-entropy rather than to pairwise wins), full-batch Adam in numpy.
- :class:`LightGbmRouter`: one LightGBM regressor per model on the chosen inputs — the v2 request
  features, a prompt representation, and optionally the kNN-similarity features (each model's
  mean quality over the nearest training prompts, leave-one-out on the training rows). On a
  two-model set it fits the quality *gain* of the strong model over the weak one directly and
  ranks prompts by it. ``n_jobs`` = 1: on a shared machine OpenMP threads that spin-wait for a busy core slow a fit by tens of times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from eval.benchmarks.fold_inputs import FoldInputs, neighbour_quality, top_k_neighbours

LGBM_PARAMS = {
    "n_estimators": 400,
    "learning_rate": 0.02,
    "num_leaves": 7,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "n_jobs": 1,
    "verbose": -1,
}


def min_leaf(n_train: int) -> int:
    """Rows per leaf: 1% of the training prompts, between 5 and 50 (small, strongly regularised
    trees: with 0/1 outcomes a per-model regressor otherwise fits noise that the argmax over
    models then picks up)."""
    return int(np.clip(n_train // 100, 5, 50))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@dataclass(frozen=True)
class MatrixFactorisationRouter:
    representation: str
    dims: int = 16
    steps: int = 400
    learning_rate: float = 0.05
    l2: float = 1e-3

    @property
    def name(self) -> str:
        return f"mf[{self.representation}]"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        x_train, x_test = inputs.embeddings[self.representation]
        y = inputs.train.quality
        rng = np.random.default_rng(inputs.seed)
        n_models = y.shape[1]
        params = {
            "W": rng.normal(0, 0.1, (x_train.shape[1], self.dims)),
            "V": rng.normal(0, 0.1, (n_models, self.dims)),
            "b": np.log(np.clip(y.mean(axis=0), 1e-3, 1 - 1e-3) / np.clip(1 - y.mean(axis=0), 1e-3, 1)),
        }
        moments = {key: (np.zeros_like(value), np.zeros_like(value)) for key, value in params.items()}
        for step in range(1, self.steps + 1):
            hidden = x_train @ params["W"]  # [n, d]
            error = (_sigmoid(params["b"] + hidden @ params["V"].T) - y) / y.size  # d(BCE)/d(logit)
            grads = {
                "W": x_train.T @ (error @ params["V"]) + self.l2 * params["W"],
                "V": error.T @ hidden + self.l2 * params["V"],
                "b": error.sum(axis=0),
            }
            for key, grad in grads.items():
                m, v = moments[key]
                m[:] = 0.9 * m + 0.1 * grad
                v[:] = 0.999 * v + 0.001 * grad**2
                m_hat, v_hat = m / (1 - 0.9**step), v / (1 - 0.999**step)
                params[key] -= self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)
        return _sigmoid(params["b"] + (x_test @ params["W"]) @ params["V"].T)


@dataclass(frozen=True)
class LightGbmRouter:
    """LightGBM on ``representation`` (None: request features only) + the v2 request features."""

    representation: str | None
    with_request_features: bool = True
    knn_features: bool = False
    k: int = 25
    label: str = ""
    gain_target: bool = True
    """On a two-model set, fit the strong − weak gain directly; False: each model's quality."""

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        parts = [self.representation] if self.representation else []
        parts += ["v2"] if self.with_request_features else []
        parts += ["knn"] if self.knn_features else []
        suffix = "" if self.gain_target else " per model"
        return f"lgbm[{'+'.join(parts)}]{suffix}"

    def equivalent_for(self, inputs: FoldInputs) -> LightGbmRouter:
        """The unlabelled router that predicts the same on ``inputs`` (the gain target only
        matters on a two-model set)."""
        return replace(self, label="", gain_target=self.gain_target or inputs.pair is None)

    def _inputs(self, inputs: FoldInputs) -> tuple[np.ndarray, np.ndarray]:
        train_blocks, test_blocks = [], []
        if self.with_request_features:
            train_blocks.append(inputs.request_train)
            test_blocks.append(inputs.request_test)
        if self.representation:
            emb_train, emb_test = inputs.embeddings[self.representation]
            train_blocks.append(emb_train)
            test_blocks.append(emb_test)
            if self.knn_features:
                quality = inputs.train.quality
                train_blocks.append(
                    neighbour_quality(quality, top_k_neighbours(emb_train, emb_train, self.k, True))
                )
                test_blocks.append(neighbour_quality(quality, top_k_neighbours(emb_train, emb_test, self.k)))
        return np.hstack(train_blocks).astype(np.float32), np.hstack(test_blocks).astype(np.float32)

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        from lightgbm import LGBMRegressor

        x_train, x_test = self._inputs(inputs)
        y = inputs.train.quality
        params = {**LGBM_PARAMS, "random_state": inputs.seed, "min_child_samples": min_leaf(len(x_train))}
        if inputs.pair is not None and self.gain_target:
            strong, weak = inputs.pair
            gain = LGBMRegressor(**params).fit(x_train, y[:, strong] - y[:, weak]).predict(x_test)
            prediction = np.zeros((x_test.shape[0], y.shape[1]))
            prediction[:, strong] = gain
            return prediction
        columns = [LGBMRegressor(**params).fit(x_train, y[:, m]).predict(x_test) for m in range(y.shape[1])]
        return np.clip(np.column_stack(columns), 0.0, 1.0)


@dataclass(frozen=True)
class SoftTaskPriorRouter:
    """A learned, soft per-task prior: ``Σ_g P(g | x) · mean quality of group g``.

    ``P(g | x)`` is a multinomial logistic regression from the prompt representation to the
    training prompts' group labels, so the router needs no label at prediction time (serving
    would need the regression's coefficients and the group × model quality table). On a test
    prompt of a training group it approaches the per-task prior; on an unseen group it mixes the
    priors of the groups the prompt resembles."""

    representation: str
    c: float = 1.0

    @property
    def name(self) -> str:
        return f"soft-task-prior[{self.representation}]"

    def predict(self, inputs: FoldInputs) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        x_train, x_test = inputs.embeddings[self.representation]
        groups, codes = np.unique(inputs.train.groups, return_inverse=True)
        quality = inputs.train.quality
        if len(groups) < 2:
            return np.tile(quality.mean(axis=0), (len(x_test), 1))
        table = np.stack([quality[codes == g].mean(axis=0) for g in range(len(groups))])
        model = LogisticRegression(C=self.c, max_iter=300).fit(x_train, codes)
        return model.predict_proba(x_test) @ table[model.classes_]
