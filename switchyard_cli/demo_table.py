"""The demo's table: requests as the client saw them, aggregated per SKU (pure, no I/O).

:class:`DemoStats` is fed :class:`RequestResult` values and read as :class:`SkuRow` rows: the
share of answered requests per SKU, serving cost per request (response usage ×
``Catalog.request_cost_usd``), stream TTFT p50/p99, fallbacks; plus errors by type and the
request rate. :func:`format_table` and :func:`rich_table` render the same cells.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from features.catalog import Catalog

RECENT_WINDOW_S = 5.0


@dataclass(slots=True)
class RequestResult:
    """One request as the client saw it."""

    tenant_id: str
    stream: bool
    finished_at: float  # monotonic seconds
    e2e_ms: float
    status: int | None = None  # HTTP status; None: no response (transport error)
    error_type: str | None = None  # an error response, an in-band stream error, or a transport error
    request_id: str | None = None
    sku: str | None = None
    attempts: int = 0
    ttft_ms: float | None = None  # streams: time to the first content delta
    input_tokens: int = 0  # uncached
    cached_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200 and self.error_type is None and self.sku is not None


@dataclass(frozen=True, slots=True)
class SkuRow:
    sku: str
    responses: int
    share: float
    cost_per_request_usd: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    fallbacks: int


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass
class DemoStats:
    """Running totals of the demo (pure: fed results, read as rows)."""

    catalog: Catalog
    started_at: float
    sending_s: float = 0.0  # how long arrivals have been offered (stops growing when they end)
    sent: int = 0
    dropped: int = 0  # arrivals that found the concurrency cap reached
    in_flight: int = 0
    responses: Counter = field(default_factory=Counter)  # sku -> answered requests
    cost_usd: Counter = field(default_factory=Counter)  # sku -> serving cost
    ttft_ms: dict[str, list[float]] = field(default_factory=dict)  # sku -> stream TTFTs
    fallbacks: Counter = field(default_factory=Counter)  # sku -> answered after more than one attempt
    errors: Counter = field(default_factory=Counter)  # error type -> requests
    finished: deque = field(default_factory=deque)  # finish times within RECENT_WINDOW_S
    completed: int = 0
    feedback_sent: int = 0
    feedback_failed: int = 0

    def add(self, result: RequestResult) -> None:
        self.completed += 1
        self.finished.append(result.finished_at)
        if result.error_type is not None or not result.answered:
            self.errors[result.error_type or f"http_{result.status}"] += 1
            return
        sku = result.sku
        self.responses[sku] += 1
        self.cost_usd[sku] += self.catalog.request_cost_usd(
            sku,
            input_tokens=result.input_tokens,
            cached_tokens=result.cached_tokens,
            output_tokens=result.output_tokens,
        )
        if result.ttft_ms is not None:
            self.ttft_ms.setdefault(sku, []).append(result.ttft_ms)
        if result.attempts > 1:
            self.fallbacks[sku] += 1

    def rows(self) -> list[SkuRow]:
        """One row per SKU that answered (most answers first), then the total."""
        total = sum(self.responses.values())
        rows = [
            SkuRow(
                sku,
                count,
                count / total,
                self.cost_usd[sku] / count,
                _percentile(self.ttft_ms.get(sku, []), 50),
                _percentile(self.ttft_ms.get(sku, []), 99),
                self.fallbacks[sku],
            )
            for sku, count in self.responses.most_common()
        ]
        every_ttft = [value for values in self.ttft_ms.values() for value in values]
        rows.append(
            SkuRow(
                "all",
                total,
                1.0 if total else 0.0,
                sum(self.cost_usd.values()) / total if total else 0.0,
                _percentile(every_ttft, 50),
                _percentile(every_ttft, 99),
                sum(self.fallbacks.values()),
            )
        )
        return rows

    def rates(self, now: float) -> tuple[float, float]:
        """(requests/s over the last few seconds, requests/s since the start), by completion."""
        while self.finished and self.finished[0] < now - RECENT_WINDOW_S:
            self.finished.popleft()
        window = min(RECENT_WINDOW_S, max(now - self.started_at, 1e-9))
        return len(self.finished) / window, self.completed / max(now - self.started_at, 1e-9)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table_lines(stats: DemoStats, now: float) -> tuple[list[str], list[tuple[str, ...]], list[str]]:
    """(header, rows, footer lines) of the table, as text cells; shared by both renderers."""
    header = ["SKU", "responses", "share", "cost/request", "TTFT p50 ms", "TTFT p99 ms", "fallbacks"]
    rows = [
        (
            row.sku,
            f"{row.responses:,}",
            f"{row.share:.1%}",
            f"${row.cost_per_request_usd:.5f}",
            _ms(row.ttft_p50_ms),
            _ms(row.ttft_p99_ms),
            f"{row.fallbacks:,}",
        )
        for row in stats.rows()
    ]
    recent, overall = stats.rates(now)
    errors = ", ".join(f"{kind} {count:,}" for kind, count in stats.errors.most_common()) or "none"
    footer = [
        f"requests/s done {recent:.1f} (last {RECENT_WINDOW_S:.0f} s), {overall:.1f} overall; "
        f"sent {stats.sent:,} ({stats.sent / max(stats.sending_s, 1e-9):.1f}/s offered), done {stats.completed:,}, "
        f"in flight {stats.in_flight:,}, dropped at the concurrency cap {stats.dropped:,}",
        f"errors: {errors}",
        f"judge feedback: {stats.feedback_sent:,} recorded, {stats.feedback_failed:,} failed",
    ]
    return header, rows, footer


def format_table(stats: DemoStats, now: float) -> str:
    header, rows, footer = table_lines(stats, now)
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in [header, *rows]
    ]
    return "\n".join([*lines, *footer])


def rich_table(stats: DemoStats, now: float):  # -> rich.console.Group
    from rich.console import Group
    from rich.table import Table

    header, rows, footer = table_lines(stats, now)
    table = Table(title="Switchyard demo (client-side)")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=index == 0)
    for index, cells in enumerate(rows):
        table.add_row(*cells, end_section=index == len(rows) - 2)
    return Group(table, *footer)
