import numpy as np
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor

from features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from router_model.artifact import HEADS, ArtifactError, artifact_metadata, parse_artifact
from router_model.scorer import RouterScorer
from training.export import ParityError, check_parity, export_router, lightgbm_predictions


@pytest.fixture(scope="module")
def heads_and_rows():
    rng = np.random.default_rng(3)
    n_features = len(FEATURE_NAMES)
    rows = rng.normal(size=(3000, n_features)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.05] = np.nan  # missing store features happen
    signal = np.nan_to_num(rows[:, 0]) + 0.5 * np.nan_to_num(rows[:, 3])
    common = {"n_estimators": 60, "num_leaves": 15, "verbose": -1, "random_state": 0}
    models = {
        "p_quality": LGBMClassifier(**common).fit(rows, (signal > 0).astype(int)),
        "ttft_p50_ms": LGBMRegressor(objective="quantile", alpha=0.5, **common).fit(rows, 400 + 100 * signal),
        "ttft_p90_ms": LGBMRegressor(objective="quantile", alpha=0.9, **common).fit(rows, 600 + 150 * signal),
        "e2e_p50_ms": LGBMRegressor(objective="quantile", alpha=0.5, **common).fit(rows, 4000 + 900 * signal),
        "output_tokens": LGBMRegressor(objective="poisson", **common).fit(rows, rng.poisson(300, len(rows))),
    }
    return models, rows


def test_exported_router_matches_lightgbm_and_scores_in_one_call(heads_and_rows):
    models, rows = heads_and_rows
    model_bytes = export_router(models, rows.shape[1], artifact_metadata("test-1"))
    artifact = parse_artifact(model_bytes)
    assert artifact.router_version == "test-1" and artifact.heads == HEADS
    scorer = RouterScorer(artifact)
    predictions = scorer.score(rows)
    assert all(predictions[head].shape == (len(rows),) for head in HEADS)
    differences = check_parity(predictions, lightgbm_predictions(models, rows))
    assert max(differences.values()) <= 1e-5
    assert predictions["p_quality"].min() >= 0.0 and predictions["p_quality"].max() <= 1.0


def test_parity_gate_fails_on_a_wrong_model(heads_and_rows):
    models, rows = heads_and_rows
    other = dict(models, ttft_p90_ms=models["ttft_p50_ms"])
    scorer = RouterScorer(parse_artifact(export_router(other, rows.shape[1], artifact_metadata("wrong"))))
    with pytest.raises(ParityError, match="ttft_p90_ms"):
        check_parity(scorer.score(rows), lightgbm_predictions(models, rows))


def test_loading_refuses_another_schema_version_and_garbage(heads_and_rows):
    models, rows = heads_and_rows
    stale = export_router(models, rows.shape[1], {**artifact_metadata("old"), "feature_schema_version": "0"})
    with pytest.raises(ArtifactError, match=f"v0, this code serves v{FEATURE_SCHEMA_VERSION}"):
        parse_artifact(stale)
    with pytest.raises(ArtifactError, match="not an ONNX model"):
        parse_artifact(b"definitely not onnx")


def test_scorer_rejects_a_matrix_of_the_wrong_width(heads_and_rows):
    models, rows = heads_and_rows
    scorer = RouterScorer(parse_artifact(export_router(models, rows.shape[1], artifact_metadata("x"))))
    with pytest.raises(ValueError, match="expected"):
        scorer.score(rows[:, :-1])


def test_scoring_a_subset_of_heads_gives_the_same_values(heads_and_rows):
    models, rows = heads_and_rows
    scorer = RouterScorer(parse_artifact(export_router(models, rows.shape[1], artifact_metadata("x"))))
    everything = scorer.score(rows[:12])
    subset = scorer.score(rows[:12], ("p_quality", "output_tokens"))
    assert set(subset) == {"p_quality", "output_tokens"}
    for head, values in subset.items():
        np.testing.assert_array_equal(values, everything[head])


def test_a_scorer_pruned_to_some_heads_serves_exactly_those(heads_and_rows):
    models, rows = heads_and_rows
    artifact = parse_artifact(export_router(models, rows.shape[1], artifact_metadata("x")))
    everything = RouterScorer(artifact).score(rows[:12])
    pruned = RouterScorer(artifact, heads=("p_quality", "ttft_p90_ms"))
    assert pruned.heads == ("p_quality", "ttft_p90_ms") and pruned.router_version == "x"
    served = pruned.score(rows[:12])
    assert set(served) == {"p_quality", "ttft_p90_ms"}
    for head, values in served.items():
        np.testing.assert_array_equal(values, everything[head])
    with pytest.raises(ValueError, match="not \\['output_tokens'\\]"):
        pruned.score(rows[:12], ("p_quality", "output_tokens"))
    with pytest.raises(ValueError, match="no heads \\['p_unknown'\\]"):
        RouterScorer(artifact, heads=("p_unknown",))


def test_parity_is_relative_to_the_heads_scale_near_zero():
    """A prediction near 0 of a head whose values are in the hundreds carries float32 noise of the
    hundreds (the trees are summed from the base value); a leaf's worth of error still fails."""
    expected = np.array([400.0, 380.0, 0.07131733])
    noisy = {"output_tokens": (expected + np.array([0.0, 0.0, -5.3e-5])).astype(np.float32)}
    assert check_parity(noisy, {"output_tokens": expected})["output_tokens"] <= 1e-5  # the default tolerance
    wrong = {"output_tokens": (expected + np.array([0.0, 0.0, 0.5])).astype(np.float32)}
    with pytest.raises(ParityError, match="output_tokens"):
        check_parity(wrong, {"output_tokens": expected})
