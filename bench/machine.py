"""What every benchmark prints about the machine it ran on, and how it prints and keeps its report."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def describe_machine(extra: str = "") -> str:
    """CPU model, logical CPUs, OS, Python, optional extra versions, and the load average."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = f", {extra}" if extra else ""
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}{versions}, load average {load}, "
        f"Python speed {python_speed_ns():.1f} ns/step"
    )


def python_speed_ns(steps: int = 200_000, rounds: int = 5) -> float:
    """ns per step of a fixed pure-Python loop, the fastest of ``rounds``: how fast this machine
    runs interpreter-bound code right now. The VM these benchmarks were written on changed speed
    by 2-3x within minutes (55-100 ns/step within one slow afternoon); a result means little
    without it."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        total = 0
        for step in range(steps):
            total += step * step
        best = min(best, (time.perf_counter_ns() - started) / steps)
    return best


def print_report(text: str, out: Path | None) -> None:
    """Print a benchmark's report and, with ``out``, write it there too (the file the docs quote)."""
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
