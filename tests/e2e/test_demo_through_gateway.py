"""``switchyard demo`` against a real gateway and simulated workers: responses, a table, judge feedback.

A small simulated world stands in for a bootstrap (``demo_harness``: its manifest and
``tenants.parquet``, the gateway's tenant file and keys made from that registry as ``make serve``
makes them); the fleet has no APAC deployments, so only US and EU tenants get keys (the demo
skips the rest).
After the gateway shuts down, its event log must hold a judge feedback record for every score
the demo says was recorded, each for a request the gateway logged an outcome for.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from demo_harness import run_demo, write_bootstrap

from features.record_store import scan_records
from features.records import FeedbackRecord, OutcomeRecord


def test_demo_drives_traffic_and_the_judge_closes_the_loop(tmp_path: Path) -> None:
    bootstrap = write_bootstrap(tmp_path / "bootstrap")
    result = run_demo(bootstrap, tmp_path)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "judge: scoring 100% of answers as internal tenants of eu, us" in output
    assert re.search(
        r"^SKU\s+responses\s+share\s+cost/request\s+TTFT p50 ms\s+TTFT p99 ms\s+fallbacks$", output, re.M
    )
    final = output.rsplit("SKU", 1)[1]
    answered = int(re.search(r"^all\s+(\d+)\s+100\.0%", final, re.M).group(1))  # type: ignore[union-attr]
    recorded = int(re.search(r"judge feedback: (\d+) recorded, 0 failed", final).group(1))  # type: ignore[union-attr]
    assert answered >= 5
    assert recorded == answered  # --judge-share 1: every answer is judged
    assert re.search(r"^claude-(opus|sonnet|haiku)-4-5\s+\d+", final, re.M)

    logs = tmp_path / "logs"
    feedback = scan_records(logs, FeedbackRecord).collect()
    outcomes = scan_records(logs, OutcomeRecord).select("request_id", "status").collect()
    judged = feedback.filter(pl.col("source") == "judge")
    assert judged.height == recorded
    assert set(judged["tenant_id"]) <= {"claude-app-us", "claude-app-eu"}
    assert set(judged["score"].unique()) <= {0.0, 1.0}
    served = outcomes.filter(pl.col("status") == "ok")["request_id"]
    assert set(judged["request_id"]) <= set(served)
