"""router_model.candidates: the vectorised expected cost is the catalog's per-request cost."""

from __future__ import annotations

import numpy as np

from features.catalog import load_catalog
from router_model.candidates import candidate_predictions, expected_costs


def test_expected_costs_equal_the_catalogs_request_cost_row_by_row():
    catalog = load_catalog()
    rng = np.random.default_rng(0)
    skus = rng.choice(catalog.names, 2000)
    prompt = rng.integers(0, 200_000, 2000)
    hit = rng.uniform(-0.2, 1.2, 2000)  # clipped to [0, 1]
    output = rng.normal(300, 400, 2000)  # negative predictions count as zero
    got = expected_costs(catalog, skus, prompt, hit, output)
    cached = prompt * np.clip(hit, 0, 1)
    want = [
        catalog.request_cost_usd(str(s), input_tokens=p - c, cached_tokens=c, output_tokens=max(o, 0.0))
        for s, p, c, o in zip(skus, prompt, cached, output, strict=True)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_a_cached_prompt_is_cheaper_and_no_candidates_cost_nothing():
    catalog = load_catalog()
    sku = catalog.names[0]
    cold, warm = expected_costs(
        catalog, [sku, sku], np.array([10_000, 10_000]), np.array([0.0, 0.9]), np.zeros(2)
    )
    assert warm < cold
    assert expected_costs(catalog, [], np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0,)


def test_candidate_predictions_read_the_policy_heads():
    heads = {
        "p_quality": np.array([0.7, 0.9]),
        "ttft_p90_ms": np.array([300.0, 800.0]),
        "ttft_p50_ms": np.array([1.0, 1.0]),
        "output_tokens": np.array([100.0, 200.0]),
    }
    first, second = candidate_predictions(["a", "b"], heads, np.array([0.001, 0.002]))
    assert (first.sku, first.p_quality, first.ttft_ms, first.cost_usd) == ("a", 0.7, 300.0, 0.001)
    assert second.ttft_ms == 800.0  # the p90 head, not the p50
