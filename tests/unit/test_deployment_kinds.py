"""Deployment maps with simulated and vLLM endpoints side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features.deployment import (
    DeploymentError,
    DeploymentMap,
    Endpoint,
    SkuDeployment,
    load_deployment,
    write_deployment,
)


def test_bare_urls_are_simulated_and_kinds_survive_a_round_trip(tmp_path: Path) -> None:
    mixed = SkuDeployment(
        sku="claude-haiku-4-5",
        region="us",
        endpoints=("http://127.0.0.1:8100", {"url": "http://127.0.0.1:8200", "kind": "vllm"}),
    )
    assert mixed.endpoints == (
        Endpoint(url="http://127.0.0.1:8100", kind="simulated"),
        Endpoint(url="http://127.0.0.1:8200", kind="vllm"),
    )
    path = write_deployment(DeploymentMap(deployments=(mixed,)), tmp_path / "deployment.json")
    written = json.loads(path.read_text())["deployments"][0]["endpoints"]
    assert written == ["http://127.0.0.1:8100", {"url": "http://127.0.0.1:8200", "kind": "vllm"}]
    loaded = load_deployment(path)
    assert loaded.deployments == (mixed,)
    assert loaded.endpoints("claude-haiku-4-5", "us") == ("http://127.0.0.1:8100", "http://127.0.0.1:8200")


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    document = {
        "deployments": [{"sku": "a", "region": "us", "endpoints": [{"url": "http://x", "kind": "tgi"}]}]
    }
    path.write_text(json.dumps(document))
    with pytest.raises(DeploymentError):
        load_deployment(path)


def test_overridden_by_replaces_only_the_pairs_the_other_map_deploys() -> None:
    simulated = DeploymentMap(
        deployments=(
            SkuDeployment(sku="a", region="us", endpoints=("http://sim-a",)),
            SkuDeployment(sku="b", region="us", endpoints=("http://sim-b",)),
        )
    )
    vllm = DeploymentMap(
        deployments=(
            SkuDeployment(sku="a", region="us", endpoints=({"url": "http://vllm-a", "kind": "vllm"},)),
        )
    )
    merged = simulated.overridden_by(vllm)
    assert merged.endpoints("a", "us") == ("http://vllm-a",)
    assert merged.endpoints("b", "us") == ("http://sim-b",)
