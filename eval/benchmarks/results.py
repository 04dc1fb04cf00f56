"""The machine-readable results of a benchmark run, and the markdown tables rendered from them.

``results.json``: ``{"evaluations": [...], "seconds": {...}, "config": {...}}``, each evaluation
with its routers' metrics as ``{"value", "low", "high", "defined_share"}`` and the curves the
plots draw. ``results.csv``: one row per (dataset, split, router, metric). ``render_tables``
turns ``results.json`` into the tables of docs/router-quality.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from eval.benchmarks.evaluate import REFERENCE, Evaluation

TWO_MODEL_COLUMNS = (
    ("apgr", "APGR", False),
    ("cpt_50", "CPT(50%)", True),
    ("cpt_80", "CPT(80%)", True),
    ("cost_saved_at_95", "cost saved at 95% of strong", True),
    ("apgr_vs_ours", "APGR − ours (paired)", False),
)
MANY_MODEL_COLUMNS = (
    ("aiq", "AIQ", False),
    ("gain_at_best_cost", "gain at best-single cost", False),
    ("cost_saved_at_best_quality", "cost saved at best-single quality", True),
    ("oracle_gap", "gap to oracle", False),
    ("max_quality", "max quality", False),
    ("aiq_vs_ours", "AIQ − ours (paired)", False),
)


def evaluation_record(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "dataset": evaluation.dataset,
        "split": evaluation.split,
        "description": evaluation.description,
        "kind": evaluation.kind,
        "n_prompts": evaluation.n_prompts,
        "models": list(evaluation.models),
        "singles": evaluation.singles,
        "routers": [
            {
                "router": score.router,
                "metrics": {k: v.as_dict() for k, v in score.metrics.items()},
                "curve": score.curve,
            }
            for score in evaluation.routers
        ],
    }


def results_document(
    evaluations: list[Evaluation], seconds: dict[str, float], config: dict[str, Any]
) -> dict:
    return {"config": config, "seconds": seconds, "evaluations": [evaluation_record(e) for e in evaluations]}


def results_rows(document: dict) -> pl.DataFrame:
    rows = [
        {
            "dataset": ev["dataset"],
            "split": ev["split"],
            "router": router["router"],
            "metric": metric,
            **values,
        }
        for ev in document["evaluations"]
        for router in ev["routers"]
        for metric, values in router["metrics"].items()
    ]
    return pl.DataFrame(rows)


def write_results(document: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "results.json", out / "results.csv"
    json_path.write_text(json.dumps(document, indent=1, allow_nan=True) + "\n", encoding="utf-8")
    results_rows(document).write_csv(csv_path)
    return json_path, csv_path


def _cell(values: dict[str, float], percent: bool) -> str:
    value, low, high = values["value"], values["low"], values["high"]
    if not math.isfinite(value):
        share = values.get("defined_share", 0.0)
        return f"not reached (reached in {share * 100:.0f}% of resamples)" if share > 0 else "not reached"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    digits = 1 if percent else 3
    text = f"{value * scale:.{digits}f}{unit}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    if values.get("defined_share", 1.0) < 0.999:
        text += f" (reached in {values['defined_share'] * 100:.0f}%)"
    return text


def render_table(evaluation: dict) -> str:
    columns = TWO_MODEL_COLUMNS if evaluation["kind"] == "two-model" else MANY_MODEL_COLUMNS
    header = "| router | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for router in evaluation["routers"]:
        cells = [
            _cell(router["metrics"][key], percent) if key in router["metrics"] else ""
            for key, _, percent in columns
        ]
        lines.append(f"| {router['router']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def singles_table(evaluation: dict) -> str:
    lines = ["| model | quality | cost per prompt (USD) |", "|---|---|---|"]
    for model, values in sorted(evaluation["singles"].items(), key=lambda item: item[1]["cost_usd"]):
        lines.append(f"| {model} | {values['quality']:.3f} | {values['cost_usd']:.6f} |")
    return "\n".join(lines)


def render_tables(document: dict) -> str:
    """Markdown: per (dataset, split) a heading, the split, the single models and the router table."""
    parts = []
    for evaluation in document["evaluations"]:
        parts.append(f"### {evaluation['dataset']} — {evaluation['split']} split ({evaluation['kind']})\n")
        parts.append(f"{evaluation['n_prompts']} evaluated prompts; {evaluation['description']}.\n")
        parts.append(singles_table(evaluation) + "\n")
        parts.append(render_table(evaluation) + "\n")
    return "\n".join(parts)


DEFAULT_SECTION = "benchmark-tables"


def docs_with_tables(doc: str, tables: str, section: str = DEFAULT_SECTION) -> str:
    """``doc`` with the text between ``<!-- section:start -->`` and ``<!-- section:end -->``
    replaced (the markers appended if absent)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start}\n{tables.rstrip()}\n{end}"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return doc.rstrip() + "\n\n" + block + "\n"


VERDICTS_START = "<!-- verdicts:start -->"
VERDICTS_END = "<!-- verdicts:end -->"
OURS = REFERENCE
# (dataset, split, router, metric, comparison, threshold or another router, what the issue asks)
TARGETS = (
    ("mt_bench", "cross", OURS, "apgr", ">", 0.802, "MT-Bench APGR above RouteLLM's best (0.802)"),
    ("mt_bench", "cross", OURS, "cpt_50", "<", 0.134, "MT-Bench CPT(50%) below RouteLLM's best (13.4%)"),
    ("mmlu", "grouped", OURS, "apgr", ">", 0.60, "MMLU subject-grouped APGR above 0.60"),
    ("llmrouter", "given", OURS, "aiq", ">", "task-prior", "LLMRouter AIQ above the per-task prior"),
    ("llmrouter", "given", OURS, "aiq", ">", "knn[hashed32]", "LLMRouter AIQ above kNN"),
    (
        "llmrouter",
        "given",
        OURS,
        "cost_saved_at_best_quality",
        ">=",
        0.30,
        "LLMRouter ≥ 30% cheaper than the best single model at its quality",
    ),
)


def _metric(document: dict, dataset: str, split: str, router: str, metric: str) -> dict | None:
    for evaluation in document["evaluations"]:
        if evaluation["dataset"] == dataset and evaluation["split"] == split:
            for entry in evaluation["routers"]:
                if entry["router"] == router:
                    return entry["metrics"].get(metric)
    return None


def render_verdicts(document: dict) -> str:
    """The issue's targets against the run: measured value [95% interval], the bar, met or not."""
    lines = ["| target | measured (ours) | bar | met |", "|---|---|---|---|"]
    for dataset, split, router, metric, comparison, bar, title in TARGETS:
        measured = _metric(document, dataset, split, router, metric)
        if measured is None:
            lines.append(f"| {title} | not in this run | | |")
            continue
        percent = metric.startswith(("cpt", "cost"))
        if isinstance(bar, str):
            other = _metric(document, dataset, split, bar, metric)
            bar_value = other["value"] if other else float("nan")
            bar_text = f"{bar}: {_cell(other, percent)}" if other else f"{bar}: not in this run"
        else:
            bar_value, bar_text = bar, (f"{bar * 100:.1f}%" if percent else f"{bar:.3f}")
        value = measured["value"]
        met = {">": value > bar_value, "<": value < bar_value, ">=": value >= bar_value}[comparison]
        met = met and math.isfinite(value)
        lines.append(
            f"| {title} | {_cell(measured, percent)} | {comparison} {bar_text} | {'yes' if met else '**no**'} |"
        )
    return "\n".join(lines)


def docs_with_verdicts(doc: str, verdicts: str) -> str:
    if VERDICTS_START not in doc or VERDICTS_END not in doc:
        return doc
    head, rest = doc.split(VERDICTS_START, 1)
    return head + f"{VERDICTS_START}\n{verdicts}\n{VERDICTS_END}" + rest.split(VERDICTS_END, 1)[1]
