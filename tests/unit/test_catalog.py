from pathlib import Path

import pytest
import yaml

from features.catalog import REGIONS, CatalogError, load_catalog, parse_catalog

CATALOG_FILE = Path(__file__).resolve().parents[2] / "features" / "skus.yaml"


def raw_catalog() -> dict:
    return yaml.safe_load(CATALOG_FILE.read_text())


def test_packaged_catalog_has_twelve_skus_across_tiers_regions_and_generations():
    catalog = load_catalog()
    assert len(catalog) == 12
    assert {sku.tier for sku in catalog} == {"large", "medium", "small"}
    assert len({sku.generation for sku in catalog}) >= 3
    assert any(sku.long_context for sku in catalog)
    for region in REGIONS:
        assert catalog.in_region(region), region
    assert any(len(sku.regions) < len(REGIONS) for sku in catalog), "not every SKU should be everywhere"


def test_serving_cost_follows_the_gpu_time_formula():
    catalog = load_catalog()
    sku = catalog.get("claude-sonnet-4-5")
    expected = (
        catalog.gpu_hour_usd
        * sku.serving.gpus_per_replica
        / (sku.serving.prefill_tokens_per_s * catalog.fleet_utilization * 3600)
        * 1e6
    )
    assert catalog.serving_cost(sku).input == pytest.approx(expected)
    cost = catalog.request_cost_usd(sku, input_tokens=1_000_000, cached_tokens=0, output_tokens=0)
    assert cost == pytest.approx(expected)


def test_cached_tokens_are_cheaper_than_uncached_for_every_sku():
    catalog = load_catalog()
    for sku in catalog:
        cold = catalog.request_cost_usd(sku, input_tokens=5000, cached_tokens=0, output_tokens=300)
        warm = catalog.request_cost_usd(sku, input_tokens=1000, cached_tokens=4000, output_tokens=300)
        assert warm < cold, sku.name
        billed = catalog.request_list_price_usd(sku, input_tokens=5000, cached_tokens=0, output_tokens=300)
        assert billed == pytest.approx((5000 * sku.list_price.input + 300 * sku.list_price.output) / 1e6)


def test_the_blended_budget_binds_large_models_are_over_it_small_ones_under():
    catalog = load_catalog()
    typical = {"input_tokens": 2500, "cached_tokens": 2500, "output_tokens": 400}
    assert catalog.request_cost_usd("claude-opus-4-5", **typical) > 0.012
    assert (
        catalog.request_cost_usd("claude-sonnet-4-5", input_tokens=5000, cached_tokens=0, output_tokens=400)
        > 0.012
    )
    assert catalog.request_cost_usd("claude-sonnet-4-5", **typical) < 0.012
    assert catalog.request_cost_usd("claude-haiku-4-5", **typical) < 0.012


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (
            lambda raw: raw["skus"][3]["list_price"].__setitem__("input", -1),
            "skus[claude-sonnet-4-5].list_price.input",
        ),
        (lambda raw: raw["skus"][0]["latency"].pop("decode_tokens_per_s"), "latency.decode_tokens_per_s"),
        (lambda raw: raw["skus"][1].__setitem__("regions", ["us", "mars"]), "skus[claude-opus-4-1].regions"),
        (lambda raw: raw["skus"][2].__setitem__("name", raw["skus"][0]["name"]), "duplicate SKU name"),
        (lambda raw: raw["skus"][0]["serving"].__setitem__("gpus", 8), "serving.gpus"),
        (lambda raw: raw["skus"][0]["list_price"].__setitem__("cached_input", 99), "list_price"),
    ],
)
def test_a_bad_catalog_fails_with_a_message_naming_the_field(mutate, named):
    raw = raw_catalog()
    mutate(raw)
    with pytest.raises(CatalogError, match=r"invalid SKU catalog") as error:
        parse_catalog(raw, "test.yaml")
    assert named in str(error.value)


def test_unreadable_or_non_yaml_catalog_files_fail_clearly(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("skus: [unclosed")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(CatalogError, match="must be a mapping"):
        load_catalog(listing)


def test_latency_profile_is_monotone_in_tokens_and_load():
    sku = load_catalog().get("claude-haiku-4-5")
    assert sku.latency.ttft_ms(10_000) > sku.latency.ttft_ms(100) > sku.latency.ttft_base_ms
    assert sku.latency.time_per_output_token_ms(1.0) > sku.latency.time_per_output_token_ms(0.0)
