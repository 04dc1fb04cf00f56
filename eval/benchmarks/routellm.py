"""Converters for the RouteLLM evaluation data (MMLU, GSM8K, MT-Bench) into the long format.

Two models: ``STRONG`` (gpt-4-1106-preview) and ``WEAK`` (Mixtral-8x7B-Instruct). RouteLLM records
no prices; ``PRICES_PER_MILLION`` holds the public list prices (USD per 1M input / output tokens)
of the two models when the data were made. Input tokens are ``features.tokens.estimate_tokens``
of the prompt. Output tokens:

- MMLU: the answer is one letter after ``Answer:``; ``MMLU_OUTPUT_TOKENS`` (2) per answer;
- GSM8K: the estimate of each model's own recorded response text;
- MT-Bench: the estimate of each model's two answers, read from the multi-turn judgement prompt.

Quality: MMLU and GSM8K answers are correct (1) or not (0); MT-Bench's GPT-4 judge scores each
turn 1-10, and a question's quality is the mean over its two turns divided by 10.

Prompts in each set's ``contaminated_prompts.jsonl`` (field ``eval_prompt``) are dropped, as
RouteLLM dropped them from its evaluation; for MT-Bench the match is on the first turn.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from eval.benchmarks.outcomes import outcome_frame
from features.tokens import estimate_tokens

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {STRONG: (10.0, 30.0), WEAK: (0.6, 0.6)}
MMLU_OUTPUT_TOKENS = 2
_ASSISTANT_TURN = re.compile(
    r"### Assistant A:\n(.*?)(?=\n\n### User:|\n\n<\|The End of Assistant A)", re.DOTALL
)


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float:
    price_in, price_out = PRICES_PER_MILLION[model]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


def evals_folder(data: Path, name: str) -> Path:
    """``data`` itself when it is the set's folder, else ``data/routellm/evals/<name>`` or ``data/evals/<name>``."""
    for candidate in (data, data / "evals" / name, data / "routellm" / "evals" / name):
        if candidate.is_dir() and candidate.name == name:
            return candidate
    raise FileNotFoundError(f"no RouteLLM '{name}' folder at or under {data}")


def contaminated_prompts(folder: Path) -> set[str]:
    path = folder / "contaminated_prompts.jsonl"
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["eval_prompt"].strip() for line in lines if line.strip()}


def _rows(prompt_id: str, prompt: str, group: str, dataset: str, outcomes: dict[str, tuple[float, int]]):
    input_tokens = estimate_tokens(prompt)
    for model, (quality, output_tokens) in outcomes.items():
        yield {
            "prompt_id": prompt_id,
            "prompt": prompt,
            "group": group,
            "dataset": dataset,
            "model": model,
            "quality": quality,
            "cost_usd": cost_usd(model, input_tokens, output_tokens),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }


def _correct(value: object) -> float:
    return 1.0 if str(value).strip().lower() in {"true", "1", "1.0"} else 0.0


def read_mmlu(data: Path) -> pl.DataFrame:
    """The 57 subject CSVs (``responses/mmlu_<subject>.csv``); group = subject."""
    folder = evals_folder(Path(data), "mmlu")
    excluded = contaminated_prompts(folder)
    rows = []
    for path in sorted((folder / "responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        table = pl.read_csv(path, infer_schema=False)
        for index, record in enumerate(table.iter_rows(named=True)):
            prompt = record["prompt"]
            if prompt.strip() in excluded:
                continue
            outcomes = {model: (_correct(record[model]), MMLU_OUTPUT_TOKENS) for model in (STRONG, WEAK)}
            rows.extend(_rows(f"mmlu/{subject}/{index}", prompt, subject, "mmlu", outcomes))
    return outcome_frame(pl.DataFrame(rows))


def read_gsm8k(data: Path) -> pl.DataFrame:
    """``gsm8k_responses.csv``; one group (``gsm8k``); output tokens from each model's response."""
    folder = evals_folder(Path(data), "gsm8k")
    excluded = contaminated_prompts(folder)
    table = pl.read_csv(folder / "gsm8k_responses.csv", infer_schema=False)
    rows = []
    for index, record in enumerate(table.iter_rows(named=True)):
        prompt = record["prompt"]
        if prompt.strip() in excluded:
            continue
        outcomes = {
            model: (_correct(record[model]), estimate_tokens(record.get(f"{model}_response") or ""))
            for model in (STRONG, WEAK)
        }
        rows.extend(_rows(f"gsm8k/{index}", prompt, "gsm8k", "gsm8k", outcomes))
    return outcome_frame(pl.DataFrame(rows))


def read_mt_bench(data: Path) -> pl.DataFrame:
    """``question.jsonl`` + ``judgements.jsonl``; prompt = the turns joined by a blank line, group = category."""
    folder = evals_folder(Path(data), "mt_bench")
    excluded = contaminated_prompts(folder)
    questions = [json.loads(line) for line in (folder / "question.jsonl").read_text().splitlines() if line]
    judgements = [json.loads(line) for line in (folder / "judgements.jsonl").read_text().splitlines() if line]
    scores: dict[tuple[int, str], list[float]] = {}
    answers: dict[tuple[int, str], int] = {}
    for judgement in judgements:
        key = (int(judgement["question_id"]), judgement["model"])
        scores.setdefault(key, []).append(float(judgement["score"]))
        if int(judgement["turn"]) == 2:
            turns = _ASSISTANT_TURN.findall(judgement["user_prompt"])
            answers[key] = sum(estimate_tokens(turn) for turn in turns)
    rows = []
    for question in questions:
        if question["turns"][0].strip() in excluded:
            continue
        qid = int(question["question_id"])
        outcomes = {}
        for model in (STRONG, WEAK):
            turn_scores = scores[(qid, model)]
            outcomes[model] = (sum(turn_scores) / len(turn_scores) / 10.0, answers.get((qid, model), 0))
        prompt = "\n\n".join(question["turns"])
        rows.extend(_rows(f"mt_bench/{qid}", prompt, question["category"], "mt_bench", outcomes))
    return outcome_frame(pl.DataFrame(rows))
