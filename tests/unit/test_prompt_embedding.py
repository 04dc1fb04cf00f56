"""The prompt embedding (features.prompt_embedding) and its fit (offline.prompt_representation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.prompt_embedding import (
    DEFAULT_DIMS,
    EMBEDDING_VERSION,
    PromptEmbedder,
    default_prompt_embedder,
    embed_prompt,
    embedding_window,
    nearest_neighbours,
)
from offline.prompt_representation import fit_from_term_frequencies, fit_prompt_embedding, term_frequency_rows
from training.task_corpus import gsm8k_prompts, llmrouter_prompts, mmlu_prompts

ROUTING_DATA = Path(__file__).resolve().parents[3] / "shared" / "routing_data"


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    """Three unmistakably different kinds of real prompts, 160 of each."""
    mmlu_law = [row.text for row in mmlu_prompts(ROUTING_DATA) if row.group == "mmlu:professional_law"]
    mbpp = [row.text for row in llmrouter_prompts(ROUTING_DATA) if row.group == "llmrouter:mbpp"]
    return {
        "gsm8k": [row.text for row in gsm8k_prompts(ROUTING_DATA, limit=160)],
        "law": mmlu_law[:160],
        "mbpp": mbpp[:160],
    }


@pytest.fixture(scope="module")
def fitted(corpus: dict[str, list[str]]) -> PromptEmbedder:
    """Fitted on the first 100 prompts of each kind; the last 60 are never seen by the fit."""
    texts = [text for texts in corpus.values() for text in texts[:100]]
    return fit_prompt_embedding(texts, dims=16, seed=3)


def test_the_fit_is_deterministic_for_a_seed(corpus: dict[str, list[str]], fitted: PromptEmbedder) -> None:
    texts = [text for texts in corpus.values() for text in texts[:100]]
    again = fit_prompt_embedding(texts, dims=16, seed=3)
    for name in ("idf", "projection", "mean"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fitted, name))
    assert again.metadata == fitted.metadata
    assert (
        fitted.metadata["corpus_sha256"]
        != fit_prompt_embedding(texts[1:], 16, seed=3).metadata["corpus_sha256"]
    )


def test_fitting_and_embedding_from_hashed_rows_match_the_texts(
    corpus: dict[str, list[str]], fitted: PromptEmbedder
) -> None:
    texts = [text for texts in corpus.values() for text in texts[:100]]
    from_rows = fit_from_term_frequencies(term_frequency_rows(texts), dims=16, seed=3)
    for name in ("idf", "projection", "mean"):
        np.testing.assert_array_equal(getattr(from_rows, name), getattr(fitted, name))
    assert "corpus_sha256" not in from_rows.metadata and fitted.metadata["n_texts"] == len(texts)
    held_out = [text for texts in corpus.values() for text in texts[100:]] + [""]
    by_rows = np.stack([fitted.embed_term_frequencies(*row) for row in term_frequency_rows(held_out)])
    np.testing.assert_array_equal(by_rows, fitted.embed_many(held_out))


def test_saved_and_loaded_model_embeds_identically(
    tmp_path: Path, corpus: dict[str, list[str]], fitted: PromptEmbedder
) -> None:
    json_path = fitted.save(tmp_path / "emb.npz")
    loaded = PromptEmbedder.load(tmp_path / "emb.npz")
    held_out = [text for texts in corpus.values() for text in texts[100:]]
    np.testing.assert_array_equal(loaded.embed_many(held_out), fitted.embed_many(held_out))
    assert json.loads(json_path.read_text())["sha256"] == loaded.metadata["sha256"]
    # the same model saves to the same bytes
    fitted.save(tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == (tmp_path / "emb.npz").read_bytes()


def test_load_refuses_another_version_or_altered_arrays(tmp_path: Path, fitted: PromptEmbedder) -> None:
    json_path = fitted.save(tmp_path / "emb.npz")
    metadata = json.loads(json_path.read_text())
    npz = (tmp_path / "emb.npz").read_bytes()
    with pytest.raises(ValueError, match="version"):
        PromptEmbedder.from_bytes(npz, {**metadata, "version": EMBEDDING_VERSION + "x"})
    with pytest.raises(ValueError, match="sha256"):
        PromptEmbedder.from_bytes(npz, {**metadata, "sha256": "0" * 64})


def test_held_out_prompts_are_closest_to_their_own_kind(
    corpus: dict[str, list[str]], fitted: PromptEmbedder
) -> None:
    kinds = list(corpus)
    train = np.concatenate([fitted.embed_many(corpus[kind][:100]) for kind in kinds])
    train_kind = np.repeat(np.arange(len(kinds)), 100)
    query = np.concatenate([fitted.embed_many(corpus[kind][100:]) for kind in kinds])
    query_kind = np.repeat(np.arange(len(kinds)), 60)
    neighbours, _ = nearest_neighbours(train, query, k=1)
    assert (train_kind[neighbours[:, 0]] == query_kind).mean() > 0.95
    # a same-kind pair is on average more similar than a cross-kind pair
    similarity = query @ query.T
    same = query_kind[:, None] == query_kind[None, :]
    assert similarity[same].mean() > similarity[~same].mean() + 0.3


def test_packaged_model_separates_real_corpora(corpus: dict[str, list[str]]) -> None:
    embedder = default_prompt_embedder()
    assert embedder.dims == DEFAULT_DIMS and embedder.metadata["version"] == EMBEDDING_VERSION
    centroids = {kind: embedder.embed_many(texts[100:]).mean(axis=0) for kind, texts in corpus.items()}
    for kind, texts in corpus.items():
        vectors = embedder.embed_many(texts[100:])
        own = vectors @ centroids[kind]
        for other in corpus.keys() - {kind}:
            assert (own > vectors @ centroids[other]).mean() > 0.9


def test_digits_and_whitespace_are_normalised() -> None:
    a = embed_prompt("I have 3 apples and 12 pears.\n\n  How many   fruits?")
    b = embed_prompt("I have 7 apples and 45 pears. How many fruits?")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, embed_prompt("I have 7 apples and 450 pears. How many fruits?"))
    assert embedding_window("a\t\tb \n c") == "a b c"


def test_empty_text_embeds_as_zeros_and_others_have_unit_norm() -> None:
    for text in ("", "   \n\n "):
        vector = embed_prompt(text)
        assert vector.dtype == np.float32 and vector.shape == (DEFAULT_DIMS,)
        assert not vector.any()
    vector = embed_prompt("Translate this sentence into French.")
    assert vector.dtype == np.float32
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert default_prompt_embedder().embed_many([]).shape == (0, DEFAULT_DIMS)


def test_nearest_neighbours_match_a_brute_force_search() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 8)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    query = train[[3, 17]] + 0.01
    indices, similarities = nearest_neighbours(train, query, k=4)
    assert indices[:, 0].tolist() == [3, 17]
    brute = query @ train.T
    for row in range(2):
        assert indices[row].tolist() == np.argsort(-brute[row])[:4].tolist()
        np.testing.assert_allclose(similarities[row], np.sort(brute[row])[::-1][:4], rtol=1e-6)
    assert nearest_neighbours(train[:2], query, k=5)[0].shape == (2, 2)


def test_load_refuses_another_featurizer(tmp_path: Path, fitted: PromptEmbedder) -> None:
    json_path = fitted.save(tmp_path / "emb.npz")
    metadata = json.loads(json_path.read_text())
    npz = (tmp_path / "emb.npz").read_bytes()
    with pytest.raises(ValueError, match="featurizer"):
        PromptEmbedder.from_bytes(npz, {**metadata, "ngram_sizes": [3, 5]})
