"""Fleet planning and the deployment map file."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.catalog import REGIONS, load_catalog
from features.deployment import (
    DeploymentError,
    DeploymentMap,
    SkuDeployment,
    load_deployment,
    write_deployment,
)
from simulator.fleet import plan_fleet

CATALOG = load_catalog()


def test_every_sku_is_reachable_in_every_region_it_is_deployed_in() -> None:
    plan = plan_fleet(CATALOG, processes=3, base_port=9000)
    deployment = plan.deployment_map()
    for sku in CATALOG:
        for region in REGIONS:
            endpoints = deployment.endpoints(sku.name, region)
            assert bool(endpoints) == sku.deployed_in(region), (sku.name, region)
    ports = [endpoint.config.port for endpoint in plan.endpoints]
    assert len(set(ports)) == len(ports) and min(ports) == 9000
    assert {endpoint.process for endpoint in plan.endpoints} == {0, 1, 2}
    assert all(endpoint.config.skus == (endpoint.sku,) for endpoint in plan.endpoints)
    fault_seeds = [endpoint.config.fault_seed for endpoint in plan.endpoints]
    assert len(set(fault_seeds)) == len(fault_seeds)


def test_region_filter_and_replicas() -> None:
    plan = plan_fleet(CATALOG, regions=["eu"], replicas=2, processes=1)
    deployment = plan.deployment_map()
    assert set(deployment.skus_in("eu")) == {sku.name for sku in CATALOG.in_region("eu")}
    assert deployment.skus_in("us") == ()
    assert all(len(d.endpoints) == 2 for d in deployment.deployments)
    assert plan.process_configs(0) == [endpoint.config for endpoint in plan.endpoints]


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        plan_fleet(CATALOG, regions=["mars"])
    with pytest.raises(ValueError, match="base port"):
        plan_fleet(CATALOG, base_port=65530)


def test_deployment_map_round_trip(tmp_path: Path) -> None:
    deployment = DeploymentMap(
        time_scale=0.5,
        deployments=(SkuDeployment(sku="a", region="us", endpoints=("http://127.0.0.1:1",)),),
    )
    path = write_deployment(deployment, tmp_path / "nested" / "deployment.json")
    loaded = load_deployment(path)
    assert loaded == deployment
    assert loaded.endpoints("a", "us") == ("http://127.0.0.1:1",)
    assert loaded.endpoints("a", "eu") == ()


def test_missing_or_invalid_deployment_map(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="cannot read"):
        load_deployment(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 2, "deployments": []}')
    with pytest.raises(DeploymentError, match="invalid deployment map"):
        load_deployment(bad)
