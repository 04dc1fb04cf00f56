"""Typed settings for tenants, admission and the policy stage, read from ``SWITCHYARD_*`` variables.

One class per component, each with its own prefix; built in the composition root (the app's
lifespan), never at import. Collections are JSON in the environment, e.g.::

    SWITCHYARD_TENANTS_FILE=config/tenants.yaml
    SWITCHYARD_ADMISSION_MAX_IN_FLIGHT=8192
    SWITCHYARD_ADMISSION_SHED_FRACTION='{"free":0.6,"pro":0.8,"enterprise":1,"internal":1}'
    SWITCHYARD_POLICY_DENY_PATTERNS='{"no-secrets":"BEGIN (RSA|OPENSSH) PRIVATE KEY"}'
    SWITCHYARD_POLICY_FALLBACK_REGIONS='{"apac":["us"]}'

The defaults run on a laptop; the only secret-bearing setting (the tenant file) has no
default outside development: without ``SWITCHYARD_TENANTS_FILE`` the gateway starts only when
``SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true``, with the development tenant alone.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.catalog import REGIONS, Catalog
from serving.admission import AdmissionLimits
from serving.policy_checks import DenyRules, ResidencyRules, SizeCaps
from serving.tenants import TenantConfigError, TenantDirectory, development_directory, load_tenant_directory

_DEFAULT_LIMITS = AdmissionLimits()
_DEFAULT_CAPS = SizeCaps()


class TenantSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_TENANTS_", frozen=True)

    file: Path | None = Field(default=None, description="tenant YAML/JSON with hashed API keys")
    allow_development_key: bool = Field(
        default=False, description="development only: accept the well-known development key"
    )

    def directory(self, catalog: Catalog) -> TenantDirectory:
        """Load the tenant directory these settings describe (start-up work: reads a file)."""
        if self.file is None:
            if not self.allow_development_key:
                raise TenantConfigError(
                    "no tenant file: set SWITCHYARD_TENANTS_FILE, or "
                    "SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true for local development"
                )
            return development_directory(catalog)
        directory = load_tenant_directory(self.file, catalog)
        if directory.accepts_development_key and not self.allow_development_key:
            raise TenantConfigError(
                f"{self.file}: contains the development tenant's well-known key; refusing to serve it "
                "unless SWITCHYARD_TENANTS_ALLOW_DEVELOPMENT_KEY=true"
            )
        return directory


class AdmissionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_ADMISSION_", frozen=True)

    max_in_flight: int = Field(default=_DEFAULT_LIMITS.max_in_flight, ge=1)
    shed_fraction: dict[str, float] = Field(default_factory=lambda: dict(_DEFAULT_LIMITS.shed_fraction))
    request_burst_s: float = Field(default=_DEFAULT_LIMITS.request_burst_s, gt=0)
    token_burst_s: float = Field(default=_DEFAULT_LIMITS.token_burst_s, gt=0)
    overload_retry_after_s: float = Field(default=_DEFAULT_LIMITS.overload_retry_after_s, ge=0)
    concurrency_retry_after_s: float = Field(default=_DEFAULT_LIMITS.concurrency_retry_after_s, ge=0)

    @model_validator(mode="after")
    def _valid_limits(self) -> AdmissionSettings:
        self.limits()
        return self

    def limits(self) -> AdmissionLimits:
        return AdmissionLimits(
            max_in_flight=self.max_in_flight,
            shed_fraction=dict(self.shed_fraction),
            request_burst_s=self.request_burst_s,
            token_burst_s=self.token_burst_s,
            overload_retry_after_s=self.overload_retry_after_s,
            concurrency_retry_after_s=self.concurrency_retry_after_s,
        )


class PolicySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWITCHYARD_POLICY_", frozen=True)

    max_body_bytes: int = Field(default=_DEFAULT_CAPS.max_body_bytes, ge=1)
    max_messages: int = Field(default=_DEFAULT_CAPS.max_messages, ge=1)
    max_prompt_tokens: int = Field(default=_DEFAULT_CAPS.max_prompt_tokens, ge=1)
    blocked_tenant_ids: list[str] = Field(default_factory=list)
    blocked_models_by_tier: dict[str, list[str]] = Field(default_factory=dict)
    deny_patterns: dict[str, str] = Field(default_factory=dict, description="rule name → regex")
    fallback_regions: dict[str, list[str]] = Field(
        default_factory=dict, description="home region → regions non-residency tenants may spill into"
    )

    @model_validator(mode="after")
    def _valid_rules(self) -> PolicySettings:
        self.deny_rules()
        for home, regions in self.fallback_regions.items():
            unknown = [region for region in (home, *regions) if region not in REGIONS]
            if unknown:
                raise ValueError(f"fallback_regions: unknown region {unknown[0]!r}")
        return self

    def size_caps(self) -> SizeCaps:
        return SizeCaps(
            max_body_bytes=self.max_body_bytes,
            max_messages=self.max_messages,
            max_prompt_tokens=self.max_prompt_tokens,
        )

    def deny_rules(self) -> DenyRules:
        return DenyRules.from_config(
            blocked_tenant_ids=self.blocked_tenant_ids,
            blocked_models_by_tier=self.blocked_models_by_tier,
            deny_patterns=self.deny_patterns,
        )

    def residency_rules(self) -> ResidencyRules:
        return ResidencyRules(
            fallback_regions={home: tuple(regions) for home, regions in self.fallback_regions.items()}
        )
