"""The capacity model: its arithmetic on a hand-checked case, how it scales, and the report it writes."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eval.capacity.inputs import Assumptions, ScaleTargets, StageCost, StageCosts
from eval.capacity.model import size
from eval.capacity.stage_file import load_stage_costs, parse_stage_costs
from features.catalog import Catalog, ServingProfile, load_catalog
from switchyard_cli.capacity import capacity_app

ROOT = Path(__file__).resolve().parents[2]
STAGE_FILE = ROOT / "bench" / "results" / "stage_costs.json"


def _stage(name: str, cpu: float | None = None, wall: float | None = None) -> StageCost:
    return StageCost(name, cpu, wall, None, "", "test")


def _stages() -> StageCosts:
    measured = {
        "decide_learned": _stage("decide_learned", 300.0),
        "decide_static": _stage("decide_static", 100.0),
    }
    quoted = {
        "gateway_cpu_per_request": _stage("gateway_cpu_per_request", 1000.0),
        "gateway_cpu_per_request_shared_state": _stage("gateway_cpu_per_request_shared_state", 2000.0),
        "gateway_cpu_per_request_in_memory": _stage("gateway_cpu_per_request_in_memory", 1500.0),
        "relay_stream_event": _stage("relay_stream_event", 10.0),
        "feast_read_live_miss_sqlite": _stage("feast_read_live_miss_sqlite", wall=1000.0),
        "redis_server_per_request": _stage("redis_server_per_request", 200.0),
    }
    return StageCosts(measured, quoted, log_bytes_per_request=500.0, machine="test", command="test")


def _one_sku_catalog() -> Catalog:
    real = load_catalog()
    sku = real.get("claude-haiku-3")
    serving = ServingProfile(
        gpus_per_replica=2,
        prefill_tokens_per_s=10_000,
        cached_tokens_per_s=100_000,
        decode_tokens_per_s=1_000,
    )
    sku = sku.model_copy(update={"serving": serving, "regions": ("us",)})
    return Catalog(version=1, gpu_hour_usd=2.0, fleet_utilization=0.5, skus=(sku,))


def test_a_hand_checked_case():
    # 1,000 req/s peak, peak/mean 2: 43.2M requests/day; 43.2G prompt tokens/day: 1,000 tokens each
    targets = ScaleTargets(peak_rps=1_000.0, streaming_share=0.5, prompt_tokens_per_day=43.2e9)
    assumptions = Assumptions(
        peak_to_mean=2.0,
        output_tokens_per_request=100.0,
        prompt_cache_hit_rate=0.5,
        routing_mix={"claude-haiku-3": 1.0},
        region_share={"us": 1.0},
        gpu_peak_utilization=0.5,
        min_replicas_per_deployment=0,
        api_core_utilization=0.6,
        cores_per_api_host=2,
        gpu_hour_usd=2.0,
    )
    report = size(targets, assumptions, _stages(), _one_sku_catalog())

    assert report.demand.requests_per_day == pytest.approx(43.2e6)
    assert report.demand.prompt_tokens_per_request == pytest.approx(1_000.0)
    # a replica-second per request: 500/10,000 + 500/100,000 + 100/1,000 = 0.155
    (deployment,) = report.gpus.deployments
    assert deployment.busy_replicas == pytest.approx(155.0)
    assert deployment.replicas == 310  # at 50% utilization
    assert report.gpus.gpus == 620  # 2 GPUs a replica
    # gateway CPU: 1,000 + (300 - 100) + (2,000 - 1,500) + 0.5 × (100/16 + 6) × 10 + 0.05 × 1,000
    assert report.api.cpu_us_per_request == pytest.approx(1811.25)
    assert report.api.busy_cores_peak == pytest.approx(1.81125)
    assert report.api.cores == 4  # 1.81 / 0.6 = 3.02, rounded up
    assert report.api.hosts == 2
    assert report.redis.busy_cores_peak == pytest.approx(0.2)
    assert report.redis.shards == 1
    assert report.logs.gb_per_day == pytest.approx(21.6)
    # catalog cost: $2/h × 2 GPUs / 0.5 utilization × 0.155 s
    assert report.cost.gpu_catalog_usd == pytest.approx(2.0 * 2 / 3600 / 0.5 * 0.155)
    # provisioned at 50% busy at peak with peak/mean 2 is 25% busy on average: twice the catalog's cost
    assert report.cost.gpu_provisioned_usd == pytest.approx(620 * 2.0 * 24 / 43.2e6)
    assert report.cost.gpu_provisioned_usd == pytest.approx(2 * report.cost.gpu_catalog_usd, rel=0.01)


def test_doubling_traffic_doubles_the_fleet_and_keeps_the_cost_per_request():
    catalog, stages = load_catalog(), _stages()
    one = size(ScaleTargets(), Assumptions(), stages, catalog)
    two = size(ScaleTargets(), Assumptions(traffic_multiplier=2.0), stages, catalog)
    assert two.demand.peak_rps == 2 * one.demand.peak_rps
    assert two.gpus.gpus == pytest.approx(2 * one.gpus.gpus, rel=0.01)
    assert two.api.cores == pytest.approx(2 * one.api.cores, rel=0.01)
    assert two.redis.shards == pytest.approx(2 * one.redis.shards, rel=0.05)
    assert two.logs.gb_per_day == pytest.approx(2 * one.logs.gb_per_day)
    assert two.cost.total_usd == pytest.approx(one.cost.total_usd, rel=0.01)


def test_more_prompt_cache_hits_need_fewer_gpus_and_cost_less():
    catalog, stages = load_catalog(), _stages()
    reports = [
        size(ScaleTargets(), Assumptions(prompt_cache_hit_rate=h), stages, catalog) for h in (0.0, 0.5, 0.9)
    ]
    assert reports[0].gpus.gpus > reports[1].gpus.gpus > reports[2].gpus.gpus
    assert reports[0].cost.total_usd > reports[1].cost.total_usd > reports[2].cost.total_usd


def test_a_mix_that_is_not_a_distribution_over_the_catalog_is_refused():
    catalog, stages = load_catalog(), _stages()
    with pytest.raises(ValueError, match="not in the catalog"):
        size(ScaleTargets(), Assumptions(routing_mix={"gpt-9": 1.0}), stages, catalog)
    with pytest.raises(ValueError, match="sum to 1"):
        size(ScaleTargets(), Assumptions(routing_mix={"claude-haiku-4-5": 0.5}), stages, catalog)


def test_the_measured_stage_file_has_every_stage_the_model_reads():
    stages = load_stage_costs(STAGE_FILE)
    report = size(
        ScaleTargets(),
        replace(Assumptions(), gpu_hour_usd=load_catalog().gpu_hour_usd),
        stages,
        load_catalog(),
    )
    assert math.isfinite(report.cost.total_usd) and report.api.cpu_us_per_request > 0
    assert stages.stale_quotes == ()
    document = json.loads(STAGE_FILE.read_text(encoding="utf-8"))
    del document["quoted"]["redis_server_per_request"]
    with pytest.raises(KeyError, match="redis_server_per_request"):
        size(ScaleTargets(), Assumptions(), parse_stage_costs(document), load_catalog())


def test_the_report_fills_the_marked_sections_and_keeps_the_prose(tmp_path):
    doc = tmp_path / "review.md"
    doc.write_text(
        "# Review\n\nprose before\n\n<!-- capacity-cost:start -->\nold\n<!-- capacity-cost:end -->\n\nprose after\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        capacity_app, ["report", "--stages", str(STAGE_FILE), "--write-docs", str(doc)]
    )
    assert result.exit_code == 0, result.output
    text = doc.read_text(encoding="utf-8")
    assert "prose before" in text and "prose after" in text and "\nold\n" not in text
    assert (
        "**blended cost per request**"
        in text.split("<!-- capacity-cost:start -->")[1].split("<!-- capacity-cost:end -->")[0]
    )
    assert "<!-- capacity-gpus:start -->" in text  # absent sections are appended


def test_the_design_review_tables_are_the_models_current_output(tmp_path, monkeypatch):
    copy = tmp_path / "design-review.md"
    shutil.copy(ROOT / "docs" / "design-review.md", copy)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(capacity_app, ["report", "--write-docs", str(copy)])
    assert result.exit_code == 0, result.output
    assert copy.read_text(encoding="utf-8") == (ROOT / "docs" / "design-review.md").read_text(
        encoding="utf-8"
    ), "docs/design-review.md is stale: run `switchyard capacity report --write-docs docs/design-review.md`"
