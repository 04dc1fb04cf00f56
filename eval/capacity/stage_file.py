"""Read ``bench/results/stage_costs.json`` (written by ``bench/stage_costs.py``) into :class:`StageCosts`."""

from __future__ import annotations

import json
from pathlib import Path

from eval.capacity.inputs import StageCost, StageCosts

DEFAULT_STAGE_FILE = Path("bench/results/stage_costs.json")


def _stage(name: str, entry: dict, default_source: str) -> StageCost:
    cpu = entry.get("cpu_us") or {}
    wall = entry.get("wall_us") or {}
    return StageCost(
        name=name,
        cpu_us=cpu.get("p50"),
        wall_p50_us=wall.get("p50"),
        wall_p99_us=wall.get("p99"),
        what=entry.get("what", ""),
        source=entry.get("source") or default_source,
    )


def parse_stage_costs(document: dict) -> StageCosts:
    """The stage costs of a parsed ``stage_costs.json`` document."""
    generated_by = document.get("generated_by", "bench/stage_costs.py")
    measured = {name: _stage(name, entry, generated_by) for name, entry in document["measured"].items()}
    quoted = {name: _stage(name, entry, "not measured") for name, entry in document["quoted"].items()}
    return StageCosts(
        measured=measured,
        quoted=quoted,
        log_bytes_per_request=float(document["log_bytes_per_request"]["parquet_zstd"]),
        machine=document.get("machine", ""),
        command=document.get("command", ""),
        stale_quotes=tuple(document.get("stale_quotes", ())),
    )


def load_stage_costs(path: Path = DEFAULT_STAGE_FILE) -> StageCosts:
    return parse_stage_costs(json.loads(path.read_text(encoding="utf-8")))
