"""Throughput of the simulated worker on one core: non-streaming req/s and streamed SSE events/s.

Method: the worker runs at ``time_scale=0`` (no simulated latency, so only the HTTP, parsing,
simulation and framing cost is measured) in its own process, pinned to one core with
``os.sched_setaffinity`` where the OS allows it. This process pins itself to another core
and drives the worker over loopback with concurrent keep-alive HTTP/1.1 connections from a
minimal asyncio client (raw streams on uvloop: an SDK client would be the bottleneck). Each
scenario warms up, then runs for a fixed time; the worker's own CPU time over the run is read
from /proc, so "per worker CPU-second" is the per-core figure even if the worker's core was not
saturated.

    .venv/bin/python bench/worker_throughput.py [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import uvloop

ROOT = Path(__file__).resolve().parents[1]
SKU = "claude-haiku-4-5"


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    prompt_tokens: int
    output_tokens: int


SCENARIOS = (
    Scenario("non-stream, 120-token prompt, 64 out", False, 120, 64),
    Scenario("non-stream, 5K-token prompt, 64 out", False, 5000, 64),
    Scenario("stream, 120-token prompt, 256 out", True, 120, 256),
    Scenario("stream, 5K-token prompt, 256 out", True, 5000, 256),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_bytes(port: int, scenario: Scenario, variant: int) -> bytes:
    system = "You are a careful assistant for the Switchyard benchmark. " * (scenario.prompt_tokens * 4 // 58)
    body = json.dumps(
        {
            "model": SKU,
            "max_tokens": 1024,
            "stream": scenario.stream,
            "system": system,
            "messages": [
                {
                    "role": "user",
                    "content": f"Question number {variant}. [[sim out={scenario.output_tokens}]]",
                }
            ],
        }
    ).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"anthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one response; returns (status, SSE events in it)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        events = 0
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, events
            events += chunk.count(b"data: ")
    start = lower.index(b"content-length: ") + 16
    length = int(lower[start : lower.index(b"\r\n", start)])
    await reader.readexactly(length)
    return status, 0


async def drive(port: int, scenario: Scenario, connections: int, seconds: float) -> tuple[int, int, float]:
    """Run ``connections`` keep-alive loops for ``seconds``; returns (requests, events, elapsed)."""
    requests = [request_bytes(port, scenario, variant) for variant in range(32)]
    deadline = time.perf_counter() + seconds
    totals = [0, 0]

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.perf_counter() < deadline:
            writer.write(requests[sent % len(requests)])
            sent += 1
            status, events = await read_response(reader)
            if status != 200:
                raise RuntimeError(f"worker answered {status}")
            totals[0] += 1
            totals[1] += events
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    return totals[0], totals[1], time.perf_counter() - start


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}; {os.cpu_count()} logical cores; Python {platform.python_version()} "
        f"({platform.python_implementation()}); {platform.system()} {platform.release()}"
    )


def pin(pid: int, core: int) -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(pid, {core})
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "simulator.worker", "--sku", SKU, "--port", str(port), "--time-scale", "0"],
        cwd=ROOT,
    )
    pinned = pin(worker.pid, 0) and pin(0, 1)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        process = psutil.Process(worker.pid)
        print(f"machine: {machine()}")
        print(
            f"worker pinned to core 0, client to core 1: {pinned}; {args.connections} keep-alive connections"
        )
        print(
            f"{'scenario':42} {'req/s':>9} {'events/s':>10} {'req/cpu-s':>10} {'events/cpu-s':>13} {'cpu%':>5}"
        )
        for scenario in SCENARIOS:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(drive(port, scenario, args.connections, args.warmup))
                cpu_before = cpu_seconds(process)
                done, events, elapsed = runner.run(drive(port, scenario, args.connections, args.seconds))
            cpu = cpu_seconds(process) - cpu_before
            print(
                f"{scenario.name:42} {done / elapsed:9.0f} {events / elapsed:10.0f} {done / cpu:10.0f} "
                f"{events / cpu:13.0f} {100 * cpu / elapsed:5.0f}"
            )
    finally:
        worker.terminate()
        worker.wait(timeout=10)


if __name__ == "__main__":
    main()
