"""Feast feature services: the feature set one router model version reads."""

from feast import FeatureService

from features.schema import names_in_group

from views import sku_live_stats, tenant_profile, tenant_sku_history

router_v1 = FeatureService(
    name="router_v1",
    features=[
        tenant_profile[list(names_in_group("tenant"))],
        sku_live_stats,
        tenant_sku_history,
    ],
    description="store features of the router (features.schema groups tenant, sku_live, tenant_sku)",
)
