"""Latency of the store-feature read (cache hit, Feast miss) and of the live-stats push, p50/p99.

    .venv/bin/python bench/store_features_latency.py [--tenants 1000] [--hits 100000] [--misses 2000]

Builds a real Feast repo in a temp dir (the project's ``feature_repo`` definitions, `feast
apply`, SQLite online store) with synthetic rows for ``--tenants`` tenants × the catalog's
SKUs × 3 regions, materialized. Every read is one request with all catalog SKUs (12) as
candidates, for a random tenant; each is timed with ``perf_counter_ns``. Scenarios:

- ``hit``: every key fresh in the cache (``read_now`` and ``await read``);
- ``live miss``: only the 12 (SKU, region) live-stats keys expired (the common miss: their TTL
  is 2 s), one ``get_online_features`` call for 12 entity rows of one view;
- ``full miss``: every key expired, one call for 12 entity rows of the three views;
- ``feast``: that same call straight on ``feast.FeatureStore`` (no reader), for reference.

Then the live-stats pusher: ``observe`` per attempt, and one compute + push cycle with
``--rate`` attempts/s for the past 16 minutes in the buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from machine import describe_machine

from features.catalog import REGIONS, load_catalog
from features.records import AttemptRecord
from features.schema import names_in_group
from offline.feast_adapter import copy_repo, feast_cli, materialize, open_repo
from serving.live_push import LivePusher
from serving.store_features import STORE_GROUPS, StoreCachePolicy, StoreFeatureReader, open_feature_store

REPO = Path(__file__).resolve().parents[1] / "feature_repo"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def summary(label: str, samples_ns: list[int]) -> str:
    micros = np.array(samples_ns) / 1e3
    p50, p99 = np.percentile(micros, [50, 99])
    return (
        f"{label:<44} n={len(micros):>7,}  p50 {p50:8.1f} µs  p99 {p99:8.1f} µs  mean {micros.mean():8.1f} µs"
    )


def build_repo(root: Path, tenants: list[str], skus: list[str], now: datetime) -> Path:
    rng = np.random.default_rng(0)
    repo = copy_repo(REPO, root / "repo")
    data = repo / "data"
    data.mkdir()
    ts = now - timedelta(minutes=30)
    n = len(tenants)
    pl.DataFrame(
        {
            "tenant_id": tenants,
            "ts": [ts] * n,
            "tier": ["pro"] * n,
            "home_region": ["us"] * n,
            "residency_required": [0] * n,
            **{name: rng.uniform(0, 100, n) for name in names_in_group("tenant")},
        }
    ).write_parquet(data / "tenant_profile.parquet")
    pairs = list(itertools.product(tenants, skus))
    pl.DataFrame(
        {
            "tenant_id": [t for t, _ in pairs],
            "sku": [s for _, s in pairs],
            "ts": [ts] * len(pairs),
            **{name: rng.uniform(0, 1000, len(pairs)) for name in names_in_group("tenant_sku")},
        }
    ).write_parquet(data / "tenant_sku_history.parquet")
    live = list(itertools.product(REGIONS, skus))
    pl.DataFrame(
        {
            "region": [r for r, _ in live],
            "sku": [s for _, s in live],
            "ts": [now - timedelta(minutes=1)] * len(live),
            **{name: rng.uniform(0, 1000, len(live)) for name in names_in_group("sku_live")},
        }
    ).write_parquet(data / "sku_live_stats.parquet")
    feast_cli(repo, "apply")
    materialize(open_repo(repo), now - timedelta(days=1), now)
    return repo


def time_reads(reader: StoreFeatureReader, calls: list[tuple[str, str]], skus: list[str], step) -> list[int]:
    samples = []
    timer = time.perf_counter_ns
    for tenant, region in calls:
        step()
        start = timer()
        reader.read_now(tenant, region, skus)
        samples.append(timer() - start)
    return samples


async def time_async_reads(reader, calls, skus, step) -> list[int]:
    samples = []
    timer = time.perf_counter_ns
    for tenant, region in calls:
        step()
        start = timer()
        await reader.read(tenant, region, skus)
        samples.append(timer() - start)
    return samples


def attempts(rate: float, seconds: float, skus: list[str], now: datetime) -> list[AttemptRecord]:
    """``rate`` attempts/s over the past ``seconds``: 3% errors, lognormal TTFT and duration."""
    rng = np.random.default_rng(1)
    n = int(rate * seconds)
    starts, ok = rng.uniform(-seconds, 0, n), rng.random(n) < 0.97
    ttft, e2e, regions = rng.lognormal(6, 0.5, n), rng.lognormal(8, 0.7, n), rng.choice(REGIONS, n)
    records = []
    for i in range(n):
        record = AttemptRecord(
            f"a{i}", now + timedelta(seconds=float(starts[i])), str(regions[i]), skus[i % len(skus)], "w0", 0,
            "ok" if ok[i] else "error", None if ok[i] else "api_error", 200 if ok[i] else 500,
            float(ttft[i]) if ok[i] else None, 20.0 if ok[i] else None, float(e2e[i]), 5000, 0, 300,
        )  # fmt: skip
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--hits", type=int, default=100_000)
    parser.add_argument("--misses", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0, help="attempts/s in the live-stats buffer")
    args = parser.parse_args()

    import feast

    print(f"machine: {describe_machine(f'feast {feast.__version__}, polars {pl.__version__}')}")
    skus = list(load_catalog().names)
    tenants = [f"t{i:05d}" for i in range(args.tenants)]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rng = np.random.default_rng(2)
    requests = [(tenants[i], str(rng.choice(REGIONS))) for i in rng.integers(0, len(tenants), args.hits)]

    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repo(Path(tmp), tenants, skus, now)
        print(
            f"{len(tenants):,} tenants × {len(skus)} SKUs × {len(REGIONS)} regions; {len(skus)} candidates/read\n"
        )
        clock = Clock()
        reader = StoreFeatureReader(open_feature_store(repo), clock=clock)
        started = time.perf_counter()
        keys = reader.warm(tenants, REGIONS, skus)
        print(f"warm: {keys:,} keys in {time.perf_counter() - started:.2f} s")

        def still() -> None:
            return None

        print(summary("hit, read_now", time_reads(reader, requests, skus, still)))
        print(summary("hit, await read", asyncio.run(time_async_reads(reader, requests, skus, still))))

        live_only = StoreFeatureReader(
            open_feature_store(repo), StoreCachePolicy(tenant_ttl_s=1e9, tenant_sku_ttl_s=1e9), clock=clock
        )
        live_only.warm(tenants, REGIONS, skus)

        def past_live_ttl() -> None:
            clock.now += 2.1

        misses = requests[: args.misses]
        print(
            summary(
                "live miss (12 keys, 1 view), read_now", time_reads(live_only, misses, skus, past_live_ttl)
            )
        )

        def past_every_ttl() -> None:
            clock.now += 61.0

        print(
            summary(
                "full miss (25 keys, 3 views), read_now", time_reads(reader, misses, skus, past_every_ttl)
            )
        )
        patient = StoreFeatureReader(
            open_feature_store(repo), StoreCachePolicy(fetch_timeout_s=5.0), clock=clock
        )
        patient.read_now(*misses[0], skus)
        samples = asyncio.run(time_async_reads(patient, misses, skus, past_every_ttl))
        print(summary("full miss, await read (thread hop)", samples))
        print(f"{'':<44} timeouts {patient.stats().fetch_timeouts} (of {len(misses)})")

        store = open_feature_store(repo)
        refs = [f"{group.view}:{name}" for group in STORE_GROUPS for name in group.features]
        samples = []
        for tenant, region in misses:
            rows = [{"tenant_id": tenant, "sku": sku, "region": region} for sku in skus]
            start = time.perf_counter_ns()
            store.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
            samples.append(time.perf_counter_ns() - start)
        print(summary("feast get_online_features, same call", samples))

        history = attempts(args.rate, 16 * 60, skus, now)
        pusher = LivePusher(open_feature_store(repo), reader=reader, clock=time.time)
        samples = []
        for record in history:
            start = time.perf_counter_ns()
            pusher.observe(record)
            samples.append(time.perf_counter_ns() - start)
        print()
        print(summary("LivePusher.observe", samples))
        pusher.attempts.frame(
            time.time()
        )  # bulk-observed rows → a polars chunk (a cycle sees ~period × rate)
        cycles = []
        for _ in range(3):
            start = time.perf_counter_ns()
            pushed = pusher.push_now()
            cycles.append(time.perf_counter_ns() - start)
        stats = pusher.stats()
        print(
            summary(f"push cycle, {len(history):,} attempts buffered", cycles),
            f"\n{'':<44} {pushed} rows/push, {stats.buffered:,} rows kept, errors {stats.push_errors}",
        )
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
