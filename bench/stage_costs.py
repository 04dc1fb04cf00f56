"""CPU and latency of each stage of the gateway's request path, as one file the capacity model reads.

    flock /tmp/team/bench.lock .venv/bin/python bench/stage_costs.py [--model router.onnx | --mlruns mlruns]
        [--requests 400] [--rounds 5] [--out bench/results/stage_costs.json]

In process, one call at a time, each timed with ``perf_counter_ns`` (wall) and ``thread_time_ns``
(this thread's CPU), over ``--requests`` simulated requests (``simulator.workload``'s payloads,
``model: auto``, the ones some SKU can take) × ``--rounds``, after a warm-up round. The stages
are the functions ``serving.gateway.Gateway`` calls, in its order:

- ``auth``: ``TenantDirectory.authenticate(api_key_from(headers))`` over 10,000 tenants;
- ``parse_validate``: body size, ``parse_messages_body`` (JSON + Messages validation), model name;
- ``screen_facts``: token estimates and flags (``features.request.screen_facts``);
- ``policy_checks``: size caps, deny rules (none configured, as ``make serve`` runs), residency,
  the candidate placements (entitlement, context, deployment, availability);
- ``admission_local``: ``InProcessAdmission.admit_now`` + ``release_now``;
- ``routing_facts``: code, script, the task-type classifier, the prompt embedding, of which
  ``task_classifier`` and ``prompt_embedding`` are timed alone too;
- ``request_features``, ``prefix_keys`` (prompt segments, boundary prefix keys, conversation key);
- ``onnx_scoring``: one ``RouterScorer.score`` of the 12 candidates' rows, the 3 policy heads;
- ``policy``: expected costs, candidate predictions, ``choose_sku`` from the heads;
- ``decide_learned`` / ``decide_static``: ``serving.routing.decide`` (cache estimate, rows,
  scoring, policy, the candidate scores) with the learned router and with the static prior;
- ``records_build``: ``RequestLedger.finish`` into a list (one decision, attempt, outcome record);
- ``records_arrow``: those records to Arrow tables (``features.records.records_to_table``) in
  batches of 1,024 requests, per request; the batches' zstd Parquet bytes per request are the
  ``log_bytes_per_request`` the capacity model sizes logging with.

The router: ``--model``, the champion in ``--mlruns``, or (neither) one trained here on a small
bootstrap (``bench/router_scoring.py``'s ``train_small_router``, ~15 s), so a fresh clone runs it.

Stages that need servers are not re-run: ``QUOTED`` copies their figures from the results files
and ADRs that measured them, each with its source, and this checks the quoted line is still in
that file (a stale quote is reported, not silently kept). The JSON keeps both kinds apart.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from machine import describe_machine
from router_scoring import load_router, simulated_payloads
from stage_quotes import QUOTED, check_quotes

from features.catalog import load_catalog
from features.messages_request import parse_messages_body
from features.prefix import boundary_prefix_keys
from features.prompt_embedding import embed_prompt
from features.records import RECORD_TYPES, records_to_table
from features.request import (
    candidate_features,
    prompt_segments,
    request_features,
    routing_facts,
    screen_facts,
)
from features.schema import STORE_FEATURE_NAMES
from features.task_classifier import predict_task_type
from features.vector import assemble_rows
from router_model.candidates import POLICY_HEADS, candidate_predictions, expected_costs
from router_model.policy import PolicyParams, choose_sku
from router_model.scorer import RouterScorer
from serving.admission import InProcessAdmission, token_reservation
from serving.errors import ApiError
from serving.ledger import AttemptResult, RequestLedger, Usage, utc_now
from serving.policy_checks import (
    DenyRules,
    PolicyInput,
    ResidencyRules,
    SizeCaps,
    allowed_regions,
    check_body_size,
    check_model_name,
    check_policy,
)
from serving.prompt_cache import PromptCacheEstimate
from serving.request_parts import api_key_from, conversation_key
from serving.router_runtime import LoadedRouter, StaticPriorScorer
from serving.routing import decide, placements
from serving.tenants import TenantDirectory, hash_api_key, parse_tenant_file

ROOT = Path(__file__).resolve().parents[1]
TENANTS = 10_000
SALT = "5eed" * 8
ARROW_BATCH = 1024


def tenant_directory(catalog) -> tuple[TenantDirectory, list[str]]:
    keys = [f"sk-bench-{index:06d}-{'x' * 40}" for index in range(TENANTS)]
    raw = {
        "version": 1,
        "key_hashing": {"scheme": "hmac-sha256", "salt": SALT},
        "tenants": [
            {
                "tenant_id": f"tenant-{index:06d}",
                "tier": "pro",
                "home_region": "us",
                "entitled_skus": list(catalog.names),
                "api_key_hashes": [hash_api_key(key, SALT)],
            }
            for index, key in enumerate(keys)
        ],
    }
    return TenantDirectory(parse_tenant_file(raw, catalog=catalog)), keys


def timed(function: Callable[[int], object], n: int, rounds: int) -> dict:
    """Wall and CPU µs of ``function(i)`` for i in 0..n-1, ``rounds`` times after one warm-up pass."""
    for index in range(n):
        function(index)
    wall, cpu = [], []
    perf, thread = time.perf_counter_ns, time.thread_time_ns
    for _ in range(rounds):
        for index in range(n):
            c0, w0 = thread(), perf()
            function(index)
            w1, c1 = perf(), thread()
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
    wall_us, cpu_us = np.array(wall) / 1e3, np.array(cpu) / 1e3
    return {
        "n": len(wall),
        "cpu_us": {"p50": _r(np.median(cpu_us)), "mean": _r(cpu_us.mean())},
        "wall_us": {
            "p50": _r(np.percentile(wall_us, 50)),
            "p99": _r(np.percentile(wall_us, 99)),
            "mean": _r(wall_us.mean()),
        },
    }


def _r(value: float) -> float:
    return round(float(value), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="an ONNX router artifact")
    source.add_argument("--mlruns", type=Path, help="an mlruns folder whose registry has a champion")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stage_costs.json")
    args = parser.parse_args()
    started = time.monotonic()

    catalog = load_catalog()
    artifact = load_router(args)
    learned = LoadedRouter(RouterScorer(artifact, threads=1), None, time.time())
    static = LoadedRouter(StaticPriorScorer(catalog), None, time.time())
    directory, keys = tenant_directory(catalog)
    caps, rules, residency = SizeCaps(), DenyRules(), ResidencyRules()
    admission = InProcessAdmission()
    prompt_cache = PromptCacheEstimate()
    params = PolicyParams()
    store = np.full((len(catalog.skus), len(STORE_FEATURE_NAMES)), np.nan, dtype=np.float32)

    def placed_for(tenant, request, screen):
        return placements(
            tenant,
            screen,
            model=request.model,
            catalog=catalog,
            regions=allowed_regions(tenant, residency),
            deployed=lambda sku, region: True,
            available=lambda sku, region: True,
        )

    rng = np.random.default_rng(args.seed)
    cases = []  # (headers, body, request, screen, placed, tenant)
    for payload in simulated_payloads(args.requests * 2, args.seed):
        body = json.dumps(payload).encode()
        headers = {"x-api-key": keys[int(rng.integers(TENANTS))]}
        tenant = directory.authenticate(api_key_from(headers))
        request = parse_messages_body(body)
        screen = screen_facts(request.document)
        try:
            placed = placed_for(tenant, request, screen)
        except ApiError:
            continue  # no SKU can take it (context): the gateway answers 400 before routing
        cases.append((headers, body, request, screen, placed, tenant))
        if len(cases) == args.requests:
            break
    n = len(cases)
    facts = [routing_facts(case[3]) for case in cases]
    vectors = [request_features(f, tenant_tier="pro", surface="api") for f in facts]
    prefix = [boundary_prefix_keys(prompt_segments(case[2].document)) for case in cases]
    for index, case in enumerate(cases):  # half the deployments have seen half the requests' prefixes
        for placement in case[4][::2]:
            if index % 2 == 0:
                prompt_cache.observe(placement.sku.name, placement.region, prefix[index], time.monotonic())
    rows = [
        assemble_rows(
            vectors[i],
            [candidate_features(p.sku, cache_hit=0.0) for p in cases[i][4]],
            store[: len(cases[i][4])],
        )
        for i in range(n)
    ]
    heads = [learned.scorer.score(rows[i], POLICY_HEADS) for i in range(n)]

    def auth(i):
        return directory.authenticate(api_key_from(cases[i][0]))

    def parse_validate(i):
        body = cases[i][1]
        check_body_size(len(body), caps)
        request = parse_messages_body(body)
        return check_model_name(request.model, catalog)

    def policy_checks(i):
        _, _, request, screen, _, tenant = cases[i]
        messages = request.document.get("messages") or ()
        check_policy(
            PolicyInput(tenant, request.model, len(messages), screen.prompt_tokens, request.last_user_text),
            caps,
            rules,
        )
        return placed_for(tenant, request, screen)

    def admission_local(i):
        screen, tenant = cases[i][3], cases[i][5]
        ticket = admission.admit_now(tenant, token_reservation(screen.prompt_tokens, screen.max_tokens))
        admission.release_now(ticket, screen.prompt_tokens)

    def prefix_keys(i):
        document = cases[i][2].document
        conversation_key(cases[i][5].tenant_id, document)
        return boundary_prefix_keys(prompt_segments(document))

    def policy(i):
        placed = cases[i][4]
        names = [p.sku.name for p in placed]
        prompt = np.full(len(names), facts[i].prompt_tokens)
        costs = expected_costs(catalog, names, prompt, np.zeros(len(names)), heads[i]["output_tokens"])
        return choose_sku(candidate_predictions(names, heads[i], costs), params, 0.5)

    def deciding(router):
        def run(i):
            return decide(
                cases[i][4],
                facts[i],
                vectors[i],
                store[: len(cases[i][4])],
                prefix[i],
                router=router,
                catalog=catalog,
                prompt_cache=prompt_cache,
                params=params,
                now=time.monotonic(),
                uniform=0.5,
            )

        return run

    routes = [deciding(learned)(i) for i in range(n)]
    ticket = admission.admit_now(cases[0][5], 1)
    records: list[list[object]] = []

    def records_build(i):
        sink: list[object] = []
        ledger = RequestLedger(
            request_id=f"req_{i:024x}",
            received=utc_now(),
            received_monotonic=time.monotonic(),
            tenant=cases[i][5],
            facts=facts[i],
            request_vector=vectors[i],
            requested_model="auto",
            conversation_key="c",
            route=routes[i],
            params=params,
            decision_ms=0.8,
            ticket=ticket,
            sink=sink.append,
        )
        placement = routes[i].plan[0]
        usage = Usage(facts[i].prompt_tokens // 2, facts[i].prompt_tokens // 2, 300, True)
        ledger.add_attempt(
            AttemptResult(
                placement.sku.name, placement.region, "w0", utc_now(), "ok", None, 200, 310.0, 4200.0, usage
            )
        )
        ledger.finish(
            catalog=catalog,
            status="ok",
            error_type=None,
            http_status=200,
            ttft_ms=310.0,
            stop_reason="end_turn",
        )
        records.append(sink)

    stages = {
        "auth": (auth, "tenant directory lookup of the API key (HMAC-SHA256 + dict), 10,000 tenants"),
        "parse_validate": (parse_validate, "body size, JSON + Messages validation, model name"),
        "screen_facts": (lambda i: screen_facts(cases[i][2].document), "token estimates and flags"),
        "policy_checks": (policy_checks, "size caps, deny rules, residency, candidate placements"),
        "admission_local": (admission_local, "in-process admit + release (quotas, concurrency, shedding)"),
        "routing_facts": (lambda i: routing_facts(cases[i][3]), "code, script, task classifier, embedding"),
        "task_classifier": (lambda i: predict_task_type(cases[i][3].last_user_text), "of routing_facts"),
        "prompt_embedding": (lambda i: embed_prompt(cases[i][3].last_user_text), "of routing_facts"),
        "request_features": (
            lambda i: request_features(facts[i], tenant_tier="pro", surface="api"),
            "the request vector from the facts",
        ),
        "prefix_keys": (prefix_keys, "prompt segments, boundary prefix keys, conversation key"),
        "onnx_scoring": (
            lambda i: learned.scorer.score(rows[i], POLICY_HEADS),
            f"one onnxruntime run, {artifact.router_version}, 3 policy heads, 1 intra-op thread",
        ),
        "policy": (policy, "expected costs, candidate predictions, choose_sku"),
        "decide_learned": (deciding(learned), "serving.routing.decide with the learned router"),
        "decide_static": (deciding(static), "serving.routing.decide with the static prior"),
        "records_build": (records_build, "RequestLedger.finish: decision, attempt, outcome records"),
    }
    measured = {
        "timer_overhead": {
            **timed(lambda i: None, n, args.rounds),
            "what": "an empty call: the timers' own cost, in every row",
        }
    }
    for name, (function, what) in stages.items():
        measured[name] = {**timed(function, n, args.rounds), "what": what}
        print(f"{name:<18} cpu p50 {measured[name]['cpu_us']['p50']:8.1f} µs   wall p50 "
              f"{measured[name]['wall_us']['p50']:8.1f} µs   p99 {measured[name]['wall_us']['p99']:8.1f} µs")  # fmt: skip

    flat = [record for per_request in records for record in per_request]
    log_bytes, arrow_us = 0, []
    for start in range(0, len(flat), ARROW_BATCH * 3):
        batch = flat[start : start + ARROW_BATCH * 3]
        c0 = time.thread_time_ns()
        tables = {
            t.TABLE: records_to_table([r for r in batch if type(r) is t], t)
            for t in RECORD_TYPES
            if any(type(r) is t for r in batch)
        }
        arrow_us.append((time.thread_time_ns() - c0) / 1e3 / (len(batch) / 3))
        for table in tables.values():
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            log_bytes += sink.tell()
    per_request_bytes = log_bytes / (len(flat) / 3)
    measured["records_arrow"] = {
        "n": len(flat) // 3,
        "cpu_us": {"p50": _r(np.median(arrow_us)), "mean": _r(np.mean(arrow_us))},
        "wall_us": None,
        "what": f"records to Arrow tables in batches of {ARROW_BATCH} requests, CPU per request",
    }
    stale = check_quotes(ROOT)
    document = {
        "generated_by": "bench/stage_costs.py",
        "command": "flock /tmp/team/bench.lock .venv/bin/python bench/stage_costs.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"
        ),
        "machine": describe_machine(f"onnxruntime {ort.__version__}, pyarrow {pa.__version__}"),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": n,
        "rounds": args.rounds,
        "router_version": artifact.router_version,
        "measured": measured,
        "log_bytes_per_request": {
            "parquet_zstd": round(per_request_bytes, 1),
            "what": f"one decision, attempt and outcome record, zstd Parquet in batches of {ARROW_BATCH} requests",
        },
        "quoted": QUOTED,
        "stale_quotes": stale,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"log bytes per request (zstd Parquet): {per_request_bytes:,.0f}")
    print(f"stale quotes: {stale or 'none'}")
    print(f"written {args.out} in {document['seconds']} s")


if __name__ == "__main__":
    main()
