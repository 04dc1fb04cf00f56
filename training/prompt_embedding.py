"""Fit the packaged prompt embedding (``features/models/prompt_embedding.npz``) from a corpus.

    .venv/bin/python -m training.prompt_embedding --routing-data ../shared/routing_data \\
        --out features/models/prompt_embedding.npz [--dims 32] [--seed 0]

The corpus: every prompt of the public routing data under ``--routing-data`` (RouteLLM MMLU,
GSM8K train and test, MT-Bench first turns, LLMRouter train and test questions; the loaders of
``training.task_corpus``), deduplicated, plus ``--simulated-per-template`` fills of every
simulated task-prompt template (``training.task_prompts``). The fit is
``offline.prompt_representation.fit_prompt_embedding``: deterministic for a corpus, dims and seed.
The fit is unsupervised; an evaluation that must not see its test prompts refits on its own
training split with the same function.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from features.prompt_embedding import DEFAULT_BITS, DEFAULT_DIMS
from offline.prompt_representation import fit_prompt_embedding
from training.task_corpus import gsm8k_prompts, mmlu_prompts, mt_bench_prompts
from training.task_prompts import simulated_prompts


def routing_data_texts(routing_data: Path) -> dict[str, list[str]]:
    """Every prompt text of the routing data, by corpus, in file order."""
    llmrouter = [
        str(item["question"])
        for name in ("dcrouter_train.json", "dcrouter_test.json")
        for item in json.loads((routing_data / "llmrouter" / name).read_text(encoding="utf-8"))
    ]
    return {
        "mmlu": [row.text for row in mmlu_prompts(routing_data)],
        "gsm8k": [row.text for row in gsm8k_prompts(routing_data)],
        "mt_bench": [row.text for row in mt_bench_prompts(routing_data)],
        "llmrouter": llmrouter,
    }


def embedding_corpus(
    routing_data: Path | None, simulated_per_template: int, seed: int
) -> tuple[list[str], dict[str, int]]:
    """(texts deduplicated in order, texts kept per corpus)."""
    corpora = routing_data_texts(routing_data) if routing_data is not None else {}
    corpora["simulated"] = [row.text for row in simulated_prompts(simulated_per_template, seed)]
    seen: set[str] = set()
    texts: list[str] = []
    sources: dict[str, int] = {}
    for name, corpus in corpora.items():
        for text in corpus:
            if text not in seen:
                seen.add(text)
                texts.append(text)
                sources[name] = sources.get(name, 0) + 1
    return texts, sources


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--routing-data", type=Path, default=None, help="routing_data folder")
    parser.add_argument(
        "--out", type=Path, required=True, help="where to write the .npz (and .json beside it)"
    )
    parser.add_argument("--dims", type=int, default=DEFAULT_DIMS)
    parser.add_argument("--bits", type=int, default=DEFAULT_BITS, help="log2 of the number of hash buckets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulated-per-template", type=int, default=20)
    args = parser.parse_args(argv)
    texts, sources = embedding_corpus(args.routing_data, args.simulated_per_template, args.seed)
    model = fit_prompt_embedding(texts, dims=args.dims, seed=args.seed, bits=args.bits, sources=sources)
    json_path = model.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {json_path}: {len(texts)} texts {sources}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
