"""The policy stage: size caps, deny rules, safety pre-checks and the residency filter, as pure functions.

Each check returns ``None`` (pass) or the :class:`~serving.errors.ApiError` the client gets,
with the status the Anthropic API uses for the same condition:

- body over ``max_body_bytes`` → 413 ``request_too_large`` (checked on Content-Length / while
  reading, before parsing: :func:`check_body_size`);
- too many messages, prompt over ``max_prompt_tokens`` → 400 ``invalid_request_error``
  (Anthropic answers "prompt is too long: N tokens > M maximum" with a 400);
- blocked tenant, model blocked for the tenant's tier → 403 ``permission_error``;
  a deny pattern matching the last user text → 400 ``invalid_request_error`` (the content,
  not the credential, is the problem); the rule's name is reported, never the matched text;
- unknown model → 404 ``not_found_error``; no SKU can serve the request → 403 (entitlement,
  region/residency) or 400 (context too small), see :func:`no_candidate_error`.

Safety pre-checks are in-process callables (:class:`SafetyPreCheck`) run in order after the
deny rules; each must answer in well under a millisecond (a remote classifier belongs
elsewhere). Deny patterns are Python regexes from operator config: keep them linear-time.

Residency: :func:`allowed_regions` gives the regions a request may be served in — the home
region only when ``residency_required``; otherwise the home region, then any configured
fallback regions. The result feeds ``features.eligibility`` as ``allowed_regions``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from features.catalog import Catalog
from features.eligibility import Exclusion, SkuVerdict
from serving.errors import ApiError, invalid_request, not_found, permission_denied, request_too_large
from serving.tenants import Tenant

AUTO_MODEL = "auto"


@dataclass(frozen=True)
class SizeCaps:
    """Defaults are the Anthropic Messages API's: 32 MB bodies, 100,000 messages; 1M-token prompts
    is the largest context window in the catalog (no SKU could take a longer one)."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_messages: int = 100_000
    max_prompt_tokens: int = 1_000_000


@dataclass(frozen=True, slots=True)
class DenyPattern:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class DenyRules:
    blocked_tenant_ids: frozenset[str] = frozenset()
    blocked_models_by_tier: Mapping[str, frozenset[str]] = field(default_factory=dict)
    patterns: tuple[DenyPattern, ...] = ()

    @classmethod
    def from_config(
        cls,
        *,
        blocked_tenant_ids: Iterable[str] = (),
        blocked_models_by_tier: Mapping[str, Iterable[str]] | None = None,
        deny_patterns: Mapping[str, str] | None = None,
    ) -> DenyRules:
        """Compile rules from plain config; a bad regex raises ValueError naming the rule."""
        compiled = []
        for name, source in (deny_patterns or {}).items():
            try:
                compiled.append(DenyPattern(name, re.compile(source)))
            except re.error as error:
                raise ValueError(f"deny pattern {name!r} is not a valid regex: {error}") from None
        return cls(
            blocked_tenant_ids=frozenset(blocked_tenant_ids),
            blocked_models_by_tier={
                tier: frozenset(models) for tier, models in (blocked_models_by_tier or {}).items()
            },
            patterns=tuple(compiled),
        )


@dataclass(frozen=True)
class ResidencyRules:
    """Regions a tenant *without* ``residency_required`` may spill into, by home region (ordered)."""

    fallback_regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """What the policy stage reads about a request (no HTTP objects)."""

    tenant: Tenant
    model: str  # a SKU name or AUTO_MODEL
    message_count: int
    prompt_tokens: int
    last_user_text: str


class SafetyPreCheck(Protocol):
    """A fast in-process safety classifier hook: ``None`` to pass, or the error to return."""

    def __call__(self, request: PolicyInput) -> ApiError | None: ...


def check_body_size(body_bytes: int, caps: SizeCaps) -> ApiError | None:
    if body_bytes > caps.max_body_bytes:
        return request_too_large(
            f"Request exceeds the maximum allowed number of bytes ({caps.max_body_bytes})."
        )
    return None


def check_request_size(request: PolicyInput, caps: SizeCaps) -> ApiError | None:
    if request.message_count > caps.max_messages:
        return invalid_request(
            f"messages: too many messages: {request.message_count} > {caps.max_messages} maximum"
        )
    if request.prompt_tokens > caps.max_prompt_tokens:
        return invalid_request(
            f"prompt is too long: {request.prompt_tokens} tokens > {caps.max_prompt_tokens} maximum"
        )
    return None


def check_deny_rules(request: PolicyInput, rules: DenyRules) -> ApiError | None:
    tenant = request.tenant
    if tenant.tenant_id in rules.blocked_tenant_ids:
        return permission_denied("This API key's tenant is blocked. Contact your administrator.")
    blocked_models = rules.blocked_models_by_tier.get(tenant.tier)
    if blocked_models and request.model in blocked_models:
        return permission_denied(f"model: {request.model} is not available on the {tenant.tier} tier")
    for rule in rules.patterns:
        if rule.pattern.search(request.last_user_text):
            return invalid_request(f"Request rejected by content policy rule {rule.name!r}.")
    return None


def check_policy(
    request: PolicyInput,
    caps: SizeCaps,
    rules: DenyRules,
    pre_checks: Sequence[SafetyPreCheck] = (),
) -> ApiError | None:
    """Size caps, then deny rules, then each safety pre-check; the first failure wins."""
    error = check_request_size(request, caps) or check_deny_rules(request, rules)
    if error is not None:
        return error
    for pre_check in pre_checks:
        error = pre_check(request)
        if error is not None:
            return error
    return None


def check_model_name(model: str, catalog: Catalog) -> ApiError | None:
    """404 for a model that is neither ``auto`` nor a SKU in the catalog."""
    if model == AUTO_MODEL or model in catalog:
        return None
    return not_found(f"model: {model}")


def allowed_regions(tenant: Tenant, rules: ResidencyRules) -> tuple[str, ...]:
    """Regions the tenant's requests may be served in, home region first."""
    home = tenant.home_region
    if tenant.residency_required:
        return (home,)
    return (home, *(region for region in rules.fallback_regions.get(home, ()) if region != home))


def no_candidate_error(
    model: str, verdicts: Sequence[SkuVerdict], *, regions: Sequence[str], prompt_tokens: int
) -> ApiError:
    """The error for a request no SKU may serve, from :func:`features.eligibility.eligibility_report`.

    For a pinned ``model`` the reasons are that SKU's own; for ``auto`` the request is too long
    if some entitled SKU in the allowed regions exists but none fits, else a permission error.
    """
    where = ", ".join(regions)
    if model != AUTO_MODEL:
        reasons = next((v.reasons for v in verdicts if v.sku.name == model), (Exclusion.NOT_ENTITLED,))
        if Exclusion.NOT_ENTITLED in reasons:
            return permission_denied(f"model: {model} is not enabled for this API key")
        if Exclusion.NOT_IN_REGION in reasons:
            return permission_denied(
                f"model: {model} is not deployed in the regions this API key may be served in ({where})"
            )
        window = next(v.sku.context_window for v in verdicts if v.sku.name == model)
        return invalid_request(
            f"prompt is too long for {model}: {prompt_tokens} tokens + max_tokens > {window} maximum"
        )
    reachable = [v for v in verdicts if v.reasons == (Exclusion.CONTEXT_TOO_SMALL,)]
    if reachable:
        window = max(v.sku.context_window for v in reachable)
        return invalid_request(f"prompt is too long: {prompt_tokens} tokens + max_tokens > {window} maximum")
    return permission_denied(
        f"no model enabled for this API key is deployed in the regions it may be served in ({where})"
    )
