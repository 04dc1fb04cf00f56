"""LightGBM heads of the router, their ONNX export and the parity gate.

Heads (``router_model.artifact.HEADS``):

| head | objective | rows | weights |
|---|---|---|---|
| ``p_quality`` | binary log-loss | first-attempt rows with a quality label | none (optional clipped 1/propensity) |
| ``ttft_p50_ms`` / ``ttft_p90_ms`` | quantile 0.5 / 0.9 | every served row | none |
| ``e2e_p50_ms`` | quantile 0.5 | every served row | none |
| ``output_tokens`` | L2 regression (the mean, which cost needs) | every served row | none |

Training is deterministic for a seed: ``deterministic=True``, row-wise histograms, a fixed
thread count and every LightGBM seed derived from one. Categorical features are the schema's
``kind == "categorical"`` columns. ``output_tokens`` is an L2 regression rather than poisson:
a poisson head's ``exp`` turns float32 rounding of the summed raw score (~1e-5 at ~300 trees)
into a relative error at the parity tolerance, while L2 stays ~1e-6.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from lightgbm import LGBMClassifier, LGBMModel, LGBMRegressor, early_stopping

from features.schema import ALL_FEATURES, FEATURE_NAMES
from offline.rows import ModelRows
from router_model.artifact import HEADS, artifact_metadata, parse_artifact
from router_model.scorer import RouterScorer
from training.export import check_parity, export_router, lightgbm_predictions

PARITY_ROWS = 10_000
PARITY_TOLERANCE = 1e-5
QUANTILES = {"ttft_p50_ms": ("ttft_ms", 0.5), "ttft_p90_ms": ("ttft_ms", 0.9), "e2e_p50_ms": ("e2e_ms", 0.5)}


@dataclass(frozen=True, slots=True)
class TrainParams:
    seed: int = 0
    threads: int = 1  # fixed: results are deterministic per thread count; >1 crawls on a busy box
    n_estimators: int = 200  # at most: early stopping on the latest validation_share of the rows
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 200
    validation_share: float = 0.1
    early_stopping_rounds: int = 30
    feature_fraction: float = 0.9
    reg_lambda: float = 1.0
    use_weights: bool = False  # clipped 1/propensity weights on the quality head (docs/training.md)

    def lightgbm(self) -> dict[str, object]:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "colsample_bytree": self.feature_fraction,
            "reg_lambda": self.reg_lambda,
            "random_state": self.seed,
            "n_jobs": self.threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def as_params(self) -> dict[str, str]:
        return {f"train.{key}": str(value) for key, value in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class TrainedRouter:
    models: dict[str, LGBMModel]
    model_bytes: bytes
    router_version: str
    parity: dict[str, float]  # largest ONNX vs LightGBM difference per head
    rows_per_head: dict[str, int]


def categorical_indices() -> list[int]:
    return [i for i, spec in enumerate(ALL_FEATURES) if spec.kind == "categorical"]


def _fit(
    model: LGBMModel, x: np.ndarray, y: np.ndarray, params: TrainParams, weight: np.ndarray | None = None
) -> LGBMModel:
    """Fit on the earlier rows, stop early on the latest ``validation_share`` (rows are in time order)."""
    n_valid = int(len(y) * params.validation_share)
    if len(y) - n_valid < 2:
        raise ValueError(f"too few training rows ({len(y)}) for {type(model).__name__}")
    fit, valid = slice(0, len(y) - n_valid), slice(len(y) - n_valid, len(y))
    options: dict[str, object] = {}
    if n_valid >= 2:
        options = {
            "eval_X": (x[valid],),
            "eval_y": (y[valid],),
            "eval_sample_weight": None if weight is None else [weight[valid]],
            "callbacks": [
                early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)
            ],
        }
    return model.fit(
        x[fit],
        y[fit],
        sample_weight=None if weight is None else weight[fit],
        categorical_feature=categorical_indices(),
        **options,  # type: ignore[arg-type]
    )


def quality_training_rows(rows: ModelRows) -> ModelRows:
    return rows.where(rows.frame["quality_label"].is_not_null().to_numpy())


def fit_quality_head(rows: ModelRows, params: TrainParams) -> LGBMClassifier:
    labelled = quality_training_rows(rows)
    labels = labelled.frame["quality_label"].to_numpy().astype(np.int32)
    weights = labelled.frame["weight"].to_numpy() if params.use_weights else None
    model = LGBMClassifier(objective="binary", **params.lightgbm())  # type: ignore[arg-type]
    return _fit(model, labelled.features, labels, params, weights)  # type: ignore[return-value]


def fit_heads(rows: ModelRows, params: TrainParams) -> tuple[dict[str, LGBMModel], dict[str, int]]:
    """Every head of ``HEADS``, and the number of rows each was trained on."""
    models: dict[str, LGBMModel] = {"p_quality": fit_quality_head(rows, params)}
    counts = {"p_quality": int(rows.frame["quality_label"].is_not_null().sum())}
    for head, (label, alpha) in QUANTILES.items():
        model = LGBMRegressor(objective="quantile", alpha=alpha, **params.lightgbm())  # type: ignore[arg-type]
        models[head] = _fit(model, rows.features, rows.frame[label].to_numpy(), params)
        counts[head] = rows.frame.height
    tokens = LGBMRegressor(objective="regression", **params.lightgbm())  # type: ignore[arg-type]
    models["output_tokens"] = _fit(tokens, rows.features, rows.frame["output_tokens"].to_numpy(), params)
    counts["output_tokens"] = rows.frame.height
    return {head: models[head] for head in HEADS}, counts


def models_digest(models: dict[str, LGBMModel]) -> str:
    """A content hash of the trained boosters: the router version, stable across identical runs."""
    digest = hashlib.sha256()
    for head in HEADS:
        digest.update(head.encode())
        digest.update(models[head].booster_.model_to_string().encode())
    return digest.hexdigest()[:12]


def parity_rows(rows: np.ndarray, *, n: int = PARITY_ROWS, seed: int = 0) -> np.ndarray:
    if len(rows) <= n:
        return rows
    return rows[np.sort(np.random.default_rng(seed).choice(len(rows), n, replace=False))]


def export_with_parity(
    models: dict[str, LGBMModel],
    check_rows: np.ndarray,
    metadata: dict[str, str],
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> tuple[bytes, dict[str, float]]:
    """The ONNX router and its parity against LightGBM on ``check_rows``; raises ``ParityError``."""
    model_bytes = export_router(models, len(FEATURE_NAMES), metadata)
    scorer = RouterScorer(parse_artifact(model_bytes))
    differences = check_parity(
        scorer.score(check_rows), lightgbm_predictions(models, check_rows), tolerance=tolerance
    )
    return model_bytes, differences


def train_router(
    rows: ModelRows, params: TrainParams, *, check_rows: np.ndarray, extra_metadata: dict[str, str]
) -> TrainedRouter:
    """Fit the heads, export one ONNX graph whose metadata is a function of the models only."""
    models, counts = fit_heads(rows, params)
    version = f"lgbm-{models_digest(models)}"
    metadata = artifact_metadata(version, extra_metadata)
    model_bytes, parity = export_with_parity(models, parity_rows(check_rows, seed=params.seed), metadata)
    return TrainedRouter(models, model_bytes, version, parity, counts)


def feature_importance(models: dict[str, LGBMModel]) -> dict[str, dict[str, float]]:
    """Total split gain per feature, per head, normalised to sum to 1."""
    importance = {}
    for head, model in models.items():
        gain = model.booster_.feature_importance(importance_type="gain").astype(np.float64)
        total = gain.sum() or 1.0
        importance[head] = {
            name: float(value / total) for name, value in zip(FEATURE_NAMES, gain, strict=True)
        }
    return importance
