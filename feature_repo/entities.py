"""Feast entities: who and what features are about."""

from feast import Entity, ValueType

tenant = Entity(
    name="tenant", join_keys=["tenant_id"], value_type=ValueType.STRING, description="an API tenant"
)
sku = Entity(
    name="sku", join_keys=["sku"], value_type=ValueType.STRING, description="a model SKU of the catalog"
)
region = Entity(
    name="region",
    join_keys=["region"],
    value_type=ValueType.STRING,
    description="a deployment region (us, eu, apac)",
)
