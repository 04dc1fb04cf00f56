"""The drift job at the demo's rate: the time of one report, and the false-alarm rate on clean hours.

    .venv/bin/python bench/drift_monitor.py [--logs /tmp/drift-bench/logs] [--per-day 864000] [--hours 12]
                                            [--simulated-replay]

Bootstraps two simulated days at ``--per-day`` requests (864K/day ≈ 36K an hour at midday,
the demo's 10 req/s), unless ``--logs`` already holds them. Then:

1. one full report (Evidently HTML, skew on 2,000 sampled requests, outcome drift) on the hour
   of day 2 with ~36K requests, against day 1 as the reference, timed by stage;
2. ``--hours`` clean hours of day 2 without the HTML: how many are warning or critical.
Nothing was changed in the world between day 1 and day 2, so every alert is a false one.
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from machine import describe_machine

from eval.drift import DriftConfig, load_reference, run_drift
from simulator.bootstrap import SUCCESS_NAME, BootstrapConfig, run_bootstrap

DAY1, DAY2 = date(2026, 11, 1), datetime(2026, 11, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", type=Path, default=Path("/tmp/drift-bench/logs"))
    parser.add_argument("--per-day", type=int, default=864_000)
    parser.add_argument("--hours", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("/tmp/drift-bench/reports"))
    parser.add_argument(
        "--simulated-replay",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also recompute request features from regenerated text (bootstrap logs only; gateway logs "
        "have no such replay, so the default times what a gateway's hour costs)",
    )
    args = parser.parse_args()
    if not (args.logs / SUCCESS_NAME).exists():
        began = time.perf_counter()
        run_bootstrap(
            BootstrapConfig(days=2, requests_per_day=args.per_day, seed=0, out=args.logs, start=DAY1)
        )
        print(f"bootstrap: {time.perf_counter() - began:.0f} s")
    config = DriftConfig(
        logs=args.logs,
        reference="2026-11-01..2026-11-01",
        out=args.out,
        state_dir=None,
        feature_repo=None,
        simulated_replay=args.simulated_replay,
    )
    print(describe_machine())
    began = time.perf_counter()
    reference = load_reference(config)
    run = run_drift(replace(config, end=DAY2 + timedelta(hours=12)), reference=reference)
    seconds = time.perf_counter() - began
    stages = "  ".join(f"{name} {s:.1f}s" for name, s in run.seconds.items())
    print(
        f"report on {run.verdict.requests:,} requests: {seconds:.1f} s ({stages}), "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, verdict {run.verdict.status}"
    )
    statuses = []
    for hour in range(0, 24, max(1, 24 // args.hours))[: args.hours]:
        clean = run_drift(
            replace(config, end=DAY2 + timedelta(hours=hour + 1), out=None, render=False, skew_sample=300),
            reference=reference,
        )
        statuses.append(clean.verdict.status)
        checks = {name: check.status for name, check in clean.verdict.checks.items()}
        print(f"  {hour:02d}:00 {clean.verdict.requests:>7,} requests  {clean.verdict.status:<8} {checks}")
    n = len(statuses)
    print(
        f"false alarms over {n} clean hours: {statuses.count('critical')} critical "
        f"({statuses.count('critical') / n:.0%}), {statuses.count('warning')} warning ({statuses.count('warning') / n:.0%})"
    )


if __name__ == "__main__":
    main()
