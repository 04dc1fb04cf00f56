"""``switchyard demo`` against a real gateway and simulated workers, for end-to-end tests.

A small simulated world stands in for a bootstrap (its manifest and ``tenants.parquet``); the
gateway's tenant file and the keys file come from that registry through
``serving.tenant_registry.tenants_from_registry``, exactly as ``make serve`` makes them. The
fleet (``gateway_harness.DEPLOYMENTS``) has no APAC deployments, so only US and EU tenants get
keys.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from click.testing import Result
from gateway_harness import app_settings, running_fleet, running_gateway
from typer.testing import CliRunner

from features.catalog import load_catalog
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


def run_demo(bootstrap: Path, folder: Path) -> Result:
    """Three seconds of the demo at 8 requests/s for the bootstrap's US and EU tenants, through a
    gateway that logs under ``folder / "logs"``; the CLI's result once the gateway has shut down."""
    tenant_file, keys = tenants_served_by_the_fleet(bootstrap, folder)
    with running_fleet(folder) as fleet:
        settings = dataclasses.replace(app_settings(folder, fleet), tenants=TenantSettings(file=tenant_file))
        with running_gateway(settings) as url:
            args = ["demo", "--url", url, "--keys", str(keys), "--bootstrap", str(bootstrap)]
            args += ["--rate", "8", "--duration", "3", "--seed", "2", "--plain"]
            return CliRunner().invoke(app, args)
