"""Reading vLLM's load signals out of a Prometheus exposition (the simulated worker's and vLLM's)."""

from __future__ import annotations

from serving.worker_probe import EndpointHealth, ScrapedLoad, parse_vllm_metrics
from simulator.worker_metrics import SkuGauges, SkuMetrics, render_metrics

# the shape vLLM 0.32 serves: an ``engine`` label, ``_created`` samples, label-less comments
VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="claude-haiku-4-5"} 3.0
vllm:num_requests_running{engine="1",model_name="claude-haiku-4-5"} 2.0
vllm:num_requests_waiting{engine="0",model_name="claude-haiku-4-5"} 1.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="claude-haiku-4-5",reason="capacity"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="claude-haiku-4-5"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="claude-haiku-4-5"} 0.5
vllm:prefix_cache_queries_total{engine="0",model_name="claude-haiku-4-5"} 2601.0
vllm:prefix_cache_queries_created{engine="0",model_name="claude-haiku-4-5"} 1.795750591393299e+09
vllm:prefix_cache_hits_total{engine="0",model_name="claude-haiku-4-5"} 1152.0
vllm:prompt_tokens_total{engine="0",model_name="claude-haiku-4-5"} 2601.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="claude-haiku-4-5",source="local_compute"} 1449.0
vllm:generation_tokens_total{engine="0",model_name="claude-haiku-4-5"} 45.0 1700000000000
vllm:generation_tokens_total{engine="0",model_name="other-sku"} 5.0
vllm:num_requests_running 9.0
python_gc_objects_collected_total{generation="0"} 1.0
vllm:num_requests_running{engine="0",model_name="broken"} not-a-number
"""


def test_vllm_exposition_sums_engines_and_keeps_the_max_kv_use() -> None:
    loads = parse_vllm_metrics(VLLM_TEXT)
    assert set(loads) == {"claude-haiku-4-5", "other-sku"}
    haiku = loads["claude-haiku-4-5"]
    assert haiku == ScrapedLoad(
        running=5.0,
        waiting=1.0,  # num_requests_waiting_by_reason is another metric
        kv_cache_usage=0.5,
        prefix_cache_queries=2601.0,
        prefix_cache_hits=1152.0,
        prompt_tokens=2601.0,  # not the by_source breakdown
        generation_tokens=45.0,  # a trailing timestamp is not the value
    )
    assert haiku.prefix_cache_hit_rate == 1152.0 / 2601.0
    assert loads["other-sku"].generation_tokens == 5.0 and loads["other-sku"].prefix_cache_hit_rate is None


def test_the_simulated_workers_exposition_reads_the_same() -> None:
    haiku, sonnet = SkuMetrics(), SkuMetrics()
    haiku.prompt_tokens, haiku.generation_tokens = 1000, 200
    haiku.prefix_cache_queries, haiku.prefix_cache_hits = 1000, 640
    haiku.ttft.observe(0.2)
    text = render_metrics(
        [
            ("claude-haiku-4-5", haiku, SkuGauges(running=4, waiting=2, kv_cache_usage=0.125)),
            ("claude-sonnet-4-5", sonnet, SkuGauges(running=0, waiting=0, kv_cache_usage=0.0)),
        ]
    )
    loads = parse_vllm_metrics(text)
    assert loads["claude-haiku-4-5"] == ScrapedLoad(4.0, 2.0, 0.125, 1000.0, 640.0, 1000.0, 200.0)
    assert loads["claude-sonnet-4-5"] == ScrapedLoad()


def test_recent_hit_rate_is_over_the_last_two_scrapes() -> None:
    state = EndpointHealth("http://w")
    assert state.recent_hit_rate("m") is None
    state.previous = {"m": ScrapedLoad(prefix_cache_queries=100, prefix_cache_hits=10)}
    state.loads = {"m": ScrapedLoad(prefix_cache_queries=300, prefix_cache_hits=160)}
    assert state.recent_hit_rate("m") == 150 / 200
    state.previous = state.loads
    assert state.recent_hit_rate("m") is None  # no new queries
