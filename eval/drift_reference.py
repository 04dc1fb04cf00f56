"""The drift monitor's reference: what "normal" looked like, from a training run or from the logs.

**From a training run** (the default: the MLflow ``champion``): the training sample and the
reference document every nightly run logs (``offline.reference``: what they hold and how they
are made), read back by :func:`reference_from_run`.

**From the logs** (``--reference 2026-11-01..2026-11-05``): the served rows of that date range
(``eval.drift_data.served_window``), with the champion's importance when there is one.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from eval.drift_data import conform, served_window
from features.schema import FEATURE_SCHEMA_VERSION
from offline.reference import DOCUMENT_PATH, SAMPLE_PATH, sku_shares, uniform_importance

ALIASES = ("champion", "challenger")


@dataclass(frozen=True, eq=False)
class DriftReference:
    frame: pl.DataFrame  # eval.drift_data.FRAME_COLUMNS
    importance: dict[str, float]  # per feature, sums to 1 (uniform when no model says otherwise)
    importance_source: str
    sku_mix: dict[str, float]
    description: str
    window: tuple[datetime, datetime] | None = None
    router_version: str | None = None


def _client(mlruns: Path) -> Any:
    from mlflow import MlflowClient

    from router_model.registry import tracking_uri_for

    uri = tracking_uri_for(mlruns)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def resolve_run(mlruns: Path, reference: str) -> tuple[str, str | None]:
    """(run id, registered version or None) for an alias (``champion``) or a run id."""
    from mlflow.exceptions import MlflowException

    from router_model.registry import REGISTERED_MODEL

    if not (Path(mlruns) / "mlflow.db").is_file():
        raise LookupError(f"no MLflow store in {mlruns} (train a router first: `switchyard train`)")
    client = _client(mlruns)
    if reference in ALIASES:
        try:
            version = client.get_model_version_by_alias(REGISTERED_MODEL, reference)
        except MlflowException:
            raise LookupError(
                f"no '{reference}' in {mlruns} (train a router first: `switchyard train`)"
            ) from None
        return str(version.run_id), str(version.version)
    return reference, None


def reference_from_run(mlruns: Path, reference: str = "champion") -> DriftReference:
    """The training reference logged with a run (an alias or a run id)."""
    run_id, version = resolve_run(mlruns, reference)
    client = _client(mlruns)
    with tempfile.TemporaryDirectory(prefix="switchyard-reference-") as folder:
        try:
            local = Path(client.download_artifacts(run_id, "reference", folder))
        except Exception as error:  # mlflow raises several types for a missing run or artifact
            raise LookupError(f"run {run_id} has no reference artifacts: {error}") from None
        sample = pl.read_parquet(local / Path(SAMPLE_PATH).name)
        document_path = local / Path(DOCUMENT_PATH).name
        document = json.loads(document_path.read_text()) if document_path.is_file() else {}
    name = f"{reference} (v{version}, run {run_id})" if version else f"run {run_id}"
    window = None
    if "window" in document:
        window = (
            datetime.fromisoformat(document["window"]["start"]),
            datetime.fromisoformat(document["window"]["end"]),
        )
    importance = document.get("importance")
    if "first_attempt_ok" not in sample.columns:  # a run logged before the outcome columns existed
        sample = sample.with_columns(pl.lit(True).alias("first_attempt_ok"))
    frame = conform(sample)
    router = document.get("router_version")
    trained = f", trained on {window[0]:%Y-%m-%d}..{window[1]:%Y-%m-%d}" if window else ""
    return DriftReference(
        frame=frame,
        importance=dict(importance) if importance else uniform_importance(),
        importance_source=f"{router or name} (split gain)" if importance else "uniform (the run logged none)",
        sku_mix=dict(document.get("sku_mix") or sku_shares(frame)),
        description=f"training sample of {name}{' ' + router if router else ''}{trained}",
        window=window,
        router_version=router,
    )


def reference_from_logs(
    logs: Path,
    start: datetime,
    end: datetime,
    *,
    max_rows: int = 20_000,
    seed: int = 0,
    importance: Mapping[str, float] | None = None,
    importance_source: str = "uniform (no model given)",
) -> DriftReference:
    frame = served_window(logs, start, end, max_requests=max_rows, seed=seed)
    if frame.height == 0:
        raise LookupError(
            f"no decisions of feature schema {FEATURE_SCHEMA_VERSION} in {logs} for {start}..{end}"
        )
    versions = frame["router_version"].unique().sort().to_list()
    return DriftReference(
        frame=frame,
        importance=dict(importance) if importance else uniform_importance(),
        importance_source=importance_source if importance else "uniform (no model given)",
        sku_mix=sku_shares(frame),  # a uniform sample of the range
        description=f"served traffic {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC ({', '.join(versions)})",
        window=(start, end),
        router_version=versions[0] if len(versions) == 1 else None,
    )


_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?"
_RANGE = re.compile(rf"^({_DATE})\.\.({_DATE})$")


def parse_range(text: str) -> tuple[datetime, datetime] | None:
    """``2026-11-01..2026-11-03`` (dates inclusive) or ``2026-11-01T06:00..2026-11-01T12:00``; else None."""
    match = _RANGE.match(text.strip())
    if not match:
        return None

    def parse(value: str, *, end: bool) -> datetime:
        parsed = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return parsed + timedelta(days=1) if end and len(value) == 10 else parsed

    start, end = parse(match.group(1), end=False), parse(match.group(2), end=True)
    if end <= start:
        raise ValueError(f"empty reference range {text!r}")
    return start, end
