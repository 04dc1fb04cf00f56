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

from eval.benchmarks.evaluate import Evaluation

TWO_MODEL_COLUMNS = (
    ("apgr", "APGR", False),
    ("cpt_50", "CPT(50%)", True),
    ("cpt_80", "CPT(80%)", True),
    ("cost_saved_at_95", "cost saved at 95% of strong", True),
)
MANY_MODEL_COLUMNS = (
    ("aiq", "AIQ", False),
    ("gain_at_best_cost", "gain at best-single cost", False),
    ("cost_saved_at_best_quality", "cost saved at best-single quality", True),
    ("oracle_gap", "gap to oracle", False),
    ("max_quality", "max quality", False),
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
        return "not reached"
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
        cells = [_cell(router["metrics"][key], percent) for key, _, percent in columns]
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


TABLES_START = "<!-- benchmark-tables:start -->"
TABLES_END = "<!-- benchmark-tables:end -->"


def docs_with_tables(doc: str, tables: str) -> str:
    """``doc`` with the text between the two table markers replaced (markers appended if absent)."""
    block = f"{TABLES_START}\n{tables.rstrip()}\n{TABLES_END}"
    if TABLES_START in doc and TABLES_END in doc:
        head, rest = doc.split(TABLES_START, 1)
        return head + block + rest.split(TABLES_END, 1)[1]
    return doc.rstrip() + "\n\n" + block + "\n"
