"""The demo's traffic and judge: the bootstrap's simulated world, its tenants' keys, and its ground truth.

The world is rebuilt from ``<bootstrap>/_manifest.json`` (seed and tenant count), so the
traffic comes from the same tenants the gateway's tenant file was made from
(``serving.tenant_registry.tenants_from_registry`` over ``tenants.parquet``). Requests are
:func:`simulator.workload.iter_sim_requests` rendered by
:func:`simulator.workload.render_payload`, in a background thread (:class:`TrafficQueue`).
The judge scores an answer the way the bootstrap labels its judged requests
(:func:`judge_score`).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from features.schema import TASK_TYPES
from simulator.ground_truth import SkuTruth, quality_probability
from simulator.workload import US_PER_HOUR, US_PER_S, SimRequest, WorkloadParams, iter_sim_requests
from simulator.workload import render_payload as render_sim_payload
from simulator.world import TenantParams, World, build_world
from switchyard_cli.demo_table import RequestResult


def load_world(bootstrap: Path) -> World:
    """The bootstrap's simulated world, rebuilt from the seed and tenant count in its manifest."""
    manifest_path = bootstrap / "_manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except OSError:
        raise FileNotFoundError(f"{manifest_path}: no bootstrap manifest (run `make bootstrap`)") from None
    world = build_world(
        int(manifest["seed"]), tenant_params=TenantParams(n_tenants=int(manifest["n_tenants"]))
    )
    registry = bootstrap / "tenants.parquet"
    if registry.exists():
        logged = set(pq.read_table(registry, columns=["tenant_id"]).column("tenant_id").to_pylist())
        if logged != {t.tenant_id for t in world.tenants}:
            raise ValueError(f"{registry}: the tenants differ from the world the manifest describes")
    return world


def load_keys(path: Path) -> dict[str, str]:
    """``{tenant_id: api_key}`` as written by ``serving.tenant_registry.tenants_from_registry``."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise ValueError(f"{path}: expected a JSON object of tenant id → API key")
    return document


def judge_keys(world: World, keys: Mapping[str, str]) -> dict[str, str]:
    """Region → API key of an internal tenant of that region (only internal keys may post judge scores)."""
    internal = [t for t in world.tenants if t.tier == "internal" and t.tenant_id in keys]
    return {t.region: keys[t.tenant_id] for t in internal}


# ---------------------------------------------------------------------- the judge


def judge_score(
    truth: SkuTruth, request: SimRequest, sku: str, truncated: bool, rng: np.random.Generator
) -> float:
    """A judge label (0 or 1) as the bootstrap draws it (``simulator.outcomes``).

    Good with ``quality_probability`` of the request's true task, difficulty and prompt length
    on the serving SKU (a truncated answer keeps ``truncation_quality_factor`` of it); the
    judge then flips the verdict with probability ``judge_flip_rate``.
    """
    p_good = quality_probability(
        truth,
        np.array([truth.index(sku)]),
        np.array([TASK_TYPES.index(request.task)]),
        np.array([request.difficulty]),
        np.array([request.prompt_tokens]),
        np.array([truncated]),
    )[0]
    good = bool(rng.random() < p_good)
    if rng.random() < truth.params.judge_flip_rate:
        good = not good
    return float(good)


# ---------------------------------------------------------------------- traffic


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    sim: SimRequest
    body: bytes
    api_key: str


def prepared_requests(world: World, keys: Mapping[str, str], *, seed: int) -> Iterator[PreparedRequest]:
    """The world's requests from the current hour on, for tenants with a key, rendered."""
    start_us = int(time.time()) * US_PER_S // US_PER_HOUR * US_PER_HOUR
    for sim in iter_sim_requests(world, WorkloadParams(), seed=seed, start_us=start_us):
        key = keys.get(sim.tenant.tenant_id)
        if key is not None:
            body = json.dumps(render_sim_payload(sim), ensure_ascii=False, separators=(",", ":"))
            yield PreparedRequest(sim, body.encode("utf-8"), key)


class TrafficQueue:
    """Renders requests in a background thread so the event loop only sends them."""

    def __init__(self, source: Iterator[PreparedRequest], depth: int) -> None:
        self._queue: queue.Queue[PreparedRequest] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(source,), daemon=True, name="demo-traffic")
        self.error: BaseException | None = None

    def _fill(self, source: Iterator[PreparedRequest]) -> None:
        try:
            for item in source:
                while not self._stop.is_set():
                    with contextlib.suppress(queue.Full):
                        self._queue.put(item, timeout=0.1)
                        break
                if self._stop.is_set():
                    return
        except BaseException as error:  # surfaced by take(): the demo must not run on without traffic
            self.error = error

    def start(self, ready: int) -> None:
        self._thread.start()
        while self._queue.qsize() < ready and self._thread.is_alive():
            time.sleep(0.05)

    def take(self) -> PreparedRequest | None:
        """The next request, or None if rendering is behind; raises what stopped the renderer."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            if self.error is not None:
                raise RuntimeError(f"the traffic renderer failed: {self.error!r}") from self.error
            return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Judge:
    """Posts judge scores for answered requests under an internal tenant's key."""

    def __init__(self, world: World, keys_by_region: Mapping[str, str], share: float, seed: int) -> None:
        self.truth = world.truth
        self.keys_by_region = dict(keys_by_region)
        self.share = share
        self.rng = np.random.default_rng(seed)

    def feedback(self, item: PreparedRequest, result: RequestResult) -> tuple[str, dict[str, object]] | None:
        """(API key, feedback body) for this result, or None if it is not judged."""
        if not result.answered or result.request_id is None or self.rng.random() >= self.share:
            return None
        key = self.keys_by_region.get(item.sim.tenant.region) or next(iter(self.keys_by_region.values()))
        score = self.score(item, result.sku, result.stop_reason == "max_tokens")  # type: ignore[arg-type]
        return key, {"request_id": result.request_id, "score": score, "source": "judge"}

    def score(self, item: PreparedRequest, sku: str, truncated: bool) -> float:
        """The judge's label of ``sku``'s answer to ``item`` (0 or 1)."""
        return judge_score(self.truth, item.sim, sku, truncated, self.rng)
