"""The hidden ground truth of logged simulated requests, and of every candidate SKU for them.

The bootstrap's logs hold no task, no difficulty and no text (by design); the simulator knew
them. :func:`regenerate_ground_truth` re-runs the bootstrap's own simulation
(:func:`simulator.bootstrap_run.iter_window_records`, the code path that wrote the logs) from the
``_manifest.json`` and keeps, per ``request_id``, what a router is not told. Nothing is
written; a params digest and a row-by-row check against the decision log guard against
regenerating a different world than the one that was logged.

:func:`candidate_truth` evaluates the world's formulas (``simulator.ground_truth``) for
(request, SKU) pairs: the true P(good answer), the expected and a sampled TTFT at the
request's load, and the expected serving cost. Cache assumption: a SKU holds the prefix it
held *in the logged history* (the prefix the logging policy's routing left warm, exactly the
``expected_cache_hit`` the router saw), kept with probability ``1 - P(evicted | load)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from features.catalog import REGIONS, Catalog, load_catalog
from features.record_store import scan_records
from features.records import DecisionRecord
from features.schema import REQUEST_FEATURE_NAMES, TASK_TYPES
from simulator.bootstrap import MANIFEST_NAME
from simulator.bootstrap_run import (
    BootstrapConfig,
    BootstrapError,
    BootstrapRun,
    iter_window_records,
    prepare_run,
)
from simulator.bootstrap_tables import WindowRecords
from simulator.ground_truth import (
    GroundTruthParams,
    SkuTruth,
    answer_tokens,
    cache_eviction_probability,
    failure_probabilities,
    load_factor,
    quality_probability,
    truncated_quality,
    ttft_ms,
)
from simulator.prompts import PROMPT_SCRIPTS
from simulator.workload import US_PER_HOUR, RequestWindow


class GroundTruthMismatch(RuntimeError):
    """The regenerated world does not match the logs (other code, parameters or catalog)."""


def config_from_manifest(manifest: dict, root: Path, *, outcomes_data: Path | None = None) -> BootstrapConfig:
    """The bootstrap configuration a ``_manifest.json`` describes (to regenerate its world); a
    real-outcomes world reads its data from ``outcomes_data``, else from where the manifest says."""
    per_day, windows = int(manifest["requests_per_day"]), int(manifest["windows_per_day"])
    config = BootstrapConfig(
        days=int(manifest["days"]),
        requests_per_day=per_day,
        seed=int(manifest["seed"]),
        out=root,
        start=date.fromisoformat(manifest["start"]),
        epsilon=float(manifest["policy_epsilon"]),
        n_tenants=int(manifest["n_tenants"]),
        max_window_requests=math.ceil(per_day / windows),
        world=manifest.get("world", "invented"),
        outcomes_data=outcomes_data
        or (Path(manifest["outcomes_data"]) if "outcomes_data" in manifest else None),
        heldout_days=int(manifest.get("heldout_days", 1)),
    )
    if config.windows_per_day != windows:
        raise GroundTruthMismatch(f"cannot reproduce {windows} windows/day at {per_day} requests/day")
    return config


def _window_truth(run: BootstrapRun, window: RequestWindow, records: WindowRecords) -> pl.DataFrame:
    truth, req, out = run.world.truth, window.requests, records.outcomes
    n, k = len(req), len(truth.names)
    hours = (records.ts_us / US_PER_HOUR) % 24
    load = load_factor(
        truth,
        np.tile(np.arange(k), (n, 1)),
        np.repeat(records.region[:, None], k, 1),
        np.repeat(hours[:, None], k, 1),
    )
    names = np.array(truth.names)
    hint = records.request_features[:, REQUEST_FEATURE_NAMES.index("task_type")].astype(np.int64)
    frame = pl.DataFrame(
        {
            "request_id": pl.Series(records.request_id.to_pylist(), dtype=pl.String),
            "ts": pl.Series(records.ts_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "region": np.array(REGIONS)[records.region],
            "tenant_id": np.array(records.tenant_ids.to_pylist())[records.tenant],
            "conversation_id": req.conversation_id,
            "turn": req.turn,
            "task": np.array(TASK_TYPES)[req.task],
            "task_hint": np.array(TASK_TYPES)[hint],
            "difficulty": req.difficulty,
            "script": np.array(PROMPT_SCRIPTS)[req.script],
            "stream": req.stream,
            "has_tools": req.has_tools,
            "prompt_tokens": req.prompt_tokens,
            "system_tokens": req.system_tokens,
            "last_user_tokens": req.user_tokens,
            "max_tokens": req.max_tokens,
            "output_tokens": req.output_tokens,  # the true answer length (after the client's max_tokens)
            "truncated": req.truncated,  # the client's max_tokens cut the answer
            "hours_utc": hours,
            "load_by_sku": load,  # [sku] in catalog order
            "cached_prefix_by_sku": out.prefix_tokens,  # [sku] prefix each SKU held on arrival (logged history)
            "eligible_by_sku": records.eligible,  # [sku]
            "logged_chosen_sku": names[records.chosen],
            "logged_served_sku": pl.Series(names[np.maximum(out.served_sku, 0)]).set(
                pl.Series(out.served_sku < 0), None
            ),
            "logged_served_p_good": pl.Series(out.p_good).fill_nan(None),
        }
    )
    if run.real is not None:  # the real-outcomes world: P(good) per SKU is the data's score
        frame = frame.with_columns(
            prompt_id=req.prompt,  # type: ignore[attr-defined]
            heldout_prompt=run.real.data.heldout[req.prompt],  # type: ignore[attr-defined]
            p_good_by_sku=run.real.p_good(req.prompt),  # type: ignore[attr-defined]
        )
    return frame


def _check_against_logs(truth: pl.DataFrame, root: Path, names: tuple[str, ...]) -> None:
    index = {name: REQUEST_FEATURE_NAMES.index(name) for name in ("prompt_tokens", "turns", "max_tokens")}
    bits = [1 << i for i in range(len(names))]  # a candidate set as a bitmask over catalog order
    logged = (
        scan_records(root, DecisionRecord)
        .select(
            "request_id",
            *(
                pl.col("request_features").list.get(i).cast(pl.Int64).alias(f"logged_{n}")
                for n, i in index.items()
            ),
            pl.col("candidates")
            .list.eval(pl.element().struct.field("sku").replace_strict(names, bits, return_dtype=pl.Int64))
            .list.sum()
            .alias("logged_candidates"),
        )
        .collect()
    )
    if logged.height != truth.height or logged["request_id"].n_unique() != logged.height:
        raise GroundTruthMismatch(
            f"{truth.height:,} regenerated requests, {logged.height:,} logged decisions"
        )
    eligible = truth["eligible_by_sku"].to_numpy().astype(np.int64) @ np.array(bits, dtype=np.int64)
    joined = (
        truth.select("request_id", "prompt_tokens", "turn", "max_tokens")
        .with_columns(eligible=eligible)
        .join(logged, on="request_id", how="inner")
    )
    bad = joined.filter(
        (pl.col("prompt_tokens") != pl.col("logged_prompt_tokens"))
        | (pl.col("turn") != pl.col("logged_turns"))
        | (pl.col("max_tokens") != pl.col("logged_max_tokens"))
        | (pl.col("eligible") != pl.col("logged_candidates"))
    )
    if joined.height != truth.height or bad.height:
        example = bad["request_id"][0] if bad.height else "(ids differ)"
        raise GroundTruthMismatch(
            f"{truth.height - joined.height:,} ids unmatched, {bad.height:,} rows differ (e.g. {example})"
        )


def regenerate_ground_truth(
    logs_root: Path, *, verify: bool = True, outcomes_data: Path | None = None
) -> pl.DataFrame:
    """The hidden truth of every request a bootstrap logged, one row per ``request_id``, in log order.

    Per-SKU columns (``load_by_sku``, ``cached_prefix_by_sku``, ``eligible_by_sku``) are arrays in
    catalog order; a real-outcomes world adds ``prompt_id``, ``heldout_prompt`` and
    ``p_good_by_sku`` (its data read from ``outcomes_data`` or the path in the manifest). Raises
    :class:`GroundTruthMismatch` if the regenerated world is not the logged one.
    """
    root = Path(logs_root)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    try:
        run = prepare_run(config_from_manifest(manifest, root, outcomes_data=outcomes_data))
    except BootstrapError as error:
        raise GroundTruthMismatch(f"cannot rebuild the logged world: {error}") from None
    if run.real is not None and run.real.digest != manifest.get("outcomes_digest"):
        raise GroundTruthMismatch(
            f"the outcome data in {run.real.data.source} (digest {run.real.digest}) is not the data these "
            f"logs were simulated from (digest {manifest.get('outcomes_digest')})"
        )
    if run.params_digest != manifest["params_digest"]:
        raise GroundTruthMismatch("the simulator's parameters changed since these logs were written")
    if run.world.catalog.version != manifest["catalog_version"]:
        raise GroundTruthMismatch("the SKU catalog version changed since these logs were written")
    frames = [_window_truth(run, window, records) for window, records in iter_window_records(run)]
    if not frames:
        raise GroundTruthMismatch("the manifest describes no windows")
    truth = pl.concat(frames)
    if verify:
        _check_against_logs(truth, root, run.world.truth.names)
    return truth


def _splitmix64(values: np.ndarray) -> np.ndarray:
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash_per_row(values: pl.Series, salt: str) -> np.ndarray:
    """A stable 64-bit hash of each row's string (blake2b; the same in every process and version)."""
    unique = values.unique(maintain_order=True).to_list()
    digests = {
        v: int.from_bytes(hashlib.blake2b(f"{salt}\x00{v}".encode(), digest_size=8).digest(), "little")
        for v in unique
    }
    return np.array([digests[v] for v in values.to_list()], dtype=np.uint64)


def keyed_uniforms(request_id: pl.Series, sku: pl.Series, *, seed: int, streams: int) -> np.ndarray:
    """[m, streams] uniforms in (0, 1) that depend only on (seed, request_id, sku, stream): reproducible
    whatever other rows are present or how they are ordered."""
    with np.errstate(over="ignore"):
        base = _hash_per_row(request_id, f"request/{seed}") ^ _splitmix64(_hash_per_row(sku, "sku"))
        bits = np.stack(
            [_splitmix64(base ^ _splitmix64(np.full(len(base), j))) for j in range(streams)], axis=1
        )
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def default_sku_truth(catalog: Catalog | None = None) -> SkuTruth:
    """The documented world's SKU truth (what the bootstrap uses; its params digest is checked on regeneration)."""
    return SkuTruth.from_catalog(catalog or load_catalog(), GroundTruthParams())


def candidate_truth(
    truth: pl.DataFrame, candidates: pl.DataFrame, *, noise_seed: int = 0, sku_truth: SkuTruth | None = None
) -> pl.DataFrame:
    """True quality, TTFT and cost of (request_id, sku) pairs; raises on unknown requests or SKUs.

    - ``p_good``: ``quality_probability`` (the SKU's ``max_output_tokens`` may cut the answer), or
      in the real-outcomes world the ``p_good_by_sku`` entry, cut the same way;
    - ``expected_cached_tokens``: the logged prefix the SKU held × ``1 - P(evicted | load)``;
    - ``cost_usd`` / ``list_price_usd``: catalog serving cost / list price of the expected tokens;
    - ``ttft_expected_ms``: the mean over latency noise and eviction at the request's load;
    - ``ttft_sampled_ms``: one draw with the world's noise and an eviction draw, seeded by
      (``noise_seed``, request_id, sku) so it is the same in every evaluation;
    - ``p_failure``: P(error, overload or timeout) of an attempt (reported; evaluation ignores fallbacks).
    """
    gt = sku_truth or default_sku_truth()
    index = {name: i for i, name in enumerate(gt.names)}
    pairs = candidates.select("request_id", "sku")
    unknown = pairs.filter(~pl.col("sku").is_in(list(gt.names)))
    if unknown.height:
        raise ValueError(f"unknown SKU {unknown['sku'][0]!r}")
    rows = truth.select("request_id").with_row_index("_row")
    joined = pairs.join(rows, on="request_id", how="left", maintain_order="left")
    if joined["_row"].null_count():
        missing = joined.filter(pl.col("_row").is_null())["request_id"][0]
        raise ValueError(f"no ground truth for request {missing!r}")
    row = joined["_row"].to_numpy().astype(np.int64)
    s = np.array([index[name] for name in pairs["sku"]], dtype=np.int64)

    def column(name: str) -> np.ndarray:
        return truth[name].to_numpy()[row]

    def per_sku(name: str) -> np.ndarray:
        return truth[name].to_numpy()[row, s]

    load, prefix, prompt = per_sku("load_by_sku"), per_sku("cached_prefix_by_sku"), column("prompt_tokens")
    out, cut = answer_tokens(gt, s, column("output_tokens"), column("truncated"))
    task = truth["task"].cast(pl.Enum(list(TASK_TYPES))).to_physical().to_numpy()[row]
    if "p_good_by_sku" in truth.columns:  # the real-outcomes world: the data's score of the SKU's model
        p_good = truncated_quality(gt.params, per_sku("p_good_by_sku"), cut)
    else:
        p_good = quality_probability(gt, s, task, column("difficulty"), prompt, cut)
    p_evict = cache_eviction_probability(gt.params, load)
    cached = prefix * (1.0 - p_evict)
    uncached = prompt - cached
    sigma = gt.params.ttft_noise_sigma
    ttft_expected = ttft_ms(gt, s, uncached, load, np.zeros(len(s))) * math.exp(sigma * sigma / 2.0)
    u = keyed_uniforms(pairs["request_id"], pairs["sku"], seed=noise_seed, streams=3)
    z = np.sqrt(-2.0 * np.log(u[:, 1])) * np.cos(2.0 * np.pi * u[:, 2])
    sampled_uncached = prompt - np.where(u[:, 0] < p_evict, 0, prefix)
    error, overloaded, timeout = failure_probabilities(gt, s, load)
    serving, listed = gt.serving_cost_per_mtok[s], gt.list_price_per_mtok[s]
    return pairs.with_columns(
        eligible=pl.Series(per_sku("eligible_by_sku"), dtype=pl.Boolean),
        p_good=p_good,
        load=load,
        expected_cached_tokens=cached,
        output_tokens=out,
        cost_usd=(uncached * serving[:, 0] + cached * serving[:, 1] + out * serving[:, 2]) / 1e6,
        list_price_usd=(uncached * listed[:, 0] + cached * listed[:, 1] + out * listed[:, 2]) / 1e6,
        ttft_expected_ms=ttft_expected,
        ttft_sampled_ms=ttft_ms(gt, s, sampled_uncached, load, z),
        p_failure=error + overloaded + timeout,
    )


def eligible_pairs(truth: pl.DataFrame, sku_names: tuple[str, ...] | None = None) -> pl.DataFrame:
    """(request_id, sku) for every eligible SKU of every request, in truth order then catalog order."""
    names = sku_names or load_catalog().names
    rows, skus = np.nonzero(truth["eligible_by_sku"].to_numpy())
    return pl.DataFrame({"request_id": truth["request_id"].gather(rows), "sku": np.array(names)[skus]})
