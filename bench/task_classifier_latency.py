"""Latency of the task-type classifier: µs per prompt (featurize + onnxruntime), p50/p99.

    .venv/bin/python bench/task_classifier_latency.py [--model PATH] [--rounds 20]

Prompts: the simulated task prompts (all templates, short to ~1.5K characters) plus long
ones cut at the featurizer's ``max_chars``. Prints the machine it ran on; on a shared
machine the load average matters, so it is printed too, and a second view takes each
prompt's fastest round (what the prompt costs when the CPU is not contended).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from machine import describe_machine

from features.task_classifier import TaskClassifier, hashed_ngrams
from training.task_prompts import simulated_prompts


def machine() -> str:
    return describe_machine(f"onnxruntime {ort.__version__}")


def percentiles(samples_ns: list[int]) -> str:
    micros = np.array(samples_ns) / 1e3
    return f"p50 {np.percentile(micros, 50):7.1f} µs   p99 {np.percentile(micros, 99):7.1f} µs   mean {micros.mean():7.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=None, help="ONNX model; default: the packaged one")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    classifier = TaskClassifier.load(args.model)
    texts = [row.text for row in simulated_prompts(1, seed=2024)]
    texts += [" ".join(texts[i : i + 12]) for i in range(0, len(texts) - 12, 12)]  # long prompts
    for text in texts[:50]:
        classifier.predict(text)  # warm up

    buckets = {
        "short (<200 chars)": (0, 200),
        "medium (200-999)": (200, 1000),
        "long (>=1000)": (1000, 1 << 30),
    }
    featurize_ns: dict[str, list[int]] = {name: [] for name in buckets}
    total_ns: dict[str, list[int]] = {name: [] for name in buckets}
    fastest_ns: dict[str, dict[int, int]] = {name: {} for name in buckets}
    clock = time.perf_counter_ns
    for _ in range(args.rounds):
        for index, text in enumerate(texts):
            name = next(n for n, (low, high) in buckets.items() if low <= len(text) < high)
            start = clock()
            hashed_ngrams(text, classifier.bits, classifier.max_chars)
            middle = clock()
            classifier.predict(text)
            end = clock()
            featurize_ns[name].append(middle - start)
            total_ns[name].append(end - middle)
            fastest_ns[name][index] = min(end - middle, fastest_ns[name].get(index, end - middle))

    print(f"machine: {machine()}")
    model_path = args.model or "packaged features/models/task_type.onnx"
    print(f"model: {model_path}, 2^{classifier.bits} buckets, first {classifier.max_chars} chars")
    print(f"{len(texts)} prompts x {args.rounds} rounds, one thread")
    everything: list[int] = []
    for name in buckets:
        if total_ns[name]:
            print(f"  {name:20s} n={len(total_ns[name]):6d}  predict: {percentiles(total_ns[name])}")
            print(f"  {'':20s} {'':8s}  featurize only: {percentiles(featurize_ns[name])}")
            fastest = list(fastest_ns[name].values())
            print(f"  {'':20s} {'':8s}  predict, fastest round per prompt: {percentiles(fastest)}")
            everything += total_ns[name]
    print(f"  {'all':20s} n={len(everything):6d}  predict: {percentiles(everything)}")


if __name__ == "__main__":
    main()
