"""Prompt-embedding drift (eval.drift_embedding) on real prompts: a topic shift shows, a resample does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from eval.drift_data import conform
from eval.drift_embedding import EmbeddingDriftRules, embedding_drift
from eval.drift_features import FeatureDriftRules, feature_drift
from features.prompt_embedding import default_prompt_embedder
from features.schema import FEATURE_NAMES, PROMPT_EMBEDDING_FEATURE_NAMES
from training.task_corpus import gsm8k_prompts, mmlu_prompts

ROUTING_DATA = Path(__file__).resolve().parents[3] / "shared" / "routing_data"


@pytest.fixture(scope="module")
def windows() -> dict[str, np.ndarray]:
    """Embeddings of three windows of 800 prompts: a reference mix of MMLU and GSM8K questions, a
    disjoint sample of the same mix, and LLMRouter questions (another corpus: a topic shift)."""
    rng = np.random.default_rng(0)
    mmlu = [row.text for row in mmlu_prompts(ROUTING_DATA)]
    gsm8k = [row.text for row in gsm8k_prompts(ROUTING_DATA)]
    mmlu = [mmlu[i] for i in rng.permutation(len(mmlu))[:1000]]
    gsm8k = [gsm8k[i] for i in rng.permutation(len(gsm8k))[:600]]
    llmrouter = [
        str(item["question"])
        for item in json.loads((ROUTING_DATA / "llmrouter/dcrouter_train.json").read_text(encoding="utf-8"))
    ]
    shifted = [llmrouter[i] for i in rng.permutation(len(llmrouter))[:800]]
    embedder = default_prompt_embedder()
    return {
        "reference": embedder.embed_many(mmlu[:500] + gsm8k[:300]),
        "same": embedder.embed_many(mmlu[500:] + gsm8k[300:]),
        "shifted": embedder.embed_many(shifted),
    }


def frame(embeddings: np.ndarray, seed: int) -> pl.DataFrame:
    """Decision rows whose other features come from one distribution, with these embeddings."""
    rng = np.random.default_rng(seed)
    n = len(embeddings)
    columns: dict[str, object] = {
        "request_id": [f"r{seed}-{i}" for i in range(n)],
        "sku": rng.choice(["a", "b"], n).tolist(),
        "router_version": ["v"] * n,
        "prompt_tokens": rng.lognormal(7, 1, n),
        "task_type": rng.integers(0, 8, n).astype(float),
    }
    columns |= {name: embeddings[:, i] for i, name in enumerate(PROMPT_EMBEDDING_FEATURE_NAMES)}
    return conform(pl.DataFrame(columns))


def test_a_resample_of_the_same_prompts_is_not_drift(windows: dict[str, np.ndarray]) -> None:
    result = embedding_drift(frame(windows["reference"], 1), frame(windows["same"], 2))
    assert result.compared and result.severity == "ok" and result.auc < 0.6, result


def test_prompts_from_another_corpus_are_critical(windows: dict[str, np.ndarray]) -> None:
    result = embedding_drift(frame(windows["reference"], 1), frame(windows["shifted"], 2))
    assert result.severity == "critical" and result.auc > 0.9, result
    assert "AUC" in result.describe()
    # a partial shift: a third of the served prompts from the other corpus
    mixed = np.concatenate([windows["same"][:530], windows["shifted"][:270]])
    partial = embedding_drift(frame(windows["reference"], 1), frame(mixed, 3))
    assert 0.5 < partial.auc < result.auc and partial.severity != "ok", partial


def test_too_few_rows_with_an_embedding_are_not_compared(windows: dict[str, np.ndarray]) -> None:
    missing = np.full_like(windows["same"], np.nan)
    missing[:50] = windows["same"][:50]
    result = embedding_drift(frame(windows["reference"], 1), frame(missing, 2), EmbeddingDriftRules())
    assert not result.compared and result.severity == "ok" and result.current_rows == 50
    assert "not compared" in result.note


def test_the_feature_drift_check_reports_a_topic_shift_and_not_a_resample(
    windows: dict[str, np.ndarray],
) -> None:
    importance = {name: 1.0 for name in FEATURE_NAMES}
    rules = FeatureDriftRules(min_rows=200)
    reference = frame(windows["reference"], 1)
    same = feature_drift(reference, frame(windows["same"], 2), importance, rules, render=False)
    assert same.embedding is not None and same.embedding.severity == "ok"
    assert same.verdict.status == "ok", same.verdict.reasons
    shifted = feature_drift(reference, frame(windows["shifted"], 2), importance, rules, render=False)
    assert shifted.verdict.status == "critical"
    assert shifted.verdict.reasons[0].startswith("prompt embedding drifted")
    drifted_dims = [
        f.name for f in shifted.features if f.name.startswith("prompt_emb_") and f.severity != "ok"
    ]
    assert len(drifted_dims) >= 4  # the per-dimension view sees it too
    assert not [
        f.name for f in shifted.features if not f.name.startswith("prompt_emb_") and f.severity != "ok"
    ]
