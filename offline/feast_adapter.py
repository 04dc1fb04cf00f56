"""Feast as training and monitoring use it: apply the repo, materialize, point-in-time joins.

The feature repository itself (definitions only) is ``feature_repo/``; this module is the
thin adapter the offline programs call. Rows come back in the caller's order with the store
features in ``features.schema.STORE_FEATURE_NAMES`` order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from features.schema import STORE_FEATURE_NAMES

FEATURE_SERVICE = "router_v1"
ENTITY_COLUMNS = ("tenant_id", "sku", "region")


def feast_cli(repo_path: Path, *args: str) -> str:
    """Run the real ``feast`` command line in ``repo_path``; raises with its output on failure."""
    feast = Path(sys.executable).with_name("feast")
    repo_path = Path(repo_path).resolve()  # both --chdir and the cwd below must name the same folder
    result = subprocess.run(
        [str(feast), "--chdir", str(repo_path), *args],
        cwd=repo_path,  # the DuckDB offline store resolves the sources' relative paths against the cwd
        capture_output=True,
        text=True,
        env={**os.environ, "FEAST_USAGE": "False"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def copy_repo(source: Path, target: Path) -> Path:
    """A working copy of the feature repo definitions (no data), e.g. for tests."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("data", "__pycache__"), dirs_exist_ok=True)
    return target


@dataclass(frozen=True)
class FeatureRepo:
    """An applied feature repo and its ``feast.FeatureStore``.

    Feast's DuckDB offline store resolves the sources' relative paths against the working
    directory rather than the repo, so offline calls run inside :meth:`inside`.
    """

    path: Path
    store: Any  # feast.FeatureStore (imported lazily: a slow import)

    @contextlib.contextmanager
    def inside(self) -> Iterator[Any]:
        previous = Path.cwd()
        os.chdir(self.path)
        try:
            yield self.store
        finally:
            os.chdir(previous)


def open_repo(repo_path: Path) -> FeatureRepo:
    from feast import FeatureStore

    repo_path = Path(repo_path).resolve()
    return FeatureRepo(repo_path, FeatureStore(repo_path=str(repo_path)))


def materialize(repo: FeatureRepo, start: datetime, end: datetime) -> None:
    with repo.inside() as store:
        store.materialize(start_date=start, end_date=end)


def point_in_time_features(repo: FeatureRepo, entities: pl.DataFrame) -> pl.DataFrame:
    """Store features as of each row's ``ts``, for rows with ``request_id``, ``ts`` and the entity keys.

    Returns ``entities`` (same rows, same order) with one column per ``STORE_FEATURE_NAMES``;
    missing values (no history yet, or older than the view's TTL) are NaN.
    """
    keyed = entities.select("request_id", *ENTITY_COLUMNS, "ts").with_row_index("_row")
    entity_df = keyed.rename({"ts": "event_timestamp"}).to_pandas()
    with repo.inside() as store:
        service = store.get_feature_service(FEATURE_SERVICE)
        joined = pl.from_pandas(store.get_historical_features(entity_df=entity_df, features=service).to_df())
    if joined.height != keyed.height:
        raise RuntimeError(f"Feast returned {joined.height} rows for {keyed.height} entity rows")
    features = joined.select(
        "_row", *[pl.col(name).cast(pl.Float64).fill_null(float("nan")) for name in STORE_FEATURE_NAMES]
    )
    return entities.with_row_index("_row").join(features, on="_row", how="left").sort("_row").drop("_row")


def store_lookup(repo_path: Path) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """``point_in_time_features`` over the applied repo at ``repo_path``, opened on first use
    (``feast`` is a slow import); an ``offline.rows.StoreLookup``."""
    repo = functools.cache(lambda: open_repo(Path(repo_path)))

    def lookup(entities: pl.DataFrame) -> pl.DataFrame:
        return point_in_time_features(repo(), entities)

    return lookup
