"""Turning the bootstrap's tenant registry into a tenant config with fresh API keys.

The config holds only key hashes; the plaintext keys go once to a separate file (mode 0600)
for the demo and are never stored anywhere else.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from features.catalog import Catalog
from serving.tenants import (
    API_KEY_PREFIX,
    DEFAULT_QUOTAS,
    DEVELOPMENT_API_KEY,
    DEVELOPMENT_TENANT_ID,
    KEY_HASH_SCHEME,
    Quotas,
    development_entry,
    hash_api_key,
    parse_tenant_file,
)


def new_api_key() -> str:
    """A fresh API key: the prefix plus 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class RegistryImport:
    tenants: int
    config_path: Path
    keys_path: Path


def tenants_from_registry(
    registry_path: Path | str,
    config_out: Path | str,
    keys_out: Path | str,
    *,
    catalog: Catalog | None = None,
    quotas: Mapping[str, Quotas] = DEFAULT_QUOTAS,
    include_development_tenant: bool = False,
    overwrite: bool = False,
    generate_key: Callable[[], str] = new_api_key,
) -> RegistryImport:
    """A tenant file from the bootstrap's ``tenants.parquet``, one fresh key per tenant.

    The config gets the key hashes under a new random salt and each tier's ``quotas`` written
    out (edit them per tenant there); the plaintext keys go to ``keys_out`` only, as JSON
    ``{tenant_id: key}`` with mode 0600. With ``include_development_tenant`` the development
    tenant and its well-known key are added (for ``make serve``; never for a real deployment).
    """
    config_path, keys_path = Path(config_out), Path(keys_out)
    existing = [path for path in (config_path, keys_path) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; pass overwrite=True to replace it")
    rows = pq.read_table(registry_path).to_pylist()
    salt_hex = secrets.token_hex(32)
    keys: dict[str, str] = {}
    entries: list[dict[str, object]] = []
    for row in rows:
        key = generate_key()
        keys[row["tenant_id"]] = key
        entries.append(
            {
                "tenant_id": row["tenant_id"],
                "tier": row["tier"],
                "home_region": row["home_region"],
                "residency_required": bool(row["residency_required"]),
                "surface": row["surface"],
                "entitled_skus": list(row["entitled_skus"]),
                "quotas": quotas[row["tier"]].model_dump(),
                "api_key_hashes": [hash_api_key(key, salt_hex)],
            }
        )
    if include_development_tenant:
        if catalog is None:
            raise ValueError("the development tenant is entitled to every SKU: pass the catalog")
        entries.append(development_entry(catalog, salt_hex).model_dump(mode="json", exclude_none=True))
        keys[DEVELOPMENT_TENANT_ID] = DEVELOPMENT_API_KEY
    document = {
        "version": 1,
        "key_hashing": {"scheme": KEY_HASH_SCHEME, "salt": salt_hex},
        "tenants": entries,
    }
    parse_tenant_file(document, str(registry_path), catalog)  # never write a file we would refuse to load
    header = (
        f"# Switchyard tenants generated from {registry_path}; API keys are stored as HMAC-SHA256 hashes.\n"
    )
    text = header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120)
    _write_atomically(keys_path, (json.dumps(keys, indent=1) + "\n").encode(), mode=0o600)
    _write_atomically(config_path, text.encode(), mode=0o644)
    return RegistryImport(tenants=len(entries), config_path=config_path, keys_path=keys_path)
