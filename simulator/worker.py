"""The simulated vLLM worker: config, app factory and the processes that serve it.

A worker serves one or more SKUs of the catalog on one port and speaks what vLLM speaks:
``POST /v1/messages`` (Anthropic Messages API, JSON and SSE), ``POST /v1/chat/completions``
(OpenAI), ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (vLLM's Prometheus names),
plus ``GET|POST /admin/faults`` for fault injection. Latency follows each SKU's
``LatencyProfile`` under continuous batching, scaled by ``time_scale``. See docs/worker.md.

Run one worker::

    python -m simulator.worker --sku claude-haiku-4-5 --sku claude-sonnet-4-5 --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from features.catalog import Catalog, CatalogError, load_catalog
from simulator.faults import FaultConfig, WorkerFaults
from simulator.text import TextTape
from simulator.worker_chat import AnthropicFormat, ChatEndpoint, OpenAIFormat
from simulator.worker_engine import EngineSettings, SkuEngine
from simulator.worker_http import ChatFastPath
from simulator.worker_routes import WorkerRoutes, http_exception_handler, server_error_handler
from simulator.worker_state import WorkerState


class WorkerConfig(BaseModel):
    """Everything one worker needs; defaults run on a laptop."""

    model_config = ConfigDict(extra="forbid")

    skus: tuple[str, ...] = Field(min_length=1, description="catalog SKU names this worker serves")
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=0, le=65535)
    region: str | None = Field(None, description="the region this worker stands for (informational)")
    time_scale: float = Field(1.0, ge=0, description="1 = the latency profile's real times, 0 = never sleep")
    seed: int = Field(0, description="seeds the generated text")
    fault_seed: int | None = Field(None, description="seeds fault draws; None: the text seed")
    kv_cache_blocks: int = Field(32768, ge=1, description="KV-cache capacity per SKU, in 16-token blocks")
    faults: FaultConfig = FaultConfig()
    catalog_path: Path | None = Field(None, description="SKU catalog file; the packaged one when None")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_tokens_per_event: int = Field(16, ge=1, description="cap on tokens per streamed delta event")
    min_event_interval_ms: float = Field(10.0, ge=0, description="decode time one streamed event covers")
    log_level: str = "warning"


def build_worker_state(config: WorkerConfig, catalog: Catalog | None = None) -> WorkerState:
    """The engines, tape and faults of one worker; raises ValueError for unknown SKUs."""
    catalog = catalog if catalog is not None else load_catalog(config.catalog_path)
    unknown = [name for name in config.skus if name not in catalog]
    if unknown:
        raise ValueError(f"unknown SKU(s) {', '.join(unknown)}; the catalog has {', '.join(catalog.names)}")
    settings = EngineSettings(
        time_scale=config.time_scale,
        kv_cache_blocks=config.kv_cache_blocks,
        max_tokens_per_event=config.max_tokens_per_event,
        min_event_interval_s=config.min_event_interval_ms / 1000.0,
    )
    served = {name: catalog.get(name) for name in dict.fromkeys(config.skus)}
    return WorkerState(
        served=served,
        engines={name: SkuEngine(sku, settings) for name, sku in served.items()},
        tape=TextTape(config.seed),
        faults=WorkerFaults(config.faults, config.seed if config.fault_seed is None else config.fault_seed),
        max_body_bytes=config.max_body_bytes,
        time_scale=config.time_scale,
        region=config.region,
    )


def create_worker_app(config: WorkerConfig, catalog: Catalog | None = None) -> Starlette:
    """The ASGI app of one worker (the state lives on ``app.state.worker``)."""
    state = build_worker_state(config, catalog)
    routes = WorkerRoutes(state)
    chat_endpoints = {
        "/v1/messages": ChatEndpoint(state, AnthropicFormat()),
        "/v1/chat/completions": ChatEndpoint(state, OpenAIFormat()),
    }
    app = Starlette(
        routes=[
            *(Route(path, endpoint, methods=["POST"]) for path, endpoint in chat_endpoints.items()),
            Route("/v1/models", routes.models, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/admin/faults", routes.get_faults, methods=["GET"]),
            Route("/admin/faults", routes.set_faults, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_exception_handler, Exception: server_error_handler},
        middleware=[Middleware(ChatFastPath, endpoints=chat_endpoints)],
    )
    app.state.worker = state
    return app


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_server(config: WorkerConfig, catalog: Catalog | None = None) -> uvicorn.Server:
    uvicorn_config = uvicorn.Config(
        create_worker_app(config, catalog),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=False,
        http="httptools",
        loop="auto",
        lifespan="off",
        proxy_headers=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    return _QuietServer(uvicorn_config)


async def serve_workers_async(servers: Sequence[uvicorn.Server], parent_pid: int | None = None) -> None:
    """Serve several workers in this event loop until SIGINT/SIGTERM (or the parent dies)."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)

    async def watch_parent() -> None:
        while os.getppid() == parent_pid:
            await asyncio.sleep(1.0)
        stop()

    watcher = asyncio.ensure_future(watch_parent()) if parent_pid is not None else None
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        if watcher is not None:
            watcher.cancel()


def serve_workers(
    configs: Sequence[WorkerConfig], catalog: Catalog | None = None, *, parent_pid: int | None = None
) -> None:
    """Run several workers (one port each) in one process, on uvloop; blocks until signalled.

    With ``parent_pid`` the process also stops when that parent goes away (fleet children).
    """
    catalog = catalog if catalog is not None else load_catalog(configs[0].catalog_path)
    servers = [uvicorn_server(config, catalog) for config in configs]
    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        runner.run(serve_workers_async(servers, parent_pid))


def serve_worker(config: WorkerConfig, catalog: Catalog | None = None) -> None:
    """Run one worker; blocks until SIGINT/SIGTERM."""
    serve_workers([config], catalog)


@contextlib.contextmanager
def running_worker(config: WorkerConfig, catalog: Catalog | None = None) -> Iterator[str]:
    """Serve a worker from a background thread on a free loopback port; yields its base URL.

    For tests and embedding: ``config.port`` is ignored, the socket is bound here.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, 0))
    port = sock.getsockname()[1]
    server = uvicorn_server(config.model_copy(update={"port": port}), catalog)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"worker-{port}"
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the worker failed to start")
            time.sleep(0.01)
        yield f"http://{config.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _parse_args(argv: Sequence[str] | None) -> tuple[list[WorkerConfig], int | None]:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.worker", description="Serve SKUs of the catalog as a simulated vLLM worker."
    )
    parser.add_argument("--sku", action="append", help="SKU to serve (repeat for several)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--region", default=None)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kv-cache-blocks", type=int, default=32768)
    parser.add_argument("--catalog", type=Path, default=None)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--configs-json", help="a JSON list of WorkerConfig objects (one port each)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this parent process is gone")
    args = parser.parse_args(argv)
    if args.configs_json:
        return list(TypeAdapter(list[WorkerConfig]).validate_json(args.configs_json)), args.parent_pid
    if not args.sku:
        parser.error("at least one --sku is required (or --configs-json)")
    config = WorkerConfig(
        skus=tuple(args.sku),
        host=args.host,
        port=args.port,
        region=args.region,
        time_scale=args.time_scale,
        seed=args.seed,
        kv_cache_blocks=args.kv_cache_blocks,
        catalog_path=args.catalog,
        log_level=args.log_level,
    )
    return [config], args.parent_pid


def main(argv: Sequence[str] | None = None) -> None:
    configs, parent_pid = _parse_args(argv)
    try:
        serve_workers(configs, parent_pid=parent_pid)
    except (CatalogError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
