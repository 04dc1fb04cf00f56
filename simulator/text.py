"""Deterministic pseudo text for the simulated worker, with an exactly controllable token count.

Every word the generator emits is exactly ``BYTES_PER_TOKEN`` (4) ASCII bytes including its
trailing space or punctuation (``"the "``, ``"go. "``), so ``n`` words are ``4n`` bytes and
``features.tokens.estimate_tokens`` of the text (trailing space stripped) is exactly ``n``.
The characters are lowercase letters, ``.``, ``,`` and spaces only, so the text can be put
into JSON between quotes without escaping.

Text comes from a *tape*: a long seeded word sequence built once per worker. A request reads
``n`` words from an offset chosen by a hash of (seed, model, prompt), which makes the answer
deterministic for a seed and prompt and costs one string slice.

Output length: the last user message may carry a ground-truth hint ``[[sim out=350 ...]]``
(other ``key=value`` pairs are accepted and ignored); otherwise the length is drawn from a
lognormal distribution (median :data:`DEFAULT_MEDIAN_TOKENS`) seeded by the same hash.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass
from statistics import NormalDist

from features.tokens import BYTES_PER_TOKEN

TAPE_WORDS = 1 << 16
DEFAULT_MEDIAN_TOKENS = 200
DEFAULT_SIGMA = 0.8
MAX_DRAWN_TOKENS = 8192

_THREE_LETTER_TEXT = (
    "the and for are but not you all any can had her was one our out day get has him his how man new now "
    "old see two way who boy did its let put say she too use act add age ago aid aim air arm art ask bad "
    "bag bed big bit box bus buy car cat cup cut dog dry due ear eat end eye far few fit fix fly fun gap "
    "gas god got gun guy hat hot ice ill job key kid lab law lay led leg lie lot low map mix net nor odd "
    "off oil own pay per pen pet pop raw red row run sat sea set sit six sky son sun tax tea ten tie tip "
    "top toy try war wet win yes yet"
)
_TWO_LETTER_TEXT = "as at be by do go he if in is it me my no of on or so to up us we"
_THREE_LETTER_WORDS = tuple(_THREE_LETTER_TEXT.split())
_TWO_LETTER_WORDS = tuple(_TWO_LETTER_TEXT.split())
_NORMAL = NormalDist()
_SIM_MARKER = re.compile(r"\[\[sim\b([^\]]*)\]\]")


def _tape_words(rng: random.Random, count: int) -> list[str]:
    words = [word + " " for word in rng.choices(_THREE_LETTER_WORDS, k=count)]
    index = rng.randint(6, 18)
    while index < count:  # sentence ends: a two-letter word and a period
        words[index] = rng.choice(_TWO_LETTER_WORDS) + ". "
        index += rng.randint(6, 18)
    for index in rng.sample(range(count), count // 16):  # a few commas
        if not words[index].endswith(". "):
            words[index] = rng.choice(_TWO_LETTER_WORDS) + ", "
    return words


class TextTape:
    """A seeded word tape from which requests read deterministic text of an exact token count."""

    def __init__(self, seed: int, words: int = TAPE_WORDS) -> None:
        self.words = words
        body = "".join(_tape_words(random.Random(seed), words))
        self._tape = body + body  # a read starting anywhere in the first copy never wraps
        self._seed_key = seed.to_bytes(8, "little", signed=True)

    def prompt_digest(self, model: str, prompt_fingerprint: bytes) -> bytes:
        """16 bytes that identify (seed, model, prompt); feeds the offset and the length draw."""
        message = model.encode() + b"\0" + prompt_fingerprint
        return hashlib.blake2b(message, digest_size=16, key=self._seed_key).digest()

    def read(self, digest: bytes, tokens: int) -> str:
        """``tokens`` words starting at the digest's offset, without the trailing space."""
        if tokens <= 0:
            return ""
        start = int.from_bytes(digest[:4], "little") % self.words * BYTES_PER_TOKEN
        if tokens <= self.words:
            return self._tape[start : start + tokens * BYTES_PER_TOKEN].rstrip(" ")
        repeats, rest = divmod(tokens, self.words)
        whole = self._tape[start : start + self.words * BYTES_PER_TOKEN]
        return (whole * repeats + self._tape[start : start + rest * BYTES_PER_TOKEN]).rstrip(" ")


def drawn_output_tokens(
    digest: bytes, median: int = DEFAULT_MEDIAN_TOKENS, sigma: float = DEFAULT_SIGMA
) -> int:
    """A lognormal output length (median ``median``) drawn deterministically from the digest."""
    uniform = (int.from_bytes(digest[4:12], "little") + 0.5) / 2.0**64
    tokens = median * math.exp(sigma * _NORMAL.inv_cdf(uniform))
    return max(1, min(MAX_DRAWN_TOKENS, round(tokens)))


@dataclass(frozen=True, slots=True)
class SimHints:
    """Ground-truth hints the simulated world embeds in a prompt as ``[[sim key=value ...]]``."""

    output_tokens: int | None = None


def parse_sim_hints(text: str) -> SimHints:
    """The hints of the last ``[[sim ...]]`` marker in ``text``; unknown keys are ignored."""
    if "[[sim" not in text:
        return SimHints()
    markers = _SIM_MARKER.findall(text)
    if not markers:
        return SimHints()
    output_tokens: int | None = None
    for pair in markers[-1].split():
        key, _, value = pair.partition("=")
        if key == "out":
            try:
                output_tokens = max(1, int(float(value)))
            except ValueError:
                continue
    return SimHints(output_tokens=output_tokens)


def cut_at_stop_sequence(text: str, stop_sequences: tuple[str, ...]) -> tuple[str, str | None]:
    """``text`` cut before the earliest stop sequence it contains, and that sequence (or None)."""
    best_index = -1
    best: str | None = None
    for stop in stop_sequences:
        if not stop:
            continue
        index = text.find(stop)
        if index != -1 and (best_index == -1 or index < best_index):
            best_index, best = index, stop
    if best is None:
        return text, None
    return text[:best_index], best
