"""Store features for one request: Feast online values behind an in-process TTL cache.

:class:`StoreFeatureReader` returns the ``[n_candidates, len(STORE_FEATURE_NAMES)]`` block the
router scores with, columns in ``features.schema.STORE_FEATURE_NAMES`` order (groups tenant,
sku_live, tenant_sku), NaN where a value is unavailable — the same values, in the same
order, that training's point-in-time join (``offline.feast_adapter.point_in_time_features``)
hands the model:

- a missing row is NaN (the join's null → NaN);
- a row older than its feature view's TTL is NaN. Feast's online read does not apply view
  TTLs (its offline join does: a row is valid while ``event_ts + ttl >= ts``), so the reader
  applies the same rule itself, with the TTLs read from the registry.

Each entity key (tenant; (sku, region); (tenant, sku)) is cached with its own TTL per group
(:class:`StoreCachePolicy`). Misses of one request are fetched with one
``get_online_features`` call. The async :meth:`StoreFeatureReader.read` runs that call in a
thread with a timeout; concurrent requests missing the same keys share one fetch. When Feast
fails or is slow the request gets the last-known value (even if its cache TTL has passed) or
NaN, counted in :meth:`~StoreFeatureReader.stats`; after a failure the reader stops calling
Feast for ``error_backoff_s`` (a success ends the backoff). Nothing here raises to the
request path. Feast is imported lazily: nothing happens at import.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from features.schema import STORE_FEATURE_NAMES, FeatureGroup, names_in_group

log = logging.getLogger(__name__)

FEATURE_SERVICE = "router_v1"
N_STORE = len(STORE_FEATURE_NAMES)
Clock = Callable[[], float]  # wall-clock epoch seconds (view TTLs compare with event times)
Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreGroup:
    """One ``features.schema`` group and the Feast feature view that holds it."""

    name: FeatureGroup
    view: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    start: int  # its first column in STORE_FEATURE_NAMES


def _store_groups() -> tuple[StoreGroup, ...]:
    layout: tuple[tuple[FeatureGroup, str, tuple[str, ...]], ...] = (
        ("tenant", "tenant_profile", ("tenant_id",)),
        ("sku_live", "sku_live_stats", ("sku", "region")),
        ("tenant_sku", "tenant_sku_history", ("tenant_id", "sku")),
    )
    groups, start = [], 0
    for name, view, join_keys in layout:
        features = names_in_group(name)
        groups.append(StoreGroup(name, view, join_keys, features, start))
        start += len(features)
    return tuple(groups)


STORE_GROUPS = _store_groups()
_GROUP = {group.name: group for group in STORE_GROUPS}


@dataclass(frozen=True, slots=True)
class StoreCachePolicy:
    tenant_ttl_s: float = 60.0
    sku_live_ttl_s: float = 2.0
    tenant_sku_ttl_s: float = 60.0
    fetch_timeout_s: float = 0.010  # async reads; a slower fetch still fills the cache when it lands
    error_backoff_s: float = 1.0  # after a failed or timed-out fetch, serve from cache without Feast
    max_keys_per_group: int = 200_000  # oldest-fetched keys are dropped beyond this

    def ttl(self, group: str) -> float:
        return {"tenant": self.tenant_ttl_s, "sku_live": self.sku_live_ttl_s}.get(
            group, self.tenant_sku_ttl_s
        )


@dataclass(frozen=True, slots=True)
class StoreFeatureStats:
    """Counters since the reader was made. Lookups count entity keys, not requests."""

    hits: int  # fresh in cache
    misses: int  # absent or past the cache TTL
    fetches: int  # get_online_features calls finished (ok or not)
    fetch_errors: int  # calls that raised
    fetch_timeouts: int  # async reads that stopped waiting for a fetch
    stale_served: int  # missed keys served expired because Feast failed, was slow or backing off
    defaults_served: int  # missed keys served as NaN for those reasons (nothing known)
    local_updates: int  # entries written by this process (LivePusher) without a fetch
    cached_keys: int
    in_flight_fetches: int
    fetch_seconds_total: float
    fetch_p50_s: float  # over the last 1024 fetches; NaN before the first
    fetch_p99_s: float


_COUNTERS = (
    "hits",
    "misses",
    "fetches",
    "fetch_errors",
    "fetch_timeouts",
    "stale_served",
    "defaults_served",
    "local_updates",
)


@dataclass(slots=True)
class _Entry:
    values: tuple[float, ...]  # the group's features, NaN where the row has none
    valid_until: float  # epoch s: event time + the view's TTL (the offline join's rule); inf without TTL
    fetched_at: float


@dataclass(frozen=True, slots=True)
class _Plan:
    """One Feast call: these groups, these entity rows; ``keys`` are the missed keys it answers."""

    groups: tuple[StoreGroup, ...]
    rows: tuple[dict[str, str], ...]
    keys: frozenset[tuple[str, Key]]


def open_feature_store(repo_path: Path, yaml: Path | None = None) -> Any:
    """A ``feast.FeatureStore`` for an applied repo (``yaml``: e.g. feature_store.redis.yaml, relative to it).

    Online reads and pushes need no change of working directory (the SQLite path resolves
    against the repo); only Feast's offline store does, which serving never uses.
    """
    from feast import FeatureStore

    repo_path = Path(repo_path).resolve()
    if yaml is None:
        return FeatureStore(repo_path=str(repo_path))
    return FeatureStore(repo_path=str(repo_path), fs_yaml_file=repo_path / yaml)


def _view_ttls(store: Any) -> dict[str, float]:
    """Each group's view TTL in seconds (inf when none), after checking the feature service serves it."""
    service = store.get_feature_service(FEATURE_SERVICE)
    projected = {p.name: {f.name for f in p.features} for p in service.feature_view_projections}
    ttls = {}
    for group in STORE_GROUPS:
        missing = set(group.features) - projected.get(group.view, set())
        view = store.get_feature_view(group.view)
        join_keys = tuple(column.name for column in view.entity_columns)
        if missing or set(join_keys) != set(group.join_keys):
            raise ValueError(
                f"feature service {FEATURE_SERVICE!r} / view {group.view!r} does not match the schema: "
                f"missing {sorted(missing)}, join keys {join_keys} (expected {group.join_keys})"
            )
        seconds = view.ttl.total_seconds() if view.ttl else 0.0
        ttls[group.name] = seconds if seconds > 0 else math.inf
    return ttls


class StoreFeatureReader:
    """Store features of one request from the Feast online store, through a TTL cache.

    ``store`` is a ``feast.FeatureStore`` (see :func:`open_feature_store`); ``on_fetch`` is
    called with each Feast call's duration in seconds (e.g. a Prometheus histogram's
    ``observe``). Async reads mutate the cache on the event loop's thread only; the sync
    methods are for start-up, benchmarks and single-threaded use.
    """

    def __init__(
        self,
        store: Any,
        policy: StoreCachePolicy | None = None,
        *,
        clock: Clock = time.time,
        on_fetch: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self.policy = policy or StoreCachePolicy()
        self._clock = clock
        self._on_fetch = on_fetch
        self._view_ttl = _view_ttls(store)
        self._ttl = {group.name: self.policy.ttl(group.name) for group in STORE_GROUPS}
        self._cache: dict[str, dict[Key, _Entry]] = {group.name: {} for group in STORE_GROUPS}
        self._nan = {group.name: (math.nan,) * len(group.features) for group in STORE_GROUPS}
        self._in_flight: dict[tuple[str, Key], asyncio.Future[None]] = {}
        self._backoff_until = -math.inf
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._fetch_seconds_total = 0.0
        self._recent = deque[float](maxlen=1024)

    # ------------------------------------------------------------------ the request path

    async def read(self, tenant_id: str, region: str, skus: Sequence[str]) -> np.ndarray:
        """The store block ``[len(skus), N_STORE]`` for one request; waits at most ``fetch_timeout_s``.

        ``region`` is the request's region as its DecisionRecord logs it: training joins
        ``sku_live_stats`` on (sku, that region), so serving reads the same key.
        """
        now = self._clock()
        missed = self._lookup(tenant_id, region, skus, now)
        if missed and now >= self._backoff_until:
            waits = self._join_or_start(tenant_id, region, skus, missed)
            _, pending = await asyncio.wait(waits, timeout=self.policy.fetch_timeout_s)
            if pending:
                self._counts["fetch_timeouts"] += 1
                self._backoff_until = self._clock() + self.policy.error_backoff_s
        return self._assemble(tenant_id, region, skus, missed, now)

    def read_now(self, tenant_id: str, region: str, skus: Sequence[str]) -> np.ndarray:
        """:meth:`read` with the Feast call (if any) made in this thread, without a timeout."""
        now = self._clock()
        missed = self._lookup(tenant_id, region, skus, now)
        if missed and now >= self._backoff_until:
            self._fetch_now(self._plan(tenant_id, region, skus, missed))
        return self._assemble(tenant_id, region, skus, missed, now)

    # ------------------------------------------------------------------ start-up and local updates

    def warm(
        self, tenants: Iterable[str], regions: Iterable[str], skus: Iterable[str], *, batch_rows: int = 1000
    ) -> int:
        """Prefill the cache for every combination (one call per group and batch); returns the keys gained.

        Call it at start-up: Feast's first online read in a process also loads its online-store
        code (~0.3 s), which an async read would otherwise spend timing out. Failures are
        logged and counted like any fetch; the reader then starts colder.
        """
        values = {"tenant_id": list(tenants), "region": list(regions), "sku": list(skus)}
        before = sum(len(entries) for entries in self._cache.values())
        for group in STORE_GROUPS:
            keys = list(itertools.product(*(values[column] for column in group.join_keys)))
            for offset in range(0, len(keys), batch_rows):
                batch = keys[offset : offset + batch_rows]
                rows = tuple(dict(zip(group.join_keys, key, strict=True)) for key in batch)
                self._fetch_now(_Plan((group,), rows, frozenset()))
        return sum(len(entries) for entries in self._cache.values()) - before

    def remember_sku_live(self, region: str, sku: str, event_time: datetime, values: Sequence[float]) -> None:
        """Cache live stats this process just computed (and pushed) as a fresh entry."""
        group = _GROUP["sku_live"]
        now = self._clock()
        entry = _Entry(
            tuple(float(value) for value in values),
            event_time.timestamp() + self._view_ttl[group.name],
            now,
        )
        self._put(group.name, (sku, region), entry)
        self._counts["local_updates"] += 1

    def stats(self) -> StoreFeatureStats:
        recent = np.array(self._recent) if self._recent else np.array([math.nan])
        p50, p99 = np.percentile(recent, [50, 99])
        return StoreFeatureStats(
            **self._counts,
            cached_keys=sum(len(entries) for entries in self._cache.values()),
            in_flight_fetches=len(set(map(id, self._in_flight.values()))),
            fetch_seconds_total=self._fetch_seconds_total,
            fetch_p50_s=float(p50),
            fetch_p99_s=float(p99),
        )

    # ------------------------------------------------------------------ cache

    @staticmethod
    def _request_keys(tenant_id: str, region: str, skus: Sequence[str]) -> list[tuple[str, Key]]:
        keys: list[tuple[str, Key]] = [("tenant", (tenant_id,))]
        for sku in skus:
            keys += [("sku_live", (sku, region)), ("tenant_sku", (tenant_id, sku))]
        return keys

    def _lookup(self, tenant_id: str, region: str, skus: Sequence[str], now: float) -> set[tuple[str, Key]]:
        """Count hits and misses; return the missed (group, key) pairs."""
        if not skus:
            return set()
        missed: set[tuple[str, Key]] = set()
        hits = 0
        for name, key in self._request_keys(tenant_id, region, skus):
            entry = self._cache[name].get(key)
            if entry is not None and now - entry.fetched_at < self._ttl[name]:
                hits += 1
            else:
                missed.add((name, key))
        self._counts["hits"] += hits
        self._counts["misses"] += len(missed)
        return missed

    def _served(self, name: str, key: Key, missed: set[tuple[str, Key]], now: float) -> tuple[float, ...]:
        entry = self._cache[name].get(key)
        if missed and (name, key) in missed:
            missed.discard((name, key))  # counted once per request
            if entry is None:
                self._counts["defaults_served"] += 1
            elif now - entry.fetched_at >= self._ttl[name]:
                self._counts["stale_served"] += 1
        if entry is None or now > entry.valid_until:
            return self._nan[name]
        return entry.values

    def _assemble(
        self, tenant_id: str, region: str, skus: Sequence[str], missed: set[tuple[str, Key]], now: float
    ) -> np.ndarray:
        """Rows in STORE_FEATURE_NAMES order: tenant, sku_live, tenant_sku (STORE_GROUPS)."""
        if not skus:
            return np.empty((0, N_STORE))
        tenant = self._served("tenant", (tenant_id,), missed, now)
        rows = [
            tenant
            + self._served("sku_live", (sku, region), missed, now)
            + self._served("tenant_sku", (tenant_id, sku), missed, now)
            for sku in skus
        ]
        return np.array(rows, dtype=np.float64)

    def _put(self, group: str, key: Key, entry: _Entry) -> None:
        cache = self._cache[group]
        cache.pop(key, None)  # re-insert: dict order is fetch order, oldest first
        cache[key] = entry
        if len(cache) > self.policy.max_keys_per_group:
            del cache[next(iter(cache))]

    # ------------------------------------------------------------------ Feast

    def _plan(self, tenant_id: str, region: str, skus: Sequence[str], missed: set[tuple[str, Key]]) -> _Plan:
        """One call covering ``missed``: the missing groups' features for the candidates that need them."""
        groups = tuple(group for group in STORE_GROUPS if any(name == group.name for name, _ in missed))
        columns = [c for c in ("tenant_id", "sku", "region") if any(c in g.join_keys for g in groups)]
        context = {"tenant_id": tenant_id, "region": region}
        rows: dict[tuple[str, ...], dict[str, str]] = {}
        for sku in skus:
            entity = {**context, "sku": sku}
            if any((g.name, tuple(entity[c] for c in g.join_keys)) in missed for g in groups):
                row = {column: entity[column] for column in columns}
                rows.setdefault(tuple(row.values()), row)
        return _Plan(groups, tuple(rows.values()), frozenset(missed))

    def _join_or_start(
        self, tenant_id: str, region: str, skus: Sequence[str], missed: set[tuple[str, Key]]
    ) -> set[asyncio.Future[None]]:
        waits = {self._in_flight[k] for k in missed if k in self._in_flight}
        new = {k for k in missed if k not in self._in_flight}
        if new:
            plan = self._plan(tenant_id, region, skus, new)
            task = asyncio.ensure_future(self._fetch_async(plan))
            for k in plan.keys:
                self._in_flight[k] = task
            task.add_done_callback(lambda done: self._forget(plan.keys, done))
            waits.add(task)
        return waits

    def _forget(self, keys: frozenset[tuple[str, Key]], task: asyncio.Future[None]) -> None:
        for k in keys:
            if self._in_flight.get(k) is task:
                del self._in_flight[k]

    async def _fetch_async(self, plan: _Plan) -> None:
        started = time.perf_counter()
        try:
            fetched = await asyncio.to_thread(self._call_feast, plan)
        except Exception:
            self._failed(plan, time.perf_counter() - started)
            return
        self._landed(fetched, time.perf_counter() - started)

    def _fetch_now(self, plan: _Plan) -> None:
        started = time.perf_counter()
        try:
            fetched = self._call_feast(plan)
        except Exception:
            self._failed(plan, time.perf_counter() - started)
            return
        self._landed(fetched, time.perf_counter() - started)

    def _call_feast(self, plan: _Plan) -> list[tuple[str, Key, tuple[float, ...], float]]:
        """The blocking Feast call and its parsing (any thread; reads no mutable reader state).

        Returns (group, key, values, valid until) per group and entity row; a key without a
        row in the online store comes back as NaN values (the cache remembers that too).
        """
        refs = [f"{group.view}:{name}" for group in plan.groups for name in group.features]
        response = self._store.get_online_features(features=refs, entity_rows=list(plan.rows))
        columns = response.to_dict(include_event_timestamps=True)
        fetched = []
        for group in plan.groups:
            view_ttl = self._view_ttl[group.name]
            values = np.array([columns[name] for name in group.features], dtype=np.float64).T  # None → NaN
            stamps = np.array([columns[f"{name}__ts"] for name in group.features]).max(axis=0)
            for row, entity, event_s in zip(values.tolist(), plan.rows, stamps.tolist(), strict=True):
                valid_until = event_s + view_ttl if event_s else math.inf  # 0: no row
                key = tuple(entity[c] for c in group.join_keys)
                fetched.append((group.name, key, tuple(row), valid_until))
        return fetched

    def _timed(self, seconds: float) -> None:
        self._counts["fetches"] += 1
        self._fetch_seconds_total += seconds
        self._recent.append(seconds)
        if self._on_fetch is not None:
            self._on_fetch(seconds)

    def _failed(self, plan: _Plan, seconds: float) -> None:
        self._timed(seconds)
        self._counts["fetch_errors"] += 1
        self._backoff_until = self._clock() + self.policy.error_backoff_s
        log.warning(
            "Feast online read failed (%s, %d rows); serving cached values or NaN for %.1f s",
            ",".join(group.view for group in plan.groups),
            len(plan.rows),
            self.policy.error_backoff_s,
            exc_info=True,
        )

    def _landed(self, fetched: list[tuple[str, Key, tuple[float, ...], float]], seconds: float) -> None:
        self._timed(seconds)
        self._backoff_until = -math.inf
        now = self._clock()
        for group, key, values, valid_until in fetched:
            self._put(group, key, _Entry(values, valid_until, now))
