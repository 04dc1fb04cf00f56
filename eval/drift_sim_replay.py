"""Recompute the request features of logged simulated requests from their text (skew check, bootstrap logs).

The bootstrap's request ids are ``sim<seed>-<n>``: the n-th request the simulation generated.
Regenerating the workload (``simulator.workload.iter_request_windows``, the same code path the
bootstrap ran, from its ``_manifest.json``) gives each request back, with the earlier turns of
its conversation; :func:`simulator.workload.render_payload` renders the Anthropic payload the
gateway would have received and ``features.request`` computes the vector from it. Only the
workload is regenerated, not the outcomes: the request features depend on nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from eval.drift_skew import Recomputation
from eval.sim_truth import config_from_manifest
from features.catalog import Catalog
from features.request import facts_from_request, request_features
from features.schema import REQUEST_FEATURE_NAMES
from simulator.bootstrap import MANIFEST_NAME
from simulator.bootstrap_run import prepare_run
from simulator.workload import TurnTable, iter_request_windows, render_payload

SOURCE = "simulated request replay through features.request"


def _numbers(request_ids: Sequence[str], seed: int) -> dict[int, str]:
    prefix = f"sim{seed}-"
    return {int(rid[len(prefix) :]): rid for rid in request_ids if rid.startswith(prefix)}


def simulated_request_replay(
    logs: Path, request_ids: Sequence[str], *, catalog: Catalog | None = None
) -> Recomputation | None:
    """Request features of ``request_ids`` recomputed from regenerated payloads; None without a manifest."""
    manifest_path = Path(logs) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    run = prepare_run(config_from_manifest(manifest, Path(logs)), catalog=catalog)
    if run.params_digest != manifest.get("params_digest"):
        return Recomputation(
            SOURCE,
            pl.DataFrame(schema={"request_id": pl.String}),
            warnings=("simulated replay skipped: the simulator's parameters changed since these logs",),
        )
    wanted = _numbers(request_ids, run.config.seed)
    if not wanted:
        return None
    last = max(wanted)
    tables: list[TurnTable] = []
    offset = 0
    for window in iter_request_windows(
        run.world,
        run.workload,
        seed=run.config.seed,
        start_us=run.start_us,
        window_us=run.window_us,
        windows=run.windows,
    ):
        tables.append(window.requests)
        offset += len(window.requests)
        if offset > last:
            break
    history = TurnTable.concat(tables)
    rows, vectors, skipped = [], [], 0
    for number in sorted(wanted):
        if number >= len(history):
            skipped += 1
            continue
        try:
            request = history.sim_request(run.world, number)
        except ValueError:  # an earlier turn is missing from the regenerated history
            skipped += 1
            continue
        facts = facts_from_request(render_payload(request))
        tenant = request.tenant
        vectors.append(request_features(facts, tenant_tier=tenant.tier, surface=tenant.surface))
        rows.append(wanted[number])
    matrix = np.array(vectors, dtype=np.float64).reshape(len(rows), len(REQUEST_FEATURE_NAMES))
    values = pl.DataFrame({"request_id": rows}).with_columns(
        pl.DataFrame(matrix, schema=list(REQUEST_FEATURE_NAMES), orient="row")
    )
    notes = (f"replayed {len(rows):,} simulated requests from their text ({skipped:,} not replayable)",)
    return Recomputation(SOURCE, values, notes=notes)
