"""Prometheus exposition of the worker's metrics."""

from __future__ import annotations

import re

from simulator.worker_metrics import TTFT_BUCKETS, Histogram, SkuGauges, SkuMetrics, render_metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-z_]+="[^"]*",?)+)\} (\S+)$')


def parse(text: str) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, f"{name} has no TYPE line"
        samples[(name, labels)] = float(value)
    return samples


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    histogram.observe(0.1)
    histogram.observe(0.5, count=3)
    histogram.observe(5.0)
    assert histogram.cumulative() == [("0.1", 1), ("1.0", 4), ("+Inf", 5)]
    assert histogram.sum == 0.1 + 1.5 + 5.0 and histogram.count == 5


def test_render_uses_vllm_names_and_model_label() -> None:
    metrics = SkuMetrics()
    metrics.prompt_tokens = 120
    metrics.prefix_cache_hits = 32
    metrics.request_success["length"] = 2
    metrics.ttft.observe(0.3)
    metrics.count_fault("overload")
    samples = parse(render_metrics([("m-1", metrics, SkuGauges(running=3, waiting=1, kv_cache_usage=0.25))]))
    label = 'model_name="m-1"'
    assert samples[("vllm:num_requests_running", label)] == 3
    assert samples[("vllm:num_requests_waiting", label)] == 1
    assert samples[("vllm:kv_cache_usage_perc", label)] == 0.25
    assert samples[("vllm:prompt_tokens_total", label)] == 120
    assert samples[("vllm:prefix_cache_hits_total", label)] == 32
    assert samples[("vllm:prefix_cache_queries_total", label)] == 0
    assert samples[("vllm:generation_tokens_total", label)] == 0
    assert samples[("vllm:request_success_total", f'{label},finished_reason="length"')] == 2
    assert samples[("switchyard_sim:faults_injected_total", f'{label},kind="overload"')] == 1
    assert samples[("vllm:time_to_first_token_seconds_count", label)] == 1
    assert samples[("vllm:time_to_first_token_seconds_bucket", f'{label},le="0.25"')] == 0
    assert samples[("vllm:time_to_first_token_seconds_bucket", f'{label},le="0.5"')] == 1
    assert samples[("vllm:time_to_first_token_seconds_bucket", f'{label},le="+Inf"')] == 1
    buckets = [key for key in samples if key[0] == "vllm:time_to_first_token_seconds_bucket"]
    assert len(buckets) == len(TTFT_BUCKETS) + 1
    for name in (
        "vllm:inter_token_latency_seconds_count",
        "vllm:time_per_output_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ):
        assert (name, label) in samples
