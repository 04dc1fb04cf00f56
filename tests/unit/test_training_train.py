"""LightGBM heads: deterministic for a seed, categorical features from the schema, parity-gated export."""

import numpy as np
import polars as pl
import pytest

from features.schema import ALL_FEATURES, FEATURE_NAMES
from offline.rows import ModelRows
from router_model.artifact import HEADS, artifact_metadata, parse_artifact
from training.export import ParityError
from training.train import TrainParams, categorical_indices, export_with_parity, fit_heads, train_router

SMALL = TrainParams(n_estimators=20, num_leaves=7, min_child_samples=20)


@pytest.fixture(scope="module")
def rows() -> ModelRows:
    rng = np.random.default_rng(0)
    n = 2000
    features = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    for i in categorical_indices():
        features[:, i] = rng.integers(0, len(ALL_FEATURES[i].categories), n)
    signal = features[:, 0] + (features[:, categorical_indices()[0]] == 1)
    labelled = rng.random(n) < 0.6
    frame = pl.DataFrame(
        {
            "labelled": labelled,
            "quality_label": (signal > 0.3).astype(np.int8),
            "weight": rng.uniform(0.5, 2.0, n),
            "ttft_ms": 300 + 100 * np.abs(signal) + rng.exponential(50, n),
            "e2e_ms": 3000 + 500 * np.abs(signal) + rng.exponential(500, n),
            "output_tokens": rng.poisson(300, n).astype(float),
        }
    ).with_columns(pl.when("labelled").then(pl.col(name)).alias(name) for name in ("quality_label", "weight"))
    return ModelRows(features, frame)


def test_categorical_features_come_from_the_schema():
    names = [FEATURE_NAMES[i] for i in categorical_indices()]
    assert names == ["script", "task_type", "tenant_tier", "surface", "sku_tier"]


def test_training_is_deterministic_and_the_export_passes_parity(rows):
    first = train_router(rows, SMALL, check_rows=rows.features, extra_metadata={"seed": "0"})
    second = train_router(rows, SMALL, check_rows=rows.features, extra_metadata={"seed": "0"})
    assert first.model_bytes == second.model_bytes and first.router_version == second.router_version
    assert max(first.parity.values()) <= 1e-5
    artifact = parse_artifact(first.model_bytes)
    assert artifact.router_version == first.router_version and artifact.metadata["seed"] == "0"
    assert first.rows_per_head["p_quality"] == rows.frame["quality_label"].is_not_null().sum()
    reseeded = TrainParams(n_estimators=20, num_leaves=7, min_child_samples=20, feature_fraction=0.5, seed=1)
    other = train_router(rows, reseeded, check_rows=rows.features, extra_metadata={"seed": "1"})
    assert other.router_version != first.router_version


def test_the_run_fails_when_onnx_and_lightgbm_disagree(rows):
    models, _ = fit_heads(rows, SMALL)
    model_bytes, differences = export_with_parity(models, rows.features, artifact_metadata("ok"))
    assert parse_artifact(model_bytes).heads == HEADS and max(differences.values()) <= 1e-5
    # float32 ONNX never matches float64 LightGBM exactly: a zero tolerance must trip the gate
    with pytest.raises(ParityError):
        export_with_parity(models, rows.features, artifact_metadata("strict"), tolerance=0.0)
