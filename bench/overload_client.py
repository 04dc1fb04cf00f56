"""The overload benchmark's client and its readings of the gateway's ``/metrics``.

:func:`offered_load` sends Poisson arrivals in open loop over pre-opened keep-alive connections
(raw HTTP/1.1, any status accepted) and keeps, per request, its tenant, status and times;
:func:`closed_loop_cpu` measures answers of one status per second and the gateway's CPU per
answer; :func:`sequential_status` times requests one at a time.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass

import numpy as np
from gateway_overhead import exchange
from tiered_gateway import Service, cpu_seconds

POOL = 1024  # keep-alive connections opened before the offered load starts


@dataclass
class Outcomes:
    tier: np.ndarray  # index into TENANT_TIERS
    status: np.ndarray
    scheduled: np.ndarray  # s since the start
    sent: np.ndarray
    done: np.ndarray
    new_connections: int


async def _read(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One Content-Length response: (status, whether the server closes the connection)."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    start = head.index(b"content-length: ") + 16
    await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
    return int(head[9:12]), b"connection: close" in head


async def offered_load(
    port: int, by_tier: list[list[bytes]], mix: list[float], rate: float, seconds: float, seed: int
) -> Outcomes:
    """Poisson arrivals at ``rate`` for ``seconds``, each tenant drawn from ``mix``."""
    rng = np.random.default_rng(seed)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(POOL)]
    rows: list[tuple[int, int, float, float, float]] = []
    opened = [0]
    tasks: set[asyncio.Task] = set()
    start = time.perf_counter()

    async def one(tier: int, body: bytes, scheduled: float) -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            opened[0] += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = time.perf_counter() - start
        writer.write(body)
        try:
            status, close = await _read(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            status, close = 0, True
        rows.append((tier, status, scheduled, sent, time.perf_counter() - start))
        if close:
            writer.close()
        else:
            idle.append((reader, writer))

    next_at = 0.0
    for index in range(10**9):
        next_at += rng.exponential(1.0 / rate)
        if next_at > seconds:
            break
        await asyncio.sleep(max(0.0, next_at - (time.perf_counter() - start)))
        tier = int(rng.choice(len(mix), p=mix))
        task = asyncio.create_task(one(tier, by_tier[tier][index % len(by_tier[tier])], next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    columns = np.array(rows, dtype=float).T
    return Outcomes(
        columns[0].astype(int), columns[1].astype(int), columns[2], columns[3], columns[4], opened[0]
    )


def sequential_status(port: int, request: bytes, count: int) -> np.ndarray:
    """ms per request at concurrency 1 over one keep-alive socket (any status)."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(count + count // 10):
            started = time.perf_counter()
            exchange(sock, request)
            if index >= count // 10:
                times.append((time.perf_counter() - started) * 1000.0)
    return np.array(times)


def histogram(metrics: str, name: str) -> list[tuple[float, float]]:
    return [
        (float("inf") if le == "+Inf" else float(le), float(count))
        for le, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)
    ]


def counters(metrics: str, name: str) -> dict[str, float]:
    """A counter's samples by their label text, e.g. ``{'error_type="overloaded_error",tier="free"': 3.0}``."""
    return {labels: float(value) for labels, value in re.findall(rf"^{name}{{(.*)}} (\S+)$", metrics, re.M)}


def counter_increase(before: str, after: str, name: str) -> str:
    old = counters(before, name)
    rows = [(labels, value - old.get(labels, 0.0)) for labels, value in counters(after, name).items()]
    return (
        "; ".join(f"{labels.replace(chr(34), '')} {delta:.0f}" for labels, delta in rows if delta) or "none"
    )


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of cumulative ``buckets``."""
    total = buckets[-1][1]
    return next(upper for upper, cumulative in buckets if cumulative >= q * total)


def closed_loop_cpu(
    runner: asyncio.Runner,
    service: Service,
    requests: list[bytes],
    connections: int,
    seconds: float,
    status: int,
) -> tuple[float, float]:
    """(answers with ``status`` per second, gateway CPU-ms per such answer) of a closed loop."""
    runner.run(closed_loop_status(service.gateway_port, requests, connections, 2.0, status))
    pids = service.gateway_pids()
    before = cpu_seconds(pids)
    done, elapsed = runner.run(
        closed_loop_status(service.gateway_port, requests, connections, seconds, status)
    )
    return done / elapsed, 1000.0 * (cpu_seconds(pids) - before) / max(1, done)


async def closed_loop_status(
    port: int, requests: list[bytes], connections: int, seconds: float, status: int
) -> tuple[int, float]:
    """(answers with ``status``, seconds) of a closed loop; answers with another status do not count."""
    deadline = time.perf_counter() + seconds
    done = [0]

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.perf_counter() < deadline:
            writer.write(requests[sent % len(requests)])
            sent += 1
            if (await _read(reader))[0] == status:
                done[0] += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    return done[0], time.perf_counter() - started
