"""The event log on disk: record tables as Parquet partitioned by region and date.

Layout: ``<root>/<table>/region=<region>/date=<YYYY-MM-DD>/<part>.parquet`` (Hive style, so
polars, pyarrow and Feast's file sources read it with the partition columns). Writers are
append-only: each call writes a new part file atomically (temp file + rename), so a crash
never leaves a half-written part visible to readers. A writer that may retry a write (the
gateway's event log) passes a deterministic ``part_name``, so writing the same rows again
replaces the same parts instead of duplicating them, and ``durable=True`` to fsync each part
and its directories before returning.
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


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_table_partitioned(
    root: Path,
    table_name: str,
    table: pa.Table,
    *,
    part_prefix: str = "",
    part_name: str | None = None,
    durable: bool = False,
) -> list[Path]:
    """Write ``table`` split by its ``region`` column and the UTC date of its ``ts`` column.

    Each partition gets one part, ``<part_prefix><part_name or a uuid>.parquet``; an existing
    part of that name is replaced atomically. ``durable`` fsyncs the part before the rename
    and the directories after it (the new ones' parents too), so the parts survive power loss
    once this returns.
    """
    if table.num_rows == 0:
        return []
    dates = pc.strftime(table.column("ts"), format="%Y-%m-%d")
    keys = pa.table({"region": table.column("region"), "date": dates})
    written = []
    for pair in keys.group_by(["region", "date"]).aggregate([]).to_pylist():
        mask = pc.and_(pc.equal(keys.column("region"), pair["region"]), pc.equal(dates, pair["date"]))
        part = table.filter(mask)
        directory = partition_dir(root, table_name, pair["region"], pair["date"])
        new_dirs = [
            d for d in (directory.parent.parent, directory.parent, directory) if durable and not d.exists()
        ]
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{part_prefix}{part_name or uuid.uuid4().hex}.parquet"
        tmp = directory / f".{name}.tmp"
        pq.write_table(part, tmp, compression="zstd")
        if durable:
            _fsync(tmp)
        os.replace(tmp, directory / name)
        if durable:
            for synced in {directory, *(d.parent for d in new_dirs)}:
                _fsync(synced)
        written.append(directory / name)
    return written


def write_records(
    root: Path,
    records: Sequence[object],
    record_type: type,
    *,
    part_prefix: str = "",
    part_name: str | None = None,
    durable: bool = False,
) -> list[Path]:
    """Append records of one type to the partitioned log under ``root``."""
    table = records_to_table(records, record_type)
    return write_table_partitioned(
        root,
        record_type.TABLE,  # type: ignore[attr-defined]
        table,
        part_prefix=part_prefix,
        part_name=part_name,
        durable=durable,
    )


def scan_records(root: Path, record_type: type) -> pl.LazyFrame:
    """A lazy scan over every partition of one record table (region and date as columns)."""
    table_dir = Path(root) / record_type.TABLE  # type: ignore[attr-defined]
    return pl.scan_parquet(
        table_dir / "**" / "*.parquet",
        hive_partitioning=True,
        schema=pl.Schema(pl.from_arrow(arrow_schema(record_type).empty_table()).schema),  # type: ignore[union-attr]
        hive_schema={"region": pl.String, "date": pl.String},
    )
