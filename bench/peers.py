"""Switchyard against the LiteLLM proxy: the same upstream, the same cores, the same client.

    .venv/bin/python bench/peers.py [--seconds 8] [--connections 32] [--litellm-version 1.108.7]
        [--out bench/results/peers.txt]

Method. One simulated worker (every SKU deployed in ``us``, ``time_scale=0``: it answers at once)
is the upstream of both proxies; it runs pinned to core 0 with this client. Switchyard runs as
``bench/gateway_overhead.py`` runs it (``bench/gateway_processes.Stack``: ``create_app`` under
uvicorn, one internal tenant, the event log on, no Feast, the static-prior router), pinned to
core 1, called with ``model: auto``. The LiteLLM proxy (``litellm[proxy]``, one worker process,
no database, the local model-cost map, the
client's key as its master key) runs under ``taskset -c 1`` on the same core, with one
model ``claude-haiku-4-5`` forwarded to the worker as an Anthropic endpoint
(``model: anthropic/claude-haiku-4-5``, ``api_base`` = the worker), called on its ``/v1/messages``.
Only one proxy has traffic at a time. LiteLLM lives in its own venv, made once per machine
outside the repository (``~/.cache/switchyard/litellm-venv-<version>``, or
``$SWITCHYARD_LITELLM_VENV``; a stamp file marks it finished; an ``flock`` serialises callers).

The client: keep-alive connections of a raw asyncio client (uvloop), each sending the next
request when the previous answer has been read to its end (the last SSE chunk when streaming).
Per cell (non-streaming and streaming; 1 connection and ``--connections``), each target (the
worker direct, Switchyard, LiteLLM) gets a one-second warm-up, then ``--seconds`` of load:
req/s and the p50 / p99 of the whole exchange; added latency = the proxy's percentile minus
the worker's at the same cell; the CPU (user + system, all threads and children) each target's
processes spent per request. Both proxies run on one core each, so req/s is also req/s per core. Every request has the same Anthropic Messages body (a 20-token question, 64 tokens out).
The last line is the smallest lead of each kind (throughput, requests per CPU-second, added
p50, added p99) over the four cells, against the ≥ 10× the project keeps over this peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import psutil
import uvloop
import yaml
from gateway_overhead import raw_request, read_response, small_payload
from gateway_processes import API_KEY, PINNED, ROOT, Stack, free_port, wait_ready
from machine import describe_machine, print_report

from switchyard_cli.vllm_env import _run, cache_root, exclusive_lock

LITELLM_VERSION = "1.108.7"
STAMP = ".switchyard-ready"
PROXY_CORE = 1


# ---------------------------------------------------------------------- the LiteLLM venv


def litellm_venv_path(version: str) -> Path:
    configured = os.environ.get("SWITCHYARD_LITELLM_VENV")
    return Path(configured) if configured else cache_root() / f"litellm-venv-{version}"


def ensure_litellm_venv(version: str) -> tuple[Path, float]:
    """The venv holding ``litellm[proxy]==version``, made unless a finished one is there;
    (its path, seconds spent installing: 0 when it was already there)."""
    venv = litellm_venv_path(version)
    requirement = f"litellm[proxy]=={version}"
    stamp = venv / STAMP
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == requirement:
        return venv, 0.0
    with exclusive_lock(venv.with_name(venv.name + ".lock")):
        if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == requirement:
            return venv, 0.0
        shutil.rmtree(venv, ignore_errors=True)
        log_file = venv.with_name(venv.name + ".install.log")
        log_file.write_text("", encoding="utf-8")
        print(f"litellm venv: creating {venv} ({requirement}); log: {log_file}", flush=True)
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(venv)], log_file, "python -m venv", 300)
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", requirement], log_file, "pip install litellm", 1800)
        _run([python, "-c", "import litellm.proxy.proxy_server"], log_file, "import litellm.proxy", 300)
        stamp.write_text(requirement + "\n", encoding="utf-8")
        elapsed = time.monotonic() - started
        print(f"litellm venv: ready in {elapsed:.0f} s", flush=True)
    return venv, elapsed


class LiteLLMProxy:
    """The LiteLLM proxy, one worker process pinned to ``PROXY_CORE``, forwarding to the worker."""

    def __init__(self, venv: Path, folder: Path, worker_url: str) -> None:
        self.port = free_port()
        config = {
            "model_list": [
                {
                    "model_name": PINNED,
                    "litellm_params": {
                        "model": f"anthropic/{PINNED}",
                        "api_base": worker_url,
                        "api_key": "sk-bench-upstream",
                    },
                }
            ],
            "litellm_settings": {"telemetry": False, "set_verbose": False},
            "general_settings": {"master_key": API_KEY},  # the key the client sends to every target
        }
        config_file = folder / "litellm.yaml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        environment = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map at start
            "LITELLM_LOG": "ERROR",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        environment.pop("DATABASE_URL", None)
        command = [
            "taskset",
            "-c",
            str(PROXY_CORE),
            str(venv / "bin" / "litellm"),
            "--config",
            str(config_file),
        ]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"]
        self.log = folder / "litellm.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
        try:
            wait_ready(f"http://127.0.0.1:{self.port}/health/liveliness", self.process, seconds=180.0)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Cell:
    """One target under one load: completed requests per second and whole-exchange times (ms)."""

    rate: float
    ms: np.ndarray
    errors: int
    cpu_ms: float = float("nan")  # CPU of the target's processes per completed request


async def closed_loop(port: int, requests: list[bytes], connections: int, seconds: float) -> Cell:
    """``connections`` keep-alive connections, each sending its next request once the previous
    answer has been read to its end, for ``seconds``."""
    deadline = time.perf_counter() + seconds
    times: list[float] = []
    errors = [0]

    async def connection(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(requests[sent % len(requests)])
            sent += 1
            if await read_response(reader) != 200:
                errors[0] += 1
                continue
            times.append((time.perf_counter() - started) * 1000.0)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(index) for index in range(connections)))
    return Cell(len(times) / (time.perf_counter() - started), np.array(times), errors[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (all threads)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        times = each.cpu_times()
        total += times.user + times.system
    return total


def measure(
    runner: asyncio.Runner, port: int, pid: int, bodies: list[bytes], connections: int, seconds: float
) -> Cell:
    requests = [raw_request(port, body) for body in bodies]
    runner.run(closed_loop(port, requests, connections, 1.0))
    before = cpu_seconds(pid)
    cell = runner.run(closed_loop(port, requests, connections, seconds))
    spent = cpu_seconds(pid) - before
    return replace(cell, cpu_ms=1000.0 * spent / max(cell.rate * seconds, 1.0))


def payload_bodies(model: str, stream: bool) -> list[bytes]:
    return [json.dumps({**small_payload(model, variant), "stream": stream}).encode() for variant in range(64)]


def check_answers(port: int, model: str, stream: bool) -> str:
    """One request through a target, its status and the start of its answer (for the report's log)."""
    body = {**small_payload(model, 0), "stream": stream}
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    reply = httpx.post(
        f"http://127.0.0.1:{port}/v1/messages", json=body, headers=headers, timeout=30, trust_env=False
    )
    return f"{reply.status_code} {reply.text[:160]!r}"


# ---------------------------------------------------------------------- report


def cell_line(name: str, cell: Cell, direct: Cell | None) -> str:
    p50, p99 = np.percentile(cell.ms, [50, 99])
    text = f"    {name:<12} {cell.rate:7.0f} req/s  {cell.cpu_ms:6.2f} ms CPU/req  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
    if direct is not None:
        d50, d99 = np.percentile(cell.ms, [50, 99]) - np.percentile(direct.ms, [50, 99])
        text += f"   added p50 {d50:+7.2f} ms  p99 {d99:+7.2f} ms"
    return text + (f"   ({cell.errors} non-200)" if cell.errors else "")


def ratios(ours: Cell, theirs: Cell, direct: Cell) -> dict[str, float]:
    """How many times Switchyard leads: throughput, requests per CPU-second, added p50 and p99."""
    added = [
        (np.percentile(theirs.ms, q) - np.percentile(direct.ms, q))
        / max(np.percentile(ours.ms, q) - np.percentile(direct.ms, q), 1e-9)
        for q in (50, 99)
    ]
    return {
        "throughput": ours.rate / theirs.rate,
        "req per CPU-second": theirs.cpu_ms / ours.cpu_ms,
        "added p50": float(added[0]),
        "added p99": float(added[1]),
    }


def ratio_line(lead: dict[str, float]) -> str:
    return "    Switchyard/LiteLLM: " + ", ".join(f"{name} ×{value:.1f}" for name, value in lead.items())


def verdict_line(leads: list[dict[str, float]], target: float = 10.0) -> str:
    """The smallest lead of each kind over all cells, against the issue's ≥ 10× target."""
    least = {name: min(lead[name] for lead in leads) for name in leads[0]}
    met = all(value >= target for value in least.values())
    return (
        "\nsmallest lead over the cells: "
        + ", ".join(f"{name} ×{value:.1f}" for name, value in least.items())
        + f"   (target ≥ {target:g}× on each: {'met' if met else 'MISSED'})"
    )


def run(args: argparse.Namespace) -> str:
    venv, install_s = ensure_litellm_venv(args.litellm_version)
    folder = Path(tempfile.mkdtemp(prefix="switchyard-peers-"))
    lines = [f"machine: {describe_machine(f'litellm {args.litellm_version}')}"]
    stack = Stack(folder, None, pin_cores=True, gateway_core=PROXY_CORE)
    proxy = None
    try:
        proxy = LiteLLMProxy(venv, folder, stack.worker_url)
        targets = {
            "direct": (stack.worker_port, stack.worker.pid, PINNED),
            "switchyard": (stack.gateway_port, stack.gateway.pid, "auto"),  # type: ignore[union-attr]
            "litellm": (proxy.port, proxy.process.pid, PINNED),
        }
        placement = "pinned: worker and client core 0, proxies core 1" if stack.pinned else "not pinned"
        lines.append(
            f"upstream: one simulated worker, time_scale=0; {placement}; Switchyard model auto "
            f"(static prior, event log on); LiteLLM proxy {args.litellm_version}, one worker, /v1/messages"
        )
        lines.append(
            f"client: raw asyncio keep-alive connections, {args.seconds:g} s per cell after 1 s warm-up"
        )
        if install_s:
            lines.append(f"(the LiteLLM venv was installed in this run: {install_s:.0f} s)")
        for name in ("switchyard", "litellm"):
            for stream in (False, True):
                port, _, model = targets[name]
                print(f"check {name} stream={stream}: {check_answers(port, model, stream)}", flush=True)
        leads: list[dict[str, float]] = []
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for stream in (False, True):
                for connections in (1, args.connections):
                    lines.append(
                        f"\n{'streaming' if stream else 'non-streaming'}, {connections} connection"
                        + ("s:" if connections > 1 else ":")
                    )
                    cells = {}
                    for name, (port, pid, model) in targets.items():
                        cells[name] = measure(
                            runner, port, pid, payload_bodies(model, stream), connections, args.seconds
                        )
                        direct = None if name == "direct" else cells["direct"]
                        lines.append(cell_line(name, cells[name], direct))
                        print(lines[-1], flush=True)
                    leads.append(ratios(cells["switchyard"], cells["litellm"], cells["direct"]))
                    lines.append(ratio_line(leads[-1]))
    finally:
        if proxy is not None:
            proxy.stop()
        stack.stop()
    return "\n".join([*lines, verdict_line(leads)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="load per target and cell (≤ 10)")
    parser.add_argument("--connections", type=int, default=32, help="connections of the saturation cells")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.txt")
    args = parser.parse_args()
    print_report(run(args), args.out)


if __name__ == "__main__":
    main()
