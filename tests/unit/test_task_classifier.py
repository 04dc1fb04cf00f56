import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from features.schema import TASK_TYPES
from features.task_classifier import (
    HEAD_BYTES,
    MODEL_RESOURCE,
    TAIL_CHARS,
    TaskClassifier,
    default_task_classifier,
    feature_row,
    featurized_bytes,
    hashed_ngrams,
    ngram_count,
    occurrence_weight,
    predict_task_type,
    predict_task_types,
    read_window,
)

PACKAGED_MODEL = Path(__file__).parents[2] / "features" / MODEL_RESOURCE

# Hand-written prompts, none of them produced by the training templates.
CLEAR_PROMPTS = [
    (
        "I keep getting this and can't figure it out:\n"
        "Traceback (most recent call last):\n"
        '  File "/home/me/scraper/fetch.py", line 57, in <module>\n'
        "    payload = json.loads(resp.text)\n"
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        "code",
    ),
    ("Solve for x: 3x+5=20", "math"),
    ("If 7y - 4 = 24, what is y? Show the steps.", "math"),
    ("Write a short poem about the smell of rain on hot pavement.", "creative"),
    ("Who wrote the novel One Hundred Years of Solitude?", "knowledge"),
    ("hey, how's it going?", "chat"),
    (
        "Please summarize this article in two sentences:\n\nThe city council voted on Tuesday to extend the "
        "tram line to the airport. The extension will cost 240 million euros and open in 2029. Opponents "
        "argued the money should go to buses, while business groups welcomed faster links for travellers.",
        "summarization",
    ),
    (
        "From the email below, extract the sender's name and the meeting date as JSON.\n\n"
        "Hi team, let's meet on 14 March to review the budget. Best, Rosa Delgado",
        "extraction",
    ),
]


@pytest.fixture(scope="module")
def classifier() -> TaskClassifier:
    return TaskClassifier.load()


def test_packaged_model_is_present_small_and_loads_with_the_schema_labels(classifier):
    assert PACKAGED_MODEL.is_file()
    assert PACKAGED_MODEL.stat().st_size < 2_200_000
    assert classifier.labels == TASK_TYPES
    assert TaskClassifier.load(PACKAGED_MODEL).labels == TASK_TYPES


@pytest.mark.parametrize(("text", "label"), CLEAR_PROMPTS, ids=[label for _, label in CLEAR_PROMPTS])
def test_clear_prompts_get_sensible_labels(classifier, text, label):
    assert classifier.predict(text) == label


def test_predict_proba_is_a_distribution_over_the_labels(classifier):
    for text, _ in CLEAR_PROMPTS:
        probabilities = classifier.predict_proba(text)
        assert tuple(probabilities) == TASK_TYPES
        assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(probabilities, key=probabilities.__getitem__) == classifier.predict(text)


@pytest.mark.parametrize("text", ["", " ", "你好，今天过得怎么样？", "🙂" * 50, "x" * 20_000, "\x00\udcff"])
def test_odd_texts_still_get_a_label(classifier, text):
    assert classifier.predict(text) in TASK_TYPES
    assert sum(classifier.predict_proba(text).values()) == pytest.approx(1.0, abs=1e-5)


def test_predict_task_type_uses_the_packaged_model_once():
    assert default_task_classifier() is default_task_classifier()
    assert predict_task_type("Write a haiku about autumn leaves.") in TASK_TYPES


def test_a_model_with_other_labels_is_refused():
    model = PACKAGED_MODEL.read_bytes()
    with pytest.raises(ValueError, match="labels"):
        TaskClassifier.from_bytes(model, expected_labels=tuple(reversed(TASK_TYPES)))


def test_a_long_text_is_read_by_its_head_and_tail():
    document = "The quarterly report shows steady growth. " * 100
    text = document + "Summarize the above."
    head, tail = text[: 1000 - TAIL_CHARS], text[-TAIL_CHARS:]
    assert np.array_equal(
        hashed_ngrams(text, max_chars=1000), hashed_ngrams(head + " " + tail, max_chars=2000)
    )
    assert hashed_ngrams(text, max_chars=1000).size < hashed_ngrams(text, max_chars=5000).size


def test_the_feature_row_is_counts_over_the_root_of_the_ngram_count():
    text = "abcabcabc"  # " abcabcabc " -> byte 3-grams and 5-grams, twice (whole text and head)
    indices = hashed_ngrams(text)
    assert indices.size == 2 * ((11 - 2) + (11 - 4))
    buckets, values = feature_row(text)
    assert buckets.tolist() == sorted(set(indices.tolist()))
    counts = np.array([np.count_nonzero(indices == bucket) for bucket in buckets])
    assert np.allclose(values, counts / np.sqrt(indices.size))
    assert occurrence_weight(0) == 1.0


def test_digits_and_case_do_not_matter():
    assert np.array_equal(hashed_ngrams("Add 17 AND 42"), hashed_ngrams("add 99 and 10"))


def test_the_hash_is_fixed_not_salted():
    """A golden value: changing the featurizer must change FEATURIZER_VERSION and retrain."""
    assert hashed_ngrams("Hi!", bits=15).tolist() == [7867, 23599, 8528, 2071, 24278, 25808, 1395, 30074]


def reference_hashed_ngrams(text: str, bits: int) -> list[int]:
    """The documented definition in plain Python: little-endian byte n-grams (those of the
    first HEAD_BYTES bytes again, salted) times 2^64/phi, top ``bits`` bits."""
    data = (" " + text.lower() + " ").encode().translate(bytes.maketrans(b"123456789", b"000000000"))
    keys = [int.from_bytes(data[i : i + n], "little") for n in (3, 5) for i in range(len(data) - n + 1)]
    head = data[:HEAD_BYTES]
    keys += [
        int.from_bytes(head[i : i + n], "little") ^ 0xA5A5A5A5A5A5A5A5
        for n in (3, 5)
        for i in range(len(head) - n + 1)
    ]
    return [(key * 0x9E3779B97F4A7C15 % 2**64) >> (64 - bits) for key in keys]


@pytest.mark.parametrize(
    "text",
    ["", "a", "ab", "Grüße aus Köln", "print('hello, 42')", "日本語のテキスト", "A longer request. " * 20],
)
def test_the_numpy_featurizer_matches_its_definition(text):
    assert hashed_ngrams(text, bits=15).tolist() == reference_hashed_ngrams(text, bits=15)


def test_the_featurizer_is_deterministic_across_processes():
    text = "Déjà vu: compute 12 * 34, then write it in Python 🐍"
    script = (
        "import sys; from features.task_classifier import hashed_ngrams; "
        "print(hashed_ngrams(sys.argv[1]).tolist())"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, text],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        outputs.add(result.stdout.strip())
    assert outputs == {str(hashed_ngrams(text).tolist())}


def test_the_window_is_what_the_featurizer_reads_and_the_count_follows_its_size():
    rng = np.random.default_rng(3)
    for length in (0, 1, 3, 150, 158, 159, 160, 999, 1000, 1001, 5000):
        text = "".join(rng.choice(list("abc xyz.\n7é漢"), size=length))
        assert np.array_equal(hashed_ngrams(text), hashed_ngrams(read_window(text), max_chars=10_000))
        assert hashed_ngrams(text).size == ngram_count(len(featurized_bytes(text)))
        assert len(read_window(text)) == (length if length <= 1000 else 1001)


def test_a_batch_is_labelled_exactly_as_one_text_at_a_time(classifier):
    texts = [text for text, _ in CLEAR_PROMPTS] + ["", "x" * 3000]
    assert classifier.predict_indices(texts).tolist() == [
        TASK_TYPES.index(classifier.predict(t)) for t in texts
    ]
    assert predict_task_types(texts) == [predict_task_type(t) for t in texts]


def test_labels_from_weight_sums_agree_with_onnxruntime_or_abstain(classifier):
    rng = np.random.default_rng(5)
    words = [
        "the",
        "a",
        "of",
        "and",
        "code",
        "poem",
        "summarize",
        "extract",
        "why",
        "solve",
        "who",
        "7",
        "+",
        "=",
        "?",
        ".",
        "hello",
    ]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 400))) for _ in range(300)]
    texts += [text for text, _ in CLEAR_PROMPTS]
    rows = [hashed_ngrams(text) for text in texts]
    sums = np.stack([classifier.weight_table[indices].sum(axis=0) for indices in rows])
    ngrams = np.array([indices.size for indices in rows])
    labels = classifier.labels_from_sums(sums, ngrams)
    decided = labels >= 0
    assert decided.mean() > 0.9
    expected = classifier.predict_indices(texts)
    assert np.array_equal(labels[decided], expected[decided])
    # where float32 rounding could reach the gap between the two best logits, it abstains
    loose = sums.copy()
    loose[:, -1] = 1e9  # a huge sum of |weights| makes the rounding bound huge
    assert (classifier.labels_from_sums(loose, ngrams) == -1).all()
    assert (classifier.labels_from_sums(np.full_like(sums, np.nan), ngrams) == -1).all()
