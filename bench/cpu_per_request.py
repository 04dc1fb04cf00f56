"""Gateway CPU per ``auto`` request, where it goes by stage, and the HTTP server under the app.

    .venv/bin/python bench/cpu_per_request.py [--variants uvicorn,granian] [--rounds 5] [--seconds 3]
        [--connections 1,32] [--profile-seconds 8] [--profile-variants LABELS] [--label TEXT]
        [--out bench/results/cpu_per_request.txt]

A variant is ``[label=]server[@source dir]``: the HTTP server (``bench/gateway_servers.py``:
``uvicorn`` as ``switchyard serve`` runs it, with uvloop and httptools; ``uvicorn-lean``
without its proxy-headers middleware and access log; ``granian`` with the ASGI interface;
``granian-st``, its single-threaded runtime) and the source tree the gateway runs from
(default: this checkout), so a change is measured against the code before it
(``git archive <commit> | tar -x -C DIR``) in the same run.

Method. The stack of ``bench/gateway_overhead.py``: one simulated worker (``time_scale=0``,
every ``us`` SKU) pinned to core 0 with this client; each variant's gateway
(``serving.app.create_app``, static prior, event log on, no Feast) pinned to core 1. All the
variants' stacks are up at once (an idle gateway costs nothing); each round then drives every
variant in turn (the order reversed every other round) with a closed loop of keep-alive
connections (the raw asyncio client of ``gateway_overhead``), realistic payloads, ``model:
auto``, for ``--seconds`` after a 1 s warm-up. CPU per request = the user + system CPU of the
gateway's process tree (every thread; granian's worker process included) over the requests
answered. The VM's speed drifts 2-3x within minutes (ADR 0014), so the verdict is the median
of the per-round ratios to the first variant, each ratio taken seconds apart.

Where the CPU goes: a run per variant under ``py-spy record --nonblocking`` (every thread of
the gateway at 500 Hz, idle threads left out; the sampler runs on the client's core) at 32
connections. Each sample is assigned to a stage by its innermost frame that a stage rule
claims (``STAGES``); the shares times the CPU per request measured during the sampling give
µs per request by stage. Samples without a Python frame (granian's Rust threads) are "other".
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import uvloop
from gateway_overhead import bodies, closed_loop, raw_request, realistic_payloads
from gateway_processes import ROOT, free_port, pin, wait_ready, write_config
from gateway_servers import FOLDER_ENV, SERVERS
from machine import describe_machine, print_report

from features.catalog import load_catalog

# ---------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class Variant:
    """One gateway under test: a label, its HTTP server, and the source tree it runs from."""

    label: str
    server: str
    code: Path = ROOT

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``[label=]server[@source dir]``, e.g. ``granian`` or ``before=uvicorn@/tmp/base``."""
        label, _, rest = text.rpartition("=")
        server, _, code = rest.partition("@")
        if server not in SERVERS:
            raise ValueError(f"{text}: the server is one of {', '.join(SERVERS)}")
        return cls(label or rest, server, Path(code).resolve() if code else ROOT)


class GatewayStack:
    """A simulated worker on core 0 and the gateway of one variant on core 1."""

    def __init__(self, folder: Path, variant: Variant, time_scale: float = 0.0) -> None:
        self.variant = variant
        skus = [sku.name for sku in load_catalog().in_region("us")]
        self.worker_port, self.port = free_port(), free_port()
        worker = [sys.executable, "-m", "simulator.worker", "--time-scale", str(time_scale), "--region", "us"]
        worker += ["--port", str(self.worker_port), "--parent-pid", str(os.getpid())]
        for sku in skus:
            worker += ["--sku", sku]
        self.worker = subprocess.Popen(worker, cwd=ROOT)
        self.gateway: subprocess.Popen | None = None
        try:
            pin(self.worker.pid, 0)
            wait_ready(f"http://127.0.0.1:{self.worker_port}/health", self.worker)
            write_config(folder, f"http://127.0.0.1:{self.worker_port}")
            env = {
                **os.environ,
                FOLDER_ENV: str(folder),
                "PYTHONPATH": os.pathsep.join([str(variant.code), str(ROOT / "bench")]),
            }
            command = [sys.executable, str(ROOT / "bench" / "gateway_servers.py"), variant.server]
            self.gateway = subprocess.Popen([*command, str(self.port)], cwd=variant.code, env=env)
            pin(self.gateway.pid, 1)  # granian's worker process inherits it
            wait_ready(f"http://127.0.0.1:{self.port}/readyz", self.gateway)
            pin(0, 0)
        except BaseException:
            self.stop()
            raise

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.gateway.pid)  # type: ignore[union-attr]
        return [root, *root.children(recursive=True)]

    def app_pid(self) -> int:
        """The process that runs the app's Python (granian: its worker)."""
        processes = self.processes()
        return processes[-1].pid

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes():
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        for process in (self.gateway, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in (self.gateway, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


@dataclass
class Cell:
    label: str
    connections: int
    rate: float  # req/s
    cpu_ms: float  # gateway CPU per request


def measure(stack: GatewayStack, requests: list[bytes], connections: int, seconds: float) -> Cell:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(closed_loop(stack.port, requests, connections, 1.0))
        before = stack.cpu_seconds()
        done, elapsed = runner.run(closed_loop(stack.port, requests, connections, seconds))
        cpu = stack.cpu_seconds() - before
    return Cell(stack.variant.label, connections, done / elapsed, 1000.0 * cpu / done)


# ---------------------------------------------------------------------- the stage breakdown

# (stage, regex on "file:function" of a frame); the innermost frame that one claims names the
# sample's stage, the first matching rule wins
STAGES: tuple[tuple[str, str], ...] = (
    (
        "event log: convert + write (writer thread)",
        r"serving/eventlog\.py|features/record_store\.py|pyarrow|features/records\.py:.*(to_table|columns|_array)",
    ),
    ("event log: records (ledger.finish, submit)", r"serving/ledger\.py|features/records\.py"),
    ("metrics (prometheus_client)", r"prometheus_client"),
    ("features: task classifier", r"features/task_classifier\.py"),
    ("features: prompt embedding", r"features/prompt_embedding\.py"),
    (
        "features: code, script, request vector",
        r"features/text_signals\.py|features/request\.py:(routing_facts|request_features|embedding_features)|features/schema\.py",
    ),
    (
        "prefix keys, conversation key",
        r"features/prefix\.py|request_parts\.py:conversation_key",
    ),
    ("screen facts (token estimates)", r"features/request\.py:screen_facts|features/tokens\.py"),
    ("parse + validate body", r"features/messages_request\.py|features/wire\.py|orjson"),
    ("auth", r"serving/tenants\.py"),
    (
        "policy checks + candidates",
        r"serving/policy_checks\.py|features/eligibility\.py|routing\.py:placements",
    ),
    ("admission", r"serving/admission"),
    ("scoring", r"router_runtime\.py:.*score|router_model/scorer\.py"),
    (
        "policy (choose_sku, costs)",
        r"router_model/policy\.py|router_model/candidates\.py",
    ),
    (
        "routing: rows, cache estimate, plan",
        r"serving/routing\.py|features/vector\.py|serving/prompt_cache\.py",
    ),
    (
        "worker call (HTTP client, replica choice, breakers)",
        r"serving/worker|serving/workers\.py|serving/replica_choice\.py|serving/breaker\.py|aiohttp|multidict|yarl|asyncio/timeouts\.py",
    ),
    (
        "gateway: other (ids, reply, bookkeeping)",
        r"serving/gateway\.py|serving/request_parts\.py|serving/errors\.py",
    ),
    ("ASGI layer (messages_endpoint)", r"serving/messages_endpoint\.py"),
    (
        "FastAPI/Starlette layers before the endpoint (telemetry, body limit)",
        r"fastapi|starlette|opentelemetry",
    ),
    ("HTTP server (uvicorn)", r"uvicorn|h11|httptools"),
    ("HTTP server (granian)", r"granian"),
    ("event loop (uvloop, asyncio: I/O, scheduling)", r"uvloop|asyncio|threading\.py|concurrent/futures"),
)
# shared helpers: their time goes to the stage of whoever called them
TRANSPARENT = re.compile(
    r"features/request\.py:(content_text|prompt_segments)|features/identity_cache\.py|features/catalog\.py"
)
_RULES = [(stage, re.compile(pattern)) for stage, pattern in STAGES]
OTHER = "other"
PROFILE_RATE = 500


def py_spy_path() -> str | None:
    """py-spy beside this interpreter or on the PATH (``pip install py-spy``; a tool, not a dependency)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def stage_of(frames: list[str]) -> str:
    """The stage of one sample; ``frames`` outermost first, each ``function (file:line)``."""
    for frame in reversed(frames):
        match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
        name, where = (match.group(1), match.group(2)) if match else (frame, "")
        key = f"{where}:{name}"
        if TRANSPARENT.search(key):
            continue
        for stage, rule in _RULES:
            if rule.search(key):
                return stage
    return OTHER


def profile_stages(stack: GatewayStack, requests: list[bytes], connections: int, seconds: float):
    """(stage → share of samples, samples, the cell measured under the profiler)."""
    out = Path(tempfile.mkdtemp(prefix="cpu-prof-")) / "stacks.txt"
    rate = str(PROFILE_RATE)
    py_spy = py_spy_path()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(closed_loop(stack.port, requests, connections, 1.0))
        command = [py_spy, "record", "--pid", str(stack.app_pid()), "--rate", rate, "--format", "raw"]
        command += ["--nonblocking", "--threads"]
        command += ["--output", str(out), "--duration", str(int(seconds) + 2)]
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        before = stack.cpu_seconds()
        done, elapsed = runner.run(closed_loop(stack.port, requests, connections, seconds))
        cpu = stack.cpu_seconds() - before
    recorder.wait(timeout=60)
    counts: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        frames = stack_text.split(";")
        if frames[0].startswith("thread ("):  # --threads: the thread comes first
            frames = frames[1:]
        counts[stage_of(frames)] += int(count)
    total = sum(counts.values())
    shares = {stage: n / total for stage, n in counts.items()}
    shutil.rmtree(out.parent, ignore_errors=True)
    return shares, total, Cell(stack.variant.label, connections, done / elapsed, 1000.0 * cpu / done)


# ---------------------------------------------------------------------- report


def interleaved(variants: list[Variant], payloads: list[dict], args) -> list[Cell]:
    """Every variant's stack up at once (idle ones cost nothing), then rounds of short cells:
    each round measures every variant (the order reversed every other round) at each
    connection count, so the VM's drift falls on all of them alike."""
    cells: list[Cell] = []
    folders = [Path(tempfile.mkdtemp(prefix="switchyard-cpu-")) for _ in variants]
    stacks: list[GatewayStack] = []
    try:
        for folder, variant in zip(folders, variants, strict=True):
            stacks.append(GatewayStack(folder, variant))
        requests = {
            stack.variant.label: [raw_request(stack.port, b) for b in bodies(payloads, "auto")]
            for stack in stacks
        }
        for round_index in range(args.rounds):
            for connections in args.connections:
                for stack in stacks if round_index % 2 == 0 else stacks[::-1]:
                    cell = measure(stack, requests[stack.variant.label], connections, args.seconds)
                    cells.append(cell)
                    print(
                        f"  round {round_index + 1} {stack.variant.label:<12} {connections:>3} conn: "
                        f"{cell.rate:6.0f} req/s {cell.cpu_ms:5.3f} ms CPU/req",
                        flush=True,
                    )
    finally:
        for stack in stacks:
            stack.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return cells


def summary(variants: list[Variant], cells: list[Cell], connection_counts: list[int]) -> list[str]:
    lines = ["CPU per request (gateway process tree, user + system), median of the rounds (each round):"]
    for connections in connection_counts:
        for variant in variants:
            mine = [c for c in cells if c.label == variant.label and c.connections == connections]
            cpu = float(np.median([c.cpu_ms for c in mine]))
            rate = float(np.median([c.rate for c in mine]))
            per_round = " ".join(f"{c.cpu_ms:.3f}" for c in mine)
            lines.append(
                f"  {connections:>3} conn  {variant.label:<10} {cpu:6.3f} ms CPU/req  {rate:6.0f} req/s   ({per_round})"
            )
        base = [c for c in cells if c.label == variants[0].label and c.connections == connections]
        for variant in variants[1:]:
            mine = [c for c in cells if c.label == variant.label and c.connections == connections]
            ratios = [m.cpu_ms / b.cpu_ms for m, b in zip(mine, base, strict=True)]
            lines.append(
                f"           {variant.label} / {variants[0].label}: CPU per request ×{np.median(ratios):.2f} "
                f"(per round: {' '.join(f'{r:.2f}' for r in ratios)})"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants",
        type=lambda text: [Variant.parse(item) for item in text.split(",")],
        default=[Variant("uvicorn", "uvicorn"), Variant("granian", "granian")],
        help="[label=]server[@source dir], comma-separated; the first is the reference",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=lambda text: [int(c) for c in text.split(",")], default=[1, 32])
    parser.add_argument("--profile-seconds", type=float, default=8.0, help="0: no stage breakdown")
    parser.add_argument(
        "--profile-variants", type=lambda text: text.split(","), default=None, help="labels (default: all)"
    )
    parser.add_argument("--label", default="", help="a note for the report's heading")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.profile_seconds > 0 and py_spy_path() is None:
        parser.error("the stage breakdown needs py-spy (pip install py-spy), or --profile-seconds 0")
    if (
        any(v.server.startswith("granian") for v in args.variants)
        and importlib.util.find_spec("granian") is None
    ):
        parser.error("granian variants need granian (pip install granian)")

    payloads = realistic_payloads(400)
    lines = [f"machine: {describe_machine()}"]
    lines.append(
        "gateway: static prior, event log on, no Feast; worker (time_scale=0) and client on core 0, gateway on "
        f"core 1; realistic payloads (400 bodies, model auto); closed loop, {args.seconds:g} s per cell, "
        f"{args.rounds} interleaved rounds"
    )
    if args.label:
        lines.append(args.label)
    lines.append(
        "variants: "
        + "; ".join(
            f"{v.label} = {v.server}" + ("" if v.code == ROOT else f" on the code in {v.code}")
            for v in args.variants
        )
    )
    cells = interleaved(args.variants, payloads, args)
    lines += ["", *summary(args.variants, cells, args.connections)]
    if args.profile_seconds > 0:
        for variant in args.variants:
            if args.profile_variants and variant.label not in args.profile_variants:
                continue
            lines += ["", *profile_report(variant, payloads, args.profile_seconds)]
    lines.append(f"\nmachine at the end: {describe_machine()}")
    print_report("\n".join(lines), args.out)


def profile_report(variant: Variant, payloads: list[dict], seconds: float) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="switchyard-cpu-"))
    stack = GatewayStack(folder, variant)
    try:
        requests = [raw_request(stack.port, b) for b in bodies(payloads, "auto")]
        shares, samples, cell = profile_stages(stack, requests, 32, seconds)
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        f"where the CPU goes: {variant.label}, 32 connections, py-spy (non-blocking, {PROFILE_RATE} Hz, "
        f"idle threads left out), {samples:,} samples; {cell.rate:.0f} req/s and {cell.cpu_ms:.3f} ms CPU "
        "per request while sampled; µs per request = share × that:"
    ]
    for stage, share in sorted(shares.items(), key=lambda item: -item[1]):
        lines.append(f"  {100 * share:5.1f}%  {1000 * share * cell.cpu_ms:5.0f} µs  {stage}")
    return lines


if __name__ == "__main__":
    main()
