"""Latency of the learned router on one core: scoring one request's 12 candidates, and the whole decision.

    .venv/bin/python bench/router_scoring.py [--model router.onnx | --mlruns mlruns] [--calls 20000]

The router: ``--model`` (an ONNX router artifact), or the ``champion`` of the MLflow registry in
``--mlruns``; with neither, a small one is trained here the way the nightly job does
(``training.train.train_router``: LightGBM heads, ONNX export, parity gate) on a 2-day,
5K-requests/day bootstrap in a temporary folder, without Feast (the bootstrap logs no store
features, so they are NaN, as serving sees them before Feast has data); ~15 s.

Requests: simulated ones (``simulator.workload.render_payload``), each with every SKU of the
catalog as a candidate (12 rows), a random expected cache hit, NaN store features. Timed with
``perf_counter_ns``, one call at a time, onnxruntime on one intra-op thread:

- ``score``: ``RouterScorer.score`` of the 12 rows (one ``InferenceSession.run``);
- ``decide``: what ``serving.routing.decide`` does after the request vector, by stage:
  ``rows`` (candidate features, ``assemble_rows``), ``score``, ``costs`` (``expected_costs``,
  ``candidate_predictions``) and ``choose`` (``choose_sku``);
- ``request features``: ``facts_from_request`` (token estimates, script, code, the task-type
  classifier, prefix hashes) and ``request_features``, for comparison.

The requests are cycled through, so each is scored ``calls / requests`` times; ``score,
fastest`` takes each request's fastest call, what it costs when the (shared) CPU is not
contended, as ``bench/task_classifier_latency.py`` does. The load average is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import onnxruntime as ort
import polars as pl
from machine import describe_machine

from features.catalog import load_catalog
from features.request import candidate_features, facts_from_request, request_features
from features.schema import STORE_FEATURE_NAMES
from features.vector import assemble_rows
from offline.logged import load_window
from router_model.artifact import RouterArtifact, load_artifact, parse_artifact
from router_model.candidates import POLICY_HEADS, candidate_predictions, expected_costs
from router_model.policy import PolicyParams, choose_sku
from router_model.registry import RouterRegistry, tracking_uri_for
from router_model.scorer import RouterScorer
from simulator.bootstrap import BootstrapConfig, run_bootstrap
from simulator.workload import US_PER_HOUR, WorkloadParams, generate_conversations, render_payload
from simulator.world import build_world
from training.dataset import training_rows
from training.train import TrainParams, train_router

TARGET_P99_US = 100.0


def no_store_features(keys: pl.DataFrame) -> pl.DataFrame:
    return keys.with_columns(pl.lit(float("nan")).alias(name) for name in STORE_FEATURE_NAMES)


def train_small_router() -> RouterArtifact:
    with tempfile.TemporaryDirectory(prefix="router-bench-") as folder:
        logs = Path(folder) / "logs"
        config = BootstrapConfig(
            days=2, requests_per_day=5000, n_tenants=400, start=date(2026, 11, 1), out=logs
        )
        run_bootstrap(config)
        requests = load_window(logs, None, None, max_requests=None, seed=0)
        rows = training_rows(requests, no_store_features, weight_clip=10.0)
        trained = train_router(rows, TrainParams(), check_rows=rows.features, extra_metadata={})
        trees = {head: model.booster_.num_trees() for head, model in trained.models.items()}
        print(f"trained {trained.router_version} on {rows.frame.height:,} rows; trees per head {trees}")
        return parse_artifact(trained.model_bytes)


def load_router(args: argparse.Namespace) -> RouterArtifact:
    if args.model:
        return load_artifact(args.model)
    if args.mlruns:
        if not (Path(args.mlruns) / "mlflow.db").exists():
            raise SystemExit(f"no MLflow registry in {args.mlruns}")
        registered = RouterRegistry(tracking_uri_for(args.mlruns)).load("champion")
        if registered is None:
            raise SystemExit(f"no champion router in {args.mlruns}")
        return registered.artifact
    return train_small_router()


def simulated_payloads(count: int, seed: int) -> list[dict]:
    world = build_world(seed)
    start = 1_793_491_200 * 1_000_000
    table = generate_conversations(
        world,
        WorkloadParams(requests_per_day=40_000),
        np.random.default_rng(seed),
        start_us=start,
        end_us=start + 6 * US_PER_HOUR,
        first_id=0,
    )
    rows = np.random.default_rng(seed).choice(len(table), min(count, len(table)), replace=False)
    return [render_payload(table.sim_request(world, int(row))) for row in rows]


def percentiles(label: str, samples_ns: list[int]) -> str:
    micros = np.array(samples_ns) / 1e3
    p50, p99, p999 = np.percentile(micros, [50, 99, 99.9])
    return (
        f"{label:<20} n={len(micros):>7,}  p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  "
        f"p99.9 {p999:7.1f} µs  mean {micros.mean():7.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="an ONNX router artifact")
    source.add_argument("--mlruns", type=Path, help="an mlruns folder whose registry has a champion")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument(
        "--requests", type=int, default=500, help="distinct simulated requests cycled through"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    artifact = load_router(args)
    scorer = RouterScorer(artifact, threads=1)
    catalog = load_catalog()
    skus = list(catalog.skus)
    params = PolicyParams()
    rng = np.random.default_rng(args.seed)
    payloads = simulated_payloads(args.requests, args.seed)
    facts = [facts_from_request(payload) for payload in payloads]
    vectors = [request_features(f, tenant_tier="pro", surface="api") for f in facts]
    hits = rng.random((len(payloads), len(skus))) * (rng.random((len(payloads), 1)) < 0.6)
    store = np.full((len(skus), len(STORE_FEATURE_NAMES)), np.nan, dtype=np.float32)
    names = [sku.name for sku in skus]
    matrices = [
        assemble_rows(
            vectors[i],
            [candidate_features(s, cache_hit=h) for s, h in zip(skus, hits[i], strict=True)],
            store,
        )
        for i in range(len(payloads))
    ]
    uniforms = rng.random(args.calls)

    clock = time.perf_counter_ns
    stages = ("rows", "score", "costs", "choose")

    def decide(i: int, u: float, times: dict[str, list[int]] | None = None) -> str:
        t0 = clock()
        candidates = [candidate_features(s, cache_hit=h) for s, h in zip(skus, hits[i], strict=True)]
        rows = assemble_rows(vectors[i], candidates, store)
        t1 = clock()
        heads = scorer.score(rows, POLICY_HEADS)  # what the gateway runs
        t2 = clock()
        prompt = np.full(len(names), facts[i].prompt_tokens)
        costs = expected_costs(catalog, names, prompt, hits[i], heads["output_tokens"])
        predictions = candidate_predictions(names, heads, costs)
        t3 = clock()
        chosen = choose_sku(predictions, params, u).chosen_sku
        t4 = clock()
        if times is not None:
            for stage, start, stop in zip(stages, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
                times[stage].append(stop - start)
            times["decide"].append(t4 - t0)
        return chosen

    for i in range(min(500, len(payloads))):  # warm up
        scorer.score(matrices[i])
        decide(i, 0.5)

    score_ns, policy_ns, features_ns = [], [], []
    decide_ns: dict[str, list[int]] = {name: [] for name in (*stages, "decide")}
    n = len(payloads)
    for call in range(args.calls):
        matrix = matrices[call % n]
        start = clock()
        scorer.score(matrix)
        score_ns.append(clock() - start)
        start = clock()
        scorer.score(matrix, POLICY_HEADS)
        policy_ns.append(clock() - start)
    for call in range(args.calls):
        decide(call % n, uniforms[call], decide_ns)
    for call in range(min(args.calls, 5 * n)):
        payload = payloads[call % n]
        start = clock()
        request_features(facts_from_request(payload), tenant_tier="pro", surface="api")
        features_ns.append(clock() - start)

    print(describe_machine(f"onnxruntime {ort.__version__}"))
    print(
        f"router {artifact.router_version} ({len(artifact.model_bytes) / 1e6:.2f} MB ONNX, heads "
        f"{', '.join(artifact.heads)}), {len(skus)} candidates, 1 intra-op thread"
    )
    print(percentiles("score, all 5 heads", score_ns))
    print(percentiles("score, the 3 policy heads", policy_ns) + "  (what the gateway runs)")
    fastest = [min(score_ns[i :: len(payloads)]) for i in range(min(len(payloads), len(score_ns)))]
    print(percentiles("score, fastest", fastest) + "  (each request's best round: an uncontended core)")
    print(percentiles("decide", decide_ns["decide"]))
    for stage in stages:
        print(percentiles(f"  {stage}", decide_ns[stage]))
    print(percentiles("request features", features_ns))
    p99 = float(np.percentile(np.array(policy_ns) / 1e3, 99))
    verdict = "met" if p99 <= TARGET_P99_US else "MISSED"
    print(f"target: score p99 <= {TARGET_P99_US:.0f} µs (policy heads) -- {verdict} ({p99:.1f} µs)")


if __name__ == "__main__":
    main()
