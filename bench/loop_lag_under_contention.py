"""The gateway's event-loop lag while its event log writes, with the host's cores busy or idle.

    .venv/bin/python bench/loop_lag_under_contention.py [--seconds 12] [--rate 300] [--rounds 2]

What it answers: does running the event log's writer below the loop's priority (a nice +10
pool, or the ``SCHED_IDLE`` thread of ADR 0009) stall the loop when *other* processes keep
every core busy? A low-priority thread that holds the GIL and is then preempted by those
processes keeps the loop waiting for the GIL until the kernel gives it the CPU again.

Each configuration runs in a fresh process (an unprivileged thread cannot leave ``SCHED_IDLE``):
an asyncio loop submits ``--rate`` requests/s of the gateway's records (a decision, one or two
attempts, an outcome; ``eventlog_throughput.request_records``) to a real ``EventLog`` on a
temp dir, while ``serving.loop_lag.LoopLagMonitor`` samples how late a 10 ms sleep wakes.
Configurations:

- ``normal``: writer in the default executor at nice 0, no idle thread;
- ``nice10``: the default executor at nice +10 (``GatewaySettings.background_thread_nice``);
- ``idle``: nice +10 executor plus the ``SCHED_IDLE`` writer while it keeps up.

Each is run with the cores idle and with one busy loop per logical CPU at nice 0 ("hogs").
Printed per run: lag p50 / p99 / max, and how many wake-ups were over 100 ms and 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from eventlog_throughput import request_records
from machine import describe_machine

from serving.background_threads import background_executor
from serving.loop_lag import LoopLagMonitor
from serving.settings import EventLogSettings

CONFIGURATIONS = {"normal": (0, False), "nice10": (10, False), "idle": (10, True)}


async def one_run(configuration: str, seconds: float, rate: float) -> list[float]:
    nice, idle_writer = CONFIGURATIONS[configuration]
    loop = asyncio.get_running_loop()
    loop.set_default_executor(background_executor(nice))
    rng = np.random.default_rng(7)
    batches = [request_records(i, rng) for i in range(2000)]  # built before timing, reused
    lags: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        log = EventLogSettings(idle_writer=idle_writer).event_log(Path(root))
        await log.start()
        monitor = LoopLagMonitor(lags.append, interval_s=0.01, warn_after_s=3600)
        sampler = asyncio.create_task(monitor.run())
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < elapsed * rate:
                for record in batches[sent % len(batches)]:
                    log.submit(record)
                sent += 1
            await asyncio.sleep(0.002)
        sampler.cancel()
        await log.close()
    return lags


def summary(lags: list[float]) -> str:
    ms = np.sort(np.asarray(lags) * 1000)
    return (
        f"p50 {np.percentile(ms, 50):5.1f}  p99 {np.percentile(ms, 99):6.1f}  max {ms[-1]:6.0f} ms   "
        f"over 100 ms: {int((ms > 100).sum()):3d}  over 500 ms: {int((ms > 500).sum()):2d}  ({len(ms)} wake-ups)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=float, default=300.0, help="requests/s offered to the event log")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=sorted(CONFIGURATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(summary(asyncio.run(one_run(args.child, args.seconds, args.rate))), flush=True)
        return
    print(describe_machine())
    print(
        f"{args.rate:.0f} requests/s to the event log, {args.seconds:.0f} s per run, lag of a 10 ms sleep\n"
    )
    here = Path(__file__).resolve()
    for hogs in (0, os.cpu_count() or 1):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
        try:
            print(f"-- {hogs} busy loops at nice 0 beside the gateway process")
            for _ in range(args.rounds):
                for configuration in CONFIGURATIONS:
                    out = subprocess.run(
                        [sys.executable, str(here), "--child", configuration,
                         "--seconds", str(args.seconds), "--rate", str(args.rate)],
                        capture_output=True, text=True, check=True,
                    ).stdout.strip()  # fmt: skip
                    print(f"{configuration:7s} {out}", flush=True)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()


if __name__ == "__main__":
    main()
