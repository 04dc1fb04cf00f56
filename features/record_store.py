"""The event log on disk: record tables as Parquet partitioned by region and date.

Layout: ``<root>/<table>/region=<region>/date=<YYYY-MM-DD>/<part>.parquet`` (Hive style, so
polars, pyarrow and Feast's file sources read it with the partition columns). Writers are
append-only: each call writes a new part file atomically (temp file + rename), so a crash
never leaves a half-written part visible to readers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.records import arrow_schema, records_to_table


def partition_dir(root: Path, table: str, region: str, date: str) -> Path:
    return root / table / f"region={region}" / f"date={date}"


def write_table_partitioned(
    root: Path, table_name: str, table: pa.Table, *, part_prefix: str = ""
) -> list[Path]:
    """Write ``table`` split by its ``region`` column and the UTC date of its ``ts`` column."""
    if table.num_rows == 0:
        return []
    dates = pc.strftime(table.column("ts"), format="%Y-%m-%d")
    keys = pa.table({"region": table.column("region"), "date": dates})
    written = []
    for pair in keys.group_by(["region", "date"]).aggregate([]).to_pylist():
        mask = pc.and_(pc.equal(keys.column("region"), pair["region"]), pc.equal(dates, pair["date"]))
        part = table.filter(mask)
        directory = partition_dir(root, table_name, pair["region"], pair["date"])
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{part_prefix}{uuid.uuid4().hex}.parquet"
        tmp = directory / f".{name}.tmp"
        pq.write_table(part, tmp, compression="zstd")
        os.replace(tmp, directory / name)
        written.append(directory / name)
    return written


def write_records(
    root: Path, records: Sequence[object], record_type: type, *, part_prefix: str = ""
) -> list[Path]:
    """Append records of one type to the partitioned log under ``root``."""
    table = records_to_table(records, record_type)
    return write_table_partitioned(root, record_type.TABLE, table, part_prefix=part_prefix)  # type: ignore[attr-defined]


def scan_records(root: Path, record_type: type) -> pl.LazyFrame:
    """A lazy scan over every partition of one record table (region and date as columns)."""
    table_dir = Path(root) / record_type.TABLE  # type: ignore[attr-defined]
    return pl.scan_parquet(
        table_dir / "**" / "*.parquet",
        hive_partitioning=True,
        schema=pl.Schema(pl.from_arrow(arrow_schema(record_type).empty_table()).schema),  # type: ignore[union-attr]
        hive_schema={"region": pl.String, "date": pl.String},
    )
