"""Labelled prompts for the task-type classifier from the public routing data.

Each loader reads one dataset under a ``routing_data`` folder (laid out as in
``shared/routing_data/README.md``) and labels its prompts with a task type from
``features.schema.TASK_TYPES``. Every prompt carries a ``group`` (dataset and subject, or
dataset and inferred source) so evaluation can hold out whole groups: a classifier must
not be scored on subjects it was trained on.

Label mapping (documented in docs/task-classifier.md):

- MMLU: mathematics and statistics subjects -> math, the two computer-science subjects ->
  code, every other subject -> knowledge.
- GSM8K -> math.
- MT-Bench (first turn): writing/roleplay -> creative, reasoning -> reasoning, math -> math,
  coding -> code, extraction -> extraction, stem/humanities -> knowledge.
- LLMRouter has no task labels; rows whose source dataset is unmistakable are kept
  (zebra puzzles -> reasoning, MBPP and HumanEval -> code, LaTeX competition maths -> math,
  short all-lower-case search queries in the style of Natural Questions -> knowledge);
  rows that duplicate a RouteLLM prompt and all other rows are skipped.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    text: str
    label: str
    group: str
    """The unit of the grouped split: ``<dataset>:<subject or template>``."""
    source: str
    """The dataset: ``simulated``, ``mmlu``, ``gsm8k``, ``mt_bench`` or ``llmrouter``."""


MMLU_MATH_SUBJECTS: frozenset[str] = frozenset(
    {
        "abstract_algebra",
        "college_mathematics",
        "elementary_mathematics",
        "high_school_mathematics",
        "high_school_statistics",
    }
)
MMLU_CODE_SUBJECTS: frozenset[str] = frozenset({"college_computer_science", "high_school_computer_science"})

MT_BENCH_LABELS: dict[str, str] = {
    "writing": "creative",
    "roleplay": "creative",
    "reasoning": "reasoning",
    "math": "math",
    "coding": "code",
    "extraction": "extraction",
    "stem": "knowledge",
    "humanities": "knowledge",
}

_LATEX_MATH = re.compile(r"\$[^$\n]*[\\^_{}=][^$\n]*\$|\\frac|\\\[|\[asy\]")
_SEARCH_QUERY = re.compile(r"[a-z][a-z ')(.'-]{9,118}")
_ZEBRA = re.compile(r"There are \d+ houses in a row")
_MBPP = re.compile(r"^\s*Write a (python )?function", re.I)
_HUMANEVAL = re.compile(r'^\s*(def |from |import )[\s\S]*"""')
_LLMROUTER_RULES: tuple[tuple[str, str, Callable[[str], object]], ...] = (
    ("zebra", "reasoning", _ZEBRA.search),
    ("mbpp", "code", _MBPP.search),
    ("humaneval", "code", _HUMANEVAL.search),
    ("competition_math", "math", _LATEX_MATH.search),
    ("natural_questions", "knowledge", _SEARCH_QUERY.fullmatch),
)


def mmlu_label(subject: str) -> str:
    if subject in MMLU_MATH_SUBJECTS:
        return "math"
    if subject in MMLU_CODE_SUBJECTS:
        return "code"
    return "knowledge"


def mmlu_prompts(routing_data: Path, per_subject: int | None = None) -> list[LabelledPrompt]:
    rows: list[LabelledPrompt] = []
    for path in sorted((routing_data / "routellm/evals/mmlu/responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        with path.open(newline="", encoding="utf-8") as handle:
            prompts = [row["prompt"] for row in csv.DictReader(handle)]
        label = mmlu_label(subject)
        rows.extend(LabelledPrompt(p, label, f"mmlu:{subject}", "mmlu") for p in prompts[:per_subject])
    return rows


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def gsm8k_prompts(routing_data: Path, limit: int | None = None) -> list[LabelledPrompt]:
    folder = routing_data / "routellm/evals/gsm8k"
    questions = [
        str(row["question"]) for name in ("test.jsonl", "train.jsonl") for row in _jsonl(folder / name)
    ]
    return [LabelledPrompt(q, "math", "gsm8k:all", "gsm8k") for q in questions[:limit]]


def mt_bench_prompts(routing_data: Path) -> list[LabelledPrompt]:
    rows = []
    for row in _jsonl(routing_data / "routellm/evals/mt_bench/question.jsonl"):
        category = str(row["category"])
        first_turn = str(row["turns"][0])  # type: ignore[index]
        rows.append(LabelledPrompt(first_turn, MT_BENCH_LABELS[category], f"mt_bench:{category}", "mt_bench"))
    return rows


def llmrouter_source(question: str) -> tuple[str, str] | None:
    """(source, label) for a question whose source dataset is unmistakable, else None."""
    for source, label, matches in _LLMROUTER_RULES:
        if matches(question):
            return source, label
    return None


def _key(text: str) -> str:
    return " ".join(text.split()).lower()


def llmrouter_prompts(
    routing_data: Path, exclude: Iterable[str] = (), per_source: int | None = None
) -> list[LabelledPrompt]:
    """Rows with a derivable label; ``exclude`` holds texts already taken from RouteLLM."""
    excluded = {_key(text) for text in exclude}
    seen: set[str] = set()
    counts: dict[str, int] = {}
    rows = []
    for name in ("dcrouter_train.json", "dcrouter_test.json"):
        for item in json.loads((routing_data / "llmrouter" / name).read_text(encoding="utf-8")):
            question = str(item["question"])
            stem = question.split("\nAfter careful thought")[0]
            key = _key(stem)
            if key in excluded or key in seen:
                continue
            seen.add(key)
            found = llmrouter_source(question)
            if found is None:
                continue
            source, label = found
            if per_source is not None and counts.get(source, 0) >= per_source:
                continue
            counts[source] = counts.get(source, 0) + 1
            rows.append(LabelledPrompt(question, label, f"llmrouter:{source}", "llmrouter"))
    return rows


def routing_data_prompts(
    routing_data: Path, per_group: int | None = None, gsm8k_limit: int | None = None
) -> list[LabelledPrompt]:
    """All labelled prompts from the routing data, deduplicated across datasets."""
    routellm = (
        mmlu_prompts(routing_data, per_group)
        + gsm8k_prompts(routing_data, gsm8k_limit)
        + mt_bench_prompts(routing_data)
    )
    # Exclude every RouteLLM question from LLMRouter, not only the sampled ones.
    known = [row.text.split("\nA.")[0] for row in mmlu_prompts(routing_data)]
    known += [row.text for row in gsm8k_prompts(routing_data)]
    return routellm + llmrouter_prompts(routing_data, exclude=known, per_source=per_group)
