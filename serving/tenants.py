"""Tenants and API keys for the embedded default: a YAML (or JSON) file, keys stored only as hashes.

The file (``version: 1``) holds a per-file random salt and the tenants; each tenant names
its tier, home region, residency flag, surface, entitled SKUs, quotas (defaults per tier) and
the HMAC-SHA256 digests of its API keys under the salt. A plaintext key never appears in the
file: a key-hash entry that is not a 64-hex digest fails validation.

Why a fast keyed hash rather than bcrypt/scrypt: API keys are 256-bit random strings, not
passwords, so even with a leaked file there is nothing to brute-force, while authentication
runs on every request (a slow KDF would cost milliseconds of the 5–10 ms budget). The salt is
random per file, so digests from two files never match and no precomputed table applies.

:meth:`TenantDirectory.authenticate` is O(1): one HMAC, one dict probe on the first 8 bytes of
the digest, then :func:`hmac.compare_digest` of the full 32 bytes. The dict probe can only leak
timing about digest bytes of the attacker's own guesses, which they cannot compute without
the salt; the full comparison is constant time.

:func:`serving.tenant_registry.tenants_from_registry` turns the bootstrap's ``tenants.parquet`` into such a file with
freshly generated keys, written once to a separate key file (mode 0600) for the demo.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from features.catalog import Catalog, Region
from features.schema import SURFACES, TENANT_TIERS
from features.validation import describe_validation_error

KEY_HASH_SCHEME = "hmac-sha256"
API_KEY_PREFIX = "sk-sy-"
MAX_API_KEY_CHARS = 256
_INDEX_BYTES = 8

# Development only: the fixed tenant and key `make serve` prints so curl works on a fresh
# machine. Never accepted unless the directory was built with it (see development_directory).
DEVELOPMENT_TENANT_ID = "dev"
DEVELOPMENT_API_KEY = "sk-sy-dev-local-development-only"
_DEVELOPMENT_SALT = "73776974636879617264646576656c6f706d656e74"


class TenantConfigError(ValueError):
    """The tenant file is missing, unparsable or fails validation (the message names the field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quotas(_Strict):
    """Per-tenant limits enforced by admission (per gateway replica for the in-process backend)."""

    requests_per_minute: int = Field(ge=1)
    tokens_per_minute: int = Field(ge=1, description="prompt + max_tokens reserved, reconciled to usage")
    max_concurrency: int = Field(ge=1)


DEFAULT_QUOTAS: Mapping[str, Quotas] = MappingProxyType(
    {
        "free": Quotas(requests_per_minute=50, tokens_per_minute=100_000, max_concurrency=5),
        "pro": Quotas(requests_per_minute=1_000, tokens_per_minute=2_000_000, max_concurrency=50),
        "enterprise": Quotas(requests_per_minute=20_000, tokens_per_minute=40_000_000, max_concurrency=1_000),
        "internal": Quotas(
            requests_per_minute=2_000_000, tokens_per_minute=10_000_000_000, max_concurrency=100_000
        ),
    }
)

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _key_hash(value: str) -> str:
    if not _HEX_DIGEST.fullmatch(value):
        raise ValueError("must be a 64-hex HMAC-SHA256 digest of the key, never the key itself")
    return value


KeyHash = Annotated[str, AfterValidator(_key_hash)]


class TenantEntry(_Strict):
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    tier: str
    home_region: Region
    residency_required: bool = False
    surface: str = "api"
    entitled_skus: tuple[str, ...] = Field(min_length=1)
    quotas: Quotas | None = None  # None: DEFAULT_QUOTAS[tier]
    api_key_hashes: tuple[KeyHash, ...] = ()

    @field_validator("tier", "surface")
    @classmethod
    def _known_value(cls, value: str, info: ValidationInfo) -> str:
        allowed = TENANT_TIERS if info.field_name == "tier" else SURFACES
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value


class KeyHashing(_Strict):
    scheme: Literal["hmac-sha256"] = KEY_HASH_SCHEME
    salt: str = Field(pattern=r"^(?:[0-9a-f]{2}){16,64}$", description="hex; random per file")


class TenantFile(_Strict):
    version: Literal[1] = 1
    key_hashing: KeyHashing
    tenants: tuple[TenantEntry, ...]

    @model_validator(mode="after")
    def _unique(self) -> TenantFile:
        if not self.tenants:
            raise ValueError("tenants: at least one tenant is needed")
        seen_ids: set[str] = set()
        seen_hashes: set[str] = set()
        for entry in self.tenants:
            if entry.tenant_id in seen_ids:
                raise ValueError(f"duplicate tenant_id {entry.tenant_id!r}")
            seen_ids.add(entry.tenant_id)
            for key_hash in entry.api_key_hashes:
                if key_hash in seen_hashes:
                    raise ValueError(f"tenant {entry.tenant_id!r}: an API key hash is listed twice")
                seen_hashes.add(key_hash)
        return self


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant as the request path sees it."""

    tenant_id: str
    tier: str
    home_region: str
    residency_required: bool
    surface: str
    entitled_skus: frozenset[str]
    quotas: Quotas

    @classmethod
    def from_entry(cls, entry: TenantEntry) -> Tenant:
        return cls(
            tenant_id=entry.tenant_id,
            tier=entry.tier,
            home_region=entry.home_region,
            residency_required=entry.residency_required,
            surface=entry.surface,
            entitled_skus=frozenset(entry.entitled_skus),
            quotas=entry.quotas or DEFAULT_QUOTAS[entry.tier],
        )


def hash_api_key(api_key: str, salt_hex: str) -> str:
    """Hex HMAC-SHA256 of the key under the file's salt (what the file stores)."""
    return hmac.new(bytes.fromhex(salt_hex), api_key.encode("utf-8"), hashlib.sha256).hexdigest()


class TenantDirectory:
    """Tenants by id and by API key; built once at start-up, read-only afterwards."""

    def __init__(self, config: TenantFile) -> None:
        self._salt = bytes.fromhex(config.key_hashing.salt)
        self._by_id: dict[str, Tenant] = {}
        self._by_key: dict[bytes, tuple[bytes, Tenant]] = {}
        for entry in config.tenants:
            tenant = Tenant.from_entry(entry)
            self._by_id[tenant.tenant_id] = tenant
            for key_hash in entry.api_key_hashes:
                digest = bytes.fromhex(key_hash)
                if digest[:_INDEX_BYTES] in self._by_key:  # 2^-64 per pair; regenerate one of the keys
                    raise TenantConfigError(f"tenants[{entry.tenant_id}]: API key hash prefix collision")
                self._by_key[digest[:_INDEX_BYTES]] = (digest, tenant)

    def authenticate(self, api_key: str | None) -> Tenant | None:
        """The tenant owning ``api_key``, or None (missing, malformed or unknown key)."""
        if not api_key or len(api_key) > MAX_API_KEY_CHARS or not api_key.isascii():
            return None
        digest = hmac.new(self._salt, api_key.encode("ascii"), hashlib.sha256).digest()
        found = self._by_key.get(digest[:_INDEX_BYTES])
        if found is None or not hmac.compare_digest(found[0], digest):
            return None
        return found[1]

    def get(self, tenant_id: str) -> Tenant | None:
        return self._by_id.get(tenant_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_id.values())

    @property
    def accepts_development_key(self) -> bool:
        """True when the well-known development key opens a tenant: never acceptable in production."""
        return self.authenticate(DEVELOPMENT_API_KEY) is not None


def parse_tenant_file(raw: object, source: str = "<tenants>", catalog: Catalog | None = None) -> TenantFile:
    """Validate a parsed tenant document; with a ``catalog``, entitled SKUs must exist in it."""
    if not isinstance(raw, dict):
        raise TenantConfigError(
            f"{source}: the tenant file must be a mapping with 'key_hashing' and 'tenants'"
        )
    try:
        config = TenantFile.model_validate(raw)
    except ValidationError as error:
        raise TenantConfigError(
            f"{source}: invalid tenant file: {describe_validation_error(error, raw, name_key='tenant_id')}"
        ) from None
    if catalog is not None:
        for entry in config.tenants:
            unknown = [name for name in entry.entitled_skus if name not in catalog]
            if unknown:
                raise TenantConfigError(
                    f"{source}: tenants[{entry.tenant_id}].entitled_skus: unknown SKU {unknown[0]!r}"
                )
    return config


def load_tenant_file(path: Path | str, catalog: Catalog | None = None) -> TenantFile:
    """Read and validate a tenant file (YAML; JSON is valid YAML)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise TenantConfigError(f"{path}: cannot read the tenant file: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TenantConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_tenant_file(raw, str(path), catalog)


def load_tenant_directory(path: Path | str, catalog: Catalog | None = None) -> TenantDirectory:
    return TenantDirectory(load_tenant_file(path, catalog))


def development_entry(catalog: Catalog, salt_hex: str = _DEVELOPMENT_SALT) -> TenantEntry:
    """The development tenant (internal tier, US, every SKU) keyed by :data:`DEVELOPMENT_API_KEY`."""
    return TenantEntry(
        tenant_id=DEVELOPMENT_TENANT_ID,
        tier="internal",
        home_region="us",
        surface="api",
        entitled_skus=catalog.names,
        api_key_hashes=(hash_api_key(DEVELOPMENT_API_KEY, salt_hex),),
    )


def development_directory(catalog: Catalog, extra: Iterable[TenantEntry] = ()) -> TenantDirectory:
    """Development only (``make serve`` without a tenant file): the dev tenant plus ``extra``."""
    hashing = KeyHashing(salt=_DEVELOPMENT_SALT)
    return TenantDirectory(TenantFile(key_hashing=hashing, tenants=(development_entry(catalog), *extra)))
