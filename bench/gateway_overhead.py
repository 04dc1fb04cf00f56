"""The gateway's added latency and throughput on this machine, and its router decision time.

    .venv/bin/python bench/gateway_overhead.py [--router-model router.onnx] [--requests 1500] [--rounds 3]
        [--seconds 5] [--connections 32] [--load-fractions 0.5,0.8] [--knee] [--gateway-core 1]
        [--no-pin] [--no-baselines] [--profile]

Method. One simulated worker serving every SKU deployed in ``us`` runs at ``time_scale=0``
(it answers at once: only HTTP, parsing and text generation cost) in its own process pinned to
core 0; the gateway runs ``serving.app.create_app`` under uvicorn as ``switchyard serve`` does,
in its own process pinned to core 1 (``--gateway-core 0``: the same core, so that at concurrency 1
no hop pays a cross-core wake-up), with one internal tenant, the event log on, no Feast,
and either ``--router-model`` (an ONNX router artifact) or the static prior
(``bench/gateway_processes.py``). This process (the client) shares core 0 with the worker.
Two payload sets, both non-streaming: *small* (a 20-token question, 64 tokens out) and
*realistic* (the simulated world's requests rendered by ``simulator.workload.render_payload``:
system prompts, documents, multi-turn history, tools).

(a) concurrency 1: one keep-alive socket per target (blocking, TCP_NODELAY) alternates requests direct to the worker
(model ``claude-haiku-4-5``), through the gateway pinned to that model, and through the gateway
with ``model: auto``; added latency = the gateway's percentile minus the direct percentile.
``--rounds`` repeats it (the VM this was built on changed speed by 2-3x within minutes) and
the verdict is on the median round's added p99. (a') reads the gateway's own records of those
requests: outcome ``e2e_ms`` minus the attempts' ``e2e_ms``, the time it spent outside the
worker call (not blurred by the worker's own tail; without uvicorn's parsing, with the reply's
write, since a non-streamed answer's books close after it; ``bench/gateway_tail.py`` splits it further).
(b) saturation: ``--connections`` keep-alive connections of a raw asyncio client (uvloop; an
SDK client would saturate first) send ``auto`` requests for ``--seconds``; req/s and req per
gateway CPU-second (psutil, all its threads). Then open-loop Poisson arrivals at
``--load-fractions`` (50% and 80%) of that rate, direct and through the gateway, latency from
the scheduled arrival. A closed loop of 32 connections batches socket reads, so its rate is
above what the gateway sustains one request at a time: 80% of it can be past the open-loop knee.
``--knee`` steps the open-loop rate up by 10% of the closed-loop saturation until the added
p99 exceeds the 10 ms target and prints the last rate that kept it.
(c) router decision time: ``decision_ms`` of every logged decision record (read after the
gateway shut down and flushed its event log), and the ``switchyard_router_decision_seconds``
histogram of ``/metrics``.
Baselines: the same (a) and (b) for pass-throughs on the gateway's core without its logic
(FastAPI answering from memory; FastAPI + the worker call with httpx as ``serving.workers``
makes it; FastAPI + aiohttp): the floor of the stack. ``--profile`` reruns the saturation
with the gateway under cProfile and prints its top costs by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import pstats
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import psutil
import uvloop
from gateway_processes import API_KEY, PINNED, ROOT, Stack, free_port, pin, wait_ready
from machine import describe_machine

from features.catalog import load_catalog
from features.record_store import scan_records
from features.records import AttemptRecord, DecisionRecord, OutcomeRecord

TARGETS_MS = {"added p99 at concurrency 1": 3.0, "added p99 at 80% saturation": 10.0, "decision p99": 2.0}


# ---------------------------------------------------------------------- payloads


def small_payload(model: str, variant: int) -> dict:
    content = f"Question {variant}: what is the capital of France? Answer briefly. [[sim out=64]]"
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": content}]}


def realistic_payloads(count: int) -> list[dict]:
    """Non-streaming versions of the simulated world's requests that the pinned SKU can take."""
    from simulator.workload import WorkloadParams, iter_sim_requests, render_payload
    from simulator.world import build_world

    sku = load_catalog().get(PINNED)
    world = build_world(0)
    requests = iter_sim_requests(
        world, WorkloadParams(), seed=3, start_us=1_793_491_200 * 10**6 + 14 * 3600 * 10**6
    )
    payloads = []
    for request in requests:
        max_tokens = min(request.max_tokens, sku.max_output_tokens)
        if request.prompt_tokens + max_tokens > sku.context_window:
            continue
        payload = render_payload(request)
        payload.pop("stream", None)
        payload["max_tokens"] = max_tokens
        payloads.append(payload)
        if len(payloads) == count:
            return payloads
    raise AssertionError("unreachable: the request stream is endless")


def bodies(payloads: list[dict], model: str) -> list[bytes]:
    return [json.dumps({**p, "model": model}, ensure_ascii=False).encode() for p in payloads]


# ---------------------------------------------------------------------- (a) concurrency 1


def sequential(ports: dict[str, int], sets: dict[str, list[bytes]], requests: int) -> dict[str, np.ndarray]:
    """Alternate one request per target, ``requests`` times, each target over its own keep-alive
    socket (blocking, TCP_NODELAY: the client adds ~20 µs, not an HTTP library's ~0.3 ms and its
    jitter); milliseconds per target."""
    times: dict[str, list[float]] = {name: [] for name in ports}
    raws = {name: [raw_request(ports[name], body) for body in sets[name]] for name in ports}
    sockets = {name: socket.create_connection(("127.0.0.1", port)) for name, port in ports.items()}
    try:
        for sock in sockets.values():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(requests + requests // 10):  # the first tenth warms up
            for name, sock in sockets.items():
                started = time.perf_counter()
                status = exchange(sock, raws[name][index % len(raws[name])])
                elapsed = (time.perf_counter() - started) * 1000.0
                if status != 200:
                    raise RuntimeError(f"{name}: status {status}")
                if index >= requests // 10:
                    times[name].append(elapsed)
    finally:
        for sock in sockets.values():
            sock.close()
    return {name: np.array(values) for name, values in times.items()}


def exchange(sock: socket.socket, request: bytes) -> int:
    """Send one request and read its whole (Content-Length) response; the status."""
    sock.sendall(request)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return int(head[9:12])


# ---------------------------------------------------------------------- (b) raw asyncio client


def raw_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"x-api-key: {API_KEY}\r\nanthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    start = lower.index(b"content-length: ") + 16
    await reader.readexactly(int(lower[start : lower.index(b"\r\n", start)]))
    return status


async def closed_loop(
    port: int, requests: list[bytes], connections: int, seconds: float
) -> tuple[int, float]:
    deadline = time.perf_counter() + seconds
    done = [0]

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.perf_counter() < deadline:
            writer.write(requests[sent % len(requests)])
            sent += 1
            if (status := await read_response(reader)) != 200:
                raise RuntimeError(f"status {status}")
            done[0] += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    return done[0], time.perf_counter() - started


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, seed: int) -> np.ndarray:
    """Poisson arrivals at ``rate``; ms from each scheduled arrival to its whole response."""
    rng = np.random.default_rng(seed)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(32)]
    latencies: list[float] = []
    tasks = set()

    async def one(body: bytes, scheduled: float) -> None:
        reader, writer = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        writer.write(body)
        if (status := await read_response(reader)) != 200:
            raise RuntimeError(f"status {status}")
        latencies.append((time.perf_counter() - scheduled) * 1000.0)
        idle.append((reader, writer))

    start = next_at = time.perf_counter()
    for index in itertools.count():
        next_at += rng.exponential(1.0 / rate)
        if next_at - start > seconds:
            break
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        task = asyncio.create_task(one(requests[index % len(requests)], next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return np.array(latencies)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# ---------------------------------------------------------------------- (c) decision time


def histogram_quantiles(metrics: str, name: str, quantiles: tuple[float, ...]) -> tuple[int, list[float]]:
    """Quantiles of a Prometheus histogram by linear interpolation within buckets (seconds)."""
    buckets = [
        (float("inf") if le == "+Inf" else float(le), float(count))
        for le, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)
    ]
    total = buckets[-1][1]
    values = []
    for q in quantiles:
        rank, lower, below = q * total, 0.0, 0.0
        for upper, cumulative in buckets:
            if cumulative >= rank:
                upper = lower if upper == float("inf") else upper
                share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
                values.append(lower + share * (upper - lower))
                break
            lower, below = upper, cumulative
    return int(total), values


# ---------------------------------------------------------------------- report


def line(label: str, ms: np.ndarray) -> str:
    p50, p99 = np.percentile(ms, [50, 99])
    return f"  {label:<28} n={len(ms):>6,}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  mean {ms.mean():7.2f} ms"


def added(label: str, through: np.ndarray, direct: np.ndarray, target_ms: float | None = None) -> str:
    d50, d99 = np.percentile(through, [50, 99]) - np.percentile(direct, [50, 99])
    verdict = (
        ""
        if target_ms is None
        else f"   (target p99 ≤ {target_ms:g} ms: {'met' if d99 <= target_ms else 'MISSED'})"
    )
    return f"  added by the gateway, {label:<16} p50 {d50:+7.2f} ms  p99 {d99:+7.2f} ms{verdict}"


def _package(filename: str) -> str:
    """The top-level package (or ``builtins``) a profiled function belongs to."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    where = re.sub(r".*/(site-packages|lib/python3\.\d+|main)/", "", filename)
    return (
        where.split("/", 1)[0].removesuffix(".py") if "/" in where else "stdlib:" + where.removesuffix(".py")
    )


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    entries = stats.stats.items()  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    by_package: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in entries:
        by_package[_package(filename)] = by_package.get(_package(filename), 0.0) + own
    print(f"\ngateway profile ({total:.1f} s of profiled CPU); own time by package:")
    for package, own in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        print(f"  {100 * own / total:5.1f}%  {package}")
    print(f"top {top} functions by own time:")
    for (filename, lineno, function), (_, calls, own, cumulative, _) in sorted(
        entries, key=lambda item: item[1][2], reverse=True
    )[:top]:
        where = re.sub(r".*/(site-packages|lib/python3\.\d+|main)/", "", filename)
        print(
            f"  {100 * own / total:5.1f}%  own {own:6.2f} s  cum {cumulative:6.2f} s  {calls:>9,}  {where}:{lineno} {function}"
        )


def saturate(
    runner: asyncio.Runner, port: int, requests: list[bytes], pids: list[int], args
) -> tuple[float, list[float]]:
    """A closed loop over ``args.connections`` connections: (req/s, CPU-s per request of each pid)."""
    runner.run(closed_loop(port, requests, args.connections, 1.0))
    before = [cpu_seconds(pid) for pid in pids]
    done, elapsed = runner.run(closed_loop(port, requests, args.connections, args.seconds))
    return done / elapsed, [(cpu_seconds(pid) - cpu) / done for pid, cpu in zip(pids, before, strict=True)]


def measure_payloads(stack: Stack, name: str, payloads: list[dict], args) -> tuple[datetime, datetime]:
    """(a) and (b) for one payload set; returns the wall-clock window of (a)."""
    sizes = [len(b) for b in bodies(payloads, "auto")]
    print(f"{name} payloads: {len(payloads)} bodies, median {int(np.median(sizes)):,} bytes")
    sets = {
        "direct": bodies(payloads, PINNED),
        "gateway pinned": bodies(payloads, PINNED),
        "gateway auto": bodies(payloads, "auto"),
    }
    ports = {
        "direct": stack.worker_port,
        "gateway pinned": stack.gateway_port,
        "gateway auto": stack.gateway_port,
    }
    window_start = datetime.now(UTC)
    rounds = [sequential(ports, sets, args.requests) for _ in range(args.rounds)]
    window = (window_start, datetime.now(UTC))
    times = {name: np.concatenate([one[name] for one in rounds]) for name in ports}
    print(
        f"(a) concurrency 1 (one keep-alive socket per target, requests alternating; {args.rounds} rounds pooled):"
    )
    for label, ms in times.items():
        print(line(label, ms))
    print(added("pinned model:", times["gateway pinned"], times["direct"]))
    print(added("model auto:", times["gateway auto"], times["direct"]))
    per_round = [
        np.percentile(one["gateway auto"], [50, 99]) - np.percentile(one["direct"], [50, 99])
        for one in rounds
    ]
    p99s = sorted(float(d99) for _, d99 in per_round)
    target = TARGETS_MS["added p99 at concurrency 1"]
    median = float(np.median(p99s))
    print(
        "  model auto, added p99 per round: "
        + ", ".join(f"{d99:+.2f}" for _, d99 in per_round)
        + f" ms; median {median:+.2f} ms   (target p99 ≤ {target:g} ms: {'met' if median <= target else 'MISSED'})"
    )

    gateway_raw = [raw_request(stack.gateway_port, b) for b in sets["gateway auto"]]
    direct_raw = [raw_request(stack.worker_port, b) for b in sets["direct"]]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        pids = [stack.gateway.pid, stack.worker.pid]
        saturation, (gateway_cpu, worker_cpu) = saturate(runner, stack.gateway_port, gateway_raw, pids, args)
        print(f"(b) saturation, {args.connections} connections, model auto, {args.seconds:g} s:")
        print(
            f"  {saturation:8.0f} req/s through the gateway; {1 / gateway_cpu:6.0f} req per gateway CPU-s "
            f"({1000 * gateway_cpu:.2f} ms CPU per request; gateway CPU {100 * gateway_cpu * saturation:.0f}%, "
            f"worker CPU {100 * worker_cpu * saturation:.0f}%)"
        )
        for fraction in args.load_fractions:
            rate = fraction * saturation
            direct = runner.run(open_loop(stack.worker_port, direct_raw, rate, args.seconds, seed=1))
            through = runner.run(open_loop(stack.gateway_port, gateway_raw, rate, args.seconds, seed=1))
            print(f"  at {fraction:.0%} of saturation ({rate:.0f} req/s, Poisson, open loop):")
            print(line("direct", direct))
            print(line("gateway auto", through))
            target = TARGETS_MS["added p99 at 80% saturation"] if fraction == 0.8 else None
            print(added(f"{fraction:.0%} saturation:", through, direct, target))
        if args.knee:
            open_loop_knee(runner, stack, gateway_raw, direct_raw, saturation, args)
    print()
    return window


def open_loop_knee(
    runner: asyncio.Runner, stack: Stack, gateway_raw, direct_raw, saturation: float, args
) -> None:
    """The highest open-loop rate (steps of 10% of the closed-loop saturation) at which the
    gateway's added p99 stays within the 80%-load target: the capacity that keeps the promise."""
    limit = TARGETS_MS["added p99 at 80% saturation"]
    kept = 0.0
    print(f"  open-loop knee (added p99 ≤ {limit:g} ms), {args.seconds:g} s per step:")
    for step in range(1, 10):
        rate = step / 10 * saturation
        direct = runner.run(open_loop(stack.worker_port, direct_raw, rate, args.seconds, seed=step))
        through = runner.run(open_loop(stack.gateway_port, gateway_raw, rate, args.seconds, seed=step))
        added_p99 = float(np.percentile(through, 99) - np.percentile(direct, 99))
        print(
            f"    {rate:6.0f} req/s ({step * 10}%): added p50 "
            f"{float(np.percentile(through, 50) - np.percentile(direct, 50)):+7.2f} ms, p99 {added_p99:+8.2f} ms"
        )
        if added_p99 > limit:
            break
        kept = rate
    print(
        f"  → {kept:.0f} req/s per gateway core keep the added p99 ≤ {limit:g} ms"
        + ("" if kept else " (not even the first step)")
    )


def report_in_gateway_time(folder: Path, windows: dict[str, tuple[datetime, datetime]]) -> None:
    """What the gateway's own records say it spent per request outside the worker call.

    Outcome ``e2e_ms`` minus the request's attempts' ``e2e_ms``: from ``Gateway.messages``
    being called (body read) to the outcome, without the worker. It leaves out uvicorn's parsing
    and the response write, and, unlike a difference of percentiles, it is not blurred by the
    worker's own tail (the realistic bodies' direct p99 is 7-13 ms here).
    """
    logs = folder / "logs"
    outcomes = scan_records(logs, OutcomeRecord).select("request_id", "ts", "e2e_ms").collect()
    worker = (
        scan_records(logs, AttemptRecord)
        .group_by("request_id")
        .agg(pl.col("e2e_ms").sum().alias("worker_ms"))
        .collect()
    )
    models = scan_records(logs, DecisionRecord).select("request_id", "requested_model").collect()
    joined = outcomes.join(worker, on="request_id").join(models, on="request_id")
    print("(a') in-gateway time outside the worker call at concurrency 1 (the gateway's own records):")
    for name, (start, end) in windows.items():
        window = joined.filter(pl.col("ts").is_between(start, end))
        for model in ("auto", PINNED):
            rows = window.filter(pl.col("requested_model") == model)
            ms = (rows["e2e_ms"] - rows["worker_ms"]).to_numpy()
            if len(ms):
                print(line(f"{name}, {model}", ms))


def report_decisions(folder: Path, metrics: str) -> None:
    count, (h50, h99) = histogram_quantiles(metrics, "switchyard_router_decision_seconds", (0.5, 0.99))
    decisions = (
        scan_records(folder / "logs", DecisionRecord).select("requested_model", "decision_ms").collect()
    )
    print("(c) router decision (request features, prefix keys, store read, scoring, policy):")
    for model in ("auto", PINNED):
        ms = decisions.filter(decisions["requested_model"] == model)["decision_ms"].to_numpy()
        print(line(f"decision records, {model}", ms))
    auto = decisions.filter(decisions["requested_model"] == "auto")["decision_ms"].to_numpy()
    verdict = "met" if np.percentile(auto, 99) <= TARGETS_MS["decision p99"] else "MISSED"
    print(f"  (target p99 ≤ {TARGETS_MS['decision p99']:g} ms for auto: {verdict})")
    print(
        f"  /metrics histogram over {count:,} decisions: p50 ≈ {1000 * h50:.3f} ms, p99 ≈ {1000 * h99:.3f} ms"
    )


def measure_baselines(stack: Stack, args) -> None:
    """The same measurements for pass-throughs without the gateway's logic (small payloads)."""
    print("\nbaselines: pass-throughs on the gateway's core (small payloads; what the stack itself costs)")
    payloads = [small_payload(PINNED, v) for v in range(64)]
    direct = bodies(payloads, PINNED)
    for mode in ("canned", "httpx", "aiohttp"):
        port = free_port()
        command = [sys.executable, str(ROOT / "bench" / "gateway_processes.py"), "--serve-baseline", mode]
        command += ["--port", str(port)]
        process = subprocess.Popen([*command, "--worker-url", stack.worker_url], cwd=ROOT)
        try:
            if args.pin:
                pin(process.pid, 1)
            wait_ready(f"http://127.0.0.1:{port}/readyz", process)
            times = sequential(
                {"direct": stack.worker_port, mode: port},
                {"direct": direct, mode: direct},
                args.requests // 2,
            )
            raw = [raw_request(port, b) for b in direct]
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                saturation, (cpu_per_request,) = saturate(runner, port, raw, [process.pid], args)
            d50, d99 = np.percentile(times[mode], [50, 99]) - np.percentile(times["direct"], [50, 99])
            print(
                f"  FastAPI + {mode:<8} concurrency 1: added p50 {d50:+6.2f} ms p99 {d99:+6.2f} ms; "
                f"saturation {saturation:6.0f} req/s, {1000 * cpu_per_request:5.2f} ms CPU per request"
            )
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def measure_profile(folder: Path, payloads: list[dict], args) -> None:
    profile_out = folder / "gateway.prof"
    stack = Stack(
        folder, args.router_model, profile=profile_out, pin_cores=args.pin, gateway_core=args.gateway_core
    )
    try:
        gateway_raw = [raw_request(stack.gateway_port, b) for b in bodies(payloads, "auto")]
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(closed_loop(stack.gateway_port, gateway_raw, args.connections, 1.0))
            stack.gateway.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
            done, elapsed = runner.run(
                closed_loop(stack.gateway_port, gateway_raw, args.connections, args.seconds)
            )
            stack.gateway.send_signal(signal.SIGUSR2)  # type: ignore[union-attr]
        print(f"\nprofiled run (realistic, model auto): {done / elapsed:.0f} req/s under cProfile")
    finally:
        stack.stop()
    print_profile(profile_out, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--router-model", type=Path, default=None, help="ONNX router artifact (default: static prior)"
    )
    parser.add_argument("--requests", type=int, default=1500, help="per target and round at concurrency 1")
    parser.add_argument(
        "--rounds", type=int, default=3, help="concurrency-1 rounds; the verdict is on their median p99"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pin", action=argparse.BooleanOptionalAction, default=True, help="pin processes to cores"
    )
    parser.add_argument(
        "--baselines", action=argparse.BooleanOptionalAction, default=True, help="measure pass-throughs"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the gateway at saturation")
    parser.add_argument(
        "--load-fractions",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.5, 0.8],
        help="open-loop rates as fractions of the closed-loop saturation",
    )
    parser.add_argument(
        "--knee", action="store_true", help="also find the open-loop rate that keeps the added p99 on target"
    )
    parser.add_argument(
        "--gateway-core",
        type=int,
        default=1,
        help="core of the gateway (0 = the worker's and client's core: no cross-core wake-ups at concurrency 1)",
    )
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    print(f"machine: {describe_machine()}")
    small = [small_payload("auto", v) for v in range(64)]
    realistic = realistic_payloads(400)
    stack = Stack(folder, args.router_model, pin_cores=args.pin, gateway_core=args.gateway_core)
    router = httpx.get(f"{stack.gateway_url}/readyz", trust_env=False).json()["router"]["router_version"]
    placement = (
        f"worker and client on core 0, gateway on core {args.gateway_core}" if stack.pinned else "no pinning"
    )
    print(
        f"worker: time_scale=0, {len(load_catalog().in_region('us'))} SKUs; {placement}; router {router}; "
        "event log on, no Feast\n"
    )
    windows = {}
    try:
        for name, payloads in (("small", small), ("realistic", realistic)):
            windows[name] = measure_payloads(stack, name, payloads, args)
        metrics = httpx.get(f"{stack.gateway_url}/metrics", trust_env=False).text
        if args.baselines:
            measure_baselines(stack, args)
    finally:
        stack.stop()
    report_in_gateway_time(folder, windows)
    report_decisions(folder, metrics)
    print(
        "\nfor scale against a peer proxy on the same upstream and cores: make bench-peers (bench/peers.py)"
    )
    if args.profile:
        measure_profile(folder, realistic, args)


if __name__ == "__main__":
    main()
