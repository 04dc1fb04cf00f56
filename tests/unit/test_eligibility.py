import numpy as np
import pytest

from features.catalog import load_catalog
from features.eligibility import (
    Exclusion,
    clamp_max_tokens,
    context_fits,
    context_fits_matrix,
    eligibility_report,
    eligible_skus,
    serving_region,
)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def names(skus):
    return [sku.name for sku in skus]


def test_clamp_caps_max_tokens_at_the_sku_output_limit(catalog):
    haiku3 = catalog.get("claude-haiku-3")
    assert haiku3.max_output_tokens == 4096
    assert clamp_max_tokens(haiku3, 64_000) == 4096
    assert clamp_max_tokens(haiku3, 4096) == 4096
    assert clamp_max_tokens(haiku3, 100) == 100


def test_context_fit_uses_the_clamped_answer(catalog):
    haiku3 = catalog.get("claude-haiku-3")  # 200K window, 4096 output cap
    # a 64K max_tokens would not fit next to a 190K prompt, but the SKU only ever gets 4096
    assert context_fits(haiku3, prompt_tokens=195_000, max_tokens=64_000)
    assert context_fits(haiku3, prompt_tokens=200_000 - 4096, max_tokens=64_000)
    assert not context_fits(haiku3, prompt_tokens=200_000 - 4095, max_tokens=64_000)
    sonnet = catalog.get("claude-sonnet-4-5")  # 64K output cap
    assert not context_fits(sonnet, prompt_tokens=195_000, max_tokens=64_000)
    assert context_fits(sonnet, prompt_tokens=195_000, max_tokens=5_000)


def test_eligible_means_entitled_and_in_region_and_fits(catalog):
    entitled = {"claude-opus-4", "claude-sonnet-4-5", "claude-haiku-3", "claude-sonnet-3-5"}
    eu = eligible_skus(catalog, entitled=entitled, region="eu", prompt_tokens=1000, max_tokens=1000)
    assert names(eu) == ["claude-sonnet-4-5", "claude-haiku-3"]  # opus-4: us only; sonnet-3-5: apac only
    us = eligible_skus(catalog, entitled=entitled, region="us", prompt_tokens=1000, max_tokens=1000)
    assert names(us) == ["claude-opus-4", "claude-sonnet-4-5", "claude-haiku-3"]
    assert eligible_skus(catalog, entitled=(), region="us", prompt_tokens=10, max_tokens=10) == ()


def test_allowed_regions_add_to_the_home_region(catalog):
    entitled = set(catalog.names)
    home_only = eligible_skus(catalog, entitled=entitled, region="apac", prompt_tokens=10, max_tokens=10)
    assert "claude-opus-4" not in names(home_only)
    spill = eligible_skus(
        catalog, entitled=entitled, region="apac", prompt_tokens=10, max_tokens=10, allowed_regions=("us",)
    )
    assert "claude-opus-4" in names(spill)
    assert set(names(home_only)) < set(names(spill))
    # the home region is never dropped, even if the allowed list omits it
    omitted = eligible_skus(
        catalog, entitled=entitled, region="apac", prompt_tokens=10, max_tokens=10, allowed_regions=("eu",)
    )
    assert "claude-sonnet-3-5" in names(omitted)  # apac only


def test_report_gives_every_reason(catalog):
    report = eligibility_report(
        catalog,
        entitled={"claude-sonnet-4-5", "claude-sonnet-4-5-1m"},
        region="eu",
        prompt_tokens=300_000,
        max_tokens=1000,
    )
    by_name = {verdict.sku.name: verdict for verdict in report}
    assert len(report) == len(catalog)
    assert by_name["claude-sonnet-4-5"].reasons == (Exclusion.CONTEXT_TOO_SMALL,)
    assert by_name["claude-sonnet-4-5-1m"].reasons == (Exclusion.NOT_IN_REGION,)  # us only
    assert by_name["claude-opus-4"].reasons == (
        Exclusion.NOT_ENTITLED,
        Exclusion.NOT_IN_REGION,
        Exclusion.CONTEXT_TOO_SMALL,
    )
    assert by_name["claude-haiku-4-5"].reasons == (Exclusion.NOT_ENTITLED, Exclusion.CONTEXT_TOO_SMALL)
    assert not any(verdict.eligible for verdict in report)


def test_report_and_fast_path_agree_and_matrix_matches_scalar(catalog):
    rng = np.random.default_rng(7)
    skus = catalog.skus
    for _ in range(300):
        entitled = {sku.name for sku in skus if rng.random() < 0.6}
        region = ["us", "eu", "apac"][rng.integers(3)]
        extra = tuple(r for r in ("us", "eu", "apac") if rng.random() < 0.2)
        prompt = int(rng.choice([10, 5_000, 150_000, 196_000, 199_999, 400_000, 999_000]))
        max_tokens = int(rng.choice([1, 4096, 8192, 20_000, 64_000, 128_000]))
        kwargs = dict(
            entitled=entitled,
            region=region,
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            allowed_regions=extra,
        )
        fast = eligible_skus(catalog, **kwargs)
        report = eligibility_report(catalog, **kwargs)
        assert fast == tuple(verdict.sku for verdict in report if verdict.eligible)
        matrix = context_fits_matrix(
            np.array([sku.context_window for sku in skus]),
            np.array([sku.max_output_tokens for sku in skus]),
            np.array([prompt]),
            np.array([max_tokens]),
        )
        assert matrix[0].tolist() == [
            context_fits(sku, prompt_tokens=prompt, max_tokens=max_tokens) for sku in skus
        ]


def test_serving_region_prefers_the_home_region(catalog):
    opus41 = catalog.get("claude-opus-4-1")  # us, eu
    assert serving_region(opus41, ("eu", "us")) == "eu"
    assert serving_region(opus41, ("apac", "us")) == "us"
    assert serving_region(opus41, ("apac",)) is None
