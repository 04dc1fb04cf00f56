"""``switchyard demo`` in the real-outcomes world against a real gateway and simulated workers.

A bootstrap's manifest names the real-outcomes world and its data (a slice of LLMRouter's files),
so the demo sends real prompts (each last user turn a real prompt and the ``[[sim ...]]`` marker
the simulated workers answer to) and its judge scores every answer with the real score of the
serving SKU's model. The gateway's event log must hold a judge record for every score recorded,
each for a request it logged a decision for.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl
from demo_harness import run_demo, write_bootstrap

from features.record_store import scan_records
from features.records import DecisionRecord, FeedbackRecord

# ../shared/routing_data beside the checkout, or SWITCHYARD_ROUTING_DATA
SHARED = Path(__file__).resolve().parents[3] / "shared" / "routing_data"
LLMROUTER = Path(os.environ.get("SWITCHYARD_ROUTING_DATA") or SHARED) / "llmrouter"


def write_slice(folder: Path, *, train: int, test: int) -> Path:
    """The first questions of LLMRouter's train and test files, with its prices."""
    folder.mkdir()
    for name, count in (("dcrouter_train.json", train), ("dcrouter_test.json", test)):
        (folder / name).write_text(json.dumps(json.loads((LLMROUTER / name).read_text())[:count]))
    (folder / "llm_candidates.json").write_bytes((LLMROUTER / "llm_candidates.json").read_bytes())
    return folder


def test_the_demo_sends_real_prompts_and_judges_them_by_real_scores(tmp_path: Path) -> None:
    data = write_slice(tmp_path / "outcomes", train=200, test=40)
    bootstrap = write_bootstrap(tmp_path / "bootstrap")
    manifest = json.loads((bootstrap / "_manifest.json").read_text())
    manifest |= {"world": "real-outcomes", "outcomes_data": str(data)}
    (bootstrap / "_manifest.json").write_text(json.dumps(manifest))
    result = run_demo(bootstrap, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"traffic: the real-outcomes world of {bootstrap}" in result.output
    final = result.output.rsplit("SKU", 1)[1]
    answered = int(re.search(r"^all\s+(\d+)\s+100\.0%", final, re.M).group(1))  # type: ignore[union-attr]
    recorded = int(re.search(r"judge feedback: (\d+) recorded, 0 failed", final).group(1))  # type: ignore[union-attr]
    assert answered >= 5 and recorded == answered

    logs = tmp_path / "logs"
    judged = scan_records(logs, FeedbackRecord).filter(pl.col("source") == "judge").collect()
    assert judged.height == recorded and set(judged["score"].to_list()) <= {0.0, 1.0}
    decisions = scan_records(logs, DecisionRecord).collect()
    assert set(judged["request_id"].to_list()) <= set(decisions["request_id"].to_list())
