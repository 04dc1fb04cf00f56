"""Feast feature views. Field names come from `features.schema`, the one feature schema."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from features.schema import names_in_group

from entities import region, sku, tenant
from sources import sku_live_stats_push, tenant_profile_source, tenant_sku_history_source


def _numeric(group: str) -> list[Field]:
    return [Field(name=name, dtype=Float64) for name in names_in_group(group)]  # type: ignore[arg-type]


tenant_profile = FeatureView(
    name="tenant_profile",
    entities=[tenant],
    ttl=timedelta(days=8),
    schema=[
        Field(name="tier", dtype=String),
        Field(name="home_region", dtype=String),
        Field(name="residency_required", dtype=Int64),
        *_numeric("tenant"),
    ],
    source=tenant_profile_source,
    online=True,
)

sku_live_stats = FeatureView(
    name="sku_live_stats",
    entities=[sku, region],
    ttl=timedelta(minutes=30),
    schema=_numeric("sku_live"),
    source=sku_live_stats_push,
    online=True,
)

tenant_sku_history = FeatureView(
    name="tenant_sku_history",
    entities=[tenant, sku],
    ttl=timedelta(days=31),
    schema=_numeric("tenant_sku"),
    source=tenant_sku_history_source,
    online=True,
)
