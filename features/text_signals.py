"""Cheap signals read from prompt text: writing system, code, and a keyword task hint.

``keyword_task_type`` is the v1 task-type signal: transparent keyword rules. The trained
task-type classifier (the train-router issue) replaces it behind the same signature.
"""

from __future__ import annotations

import re

_CODE_PATTERN = re.compile(
    r"```|\bdef \w+\(|\bfunction \w*\(|\bclass \w+[:({]|;\s*$|#include|\bimport \w+", re.M
)

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
    counts = {"latin": 0, "cjk": 0, "cyrillic": 0, "arabic": 0, "other": 0}
    for char in text[:sample_chars]:
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
    return _CODE_PATTERN.search(text) is not None


def keyword_task_type(text: str) -> str:
    """First task whose keywords appear in the (lower-cased) text; ``chat`` otherwise."""
    lowered = text[:2000].lower()
    for task, keywords in _TASK_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return task
    return "chat"
