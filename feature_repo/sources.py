"""Feast sources: Parquet tables written by `switchyard feature-tables` from the event log.

Paths are relative to this folder; the job writes them under ``feature_repo/data/``.
``sku_live_stats`` also has a push source, through which serving updates the online store.
"""

from feast import FileSource, PushSource

tenant_profile_source = FileSource(
    name="tenant_profile_source",
    path="data/tenant_profile.parquet",
    timestamp_field="ts",
    description="tenant registry joined with rolling spend and quality, hourly",
)

sku_live_stats_source = FileSource(
    name="sku_live_stats_source",
    path="data/sku_live_stats.parquet",
    timestamp_field="ts",
    description="rolling per-(region, SKU) latency and errors from attempt records, per minute",
)

sku_live_stats_push = PushSource(name="sku_live_stats_push", batch_source=sku_live_stats_source)

tenant_sku_history_source = FileSource(
    name="tenant_sku_history_source",
    path="data/tenant_sku_history.parquet",
    timestamp_field="ts",
    description="per tenant × SKU quality and latency over 30 days, hourly",
)
