"""The worker's pseudo text: exact token counts, JSON-safe characters, deterministic draws."""

from __future__ import annotations

import hashlib
import re
import statistics

import pytest

from features.tokens import estimate_tokens
from simulator.text import (
    MAX_DRAWN_TOKENS,
    TAPE_WORDS,
    TextTape,
    cut_at_stop_sequence,
    drawn_output_tokens,
    parse_sim_hints,
)


@pytest.fixture(scope="module")
def tape() -> TextTape:
    return TextTape(seed=7)


def digest(index: int) -> bytes:
    return hashlib.blake2b(str(index).encode(), digest_size=16).digest()


@pytest.mark.parametrize("tokens", [1, 2, 3, 16, 17, 200, 4097, TAPE_WORDS, TAPE_WORDS + 5])
def test_read_text_has_exactly_the_requested_token_count(tape: TextTape, tokens: int) -> None:
    for index in range(5):
        assert estimate_tokens(tape.read(digest(index), tokens)) == tokens


def test_read_zero_tokens_is_empty(tape: TextTape) -> None:
    assert tape.read(digest(0), 0) == ""


def test_text_needs_no_json_escaping(tape: TextTape) -> None:
    text = tape.read(digest(1), TAPE_WORDS)
    assert re.fullmatch(r"[a-z., ]+", text)
    assert not text.endswith(" ")


def test_same_seed_and_prompt_give_same_text_other_seed_differs() -> None:
    first, again, other = TextTape(seed=1), TextTape(seed=1), TextTape(seed=2)
    key = first.prompt_digest("claude-haiku-4-5", b"prompt")
    assert first.read(key, 50) == again.read(again.prompt_digest("claude-haiku-4-5", b"prompt"), 50)
    assert first.read(key, 50) != other.read(other.prompt_digest("claude-haiku-4-5", b"prompt"), 50)
    assert key != first.prompt_digest("claude-haiku-3-5", b"prompt")


def test_drawn_lengths_are_lognormal_around_the_median() -> None:
    draws = [drawn_output_tokens(digest(index)) for index in range(4000)]
    assert 180 <= statistics.median(draws) <= 220
    assert min(draws) >= 1 and max(draws) <= MAX_DRAWN_TOKENS
    assert drawn_output_tokens(digest(3)) == drawn_output_tokens(digest(3))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Explain this. [[sim out=350]]", 350),
        ("[[sim task=code difficulty=0.7 out=42 tenant=t1]] write code", 42),
        ("first [[sim out=5]] then [[sim out=9]]", 9),
        ("[[sim task=chat]]", None),
        ("[[sim out=lots]]", None),
        ("no marker at all", None),
        ("[[simulate out=3]]", None),
    ],
)
def test_sim_hints(text: str, expected: int | None) -> None:
    assert parse_sim_hints(text).output_tokens == expected


def test_cut_at_the_earliest_stop_sequence() -> None:
    assert cut_at_stop_sequence("one two three two", ("three", "two")) == ("one ", "two")
    assert cut_at_stop_sequence("one two", ("zzz",)) == ("one two", None)
    assert cut_at_stop_sequence("one two", ("", "two")) == ("one ", "two")


def test_reads_the_marker_the_simulated_world_writes() -> None:
    from simulator.prompts import sim_marker  # the workload's writer: this is the contract

    assert parse_sim_hints(f"Refactor this. {sim_marker(350, 'code', 0.7)}").output_tokens == 350
