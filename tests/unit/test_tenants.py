import json
import stat

import pyarrow.parquet as pq
import pytest
import yaml

from features.catalog import load_catalog
from features.schema import TENANT_TIERS
from serving.settings import TenantSettings
from serving.tenant_registry import tenants_from_registry
from serving.tenants import (
    DEFAULT_QUOTAS,
    DEVELOPMENT_API_KEY,
    DEVELOPMENT_TENANT_ID,
    TenantConfigError,
    TenantDirectory,
    development_directory,
    hash_api_key,
    load_tenant_directory,
    parse_tenant_file,
)
from simulator.bootstrap import write_tenant_registry
from simulator.world import TenantParams, build_world

SALT = "ab" * 32


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The bootstrap's tenant registry for a small simulated world."""
    world = build_world(3, tenant_params=TenantParams(n_tenants=60))
    path = tmp_path_factory.mktemp("registry") / "tenants.parquet"
    write_tenant_registry(world, path)
    return path


def document(**tenant_overrides):
    tenant = {
        "tenant_id": "acme",
        "tier": "pro",
        "home_region": "eu",
        "residency_required": True,
        "surface": "api",
        "entitled_skus": ["claude-haiku-4-5", "claude-sonnet-4-5"],
        "api_key_hashes": [hash_api_key("sk-sy-acme-key", SALT)],
    }
    tenant.update(tenant_overrides)
    return {"version": 1, "key_hashing": {"scheme": "hmac-sha256", "salt": SALT}, "tenants": [tenant]}


def test_a_hashed_key_authenticates_and_wrong_keys_do_not(catalog):
    directory = TenantDirectory(parse_tenant_file(document(), catalog=catalog))
    tenant = directory.authenticate("sk-sy-acme-key")
    assert tenant is not None and tenant.tenant_id == "acme"
    assert tenant.entitled_skus == frozenset({"claude-haiku-4-5", "claude-sonnet-4-5"})
    assert tenant.quotas == DEFAULT_QUOTAS["pro"]
    for wrong in ("sk-sy-acme-kez", "sk-sy-acme-key ", "", None, "x" * 10_000, "sk-sy-acmé-key"):
        assert directory.authenticate(wrong) is None
    assert directory.authenticate(hash_api_key("sk-sy-acme-key", SALT)) is None  # the hash is not a key
    assert not directory.accepts_development_key


def test_the_same_key_under_another_salt_does_not_authenticate(catalog):
    other = document()
    other["key_hashing"]["salt"] = "cd" * 32
    assert TenantDirectory(parse_tenant_file(other)).authenticate("sk-sy-acme-key") is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"tier": "platinum"}, "tenants[acme].tier: Value error, 'platinum' is not one of free"),
        ({"surface": "tv"}, "tenants[acme].surface"),
        ({"home_region": "mars"}, "tenants[acme].home_region"),
        (
            {"quotas": {"requests_per_minute": 0, "tokens_per_minute": 1, "max_concurrency": 1}},
            "tenants[acme].quotas.requests_per_minute",
        ),
        (
            {"api_key_hashes": ["sk-sy-plaintext-key"]},
            "tenants[acme].api_key_hashes[0]: Value error, must be a 64-hex HMAC-SHA256 digest",
        ),
        ({"entitled_skus": []}, "tenants[acme].entitled_skus"),
        ({"colour": "blue"}, "tenants[acme].colour"),
    ],
)
def test_a_bad_file_fails_naming_the_field(override, field):
    with pytest.raises(TenantConfigError) as raised:
        parse_tenant_file(document(**override), "tenants.yaml")
    assert f"tenants.yaml: invalid tenant file: {field}" in str(raised.value)


def test_unknown_skus_and_duplicates_are_rejected(catalog, tmp_path):
    with pytest.raises(TenantConfigError, match=r"tenants\[acme\]\.entitled_skus: unknown SKU 'claude-9'"):
        parse_tenant_file(document(entitled_skus=["claude-9"]), catalog=catalog)
    twice = document()
    twice["tenants"].append(dict(twice["tenants"][0]))
    with pytest.raises(TenantConfigError, match="duplicate tenant_id 'acme'"):
        parse_tenant_file(twice)
    empty = document()
    empty["tenants"] = []
    with pytest.raises(TenantConfigError, match="at least one tenant"):
        parse_tenant_file(empty)
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants: [unclosed")
    with pytest.raises(TenantConfigError, match="not valid YAML"):
        load_tenant_directory(path)
    with pytest.raises(TenantConfigError, match="cannot read"):
        load_tenant_directory(tmp_path / "missing.yaml")


def test_registry_becomes_a_config_with_hashed_keys_only(registry, catalog, tmp_path):
    config, keys_path = tmp_path / "tenants.yaml", tmp_path / "keys.json"
    result = tenants_from_registry(registry, config, keys_path, catalog=catalog)
    rows = pq.read_table(registry).to_pylist()
    keys = json.loads(keys_path.read_text())
    assert result.tenants == len(rows) == len(keys)
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600
    text = config.read_text()
    for key in keys.values():
        assert key.startswith("sk-sy-")
        assert key not in text
        assert key[6:20] not in text  # not even a fragment
    directory = load_tenant_directory(config, catalog)
    for row in rows:
        tenant = directory.authenticate(keys[row["tenant_id"]])
        assert tenant is not None and tenant.tenant_id == row["tenant_id"]
        assert (tenant.tier, tenant.home_region, tenant.surface) == (
            row["tier"],
            row["home_region"],
            row["surface"],
        )
        assert tenant.residency_required == bool(row["residency_required"])
        assert tenant.entitled_skus == frozenset(row["entitled_skus"])
        assert tenant.quotas == DEFAULT_QUOTAS[row["tier"]]
    assert {row["tier"] for row in rows} <= set(TENANT_TIERS)
    assert any(row["residency_required"] for row in rows)
    assert not directory.accepts_development_key
    # each run draws a new salt and new keys
    tenants_from_registry(registry, tmp_path / "b.yaml", tmp_path / "b.json", catalog=catalog)
    assert (
        yaml.safe_load(text)["key_hashing"]["salt"]
        != yaml.safe_load((tmp_path / "b.yaml").read_text())["key_hashing"]["salt"]
    )
    assert set(json.loads((tmp_path / "b.json").read_text()).values()).isdisjoint(keys.values())


def test_registry_import_refuses_to_overwrite(registry, catalog, tmp_path):
    config, keys_path = tmp_path / "tenants.yaml", tmp_path / "keys.json"
    keys_path.write_text("{}")
    with pytest.raises(FileExistsError):
        tenants_from_registry(registry, config, keys_path, catalog=catalog)
    assert not config.exists() and keys_path.read_text() == "{}"
    tenants_from_registry(registry, config, keys_path, catalog=catalog, overwrite=True)
    assert len(json.loads(keys_path.read_text())) == len(load_tenant_directory(config))


def test_development_tenant_is_opt_in(registry, catalog, tmp_path, monkeypatch):
    dev = development_directory(catalog).authenticate(DEVELOPMENT_API_KEY)
    assert dev is not None and dev.tenant_id == DEVELOPMENT_TENANT_ID
    assert dev.entitled_skus == frozenset(catalog.names)

    config = tmp_path / "tenants.yaml"
    tenants_from_registry(
        registry, config, tmp_path / "keys.json", catalog=catalog, include_development_tenant=True
    )
    assert DEVELOPMENT_API_KEY not in config.read_text()
    monkeypatch.delenv("SWITCHYARD_TENANTS_FILE", raising=False)
    monkeypatch.delenv("SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY", raising=False)
    with pytest.raises(TenantConfigError, match="no tenant file"):
        TenantSettings().directory(catalog)
    monkeypatch.setenv("SWITCHYARD_TENANTS_FILE", str(config))
    with pytest.raises(TenantConfigError, match="development tenant's well-known key"):
        TenantSettings().directory(catalog)
    monkeypatch.setenv("SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY", "true")
    directory = TenantSettings().directory(catalog)
    assert directory.accepts_development_key
    assert directory.authenticate(DEVELOPMENT_API_KEY).tenant_id == DEVELOPMENT_TENANT_ID
