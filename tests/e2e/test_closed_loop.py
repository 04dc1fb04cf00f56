"""The closed loop, end to end: traffic through the gateway → its logs → the nightly training →
a new champion → the running gateway serves it without a restart.

Set-up mirrors ``make serve`` on a small scale: a bootstrap of the three days before today,
Feast tables applied and materialized, tenants with fresh keys, the simulated worker fleet in
its own processes, and the gateway (Feast store features and live-stats push on, no champion
yet: it starts on the static prior) writing its event log into the same log root. The demo
driver sends today's simulated traffic with the online judge's feedback. The training run
then holds out the latest logged day -- today, i.e. exactly the gateway's traffic, logged with
the gateway's own propensities -- for its evaluation and promotion gate, and trains on the
days before (tonight's traffic is tomorrow night's training data).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest
from gateway_harness import running_gateway

from eval.simulated_router import NotSimulated, SimulatedEvalConfig, run_simulated_evaluation
from features.catalog import load_catalog
from features.deployment import write_deployment
from features.record_store import scan_records
from features.records import DecisionRecord, FeedbackRecord, OutcomeRecord
from offline.feast_adapter import copy_repo, feast_cli, store_lookup
from serving.app import AppSettings
from serving.settings import FeatureStoreSettings, GatewaySettings, TenantSettings, WorkerSettings
from serving.tenant_registry import tenants_from_registry
from simulator.bootstrap import BootstrapConfig, run_bootstrap
from simulator.fleet import RunningFleet, free_port_range, plan_fleet
from switchyard_cli.demo import DemoConfig, run_demo
from switchyard_cli.demo_table import DemoStats
from switchyard_cli.demo_traffic import (
    Judge,
    TrafficQueue,
    judge_keys,
    load_keys,
    load_world,
    prepared_requests,
)
from training.feature_tables import write_feature_tables
from training.gate import GateRules
from training.pipeline import TrainConfig, format_summary, run_training

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def _wait_for_router(url: str, version: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        detail = httpx.get(f"{url}/readyz", timeout=10).json()
        if detail["router"]["registry_version"] == version:
            return detail
        assert time.monotonic() < deadline, f"the gateway still serves {detail['router']}"
        time.sleep(0.25)


def test_gateway_traffic_trains_a_champion_that_the_running_gateway_picks_up(tmp_path: Path) -> None:
    logs, repo, mlruns = tmp_path / "logs", tmp_path / "feature_repo", tmp_path / "mlruns"
    today = datetime.now(UTC).date()
    run_bootstrap(
        BootstrapConfig(
            days=3, requests_per_day=6_000, seed=0, out=logs, start=today - timedelta(days=3), n_tenants=400
        )
    )
    copy_repo(REPO, repo)
    write_feature_tables(logs, logs / "tenants.parquet", repo / "data")
    feast_cli(repo, "apply")
    feast_cli(repo, "materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    tenants = tenants_from_registry(
        logs / "tenants.parquet", tmp_path / "tenants.yaml", tmp_path / "keys.json", catalog=load_catalog()
    )

    catalog = load_catalog()
    plan = plan_fleet(catalog, processes=2, time_scale=0.01, base_port=free_port_range(40))
    fleet = RunningFleet(plan)
    fleet.start()
    try:
        fleet.wait_healthy(timeout_s=60)
        deployment = write_deployment(plan.deployment_map(), tmp_path / "deployment.json")
        settings = AppSettings(
            gateway=GatewaySettings(
                mlruns=mlruns, log_dir=logs, router_poll_s=0.5, policy_epsilon=0.3, seed=3, feature_store=True
            ),
            tenants=TenantSettings(file=tenants.config_path),
            workers=WorkerSettings(deployment_file=deployment),
            feast=FeatureStoreSettings(repo_path=repo),
        )
        with running_gateway(settings) as url:
            before = httpx.get(f"{url}/readyz", timeout=10).json()["router"]
            assert before["trained"] is False  # no champion yet: the static prior serves

            world = load_world(logs)
            keys = load_keys(tenants.keys_path)
            traffic = TrafficQueue(prepared_requests(world, keys, seed=11), depth=256)
            traffic.start(ready=64)
            judge = Judge(world, judge_keys(world, keys), share=1.0, seed=5)
            try:
                stats = asyncio.run(
                    run_demo(
                        DemoConfig(url=url, rate=100.0, concurrency=64, duration_s=20.0, drain_s=30.0),
                        traffic,
                        DemoStats(catalog, time.monotonic()),
                        judge,
                        refresh=lambda _: None,
                    )
                )
            finally:
                traffic.stop()
            summary = (stats.sent, stats.dropped, stats.completed, dict(stats.errors), stats.feedback_sent)
            assert stats.feedback_sent >= 150, summary
            time.sleep(2.5)  # two flush intervals: the event log's parts are on disk

            today_rows = pl.col("date") == today.isoformat()
            served = scan_records(logs, DecisionRecord).filter(today_rows).select(pl.len()).collect().item()
            judged = scan_records(logs, FeedbackRecord).filter(today_rows).select(pl.len()).collect().item()
            assert served >= sum(stats.responses.values()) and judged >= 150, (served, judged, summary)

            # The gate's rules are tested on their own (tests/unit/test_training_gate.py and
            # tests/integration/test_train_router.py); here it must let the loop close on ~1,500
            # judged requests, where the SNIPS standard error is about ±0.04. Measured on this
            # set-up, the first learned router and the ε-exploring static prior it replaces are
            # within that noise (0.641 ± 0.041 vs 0.664), so the test admits a candidate up to
            # 0.1 below the logging policy; every other check (evidence, log-loss, budget) holds.
            gate = GateRules(min_effective_samples=20, min_value_gain=-0.1)
            config = TrainConfig(logs=logs, feature_repo=repo, mlruns=mlruns, seed=0, gate=gate)
            result = run_training(config, progress=lambda line: None)
            assert result.verdict.promote, format_summary(result)
            # held out: today, the gateway's traffic -- not simulated: eval's simulated-world program
            # has no truth to judge the champion on, and says so
            with pytest.raises(NotSimulated, match="not simulated traffic"):
                run_simulated_evaluation(
                    SimulatedEvalConfig(logs=logs, mlruns=mlruns, feature_repo=repo), store_lookup(repo)
                )

            detail = _wait_for_router(url, result.version)
            assert detail["router"]["trained"] is True
            response = httpx.post(
                f"{url}/v1/messages",
                json={
                    "model": "auto",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "Hi [[sim out=8]]"}],
                },
                headers={"x-api-key": next(iter(keys.values()))},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-switchyard-router-version"] == result.router_version
    finally:
        fleet.stop()
    outcomes = scan_records(logs, OutcomeRecord).filter(pl.col("date") == today.isoformat()).collect()
    assert outcomes.group_by("request_id").len()["len"].max() == 1
