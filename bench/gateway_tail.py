"""Where the gateway's concurrency-1 time goes, request by request: its slowest 1% against its fastest half.

    .venv/bin/python bench/gateway_tail.py [--router-model router.onnx] [--requests 3000]
        [--payloads small|realistic] [--model auto|claude-haiku-4-5] [--gateway-core 0|1]

One simulated worker and the gateway (``bench/gateway_processes.py``: worker and client on
core 0, gateway on core 1, event log on), one request at a time over a keep-alive socket. The
gateway process records, per ``POST /v1/messages`` (``trace_requests``), when its ASGI layer got
the request, when the worker call started and ended, and when the reply was sent. Each request
splits into:

- ``outside the app``: the client's latency minus the ASGI layer's (uvicorn's parsing and
  writes, the kernel, the client);
- ``before the worker call``: authentication, validation, policy, admission, request
  features, the routing decision, the worker body;
- ``the worker call``: the pooled HTTP call (aiohttp), the hop and the worker's own time;
- ``after the worker call``: the reply's headers and the send.

For each: p50, p99, and the mean over the slowest 1% of requests (by client latency) and over
the fastest half. A segment whose slowest-1% mean is far above its fastest-half mean is where
the tail is made. The gateway reads its settings from the environment, so an A/B is two runs,
e.g. ``SWITCHYARD_EVENTLOG_IDLE_WRITER=true`` (the VM this was built on drifts 2-3x in speed
within minutes: interleave them, and read the ``Python speed`` of the machine line).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from gateway_overhead import bodies, realistic_payloads, sequential, small_payload
from gateway_processes import Stack
from machine import describe_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router-model", type=Path, default=None, help="ONNX router (default: static prior)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--payloads", choices=("small", "realistic"), default="small")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--gateway-core", type=int, default=1, help="0: the worker's and client's core")
    args = parser.parse_args()
    print(f"machine: {describe_machine()}")
    payloads = (
        [small_payload(args.model, v) for v in range(64)]
        if args.payloads == "small"
        else realistic_payloads(400)
    )
    with tempfile.TemporaryDirectory(prefix="gateway-tail-") as tmp:
        folder = Path(tmp)
        trace = folder / "trace.json"
        stack = Stack(folder, args.router_model, gateway_core=args.gateway_core, trace=trace)
        try:
            client_ms = sequential(
                {"gateway": stack.gateway_port}, {"gateway": bodies(payloads, args.model)}, args.requests
            )["gateway"]
        finally:
            stack.stop()
        rows = np.array(json.loads(trace.read_text()))[-len(client_ms) :]
    print(
        f"{len(client_ms):,} requests, {args.payloads} payloads, model {args.model}, "
        f"router {args.router_model or 'static prior'}, gateway on core {args.gateway_core}; ms:"
    )
    for name, values in segments(client_ms, rows).items():
        print(f"  {name:24s} {summary(values, client_ms)}")


def segments(client_ms: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    start, call, answer, end = (rows[:, column] for column in range(4))
    return {
        "client latency": client_ms,
        "outside the app": client_ms - (end - start) * 1e3,
        "before the worker call": (call - start) * 1e3,
        "the worker call": (answer - call) * 1e3,
        "after the worker call": (end - answer) * 1e3,
    }


def summary(values: np.ndarray, client_ms: np.ndarray) -> str:
    order = np.argsort(client_ms)
    slowest, fastest = order[-max(1, len(order) // 100) :], order[: len(order) // 2]
    return (
        f"p50 {np.percentile(values, 50):6.2f}  p99 {np.percentile(values, 99):6.2f}   "
        f"slowest 1%: {values[slowest].mean():6.2f}  fastest half: {values[fastest].mean():6.2f}"
    )


if __name__ == "__main__":
    main()
