"""The capacity model's results as markdown tables, one per marked section of ``docs/design-review.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from eval.capacity.inputs import SOURCES, StageCosts
from eval.capacity.model import CapacityReport


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _usd(value: float) -> str:
    return f"${value:.5f}" if value >= 1e-4 else f"${value:.1e}"


def _us(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def demand_table(report: CapacityReport) -> str:
    d, t = report.demand, report.targets
    rows = [
        ("peak requests/s", _n(d.peak_rps), "the brief (× the traffic multiplier)"),
        ("mean requests/s", _n(d.mean_rps), f"peak / peak-to-mean {report.assumptions.peak_to_mean}"),
        ("requests/day", f"{d.requests_per_day / 1e9:,.2f} B", "mean × 86,400 s"),
        ("prompt tokens/request", _n(d.prompt_tokens_per_request), f"{t.prompt_tokens_per_day / 1e12:g}T tokens/day / requests/day"),
        ("output tokens/request", _n(d.output_tokens_per_request), "assumption"),
        ("streaming requests/s at peak", _n(d.streaming_rps_peak), f"{t.streaming_share:.0%} of the peak"),
        ("open streams at peak", _n(d.open_streams_peak), "Little's law: streaming req/s × mean stream duration (catalog latency profiles, no queueing)"),
    ]  # fmt: skip
    return _table(("quantity", "value", "how"), rows)


def stage_table(stages: StageCosts) -> str:
    rows = [
        (name, _us(s.cpu_us), _us(s.wall_p50_us), _us(s.wall_p99_us), s.what, "measured in process")
        for name, s in stages.measured.items()
    ]
    rows += [
        (name, _us(s.cpu_us), _us(s.wall_p50_us), _us(s.wall_p99_us), s.what, s.source)
        for name, s in stages.quoted.items()
    ]
    text = _table(("stage", "CPU µs p50", "wall µs p50", "wall µs p99", "what", "source"), rows)
    stale = (
        f" Stale quotes (source changed since copied): {', '.join(stages.stale_quotes)}."
        if stages.stale_quotes
        else ""
    )
    return f"{text}\n\nMachine: {stages.machine}. Regenerate: `{stages.command}`.{stale}"  # fmt: skip


def sizing_table(report: CapacityReport) -> str:
    api, redis, fs, logs = report.api, report.redis, report.feature_store, report.logs
    a = report.assumptions
    regions = list(a.region_share)
    components = _table(
        ("gateway CPU per request", "µs", "source"),
        [(c.name, _n(c.cpu_us), c.source) for c in api.components] + [("**total**", f"**{_n(api.cpu_us_per_request)}**", "")],
    )  # fmt: skip
    rows = [
        ("API gateway cores", *(api.cores_by_region[r] for r in regions), _n(api.cores),
         f"{_n(api.busy_cores_peak)} busy at peak / {a.api_core_utilization:.0%} target"),
        (f"API hosts ({a.cores_per_api_host} cores)", *(api.hosts_by_region[r] for r in regions), _n(api.hosts), ""),
        ("Redis shards (shared state)", *(redis.shards_by_region[r] for r in regions), _n(redis.shards),
         f"{_us(redis.server_cpu_us_per_request)} µs server CPU per request; {_n(redis.busy_cores_peak)} busy cores / {a.redis_shard_utilization:.0%}"),
        ("feature-store nodes", *(fs.nodes_by_region[r] for r in regions), _n(fs.nodes),
         f"{_n(fs.reads_per_s_peak)} reads/s, {_n(fs.rows_per_s_peak)} rows/s at peak"),
        ("GPUs", *(_n(report.gpus.gpus_by_region().get(r, 0)) for r in regions), _n(report.gpus.gpus), "by SKU below"),
    ]  # fmt: skip
    sizing = _table(("component", *regions, "total", "basis"), rows)
    log_rows = [
        ("bytes per request (decision + attempt + outcome, zstd Parquet)", _n(logs.bytes_per_request)),
        ("peak write bandwidth", f"{logs.peak_mb_per_s:,.1f} MB/s"),
        ("written per day", f"{logs.gb_per_day:,.0f} GB"),
        (f"stored per day (× {a.log_replication:g} copies)", f"{logs.stored_tb_per_day:,.2f} TB"),
        (f"retained ({a.log_retention_days:g} days)", f"{logs.retained_pb:,.2f} PB"),
    ]
    return f"{components}\n\n{sizing}\n\n{_table(('event log', 'value'), log_rows)}"


def gpu_table(report: CapacityReport) -> str:
    regions = list(report.assumptions.region_share)
    by_sku: dict[str, dict[str, object]] = {}
    for d in report.gpus.deployments:
        entry = by_sku.setdefault(d.sku, {"rps": 0.0, "ttft": d.ttft_ms, "e2e": d.e2e_ms})
        entry[d.region] = f"{d.gpus:,} ({d.replicas})"
        entry["rps"] = float(entry["rps"]) + d.rps_peak  # type: ignore[arg-type]
    totals = report.gpus.gpus_by_sku()
    rows = [
        (sku, _n(float(e["rps"])), *(e.get(r, "–") for r in regions), _n(totals[sku]), _n(float(e["ttft"])), _n(float(e["e2e"])))  # type: ignore[arg-type]
        for sku, e in sorted(by_sku.items(), key=lambda item: -totals[item[0]])
    ]  # fmt: skip
    rows.append(("**total**", _n(report.demand.peak_rps), *(_n(report.gpus.gpus_by_region().get(r, 0)) for r in regions), f"**{_n(report.gpus.gpus)}**", "", ""))  # fmt: skip
    return _table(
        ("SKU", "req/s at peak", *(f"{r} GPUs (replicas)" for r in regions), "GPUs", "TTFT ms, no queue", "E2E ms, no queue"),
        rows,
    )  # fmt: skip


def cost_table(report: CapacityReport) -> str:
    c, a = report.cost, report.assumptions
    rows = [
        (f"GPU time at the catalog's cost per token (mix, {a.prompt_cache_hit_rate:.0%} of prompt tokens cached)", f"${c.gpu_catalog_usd:.5f}"),
        ("GPU, the provisioned fleet's hours / requests (cross-check; the larger of the two is counted)", f"${c.gpu_provisioned_usd:.5f}"),
        ("API gateway cores", _usd(c.api_usd)),
        ("Redis shards", _usd(c.redis_usd)),
        ("feature-store nodes", _usd(c.feature_store_usd)),
        ("event-log storage (retained, replicated)", _usd(c.log_storage_usd)),
        ("**blended cost per request**", f"**${c.total_usd:.4f}**"),
        ("budget", f"${c.budget_usd:.3f} — {'within' if c.within_budget else 'OVER'}"),
    ]  # fmt: skip
    return _table(("cost per request", "USD"), rows)


def slo_table(report: CapacityReport) -> str:
    t = report.targets
    rows = [
        (s.sku, _n(s.max_uncached_prompt_tokens_for_ttft), _n(s.max_output_tokens_for_e2e))
        for s in report.slo
    ]
    return _table(
        ("SKU", f"largest uncached prompt within {t.p99_ttft_ms:g} ms TTFT (tokens)",
         f"largest non-streamed answer within {t.p99_e2e_ms / 1000:g} s at the mean prompt (tokens)"),
        rows,
    )  # fmt: skip


def sensitivity_table(reports: Sequence[CapacityReport]) -> str:
    rows = [
        (f"×{r.assumptions.traffic_multiplier:g}", f"{r.assumptions.prompt_cache_hit_rate:.0%}", _n(r.demand.peak_rps),
         _n(r.api.cores), _n(r.redis.shards), _n(r.feature_store.nodes), _n(r.gpus.gpus), f"{r.logs.gb_per_day:,.0f}",
         f"${r.cost.total_usd:.4f}", "yes" if r.cost.within_budget else "no")
        for r in reports
    ]  # fmt: skip
    return _table(
        ("traffic", "cache hit", "peak req/s", "API cores", "Redis shards", "feature nodes", "GPUs", "log GB/day", "cost/request", "≤ budget"),
        rows,
    )  # fmt: skip


def assumptions_table(report: CapacityReport) -> str:
    a = report.assumptions
    rows = []
    for f in fields(a):
        value = getattr(a, f.name)
        if isinstance(value, dict) or hasattr(value, "items"):
            value = ", ".join(f"{k} {v:g}" for k, v in value.items())
        rows.append((f.name, value, SOURCES.get(f.name, "")))
    rows.append(("gpu throughput per replica", "features/skus.yaml", SOURCES["gpu throughput per replica"]))
    return _table(("assumption", "value", "source"), rows)


def render_sections(
    report: CapacityReport, sensitivity: Sequence[CapacityReport], stages: StageCosts
) -> dict[str, str]:
    """Section name (the ``<!-- name:start -->`` marker in the doc) → its markdown."""
    return {
        "capacity-demand": demand_table(report),
        "capacity-stages": stage_table(stages),
        "capacity-sizing": sizing_table(report),
        "capacity-gpus": gpu_table(report),
        "capacity-cost": cost_table(report),
        "capacity-slo": slo_table(report),
        "capacity-sensitivity": sensitivity_table(sensitivity),
        "capacity-assumptions": assumptions_table(report),
    }
