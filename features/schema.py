"""The feature schema: one ordered, versioned list of what the router sees.

Serving, training, the Feast repo and monitoring all import these definitions; a model
records ``FEATURE_SCHEMA_VERSION`` and serving refuses a model trained on another version.
Change the lists only with a version bump.

Features come in groups, by where their value comes from:

- ``request``   request-time, pure functions of the request (``features.request``): the named
  signals (token counts, flags, script, task type, tenant tier, surface), then the
  ``PROMPT_EMBEDDING_DIMS`` dimensions of the prompt embedding (``features.prompt_embedding``)
- ``candidate`` request × SKU, pure functions of the request and the catalog
- ``tenant``    Feast ``tenant_profile`` (slowly changing, per tenant)
- ``sku_live``  Feast ``sku_live_stats`` (rolling per-SKU latency and errors, pushed online)
- ``tenant_sku`` Feast ``tenant_sku_history`` (per tenant × SKU quality and latency)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FEATURE_SCHEMA_VERSION = "3"
"""History (docs/data-model.md, Versioning): 1 the first schema, ``task_type`` from keyword rules;
2 ``task_type`` from the trained task-type classifier (``features.task_classifier``);
3 the prompt embedding ``prompt_emb_00``.. appended to the request features
(``features.prompt_embedding``)."""

PROMPT_EMBEDDING_DIMS = 32
"""Dimensions of the prompt embedding: request features ``prompt_emb_00``..``prompt_emb_31``."""

TASK_TYPES: tuple[str, ...] = (
    "chat",
    "code",
    "summarization",
    "extraction",
    "reasoning",
    "creative",
    "math",
    "knowledge",
)
SCRIPTS: tuple[str, ...] = ("latin", "cjk", "cyrillic", "arabic", "other")
TENANT_TIERS: tuple[str, ...] = ("free", "pro", "enterprise", "internal")
SURFACES: tuple[str, ...] = ("api", "app")
SKU_TIERS: tuple[str, ...] = ("large", "medium", "small")

FeatureKind = Literal["numeric", "binary", "categorical"]
FeatureGroup = Literal["request", "candidate", "tenant", "sku_live", "tenant_sku"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    kind: FeatureKind
    group: FeatureGroup
    description: str
    categories: tuple[str, ...] = ()

    def encode(self, value: object) -> float:
        """The float a model sees: category index for categoricals, 0/1 for binaries."""
        if self.kind == "categorical":
            return float(self.categories.index(str(value)))
        if self.kind == "binary":
            return 1.0 if value else 0.0
        return float(value)  # type: ignore[arg-type]


def _spec(name: str, kind: FeatureKind, group: FeatureGroup, description: str, categories=()) -> FeatureSpec:
    return FeatureSpec(name, kind, group, description, tuple(categories))


SIGNAL_REQUEST_FEATURES: tuple[FeatureSpec, ...] = (
    _spec("prompt_tokens", "numeric", "request", "estimated input tokens, system prompt included"),
    _spec("system_tokens", "numeric", "request", "estimated tokens of the system prompt"),
    _spec("last_user_tokens", "numeric", "request", "estimated tokens of the last user turn"),
    _spec("turns", "numeric", "request", "number of user turns in the conversation"),
    _spec("max_tokens", "numeric", "request", "the client's max_tokens"),
    _spec("has_code", "binary", "request", "a code fence or code-like syntax in the last user turn"),
    _spec("has_tools", "binary", "request", "tools were offered"),
    _spec("stream", "binary", "request", "streaming response requested"),
    _spec("script", "categorical", "request", "dominant writing system of the last user turn", SCRIPTS),
    _spec("task_type", "categorical", "request", "task-type classifier output", TASK_TYPES),
    _spec("tenant_tier", "categorical", "request", "tier of the calling tenant", TENANT_TIERS),
    _spec("surface", "categorical", "request", "api or first-party app", SURFACES),
)
PROMPT_EMBEDDING_FEATURES: tuple[FeatureSpec, ...] = tuple(
    _spec(
        f"prompt_emb_{i:02d}", "numeric", "request", f"dimension {i} of the last user turn's prompt embedding"
    )
    for i in range(PROMPT_EMBEDDING_DIMS)
)
REQUEST_FEATURES: tuple[FeatureSpec, ...] = SIGNAL_REQUEST_FEATURES + PROMPT_EMBEDDING_FEATURES
"""The request features: the named signals of the request, then the prompt embedding."""

CANDIDATE_FEATURES: tuple[FeatureSpec, ...] = (
    _spec("sku_tier", "categorical", "candidate", "capability tier of the SKU", SKU_TIERS),
    _spec("sku_generation", "numeric", "candidate", "model generation, e.g. 4.5"),
    _spec("sku_long_context", "binary", "candidate", "SKU has a >200K context window"),
    _spec("sku_price_input", "numeric", "candidate", "list USD per 1M input tokens"),
    _spec("sku_price_output", "numeric", "candidate", "list USD per 1M output tokens"),
    _spec("expected_cache_hit", "numeric", "candidate", "expected share of prompt tokens served from cache"),
)

TENANT_FEATURES: tuple[FeatureSpec, ...] = (
    _spec("tenant_spend_7d_usd", "numeric", "tenant", "rolling 7-day serving spend"),
    _spec("tenant_quality_7d", "numeric", "tenant", "rolling 7-day share of good-quality feedback"),
)

SKU_LIVE_FEATURES: tuple[FeatureSpec, ...] = (
    _spec("sku_ttft_p50_1m_ms", "numeric", "sku_live", "TTFT p50 over the last minute"),
    _spec("sku_ttft_p95_1m_ms", "numeric", "sku_live", "TTFT p95 over the last minute"),
    _spec("sku_ttft_p95_15m_ms", "numeric", "sku_live", "TTFT p95 over the last 15 minutes"),
    _spec("sku_tpot_p50_15m_ms", "numeric", "sku_live", "time per output token p50 over 15 minutes"),
    _spec("sku_error_rate_15m", "numeric", "sku_live", "share of failed attempts over 15 minutes"),
    _spec("sku_queue_depth", "numeric", "sku_live", "waiting requests across the SKU's replicas"),
)

TENANT_SKU_FEATURES: tuple[FeatureSpec, ...] = (
    _spec(
        "tenant_sku_quality_30d",
        "numeric",
        "tenant_sku",
        "this tenant's share of good answers on this SKU, 30 days",
    ),
    _spec(
        "tenant_sku_ttft_p50_30d_ms", "numeric", "tenant_sku", "this tenant's TTFT p50 on this SKU, 30 days"
    ),
    _spec(
        "tenant_sku_requests_30d",
        "numeric",
        "tenant_sku",
        "this tenant's requests served by this SKU, 30 days",
    ),
)

STORE_FEATURES: tuple[FeatureSpec, ...] = TENANT_FEATURES + SKU_LIVE_FEATURES + TENANT_SKU_FEATURES
ALL_FEATURES: tuple[FeatureSpec, ...] = REQUEST_FEATURES + CANDIDATE_FEATURES + STORE_FEATURES
FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in ALL_FEATURES)
REQUEST_FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in REQUEST_FEATURES)
CANDIDATE_FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in CANDIDATE_FEATURES)
STORE_FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in STORE_FEATURES)
PROMPT_EMBEDDING_FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in PROMPT_EMBEDDING_FEATURES)


def names_in_group(group: FeatureGroup) -> tuple[str, ...]:
    return tuple(spec.name for spec in ALL_FEATURES if spec.group == group)
