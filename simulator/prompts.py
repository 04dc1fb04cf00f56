"""Prompt text for simulated requests: lead sentences, padding, code snippets and the sim marker.

Every text is deterministic for its seed and has an exact UTF-8 byte length, so
``features.tokens.estimate_tokens`` (one token per 4 bytes) of a rendered segment equals the
token count the simulation chose for it.

A user turn is laid out in paragraphs (separated by blank lines):
``lead`` [``code snippet``] ``padding`` ``marker``. The lead states the instruction; the
padding (also every system prompt and earlier answer) is filler words, or pseudo-words in the
turn's script, drawn from the turn's seed, on one line. The padding vocabulary contains none
of the patterns of ``has_code`` (and none of the old keyword hint's words), so ``has_code``
reads only the lead and the snippet; the task-type classifier reads only the first and last
paragraphs, the lead and the marker. :mod:`simulator.served_signals` relies on both to give
the bootstrap serving's signals from lookup tables.

The last user turn ends with a ground-truth marker for the simulated worker,
``[[sim out=350 task=1 difficulty=0.70]]``: ``out`` is the number of output tokens to
produce, ``task`` the index of the true task in ``features.schema.TASK_TYPES`` (an index,
not the name: the router's text features read the marker, and names such as "code" or
"extraction" would leak the ground truth; the classifier maps every digit to 0) and
``difficulty`` in 0..1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from features.schema import TASK_TYPES
from features.text_signals import has_code
from features.tokens import BYTES_PER_TOKEN
from simulator.world import stable_seed

PROMPT_SCRIPTS: tuple[str, ...] = (
    "latin",
    "cjk",
    "cyrillic",
    "arabic",
)  # a subset of features.schema.SCRIPTS

# English lead sentences per task (written for the v1 keyword hint: most contain a keyword of their
# task, a few none or another task's).
LEAD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "chat": (
        "Hey, how are you doing today?",
        "Thanks, that helps a lot. Can you say more about it?",
        "I need some advice on talking to my manager about a raise.",
        "Can you help me think through my weekend plans?",
        "Explain it to me like I am five, please.",
        "Let's keep chatting about the trip.",
    ),
    "code": (
        "Fix the bug in this Python function.",
        "Refactor this module so it is easier to test.",
        "Write a SQL query that returns the top customers by revenue.",
        "Why does this crash with a null pointer?",
        "Add type hints and docstrings to the snippet below.",
        "Port this JavaScript to TypeScript.",
    ),
    "summarization": (
        "Summarize the following document in five bullet points.",
        "Give me a TL;DR of this thread.",
        "What are the key points of the meeting notes below?",
        "Condense this report to one paragraph.",
        "Shorten the text below for a newsletter.",
        "Can you give me the gist of this article?",
    ),
    "extraction": (
        "Extract every date and amount from the invoice below.",
        "Return the customer names and emails as JSON.",
        "Pull out the action items from these notes.",
        "List all product names mentioned in the text.",
        "Fill in the fields name, address and phone from this form.",
        "Which companies are mentioned below?",
    ),
    "reasoning": (
        "Think step by step: should we migrate to the new database?",
        "Compare these two vendor proposals and recommend one.",
        "What are the trade-offs between renting and buying here?",
        "Plan the rollout for the three teams below.",
        "Why did the experiment fail, given the notes below?",
        "Decide which option is better given these constraints.",
    ),
    "creative": (
        "Write a short story about a lighthouse keeper.",
        "Compose a poem about autumn rain.",
        "Imagine a city under the sea and describe it.",
        "Come up with a slogan for our bakery.",
        "Draft song lyrics for a birthday.",
        "Describe a dragon made of glass.",
    ),
    "math": (
        "Solve for x: 3x + 7 = 22.",
        "Calculate the compound interest on the loan below.",
        "Prove that the sum of two even numbers is even.",
        "What is the probability of rolling two sixes?",
        "Find the derivative of x^3 sin x.",
        "How many ways can five people sit around a round table?",
    ),
    "knowledge": (
        "What is the capital of Australia?",
        "Who was the first person to reach the South Pole?",
        "Explain how vaccines train the immune system.",
        "When did the Berlin Wall fall?",
        "Tell me about the history of the printing press.",
        "How do tides work?",
    ),
}
TEMPLATES_PER_TASK = 6
# Non-Latin leads are pseudo-words in the script; these templates code-switch to an English
# technical word (as real users do).
CODE_SWITCH_WORDS: dict[tuple[str, int], str] = {("code", 0): "Python", ("extraction", 1): "JSON"}

CODE_SNIPPET = "```\nresult = total + offset\nprint(result)\n```"
MIN_USER_TOKENS = 96  # room for the lead, a code snippet and the marker, with padding to spare

# Padding vocabulary: no keyword of keyword_task_type inside a word, no word ending in the first
# word of a multi-word keyword ("write a", "list all", ...), nothing has_code() matches.
_FILLER_TEXT = """
    the a an and or but so then also again about above across after along among around before
    behind below beside between beyond during inside into near over since through toward under
    until upon within without people person group family friend child mother father garden
    river mountain valley forest meadow harbor village city street road bridge market station
    window door chair lamp clock mirror carpet basket bottle cup plate spoon knife bread
    butter cheese apple orange lemon pepper onion carrot potato tomato rice bean honey sugar
    salt water coffee morning evening night summer winter spring autumn weather cloud rain
    snow wind sun moon star light shadow color green yellow purple silver golden quiet gentle
    bright warm cold soft heavy narrow wide tall short young old early late slow quick calm
    busy happy curious careful simple common modern ancient local distant small large little
    great good fine kind brave honest patient polite proud young walked talked looked turned
    opened closed carried painted cleaned cooked visited watched noticed remembered wondered
    followed gathered shared traveled waited smiled laughed listened rested moved stayed
    returned arrived decided offered needed wanted liked loved helped called asked answered
    every each many several some few most other another same different next last first second
    third often never always sometimes usually rarely almost nearly quite rather very really
    together alone ahead away back home here there everywhere somewhere today tomorrow yesterday
    letter paper pencil ribbon button candle blanket pillow jacket scarf boots umbrella ticket
    journey picnic festival concert holiday harvest season neighbor teacher doctor farmer
    sailor baker painter gardener driver captain music dance song game puzzle riddle lesson
"""
FILLER_WORDS: tuple[str, ...] = tuple(_FILLER_TEXT.split())

_MARKER = re.compile(r"\[\[sim\b([^\]]*)\]\]")
_SCRIPT_RANGES: dict[str, tuple[int, int, int]] = {  # first code point, count, UTF-8 bytes per char
    "cjk": (0x4E00, 0x51A5, 3),
    "cyrillic": (0x430, 0x20, 2),
    "arabic": (0x627, 0x24, 2),
}


@dataclass(frozen=True, slots=True)
class SimMarker:
    output_tokens: int
    task: str
    difficulty: float


def sim_marker(output_tokens: int, task: str, difficulty: float) -> str:
    return f"[[sim out={output_tokens} task={TASK_TYPES.index(task)} difficulty={difficulty:.2f}]]"


def parse_sim_marker(text: str) -> SimMarker | None:
    """The last ``[[sim ...]]`` marker written by :func:`sim_marker`, or None."""
    found = _MARKER.findall(text)
    if not found:
        return None
    values = dict(pair.partition("=")[::2] for pair in found[-1].split())
    try:
        return SimMarker(int(values["out"]), TASK_TYPES[int(values["task"])], float(values["difficulty"]))
    except (KeyError, ValueError, IndexError):
        return None


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _script_words(rng: np.random.Generator, script: str, n_chars: int) -> str:
    """Pseudo-words of 2-5 letters in a non-Latin script, at least ``n_chars`` characters."""
    first, count, _ = _SCRIPT_RANGES[script]
    lengths = rng.integers(2, 6, size=n_chars // 3 + 2)
    codes = first + rng.integers(0, count, size=int(lengths.sum()))
    ends = np.cumsum(lengths)
    with_spaces = np.insert(codes, ends[:-1], 0x20)
    return with_spaces.astype("<u4").tobytes().decode("utf-32-le")


def _latin_words(rng: np.random.Generator, n_bytes: int) -> str:
    """Filler sentences of at least ``n_bytes`` ASCII bytes, a full stop after every twelfth word."""
    count = n_bytes // 5 + 8
    chosen = [FILLER_WORDS[i] for i in rng.integers(0, len(FILLER_WORDS), size=count).tolist()]
    for sentence_end in range(11, count, 12):
        chosen[sentence_end] += "."
    text = " ".join(chosen)
    while len(text) < n_bytes:
        text += " " + _latin_words(rng, n_bytes - len(text))
    return text


def filler(seed: int, n_bytes: int, script: str = "latin") -> str:
    """Deterministic padding of exactly ``n_bytes`` UTF-8 bytes, on one line: filler words (Latin)
    or pseudo-words, then spaces where a multi-byte character would not fit."""
    if n_bytes <= 0:
        return ""
    rng = _rng(seed)
    if script == "latin":
        return _latin_words(rng, n_bytes)[:n_bytes]
    _, _, width = _SCRIPT_RANGES[script]
    text = _script_words(rng, script, n_bytes // width + 2)
    widths = np.where(np.frombuffer(text.encode("utf-32-le"), dtype="<u4") == 0x20, 1, width)
    keep = int(np.searchsorted(np.cumsum(widths), n_bytes, side="right"))
    body = text[:keep]
    return body + " " * (n_bytes - len(body.encode("utf-8")))


@cache
def lead_sentence(script: str, task: str, template: int) -> str:
    """The instruction that opens a user turn: an English template, or pseudo-words in the script."""
    if script == "latin":
        return LEAD_TEMPLATES[task][template]
    words = _script_words(_rng(stable_seed("lead", script, task, template)), script, 36)[:36].strip()
    switch = CODE_SWITCH_WORDS.get((task, template))
    return f"{words} {switch} {words[:8]}".strip() if switch else words


def visible_lead(script: str, task: str, template: int, code: bool) -> str:
    """What opens a user turn: the lead sentence, then the code snippet if it has one."""
    lead = lead_sentence(script, task, template)
    return f"{lead}\n\n{CODE_SNIPPET}" if code else lead


def lead_has_code(script: str, task: str, template: int, code: bool) -> bool:
    return has_code(visible_lead(script, task, template, code))


def join_user_turn(lead: str, padding: str, marker: str | None) -> str:
    """The layout of a user turn: ``lead`` (``visible_lead``), ``padding`` and ``marker``, as paragraphs."""
    return f"{lead}\n\n{padding}" + (f"\n\n{marker}" if marker else "")


def user_turn_text(
    seed: int, *, script: str, task: str, template: int, code: bool, tokens: int, marker: str | None
) -> str:
    """A user turn of exactly ``tokens`` estimated tokens: lead, snippet, padding and marker,
    separated by blank lines."""
    lead = visible_lead(script, task, template, code)
    padding = tokens * BYTES_PER_TOKEN - len(join_user_turn(lead, "", marker).encode("utf-8"))
    if padding < 0:
        raise ValueError(f"a user turn of {tokens} tokens cannot hold its lead and marker")
    return join_user_turn(lead, filler(seed, padding, script), marker)


def conversation_user_turn(
    world_seed: int,
    conversation_id: int,
    turn: int,
    *,
    script: str,
    task: str,
    template: int,
    code: bool,
    tokens: int,
    output_tokens: int,
    difficulty: float,
) -> str:
    """User turn ``turn`` of a simulated conversation, marker included, exactly as it is sent."""
    return user_turn_text(
        stable_seed(world_seed, conversation_id, turn, "user"),
        script=script,
        task=task,
        template=template,
        code=code,
        tokens=tokens,
        marker=sim_marker(output_tokens, task, difficulty),
    )


def plain_text(seed: int, tokens: int) -> str:
    """Latin filler of exactly ``tokens`` estimated tokens (system prompts, assistant turns)."""
    return filler(seed, tokens * BYTES_PER_TOKEN, "latin")
