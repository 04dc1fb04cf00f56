"""The SKU catalog: the one definition of which model SKUs exist, where, and what they cost.

Loaded from YAML (``features/skus.yaml`` by default) and validated on load; a bad catalog
raises :class:`CatalogError` with a message that names the offending field. Everything that
needs to know about SKUs (router candidates, worker fleet, simulator, cost accounting) reads
a :class:`Catalog` built here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.validation import describe_validation_error

Region = Literal["us", "eu", "apac"]
REGIONS: tuple[Region, ...] = ("us", "eu", "apac")
Tier = Literal["large", "medium", "small"]
TIERS: tuple[Tier, ...] = ("large", "medium", "small")

_MTOK = 1_000_000


class CatalogError(ValueError):
    """The catalog file is missing, unparsable or fails validation."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListPrice(_Strict):
    """Published API price in USD per 1M tokens."""

    input: float = Field(gt=0)
    cached_input: float = Field(ge=0)
    output: float = Field(gt=0)

    @model_validator(mode="after")
    def _cached_cheaper(self) -> ListPrice:
        if self.cached_input > self.input:
            raise ValueError("cached_input price must not exceed the input price")
        return self


class ServingProfile(_Strict):
    """GPU-time assumptions for one replica, from which serving cost is derived."""

    gpus_per_replica: int = Field(ge=1, le=64)
    prefill_tokens_per_s: float = Field(gt=0, description="aggregate uncached prefill throughput")
    cached_tokens_per_s: float = Field(gt=0, description="aggregate throughput of prefix-cached tokens")
    decode_tokens_per_s: float = Field(gt=0, description="aggregate decode throughput at a full batch")


class LatencyProfile(_Strict):
    """Per-replica latency model used by the simulated worker and as the router's prior."""

    ttft_base_ms: float = Field(gt=0)
    prefill_tokens_per_s: float = Field(gt=0)
    decode_tokens_per_s: float = Field(gt=0)
    max_num_seqs: int = Field(ge=1)
    batch_slowdown: float = Field(ge=0, le=5)

    def ttft_ms(self, uncached_prompt_tokens: int, queue_wait_ms: float = 0.0) -> float:
        """Time to first token on this profile for a prompt with that many uncached tokens."""
        return self.ttft_base_ms + queue_wait_ms + 1000.0 * uncached_prompt_tokens / self.prefill_tokens_per_s

    def time_per_output_token_ms(self, batch_occupancy: float = 0.0) -> float:
        """Inter-token time when ``batch_occupancy`` (0..1) of the batch slots are busy."""
        occupancy = min(max(batch_occupancy, 0.0), 1.0)
        return 1000.0 / self.decode_tokens_per_s * (1.0 + self.batch_slowdown * occupancy)


class ServingCost(_Strict):
    """Derived serving cost in USD per 1M tokens."""

    input: float
    cached_input: float
    output: float


class Sku(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    family: str
    generation: str
    tier: Tier
    context_window: int = Field(ge=1024)
    max_output_tokens: int = Field(ge=1)
    regions: tuple[Region, ...] = Field(min_length=1)
    list_price: ListPrice
    serving: ServingProfile
    latency: LatencyProfile

    @field_validator("regions")
    @classmethod
    def _unique_regions(cls, regions: tuple[Region, ...]) -> tuple[Region, ...]:
        if len(set(regions)) != len(regions):
            raise ValueError("regions must not repeat")
        return regions

    @property
    def long_context(self) -> bool:
        return self.context_window > 200_000

    def deployed_in(self, region: str) -> bool:
        return region in self.regions


class Catalog(_Strict):
    version: int = Field(ge=1)
    gpu_hour_usd: float = Field(gt=0)
    fleet_utilization: float = Field(gt=0, le=1)
    skus: tuple[Sku, ...] = Field(min_length=1)

    @field_validator("skus")
    @classmethod
    def _unique_names(cls, skus: tuple[Sku, ...]) -> tuple[Sku, ...]:
        seen: set[str] = set()
        for sku in skus:
            if sku.name in seen:
                raise ValueError(f"duplicate SKU name {sku.name!r}")
            seen.add(sku.name)
        return skus

    @cached_property
    def _by_name(self) -> dict[str, Sku]:
        return {sku.name: sku for sku in self.skus}

    def __iter__(self) -> Iterator[Sku]:  # type: ignore[override]
        return iter(self.skus)

    def __len__(self) -> int:
        return len(self.skus)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sku.name for sku in self.skus)

    def get(self, name: str) -> Sku:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown SKU {name!r}") from None

    def in_region(self, region: str) -> tuple[Sku, ...]:
        return tuple(sku for sku in self.skus if sku.deployed_in(region))

    @cached_property
    def _serving_costs(self) -> dict[str, ServingCost]:
        return {sku.name: self._derive_serving_cost(sku) for sku in self.skus}

    def serving_cost(self, sku: Sku | str) -> ServingCost:
        """USD per 1M tokens of GPU time at the catalog's GPU price and fleet utilization."""
        name = sku if isinstance(sku, str) else sku.name
        cost = self._serving_costs.get(name)
        if cost is None or (not isinstance(sku, str) and sku is not self._by_name.get(name)):
            return self._derive_serving_cost(self.get(sku) if isinstance(sku, str) else sku)
        return cost  # computed once per catalog: the request path prices every candidate

    def _derive_serving_cost(self, sku: Sku) -> ServingCost:
        usd_per_second = self.gpu_hour_usd * sku.serving.gpus_per_replica / 3600.0 / self.fleet_utilization

        def per_mtok(tokens_per_s: float) -> float:
            return usd_per_second / tokens_per_s * _MTOK

        return ServingCost(
            input=per_mtok(sku.serving.prefill_tokens_per_s),
            cached_input=per_mtok(sku.serving.cached_tokens_per_s),
            output=per_mtok(sku.serving.decode_tokens_per_s),
        )

    def request_cost_usd(
        self, sku: Sku | str, *, input_tokens: int, cached_tokens: int, output_tokens: int
    ) -> float:
        """Serving cost of one request; ``input_tokens`` excludes the ``cached_tokens``."""
        cost = self.serving_cost(sku)
        return (
            input_tokens * cost.input + cached_tokens * cost.cached_input + output_tokens * cost.output
        ) / _MTOK

    def request_list_price_usd(
        self, sku: Sku | str, *, input_tokens: int, cached_tokens: int, output_tokens: int
    ) -> float:
        """What the request is billed at list price; ``input_tokens`` excludes the ``cached_tokens``."""
        price = (self.get(sku) if isinstance(sku, str) else sku).list_price
        return (
            input_tokens * price.input + cached_tokens * price.cached_input + output_tokens * price.output
        ) / _MTOK


def parse_catalog(raw: object, source: str = "<catalog>") -> Catalog:
    """Validate an already-parsed catalog document."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: the catalog must be a mapping with 'version' and 'skus'")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as error:
        raise CatalogError(
            f"{source}: invalid SKU catalog: {describe_validation_error(error, raw, name_key='name')}"
        ) from None


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file; the packaged ``skus.yaml`` when ``path`` is None."""
    if path is None:
        text = resources.files("features").joinpath("skus.yaml").read_text(encoding="utf-8")
        source = "features/skus.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise CatalogError(f"{path}: cannot read the SKU catalog: {error.strerror}") from None
        source = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: not valid YAML: {error}") from None
    return parse_catalog(raw, source)
