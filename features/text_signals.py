"""Cheap signals read from prompt text: writing system, code, and a keyword task hint.

``keyword_task_type`` was the ``task_type`` feature up to feature schema v1: transparent
keyword rules. Since v2 the feature is the trained classifier (``features.task_classifier``);
the rules stay as the baseline its evaluation reports against.
"""

from __future__ import annotations

import re

# has_code() is true when any of these matches (one alternation, ``\b`` before the keywords,
# re.M). The alternation is searched piecewise, because ``\b`` at the start of a pattern
# disables the regex engine's literal-prefix scan: as one regex it cost ~9 ms on a 20 KB prompt,
# piecewise ~60 µs. The word boundary is checked by hand at each literal match (exactly ``\b``:
# the keyword starts with a word character, so the character before must not be one).
_CODE_LITERALS = ("```", "#include")
_CODE_AFTER_WORD_BOUNDARY = tuple(
    re.compile(pattern) for pattern in (r"def \w+\(", r"function \w*\(", r"class \w+[:({]", r"import \w+")
)
_CODE_LINE_END = re.compile(r";\s*$", re.M)
_WORD_CHAR = re.compile(r"\w")

_TASK_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "code",
        ("code", "function", "bug", "python", "javascript", "compile", "refactor", "stack trace", "sql"),
    ),
    ("math", ("solve", "equation", "integral", "prove", "probability", "calculate", "derivative")),
    ("summarization", ("summarize", "summarise", "summary", "tl;dr", "key points", "condense")),
    ("extraction", ("extract", "json", "fields", "parse", "table of", "list all", "pull out")),
    ("reasoning", ("step by step", "why", "plan", "trade-off", "tradeoff", "analyze", "analyse", "compare")),
    ("creative", ("story", "poem", "write a", "slogan", "lyrics", "imagine", "creative")),
    ("knowledge", ("what is", "who was", "explain", "history of", "define", "when did")),
)


def detect_script(text: str, sample_chars: int = 400) -> str:
    """Dominant writing system among the letters of the first ``sample_chars`` characters."""
    sample = text[:sample_chars]
    if sample.isascii():  # every ASCII letter is Latin (and no letter at all also means "latin")
        return "latin"
    counts = {"latin": 0, "cjk": 0, "cyrillic": 0, "arabic": 0, "other": 0}
    for char in sample:
        if not char.isalpha():
            continue
        code = ord(char)
        if code < 0x250:
            counts["latin"] += 1
        elif 0x400 <= code < 0x530:
            counts["cyrillic"] += 1
        elif 0x600 <= code < 0x700:
            counts["arabic"] += 1
        elif 0x3040 <= code < 0xA000 or 0xAC00 <= code < 0xD7B0:
            counts["cjk"] += 1
        else:
            counts["other"] += 1
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else "latin"


def has_code(text: str) -> bool:
    """A code fence or code-like syntax anywhere in ``text``."""
    if any(literal in text for literal in _CODE_LITERALS) or _CODE_LINE_END.search(text):
        return True
    for pattern in _CODE_AFTER_WORD_BOUNDARY:
        for match in pattern.finditer(text):
            start = match.start()
            if start == 0 or _WORD_CHAR.match(text, start - 1) is None:
                return True
    return False


def keyword_task_type(text: str) -> str:
    """First task whose keywords appear in the (lower-cased) text; ``chat`` otherwise."""
    lowered = text[:2000].lower()
    for task, keywords in _TASK_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return task
    return "chat"
