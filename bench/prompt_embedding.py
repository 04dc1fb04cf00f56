"""Decision-time cost of the prompt embedding (feature schema v3), on one core.

    .venv/bin/python bench/prompt_embedding.py [--routing-data ../shared/routing_data] \\
        [--model router.onnx] [--calls 5000] [--out bench/results/prompt_embedding.txt]

Timed with ``perf_counter_ns``, one call at a time, onnxruntime on one intra-op thread:

- ``embed``: ``features.prompt_embedding.embed_prompt`` of a last user turn: simulated turns
  (``simulator.workload.render_payload``, up to tens of thousands of tokens) and, with
  ``--routing-data``, real prompts (LLMRouter questions, MMLU questions);
- ``request features``: ``facts_from_request`` + ``request_features`` of a simulated payload, what
  the gateway computes before routing (token estimates, script, code, the task-type classifier,
  the prompt embedding);
- ``screen facts`` / ``facts``: ``screen_facts`` (what the gateway computes for a
  request admission may shed) and ``facts_from_request`` (that plus ``routing_facts``: code,
  script, the classifier, the embedding); their difference per request is what a shed request
  no longer pays;
- ``decision``: ``request features`` followed by what ``serving.routing.decide`` does with the
  vector (candidate rows, scoring the 3 policy heads of a v3 router over the 12 SKUs, expected
  costs, the policy's choice). The router: ``--model`` (an ONNX artifact of this schema), else
  one trained here on a small bootstrap (``bench/router_scoring.py``'s ``train_small_router``).

Each view also takes each input's fastest round ("fastest": what it costs on an uncontended
core). The target: the decision's p99 within ``TARGET_DECISION_P99_MS``. The output is printed
and, with ``--out``, written to a file the docs quote.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from machine import describe_machine, print_report
from router_scoring import load_router, percentiles, simulated_payloads

from features.catalog import load_catalog
from features.prompt_embedding import default_prompt_embedder, embed_prompt
from features.request import candidate_features, facts_from_request, request_features, screen_facts
from features.schema import FEATURE_SCHEMA_VERSION, STORE_FEATURE_NAMES
from features.vector import assemble_rows
from router_model.candidates import POLICY_HEADS, candidate_predictions, expected_costs
from router_model.policy import PolicyParams, choose_sku
from router_model.scorer import RouterScorer
from training.task_corpus import mmlu_prompts

TARGET_DECISION_P99_MS = 2.0


def last_user_text(payload: dict) -> str:
    return str(payload["messages"][-1]["content"])


def real_prompts(routing_data: Path, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    llmrouter = [
        str(item["question"])
        for item in json.loads((routing_data / "llmrouter/dcrouter_test.json").read_text(encoding="utf-8"))
    ]
    mmlu = [row.text for row in mmlu_prompts(routing_data)]
    picked = [llmrouter[i] for i in rng.permutation(len(llmrouter))[: count // 2]]
    return picked + [mmlu[i] for i in rng.permutation(len(mmlu))[: count - len(picked)]]


def timed(function, inputs: list, rounds: int) -> tuple[list[int], list[int]]:
    """(every call's ns, each input's fastest call's ns) over ``rounds`` passes."""
    clock = time.perf_counter_ns
    samples: list[list[int]] = [[] for _ in inputs]
    for _ in range(rounds):
        for index, item in enumerate(inputs):
            start = clock()
            function(item)
            samples[index].append(clock() - start)
    return [s for per_input in samples for s in per_input], [min(per_input) for per_input in samples]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routing-data", type=Path, default=None, help="also time real prompts")
    parser.add_argument("--model", type=Path, help="an ONNX router artifact (feature schema v3)")
    parser.add_argument("--mlruns", type=Path, help="an mlruns folder whose registry has a champion")
    parser.add_argument("--requests", type=int, default=500, help="distinct simulated requests")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    embedder = default_prompt_embedder()
    artifact = load_router(args)
    scorer = RouterScorer(artifact, threads=1)
    catalog = load_catalog()
    skus = list(catalog.skus)
    names = [sku.name for sku in skus]
    params = PolicyParams()
    store = np.full((len(skus), len(STORE_FEATURE_NAMES)), np.nan, dtype=np.float32)
    payloads = simulated_payloads(args.requests, args.seed)
    rng = np.random.default_rng(args.seed)
    hits = rng.random((len(payloads), len(skus))) * (rng.random((len(payloads), 1)) < 0.6)

    def features(payload: dict) -> list[float]:
        return request_features(facts_from_request(payload), tenant_tier="pro", surface="api")

    def decision(index: int) -> str:
        payload = payloads[index]
        facts = facts_from_request(payload)
        vector = request_features(facts, tenant_tier="pro", surface="api")
        candidates = [candidate_features(s, cache_hit=h) for s, h in zip(skus, hits[index], strict=True)]
        heads = scorer.score(assemble_rows(vector, candidates, store), POLICY_HEADS)
        prompt = np.full(len(names), facts.prompt_tokens)
        costs = expected_costs(catalog, names, prompt, hits[index], heads["output_tokens"])
        return choose_sku(candidate_predictions(names, heads, costs), params, 0.5).chosen_sku

    turns = [last_user_text(payload) for payload in payloads]
    for index in range(len(payloads)):  # warm up
        decision(index)
    views: list[tuple[str, tuple[list[int], list[int]]]] = [
        ("embed, simulated", timed(embed_prompt, turns, args.rounds)),
    ]
    if args.routing_data is not None:
        texts = real_prompts(args.routing_data, args.requests, args.seed)
        views.append(("embed, real", timed(embed_prompt, texts, args.rounds)))
    views.append(("screen facts", timed(screen_facts, payloads, args.rounds)))
    views.append(("facts", timed(facts_from_request, payloads, args.rounds)))
    views.append(("request features", timed(features, payloads, args.rounds)))
    views.append(("decision", timed(decision, list(range(len(payloads))), args.rounds)))

    chars = np.array([len(turn) for turn in turns])
    lines = [
        describe_machine(f"onnxruntime {ort.__version__}"),
        f"feature schema v{FEATURE_SCHEMA_VERSION}; prompt embedding {embedder.dims} dims, 2^{embedder.bits} "
        f"buckets, fit on {embedder.metadata.get('n_texts')} texts; router {artifact.router_version} "
        f"({len(artifact.model_bytes) / 1e6:.2f} MB ONNX), {len(skus)} candidates, 1 intra-op thread",
        f"{len(payloads)} simulated requests (last user turn {np.median(chars):,.0f} chars median, "
        f"{chars.max():,} max) x {args.rounds} rounds",
    ]
    for label, (every, fastest) in views:
        lines.append(percentiles(label, every))
        lines.append(percentiles(f"{label}, fastest", fastest))
    by_label = dict(views)
    saved = np.array(by_label["facts"][1]) - np.array(by_label["screen facts"][1])
    lines.append(
        f"saved per shed request (facts - screen facts, each request's fastest): "
        f"p50 {np.median(saved) / 1e3:.1f} µs, mean {saved.mean() / 1e3:.1f} µs"
    )
    p99_ms = float(np.percentile(views[-1][1][0], 99)) / 1e6
    verdict = "met" if p99_ms <= TARGET_DECISION_P99_MS else "MISSED"
    lines.append(f"target: decision p99 <= {TARGET_DECISION_P99_MS:g} ms -- {verdict} ({p99_ms:.3f} ms)")
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
