"""A real gateway on loopback in front of real simulated workers, for end-to-end tests.

Workers run in-process (``simulator.worker.running_worker``, one per SKU deployment) and the
gateway runs under uvicorn in a background thread with explicit settings; both bind free
loopback ports. Tenants come from a real tenant file with hashed keys. ``running_fleet(...,
replace=map)`` takes some (SKU, region) deployments from another map instead (real vLLM
servers), so one gateway serves a mix of simulated and vLLM endpoints.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import yaml
from fastapi import FastAPI

from features.catalog import load_catalog
from features.deployment import DeploymentMap, SkuDeployment, write_deployment
from serving.app import AppSettings, create_app
from serving.safe_mode import SafeModeSettings
from serving.settings import (
    AdmissionSettings,
    GatewaySettings,
    PolicySettings,
    TenantSettings,
    WorkerSettings,
)
from serving.tenants import KEY_HASH_SCHEME, hash_api_key
from simulator.worker import WorkerConfig, running_worker

SALT = "00112233445566778899aabbccddeeff"
US_KEY = "sk-sy-test-us-internal-0000000000000000"
EU_KEY = "sk-sy-test-eu-resident-000000000000000"
FREE_KEY = "sk-sy-test-free-tier-00000000000000000"

DEPLOYMENTS: tuple[tuple[str, str, int], ...] = (  # sku, region, replicas
    ("claude-opus-4-5", "us", 1),
    ("claude-sonnet-4-5", "us", 1),
    ("claude-haiku-4-5", "us", 2),
    ("claude-sonnet-4-5", "eu", 1),
    ("claude-haiku-4-5", "eu", 1),
)
EU_SKUS = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")


def write_tenants(path: Path) -> Path:
    catalog = load_catalog()
    document = {
        "version": 1,
        "key_hashing": {"scheme": KEY_HASH_SCHEME, "salt": SALT},
        "tenants": [
            {
                "tenant_id": "acme-us",
                "tier": "internal",
                "home_region": "us",
                "entitled_skus": list(catalog.names),
                "api_key_hashes": [hash_api_key(US_KEY, SALT)],
            },
            {
                "tenant_id": "eu-bank",
                "tier": "enterprise",
                "home_region": "eu",
                "residency_required": True,
                "entitled_skus": list(EU_SKUS),
                "api_key_hashes": [hash_api_key(EU_KEY, SALT)],
            },
            {
                "tenant_id": "hobbyist",
                "tier": "free",
                "home_region": "us",
                "entitled_skus": ["claude-haiku-4-5"],
                "quotas": {"requests_per_minute": 18, "tokens_per_minute": 1_000_000, "max_concurrency": 2},
                "api_key_hashes": [hash_api_key(FREE_KEY, SALT)],
            },
        ],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@dataclass
class Fleet:
    urls: dict[tuple[str, str], list[str]]
    deployment_file: Path


@contextlib.contextmanager
def running_fleet(
    folder: Path, *, time_scale: float = 0.01, replace: DeploymentMap | None = None
) -> Iterator[Fleet]:
    """Simulated workers for ``DEPLOYMENTS``, except the (SKU, region) pairs ``replace`` deploys."""
    urls: dict[tuple[str, str], list[str]] = {}
    replaced = {(d.sku, d.region) for d in replace.deployments} if replace is not None else set()
    with contextlib.ExitStack() as stack:
        seed = 0
        for sku, region, replicas in DEPLOYMENTS:
            if (sku, region) in replaced:
                continue
            for _ in range(replicas):
                seed += 1
                config = WorkerConfig(skus=(sku,), region=region, time_scale=time_scale, seed=seed)
                urls.setdefault((sku, region), []).append(stack.enter_context(running_worker(config)))
        deployment = DeploymentMap(
            deployments=tuple(
                SkuDeployment(sku=s, region=r, endpoints=tuple(u)) for (s, r), u in urls.items()
            )
        )
        if replace is not None:
            deployment = deployment.overridden_by(replace)
        yield Fleet(urls, write_deployment(deployment, folder / "deployment.json"))


def app_settings(
    folder: Path, fleet: Fleet, *, workers: dict[str, object] | None = None, **gateway: object
) -> AppSettings:
    options: dict[str, object] = {"mlruns": None, "log_dir": folder / "logs", "seed": 7, "router_poll_s": 0.5}
    options["gc_freeze"] = False  # the gateway runs inside pytest here: freezing would pin the tests' heap
    options.update(gateway)
    return AppSettings(
        gateway=GatewaySettings(**options),
        tenants=TenantSettings(file=write_tenants(folder / "tenants.yaml")),
        admission=AdmissionSettings(),
        policy=PolicySettings(),
        # a verdict file of the test's own: a stale .switchyard/drift/verdict.json in the cwd must not apply
        safe_mode=SafeModeSettings(verdict_file=folder / "drift" / "verdict.json"),
        workers=WorkerSettings(
            **{"deployment_file": fleet.deployment_file, "breaker_cooldown_s": 0.5, **(workers or {})}
        ),
    )


@contextlib.contextmanager
def running_gateway(settings: AppSettings) -> Iterator[str]:
    """Serve the gateway app from a thread on a free loopback port; yields its base URL."""
    with running_gateway_app(settings) as (url, _):
        yield url


@contextlib.contextmanager
def running_gateway_app(settings: AppSettings) -> Iterator[tuple[str, FastAPI]]:
    """``running_gateway`` that also yields the app (its ``state.runtime`` once started)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="gateway")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the gateway failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start in 60 s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
