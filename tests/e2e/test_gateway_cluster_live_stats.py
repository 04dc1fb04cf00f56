"""Two gateway processes, one Redis: the live per-SKU stats in Feast cover both gateways' traffic.

Real ``switchyard serve`` processes with the feature store on, their online store Feast on the
shared ``redis-server``; streamed requests to one SKU through each gateway; then, after the
minute boundary (a row at ``ts`` holds the attempts started by ``ts``), the row Feast serves is
the offline job's ``sku_live_stats`` over the attempts *both* gateways logged, not either one's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from cluster_harness import HEADERS, gateway_environment, gateway_process, readyz
from gateway_harness import US_KEY, Fleet, running_fleet

from features.live_stats import LIVE_STAT_NAMES, sku_live_stats
from features.record_store import scan_records
from features.records import AttemptRecord
from offline.feast_adapter import copy_repo, feast_cli
from serving.feast_redis import open_feature_store_on_redis
from switchyard_cli.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
SKU, REGION = "claude-haiku-4-5", "us"
COMPARED = [name for name in LIVE_STAT_NAMES if name != "sku_queue_depth"]  # online: the workers' scrape


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-live")


@pytest.fixture(scope="module")
def repo(folder) -> Path:
    repo = copy_repo(REPO, folder / "repo")
    with running_redis() as server:  # apply writes the registry; the online store is whichever Redis
        os.environ["REDIS_URL"] = server.feast_connection_string
        try:
            feast_cli(repo, "-f", "feature_store.redis.yaml", "apply")
        finally:
            del os.environ["REDIS_URL"]
    return repo


@pytest.fixture(scope="module")
def fleet(folder) -> Iterator[Fleet]:
    with running_fleet(folder, time_scale=0.02) as fleet:  # real latencies: the TTFT stats vary
        yield fleet


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def stream(client: httpx.Client, url: str, i: int) -> None:
    body = {
        "model": SKU,
        "max_tokens": 32,
        "stream": True,
        "messages": [{"role": "user", "content": f"Tell me a short story about request {i}."}],
    }
    with client.stream(
        "POST", f"{url}/v1/messages", json=body, headers={**HEADERS, "x-api-key": US_KEY}
    ) as r:
        assert r.status_code == 200
        r.read()


def row_at(attempts: pl.DataFrame, ts: datetime) -> list[float]:
    rows = sku_live_stats(attempts.lazy()).filter(pl.col("ts") == ts).collect()
    rows = rows.filter((pl.col("region") == REGION) & (pl.col("sku") == SKU))
    assert rows.height == 1, rows
    return [np.nan if rows[name][0] is None else float(rows[name][0]) for name in COMPARED]


def test_the_live_stats_in_feast_cover_every_gateways_traffic(folder, repo, fleet, redis_server):
    logs = {name: folder / f"logs-{name}" for name in ("a", "b")}
    common = dict(
        SWITCHYARD_GATEWAY_FEATURE_STORE="true",
        SWITCHYARD_FEAST_REPO_PATH=str(repo),
        SWITCHYARD_FEAST_PUSH_PERIOD_S="0.5",
        SWITCHYARD_EVENTLOG_FLUSH_INTERVAL_S="0.2",
    )
    env_a = gateway_environment(folder, fleet, redis_server.url, processes=2, **common)
    env_b = {**env_a, "SWITCHYARD_GATEWAY_LOG_DIR": str(logs["b"])}
    env_a["SWITCHYARD_GATEWAY_LOG_DIR"] = str(logs["a"])
    with (
        gateway_process(folder, env_a, name="live-a") as a,
        gateway_process(folder, env_b, name="live-b") as b,
        httpx.Client(timeout=30.0) as client,
    ):
        modes = [readyz(url)["live_stats"]["mode"] for url in (a, b)]
        for i in range(24):
            stream(client, a if i % 3 else b, i)  # two thirds through a, a third through b
        # the row that holds these attempts is stamped at the next minute boundary
        last_start = time.time()
        boundary = (int(last_start) // 60 + 1) * 60
        time.sleep(max(0.0, boundary - time.time()) + 2.5)  # the leader pushes every 0.5 s
        leaders = [readyz(url)["live_stats"].get("leader") for url in (a, b)]
        store = open_feature_store_on_redis(repo, redis_server.url)
        online = store.get_online_features(
            features=[f"sku_live_stats:{name}" for name in COMPARED],
            entity_rows=[{"sku": SKU, "region": REGION}],
        ).to_dict()
    assert modes == ["shared", "shared"]
    assert sorted(leaders) == [False, True]  # exactly one leader
    served = [np.nan if online[name][0] is None else float(online[name][0]) for name in COMPARED]

    ts = datetime.fromtimestamp(boundary, UTC)
    attempts = {name: scan_records(root, AttemptRecord).collect() for name, root in logs.items()}
    assert attempts["a"].height >= 16 and attempts["b"].height >= 8
    both = row_at(pl.concat([attempts["a"], attempts["b"]], how="vertical_relaxed"), ts)
    np.testing.assert_allclose(served, both, rtol=1e-5, equal_nan=True)
    for name in ("a", "b"):  # and not what either gateway saw alone
        alone = row_at(attempts[name], ts)
        assert not np.allclose(served, alone, rtol=1e-5, equal_nan=True), (name, served, alone)
