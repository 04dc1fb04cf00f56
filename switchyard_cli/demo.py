"""``switchyard demo``: simulated traffic through a running gateway, a live table, and the online judge.

The traffic is the simulated world of a bootstrap (``<bootstrap>/_manifest.json`` names its
seed and tenant count): conversations from :func:`simulator.workload.iter_sim_requests`
rendered by :func:`simulator.workload.render_payload` (≈70% streaming, multi-turn, ``model``
"auto"), each sent with its tenant's API key from the keys file that
:func:`serving.tenant_registry.tenants_from_registry` wrote (requests of tenants without a key
are skipped). Arrivals are open-loop Poisson at ``--rate``; an arrival that finds
``--concurrency`` requests in flight is dropped and counted.

The table is measured client-side: share of responses per SKU (``x-switchyard-sku``), serving
cost per request (response usage × ``Catalog.request_cost_usd``), TTFT p50/p99 of streams
(request sent → first ``content_block_delta``), fallbacks (``x-switchyard-attempts`` > 1),
errors by type and requests/s.

The judge closes the learning loop: for ``--judge-share`` of the answered requests it posts
``/v1/feedback`` with ``source: judge`` under an internal tenant's key, scored the way the
bootstrap labels its judged requests (``switchyard_cli.demo_traffic.judge_score``): good with the ground-truth
probability of the request's true task and difficulty on the SKU that served it, flipped with
the judge's flip rate. In the real-outcomes world (``--world real-outcomes``, or a bootstrap of
it) the traffic's user turns are real prompts and the judge scores with the real score of the
serving SKU's model on the prompt (``switchyard_cli.demo_real``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import typer

from switchyard_cli.demo_real import RealJudge, live_real_world, real_prepared_requests, world_of
from switchyard_cli.demo_table import DemoStats, RequestResult, format_table, rich_table
from switchyard_cli.demo_traffic import (
    Judge,
    PreparedRequest,
    TrafficQueue,
    judge_keys,
    load_keys,
    load_world,
    prepared_requests,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_KEYS_PATH = Path(".switchyard/tenant-keys.json")


# ---------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class DemoConfig:
    url: str
    rate: float = 10.0
    concurrency: int = 256
    duration_s: float = 60.0
    judge_share: float = 1.0
    seed: int = 1
    refresh_s: float = 1.0
    request_timeout_s: float = 120.0
    drain_s: float = 60.0


def _error_type(body: bytes) -> str | None:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return json.loads(body)["error"]["type"]
    return None


def _route_headers(result: RequestResult, response: httpx.Response) -> None:
    result.status = response.status_code
    result.request_id = response.headers.get("request-id")
    result.sku = response.headers.get("x-switchyard-sku")
    result.attempts = int(response.headers.get("x-switchyard-attempts", "0") or 0)


def _take_usage(result: RequestResult, usage: Mapping[str, object]) -> None:
    """Usage fields present in ``usage`` (message_start has the prompt's, message_delta the final)."""
    result.input_tokens = int(usage.get("input_tokens", result.input_tokens))  # type: ignore[call-overload]
    result.cached_tokens = int(usage.get("cache_read_input_tokens", result.cached_tokens))  # type: ignore[call-overload]
    result.output_tokens = int(usage.get("output_tokens", result.output_tokens))  # type: ignore[call-overload]


async def send_request(client: httpx.AsyncClient, url: str, item: PreparedRequest) -> RequestResult:
    """POST one Messages request; streams are read to the end, timing the first content delta."""
    headers = {
        "x-api-key": item.api_key,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
    }
    started = time.monotonic()
    result = RequestResult(item.sim.tenant.tenant_id, item.sim.stream, started, 0.0)
    try:
        async with client.stream(
            "POST", f"{url}/v1/messages", content=item.body, headers=headers
        ) as response:
            _route_headers(result, response)
            if response.status_code != 200:
                result.error_type = _error_type(await response.aread()) or f"http_{response.status_code}"
            elif not item.sim.stream:
                message = json.loads(await response.aread())
                _take_usage(result, message.get("usage") or {})
                result.stop_reason = message.get("stop_reason")
            else:
                await _read_stream(response, result, started)
    except httpx.TimeoutException:
        result.error_type = "client_timeout"
    except httpx.TransportError:
        result.error_type = "connection_error"
    except (ValueError, KeyError, TypeError):
        result.error_type = "invalid_response"  # not the JSON / SSE of the Messages API
    result.finished_at = time.monotonic()
    result.e2e_ms = (result.finished_at - started) * 1000.0
    return result


async def _read_stream(response: httpx.Response, result: RequestResult, started: float) -> None:
    event, stopped = "", False
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
            if event == "content_block_delta" and result.ttft_ms is None:
                result.ttft_ms = (time.monotonic() - started) * 1000.0
            stopped = stopped or event == "message_stop"
        elif line.startswith("data: ") and event in ("message_start", "message_delta", "error"):
            data = json.loads(line[6:])
            if event == "message_start":
                _take_usage(result, data["message"].get("usage") or {})
            elif event == "message_delta":
                _take_usage(result, data.get("usage") or {})
                result.stop_reason = (data.get("delta") or {}).get("stop_reason")
            else:
                result.error_type = (data.get("error") or {}).get("type") or "stream_error"
    if not stopped and result.error_type is None:
        result.error_type = "incomplete_stream"


async def run_demo(
    config: DemoConfig,
    traffic: TrafficQueue,
    stats: DemoStats,
    judge: Judge | None,
    refresh: Callable[[DemoStats], None],
) -> DemoStats:
    """Open-loop Poisson arrivals for ``duration_s``, then wait for what is in flight."""
    rng = np.random.default_rng(config.seed)
    limits = httpx.Limits(
        max_connections=config.concurrency + 16, max_keepalive_connections=config.concurrency + 16
    )
    timeout = httpx.Timeout(config.request_timeout_s, connect=5.0)
    tasks: set[asyncio.Task] = set()

    async def one(client: httpx.AsyncClient, item: PreparedRequest) -> None:
        stats.in_flight += 1
        try:
            result = await send_request(client, config.url, item)
        finally:
            stats.in_flight -= 1
        stats.add(result)
        verdict = judge.feedback(item, result) if judge is not None else None
        if verdict is not None:
            key, body = verdict
            try:
                response = await client.post(
                    f"{config.url}/v1/feedback", json=body, headers={"x-api-key": key}
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            stats.feedback_sent += int(ok)
            stats.feedback_failed += int(not ok)

    async def refresher() -> None:
        while True:
            await asyncio.sleep(config.refresh_s)
            refresh(stats)

    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        ticker = asyncio.create_task(refresher())
        start = time.monotonic()
        stats.started_at = start
        next_at = start
        while True:
            next_at += rng.exponential(1.0 / config.rate)
            if next_at - start >= config.duration_s:
                break
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            stats.sending_s = time.monotonic() - start
            if stats.in_flight >= config.concurrency:
                stats.dropped += 1
                continue
            item = traffic.take()
            if item is None:
                stats.errors["client_traffic_behind"] += 1  # rendering could not keep up
                continue
            stats.sent += 1
            task = asyncio.create_task(one(client, item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=config.drain_s)
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        for task in list(tasks):
            task.cancel()
    refresh(stats)
    return stats


# ---------------------------------------------------------------------- the command


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def demo_command(
    url: Annotated[str, typer.Option(help="The running gateway.")] = "http://127.0.0.1:8080",
    keys: Annotated[
        Path, typer.Option(help="Tenant API keys (JSON tenant id → key), as `make serve` writes them.")
    ] = DEFAULT_KEYS_PATH,
    bootstrap: Annotated[
        Path, typer.Option(help="The bootstrap whose world and tenants the traffic comes from.")
    ] = Path("data/logs"),
    rate: Annotated[float, typer.Option(min=0.01, help="Offered requests/s (Poisson, open loop).")] = 10.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Requests in flight at most; arrivals beyond are dropped.")
    ] = 256,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of arrivals.")] = 60.0,
    judge_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of answered requests the judge scores.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the traffic, the arrivals and the judge.")] = 1,
    plain: Annotated[
        bool, typer.Option(help="Print the table as text (also when stdout is not a terminal).")
    ] = False,
    refresh: Annotated[float, typer.Option(min=0.1, help="Seconds between table refreshes.")] = 1.0,
    world_mode: Annotated[
        str,
        typer.Option(
            "--world",
            help="`invented` or `real-outcomes` (real prompts, judged by real scores); default: the bootstrap's.",
        ),
    ] = "",
    outcomes_data: Annotated[
        Path | None,
        typer.Option(help="Real outcome data for --world real-outcomes; default: the bootstrap's."),
    ] = None,
) -> None:
    """Drive the simulated traffic mix through a running gateway and show a live table."""
    url = url.rstrip("/")
    try:
        world = load_world(bootstrap)
        logged_world, logged_data = world_of(bootstrap)
        real = None
        if (world_mode or logged_world) == "real-outcomes":
            data = outcomes_data or logged_data
            if data is None:
                raise ValueError("--world real-outcomes needs --outcomes-data PATH")
            real = live_real_world(world, data)
        elif (world_mode or logged_world) != "invented":
            raise ValueError(f"unknown world {world_mode!r}; one of invented, real-outcomes")
    except (FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from None
    try:
        tenant_keys = load_keys(keys)
    except OSError as error:
        raise _fail(f"{keys}: cannot read the keys file ({error.strerror}); `make serve` writes it") from None
    except ValueError as error:
        raise _fail(str(error)) from None
    if not any(t.tenant_id in tenant_keys for t in world.tenants):
        raise _fail(f"{keys}: no key for any tenant of the bootstrap in {bootstrap}")
    try:
        httpx.get(f"{url}/healthz", timeout=5.0, trust_env=False).raise_for_status()
    except httpx.HTTPError as error:
        raise _fail(f"no gateway at {url} ({error}); start it with `make serve`") from None

    judges = judge_keys(world, tenant_keys)
    judge = None
    if judge_share > 0 and not judges:
        typer.echo("judge: no internal tenant in the keys file; no judge feedback will be sent")
    elif judge_share > 0:
        judge = (
            Judge(world, judges, judge_share, seed)
            if real is None
            else RealJudge(world, real, judges, judge_share, seed)
        )
        typer.echo(
            f"judge: scoring {judge_share:.0%} of answers as internal tenants of {', '.join(sorted(judges))}"
        )
    config = DemoConfig(url, rate, concurrency, duration, judge_share, seed, refresh)
    typer.echo(f"demo: {rate:g} req/s for {duration:g} s at most {concurrency} in flight → {url}")
    requests = (
        prepared_requests(world, tenant_keys, seed=seed)
        if real is None
        else real_prepared_requests(world, real, tenant_keys, seed=seed)
    )
    typer.echo(f"traffic: the {'invented' if real is None else 'real-outcomes'} world of {bootstrap}")
    traffic = TrafficQueue(requests, depth=max(64, int(4 * rate)))
    traffic.start(ready=min(64, max(1, int(2 * rate))))
    stats = DemoStats(world.catalog, time.monotonic())
    try:
        if plain or not sys.stdout.isatty():
            asyncio.run(
                run_demo(
                    config,
                    traffic,
                    stats,
                    judge,
                    lambda s: typer.echo(format_table(s, time.monotonic()) + "\n"),
                )
            )
        else:
            from rich.live import Live

            with Live(rich_table(stats, time.monotonic()), refresh_per_second=4) as live:
                asyncio.run(
                    run_demo(
                        config, traffic, stats, judge, lambda s: live.update(rich_table(s, time.monotonic()))
                    )
                )
    finally:
        traffic.stop()
    if not stats.responses:
        typer.echo(f"error: the gateway answered none of the {stats.sent} requests sent", err=True)
        raise typer.Exit(1)
