"""Prometheus metrics of the simulated worker, with vLLM's names, labels and buckets.

Written by hand rather than with prometheus_client: the hot path only does integer and
float additions on plain attributes and one ``bisect`` per histogram observation, and the
text exposition is rendered when ``GET /metrics`` is scraped. Every sample carries the
``model_name`` label, as vLLM's do, so one scrape of a multi-SKU worker separates the SKUs.

Times are wall-clock seconds as the worker experiences them (so with ``time_scale`` 0.01
they are 100 times smaller than the latency profile's), which is what a gateway that
measures its own TTFT also sees.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

# Bucket bounds as in vLLM's v1 metrics (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TOKEN_TIME_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort")


class Histogram:
    """A fixed-bucket histogram; ``observe(value, count)`` records ``count`` equal samples."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, count: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count
        self.count += count

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        rows: list[tuple[str, int]] = []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            rows.append((repr(float(bound)), running))
        rows.append(("+Inf", running + self.counts[-1]))
        return rows


@dataclass(slots=True)
class SkuMetrics:
    """Counters and histograms of one SKU served by this worker."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    request_success: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED_REASONS, 0))
    faults: dict[str, int] = field(default_factory=dict)
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    inter_token: Histogram = field(default_factory=lambda: Histogram(TOKEN_TIME_BUCKETS))
    time_per_output_token: Histogram = field(default_factory=lambda: Histogram(TOKEN_TIME_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))

    def count_fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1


@dataclass(frozen=True, slots=True)
class SkuGauges:
    running: int
    waiting: int
    kv_cache_usage: float


_COUNTERS = (
    ("vllm:prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens"),
    ("vllm:generation_tokens", "Number of generation tokens processed.", "generation_tokens"),
    ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
     "prefix_cache_queries"),
    ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", "prefix_cache_hits"),
)  # fmt: skip
_HISTOGRAMS = (
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", "ttft"),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", "inter_token"),
    ("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.",
     "time_per_output_token"),
    ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", "e2e"),
)  # fmt: skip


def _label(model: str) -> str:
    return model.replace("\\", "\\\\").replace('"', '\\"')


def render_metrics(samples: Iterable[tuple[str, SkuMetrics, SkuGauges]]) -> str:
    """Prometheus text exposition (format 0.0.4) for every SKU of the worker."""
    rows = [(f'model_name="{_label(model)}"', metrics, gauges) for model, metrics, gauges in samples]
    out: list[str] = []
    gauges_spec = (
        ("vllm:num_requests_running", "Number of requests in model execution batches.", "running"),
        ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "waiting"),
        ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "kv_cache_usage"),
    )
    for name, help_text, attribute in gauges_spec:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        out.extend(
            f"{name}{{{labels}}} {float(getattr(gauges, attribute))!r}\n" for labels, _, gauges in rows
        )
    for name, help_text, attribute in _COUNTERS:
        out.append(f"# HELP {name}_total {help_text}\n# TYPE {name}_total counter\n")
        out.extend(
            f"{name}_total{{{labels}}} {float(getattr(metrics, attribute))!r}\n"
            for labels, metrics, _ in rows
        )
    name = "vllm:request_success"
    out.append(
        f"# HELP {name}_total Count of successfully processed requests.\n# TYPE {name}_total counter\n"
    )
    for labels, metrics, _ in rows:
        for reason, count in metrics.request_success.items():
            out.append(f'{name}_total{{{labels},finished_reason="{reason}"}} {float(count)!r}\n')
    name = "switchyard_sim:faults_injected"
    out.append(f"# HELP {name}_total Faults injected by the simulated worker.\n# TYPE {name}_total counter\n")
    for labels, metrics, _ in rows:
        for kind, count in sorted(metrics.faults.items()):
            out.append(f'{name}_total{{{labels},kind="{kind}"}} {float(count)!r}\n')
    for name, help_text, attribute in _HISTOGRAMS:
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} histogram\n")
        for labels, metrics, _ in rows:
            histogram: Histogram = getattr(metrics, attribute)
            for bound, cumulative in histogram.cumulative():
                out.append(f'{name}_bucket{{{labels},le="{bound}"}} {float(cumulative)!r}\n')
            out.append(f"{name}_sum{{{labels}}} {histogram.sum!r}\n")
            out.append(f"{name}_count{{{labels}}} {float(histogram.count)!r}\n")
    return "".join(out)
