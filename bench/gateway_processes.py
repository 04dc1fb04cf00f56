"""The processes of the gateway benchmark: a simulated worker, the gateway, and pass-through baselines.

Each runs in its own process (so the client and the servers do not share a GIL), pinned to a
core where the OS allows it. Run as a script this module is the server side:

    python bench/gateway_processes.py --serve-gateway PORT --folder DIR [--router-model F] [--profile-out F]
        [--trace-out F]
    python bench/gateway_processes.py --serve-baseline {canned,httpx,aiohttp} --port PORT --worker-url URL
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml
from fastapi import FastAPI, Request  # module level: the handlers' string annotations resolve here
from fastapi.responses import Response

from features.catalog import load_catalog
from features.deployment import DeploymentMap, SkuDeployment, write_deployment
from serving.tenants import KEY_HASH_SCHEME, hash_api_key

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-sy-bench-internal-0000000000000000000"
SALT = "62656e63682d676174657761792d73616c74"  # hex, 18 bytes
PINNED = "claude-haiku-4-5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(pid: int, core: int) -> bool:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(pid, {core})
    return True


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready in {seconds:.0f} s")


def write_config(folder: Path, worker_url: str) -> None:
    """The gateway's tenant file (one internal tenant) and deployment map (every us SKU on the worker)."""
    catalog = load_catalog()
    skus = [sku.name for sku in catalog.in_region("us")]
    tenant = {
        "tenant_id": "bench",
        "tier": "internal",
        "home_region": "us",
        "entitled_skus": skus,
        "api_key_hashes": [hash_api_key(API_KEY, SALT)],
    }
    document = {"version": 1, "key_hashing": {"scheme": KEY_HASH_SCHEME, "salt": SALT}, "tenants": [tenant]}
    (folder / "tenants.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    deployments = tuple(SkuDeployment(sku=name, region="us", endpoints=(worker_url,)) for name in skus)
    write_deployment(DeploymentMap(time_scale=0.0, deployments=deployments), folder / "deployment.json")


def serve_gateway(
    folder: Path, port: int, router_model: Path | None, profile: Path | None, trace: Path | None = None
) -> None:
    """The gateway process: ``create_app`` under uvicorn as ``switchyard serve`` runs it."""
    import uvicorn

    from serving.app import AppSettings, create_app
    from serving.settings import (
        AdmissionSettings,
        GatewaySettings,
        PolicySettings,
        TenantSettings,
        WorkerSettings,
    )

    settings = AppSettings(
        gateway=GatewaySettings(mlruns=None, router_model_file=router_model, log_dir=folder / "logs", seed=7),
        tenants=TenantSettings(file=folder / "tenants.yaml"),
        admission=AdmissionSettings(),
        policy=PolicySettings(),
        workers=WorkerSettings(deployment_file=folder / "deployment.json"),
    )
    profiler = cProfile.Profile() if profile else None
    if profiler:  # SIGUSR1 starts profiling, SIGUSR2 stops it: the benchmark profiles its measured window
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGUSR2, lambda *_: profiler.disable())
    rows: list[tuple[float, float, float, float]] = []
    if trace:
        trace_requests(rows)
    try:
        uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    except KeyboardInterrupt:  # how Stack.stop ends it, after uvicorn's graceful shutdown
        pass
    finally:
        if trace:
            trace.write_text(json.dumps(rows))
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)


def trace_requests(rows: list[tuple[float, float, float, float]]) -> None:
    """Record, per ``POST /v1/messages``, when the ASGI layer got it, when the worker call
    started and ended, and when the reply was sent (``perf_counter`` seconds). One request at a
    time only: the hooks share one slot. Benchmark-only wrappers of this process's classes."""
    from serving import messages_endpoint, workers

    slot: dict[str, float] = {}
    endpoint_call, pool_complete = messages_endpoint.MessagesEndpoint.__call__, workers.WorkerPool.complete

    async def traced_endpoint(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope.get("path") != messages_endpoint.MESSAGES_PATH:
            return await endpoint_call(self, scope, receive, send)
        slot.clear()
        slot["start"] = time.perf_counter()
        await endpoint_call(self, scope, receive, send)
        nan = float("nan")
        rows.append((slot["start"], slot.get("call", nan), slot.get("answer", nan), time.perf_counter()))

    async def traced_complete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        slot["call"] = time.perf_counter()
        try:
            return await pool_complete(self, *args, **kwargs)
        finally:
            slot["answer"] = time.perf_counter()

    messages_endpoint.MessagesEndpoint.__call__ = traced_endpoint  # type: ignore[method-assign]
    workers.WorkerPool.complete = traced_complete  # type: ignore[method-assign]


class Stack:
    """The worker and gateway processes, pinned to their cores (the worker to core 0)."""

    def __init__(
        self,
        folder: Path,
        router_model: Path | None,
        profile: Path | None = None,
        pin_cores: bool = True,
        gateway_core: int = 1,
        trace: Path | None = None,
    ) -> None:
        self.folder = folder
        skus = [sku.name for sku in load_catalog().in_region("us")]
        self.worker_port, self.gateway_port = free_port(), free_port()
        worker_args = [sys.executable, "-m", "simulator.worker", "--time-scale", "0", "--region", "us"]
        worker_args += ["--port", str(self.worker_port), *itertools.chain(*(("--sku", s) for s in skus))]
        worker_args += ["--parent-pid", str(os.getpid())]  # the worker exits if this process dies
        self.worker = subprocess.Popen(worker_args, cwd=ROOT)
        self.gateway: subprocess.Popen | None = None
        try:
            self.pinned = pin_cores and pin(self.worker.pid, 0)
            wait_ready(f"{self.worker_url}/health", self.worker)
            write_config(folder, self.worker_url)
            gateway_args = [sys.executable, __file__, "--serve-gateway", str(self.gateway_port)]
            gateway_args += ["--folder", str(folder)]
            if router_model:
                gateway_args += ["--router-model", str(router_model)]
            if profile:
                gateway_args += ["--profile-out", str(profile)]
            if trace:
                gateway_args += ["--trace-out", str(trace)]
            self.gateway = subprocess.Popen(gateway_args, cwd=ROOT)
            self.pinned = self.pinned and pin(self.gateway.pid, gateway_core)
            wait_ready(f"{self.gateway_url}/readyz", self.gateway)
            self.pinned = self.pinned and pin(0, 0)  # the client shares the worker's core
        except BaseException:
            self.stop()
            raise

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def stop(self) -> None:
        """Stop both; the gateway drains and flushes its event log before it exits."""
        processes = [p for p in (self.gateway, self.worker) if p is not None]
        for process in processes:
            if process.poll() is None:  # uvicorn re-raises the signal after shutdown: SIGINT lets
                process.send_signal(signal.SIGINT)  # the gateway's profiler write its file
        for process in processes:
            process.wait(timeout=60)


def serve_baseline(mode: str, port: int, worker_url: str) -> None:
    """A pass-through without the gateway's logic: the floor of its stack on this machine.

    ``canned``: FastAPI under uvicorn answering from memory; ``httpx``: plus the worker call
    with an ``httpx.AsyncClient`` configured as ``serving.workers.WorkerPool`` configures it;
    ``aiohttp``: the same call with an ``aiohttp.ClientSession``.
    """
    import uvicorn

    clients: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if mode == "httpx":
            limits = httpx.Limits(max_connections=4096, max_keepalive_connections=1024, keepalive_expiry=4.0)
            timeout = httpx.Timeout(connect=1.0, read=None, write=10.0, pool=1.0)
            clients["http"] = client = httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)
            yield
            await client.aclose()
        elif mode == "aiohttp":
            import aiohttp

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4096)) as session:
                clients["http"] = session
                yield
        else:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        document = json.loads(await request.body())
        document["model"] = PINNED
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if mode == "canned":
            return Response(CANNED_REPLY, media_type="application/json")
        if mode == "httpx":
            reply = await clients["http"].post(f"{worker_url}/v1/messages", content=body, headers=headers)  # type: ignore[attr-defined]
            return Response(reply.content, status_code=reply.status_code, media_type="application/json")
        async with clients["http"].post(f"{worker_url}/v1/messages", data=body, headers=headers) as reply:  # type: ignore[attr-defined]
            return Response(await reply.read(), status_code=reply.status, media_type="application/json")

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b"{}", media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


CANNED_REPLY = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": PINNED,
        "content": [{"type": "text", "text": "hello " * 64}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 0, "output_tokens": 64},
    }
).encode()


def _exit_with_parent() -> None:
    """A server started by the benchmark stops (SIGINT: a clean shutdown) when the benchmark is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-gateway", type=int, default=None, metavar="PORT")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--router-model", type=Path, default=None)
    parser.add_argument("--profile-out", type=Path, default=None)
    parser.add_argument("--trace-out", type=Path, default=None)
    parser.add_argument("--serve-baseline", choices=("canned", "httpx", "aiohttp"), default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--worker-url", default=None)
    args = parser.parse_args()
    _exit_with_parent()
    if args.serve_gateway is not None:
        serve_gateway(args.folder, args.serve_gateway, args.router_model, args.profile_out, args.trace_out)
    elif args.serve_baseline is not None:
        serve_baseline(args.serve_baseline, args.port, args.worker_url)
    else:
        parser.error("--serve-gateway or --serve-baseline")


if __name__ == "__main__":
    main()
