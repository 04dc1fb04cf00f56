import os
import subprocess
import sys
import timeit
from pathlib import Path

import numpy as np
import pytest

from features.schema import TASK_TYPES
from features.task_classifier import (
    DEFAULT_MAX_CHARS,
    HEAD_BYTES,
    MODEL_RESOURCE,
    NGRAM_SIZES,
    TAIL_CHARS,
    TaskClassifier,
    default_task_classifier,
    feature_row,
    featurized_bytes,
    hashed_ngrams,
    instruction_window,
    occurrence_weight,
    paragraphs,
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


HEAD_CHARS = DEFAULT_MAX_CHARS - TAIL_CHARS
ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
DOCUMENT = " ".join(f"The quarterly report shows steady growth in region {k}." for k in range(60))


def test_the_window_is_the_first_and_the_last_paragraph():
    middle = "\n\n".join([DOCUMENT, "Table 1: revenue by month.", DOCUMENT])
    text = f"Summarize the following report for the board.\n\n{middle}\n\nKeep it under 100 words."
    assert read_window(text) == "Summarize the following report for the board.\n\nKeep it under 100 words."
    # the material between them is not read: any other middle gives the same features
    other = text.replace(middle, "lorem ipsum " * 500)
    assert np.array_equal(hashed_ngrams(text), hashed_ngrams(other))


def test_the_instruction_is_read_before_or_after_a_pasted_document():
    before, after = f"Summarize the following:\n\n{DOCUMENT}", f"{DOCUMENT}\n\nSummarize the above."
    assert read_window(before) == "Summarize the following:\n\n" + DOCUMENT[-TAIL_CHARS:]
    assert read_window(after) == DOCUMENT[:HEAD_CHARS] + "\n\nSummarize the above."


def test_each_paragraph_is_capped_and_one_paragraph_is_read_once():
    first, last = "a" * 2000, "b" * 2000
    assert read_window(f"{first}\n\n{last}") == "a" * HEAD_CHARS + "\n\n" + "b" * TAIL_CHARS
    assert read_window(DOCUMENT) == DOCUMENT[:HEAD_CHARS] + "\n\n" + DOCUMENT[-TAIL_CHARS:]
    short = "Fix the bug in this function:\ndef f(x):\n    return x +"
    assert read_window(short) == short  # single newlines do not end a paragraph
    assert read_window(DOCUMENT[:DEFAULT_MAX_CHARS]) == DOCUMENT[:DEFAULT_MAX_CHARS]
    assert hashed_ngrams(DOCUMENT).size < hashed_ngrams(DOCUMENT, max_chars=len(DOCUMENT)).size


def test_blank_lines_of_any_kind_separate_paragraphs():
    assert paragraphs("  one\r\n\r\ntwo \n \t \n\n\nthree\n") == ["one", "two", "three"]
    assert paragraphs("\n\n \n") == [] and read_window("\n\n \n") == ""
    assert read_window("Question?\r\n\r\nAnswer:") == read_window("Question?\n\nAnswer:")


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


def reference_window(text: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """The documented window in plain Python: paragraphs are runs of lines that are not blank."""
    runs: list[list[str]] = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            runs[-1].append(line)
        elif runs[-1]:
            runs.append([])
    found = ["\n".join(run).strip() for run in runs if run]
    if not found:
        return ""
    if len(found) == 1 and len(found[0]) <= head + tail:
        return found[0]
    return found[0][:head] + "\n\n" + found[-1][-tail:]


def reference_hashed_ngrams(text: str, bits: int) -> list[int]:
    """The documented definition in plain Python: little-endian byte n-grams of the window (those
    of its first HEAD_BYTES bytes again, salted) times 2^64/phi, top ``bits`` bits."""
    window = reference_window(text)
    data = (" " + window.lower() + " ").encode().translate(ZERO_DIGITS)
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
    [
        "",
        "a",
        "ab",
        "Grüße aus Köln",
        "print('hello, 42')",
        "日本語のテキスト",
        "A longer request. " * 20,
        "Summarize this:\r\n\r\n" + "Some pasted text. " * 80 + "\n \nThanks!",
    ],
)
def test_the_numpy_featurizer_matches_its_definition(text):
    assert hashed_ngrams(text, bits=15).tolist() == reference_hashed_ngrams(text, bits=15)


def test_the_window_matches_its_definition_on_random_paragraphs():
    rng = np.random.default_rng(3)
    pieces = ["abc", "xyz", " ", ".", "\n", "\n\n", "\r\n", "\r", "\t", "7", "é", "漢"]
    for length in (0, 1, 3, 20, 150, 400, 1000, 3000):
        for _ in range(20):
            text = "".join(rng.choice(pieces, size=length))
            assert read_window(text) == reference_window(text), repr(text)


def test_a_long_text_is_read_from_its_ends_exactly_as_the_definition_says():
    """``read_window`` looks only at the ends of a long text; whitespace, CRLFs and blank lines
    at every offset around the ends of those pieces give the window of the whole text."""
    rng = np.random.default_rng(4)
    edges = ["\n\n", "\r\n\r\n", "\r\n", "\n", " \n \n ", "x", "\r"]
    edges += [
        " " * 1300,
        "\n" + " " * 700 + "\n",
        "\n" + " " * 1300 + "\n",
        "\n" + " " * 1300,
    ]  # past a piece
    lines = "".join(rng.choice(["word ", "more. ", "\n", "\r\n"], size=2000))  # some blank lines
    for body in (lines, lines.replace("\n", " ").replace("\r", " "), "word " * 1000):  # and none
        for start in (0, 10, 590, 598, 600, 1196, 1199, 1200, 1203, 1205, 1400):
            for edge in edges:
                ends = len(body) - start
                for text in (
                    body[:start] + edge + body[start:],  # around the end of the head piece
                    body[:ends] + edge + body[ends:],  # around the start of the tail piece
                    "Summarize:" + edge + body + edge + "Thanks" * (start // 6),
                ):
                    window = read_window(text)
                    assert window == reference_window(text) == instruction_window(paragraphs(text))


def test_the_window_of_a_long_text_does_not_cost_more_than_that_of_a_short_one():
    long, short = "Fix this:\n\n" + "word " * 200_000 + "\n\nThanks", "Fix this:\n\n" + "word " * 1000
    assert (
        timeit.timeit(lambda: read_window(long), number=50)
        < 5 * timeit.timeit(lambda: read_window(short), number=50) + 0.005
    )


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


def test_the_ngram_count_follows_the_size_of_the_window():
    rng = np.random.default_rng(3)
    for length in (0, 1, 3, 150, 158, 159, 160, 899, 900, 901, 5000):
        text = "".join(rng.choice(list("abc xyz.\n7é漢"), size=length))
        assert (
            featurized_bytes(text) == b" " + read_window(text).lower().encode().translate(ZERO_DIGITS) + b" "
        )
        size = len(featurized_bytes(text))
        head = min(size, HEAD_BYTES)
        count = sum(max(size - n + 1, 0) + max(head - n + 1, 0) for n in NGRAM_SIZES)
        assert hashed_ngrams(text).size == count
        assert len(read_window(text)) <= DEFAULT_MAX_CHARS + 2


def test_a_batch_is_labelled_exactly_as_one_text_at_a_time(classifier):
    texts = [text for text, _ in CLEAR_PROMPTS] + ["", "x" * 3000]
    assert classifier.predict_indices(texts).tolist() == [
        TASK_TYPES.index(classifier.predict(t)) for t in texts
    ]
    assert predict_task_types(texts) == [predict_task_type(t) for t in texts]
