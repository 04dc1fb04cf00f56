"""Converter for LLMRouter's dcrouter data (9 models) into the long format.

``dcrouter_train.json`` and ``dcrouter_test.json`` hold ``question`` and ``scores`` {model → 0/1};
prices (USD per 1M input / output tokens) come from ``llm_candidates.json``. Input tokens are
``features.tokens.estimate_tokens`` of the question; the data record no answers, so every
answer is assumed to be ``OUTPUT_TOKENS`` (256) tokens long for every model.

The data carry no task or source label (the train file's ``cluster_id`` is a k-means cluster,
absent from the test file), so ``group`` is the source *inferred from the question's format*
by :func:`inferred_source` — fixed rules over the text (a zebra puzzle header, a ``\\boxed``
instruction, a Python signature, LaTeX, a word list, a cloze blank, …). The prompt id records
the file (``train`` / ``test``); a test question that also appears in the train file keeps
only its test copy, so no text is in both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from eval.benchmarks.outcomes import outcome_frame
from features.tokens import estimate_tokens

OUTPUT_TOKENS = 256
FILES = {"train": "dcrouter_train.json", "test": "dcrouter_test.json"}
_WORD_LIST = re.compile(r"^[a-z'\-]+(, [a-z'\-]+){5,}")
_LATEX = re.compile(r"\$[^$]+\$|\\frac|\\sqrt|\\cdot")


def inferred_source(question: str) -> str:
    """The question's source family, read from its format (see the module docstring)."""
    text = question.strip()
    if text.startswith("Q: There are") and "house" in text[:80]:
        return "zebra_puzzle"
    if "\\boxed" in text:
        return "math_word_cot"
    if re.search(r"^\s*(from \w+ import|import \w+|def \w+\()", question, re.MULTILINE) and '"""' in question:
        return "code_completion"
    if re.match(r"(Write|Create) a (python )?function", text, re.IGNORECASE):
        return "code_function"
    if _WORD_LIST.match(text):
        return "word_list"
    if _LATEX.search(text):
        return "math_latex"
    if " _" in text or text.endswith("_"):
        return "reading_cloze"
    if len(text) > 600:
        return "reading_passage"
    if re.search(r"\d", text) and re.search(r"\b(how many|how much|what is the total|each)\b", text, re.I):
        return "math_word"
    if text[:1].islower() and not text.endswith("?"):
        return "open_qa_lowercase"
    if len(text) > 200:
        return "science_question"
    return "short_question"


def llmrouter_folder(data: Path) -> Path:
    for candidate in (data, data / "llmrouter"):
        if (candidate / FILES["train"]).exists():
            return candidate
    raise FileNotFoundError(f"no {FILES['train']} at or under {data}")


def read_llmrouter(data: Path) -> pl.DataFrame:
    """Both files in the long format; group = :func:`inferred_source`, prompt ids ``llmrouter/<file>/<i>``."""
    folder = llmrouter_folder(Path(data))
    candidates = json.loads((folder / "llm_candidates.json").read_text(encoding="utf-8"))
    records = {part: json.loads((folder / name).read_text(encoding="utf-8")) for part, name in FILES.items()}
    test_questions = {record["question"] for record in records["test"]}
    rows = []
    for part in ("train", "test"):
        for index, record in enumerate(records[part]):
            question = record["question"]
            if part == "train" and question in test_questions:
                continue
            input_tokens = estimate_tokens(question)
            group = inferred_source(question)
            for model, score in record["scores"].items():
                price = candidates[model]
                rows.append(
                    {
                        "prompt_id": f"llmrouter/{part}/{index}",
                        "prompt": question,
                        "group": group,
                        "dataset": "llmrouter",
                        "model": model,
                        "quality": float(score),
                        "cost_usd": (
                            input_tokens * price["input_price"] + OUTPUT_TOKENS * price["output_price"]
                        )
                        / 1e6,
                        "input_tokens": input_tokens,
                        "output_tokens": OUTPUT_TOKENS,
                    }
                )
    return outcome_frame(pl.DataFrame(rows))
