"""``switchyard demo`` against a real gateway and simulated workers: responses, a table, judge feedback.

A small simulated world stands in for a bootstrap (its manifest and ``tenants.parquet``); the
gateway's tenant file and the keys file come from that registry through
``serving.tenant_registry.tenants_from_registry``, exactly as ``make serve`` makes them. The
fleet has no APAC deployments, so only US and EU tenants get keys (the demo skips the rest).
After the gateway shuts down, its event log must hold a judge feedback record for every score
the demo says was recorded, each for a request the gateway logged an outcome for.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from gateway_harness import app_settings, running_fleet, running_gateway
from typer.testing import CliRunner

from features.catalog import load_catalog
from features.record_store import scan_records
from features.records import FeedbackRecord, OutcomeRecord
from serving.settings import TenantSettings
from serving.tenant_registry import tenants_from_registry
from simulator.bootstrap import write_tenant_registry
from simulator.world import TenantParams, build_world
from switchyard_cli.main import app

WORLD_SEED, N_TENANTS = 3, 30


def write_bootstrap(folder: Path) -> Path:
    """What the demo reads of a bootstrap: the manifest (seed, tenant count) and the tenant registry."""
    folder.mkdir()
    world = build_world(WORLD_SEED, tenant_params=TenantParams(n_tenants=N_TENANTS))
    write_tenant_registry(world, folder / "tenants.parquet")
    (folder / "_manifest.json").write_text(json.dumps({"seed": WORLD_SEED, "n_tenants": N_TENANTS}))
    return folder


def tenants_served_by_the_fleet(bootstrap: Path, folder: Path) -> tuple[Path, Path]:
    registry = pq.read_table(bootstrap / "tenants.parquet")
    local = registry.filter(pc.is_in(registry["home_region"], pa.array(["us", "eu"])))
    pq.write_table(local, folder / "r.parquet")
    made = tenants_from_registry(
        folder / "r.parquet", folder / "registry-tenants.yaml", folder / "keys.json", catalog=load_catalog()
    )
    return made.config_path, made.keys_path


def test_demo_drives_traffic_and_the_judge_closes_the_loop(tmp_path: Path) -> None:
    bootstrap = write_bootstrap(tmp_path / "bootstrap")
    tenant_file, keys = tenants_served_by_the_fleet(bootstrap, tmp_path)
    with running_fleet(tmp_path) as fleet:
        settings = dataclasses.replace(
            app_settings(tmp_path, fleet), tenants=TenantSettings(file=tenant_file)
        )
        with running_gateway(settings) as url:
            args = ["demo", "--url", url, "--keys", str(keys), "--bootstrap", str(bootstrap)]
            args += ["--rate", "8", "--duration", "3", "--seed", "2", "--plain"]
            result = CliRunner().invoke(app, args)
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
