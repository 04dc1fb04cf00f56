"""Real outcome data for the real-outcomes world: prompts, per-model scores, prices and the split.

The data is LLMRouter's many-model set (``dcrouter_train.json``, ``dcrouter_test.json``: questions
with a score in [0, 1] per model; ``llm_candidates.json``: each model's size and USD per 1M input
and output tokens). :func:`load_outcome_data` reads it from a folder given by the caller (the
folder itself or a parent holding ``llmrouter/``); nothing assumes where it lives.

- **Prompts** are deduplicated by text; a text present in both files belongs to the held-out
  (test-file) side only, so held-out prompts are disjoint from training prompts.
- **Scores** keep the data's value (0/1 or graded); the world uses them as P(good answer).
- **digest**: SHA-256 over the three files' bytes, recorded by the bootstrap so that
  regenerating a world from other data is refused.

:func:`sku_model_map` maps every catalog SKU to a model of a comparable price tier (see its
docstring). Pure functions apart from the file reads in :func:`load_outcome_data`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.catalog import Catalog
from features.schema import SKU_TIERS

LLMROUTER_FILES = ("dcrouter_train.json", "dcrouter_test.json", "llm_candidates.json")


class OutcomeDataError(ValueError):
    """The outcome data is missing or not in the expected shape."""


@dataclass(frozen=True, eq=False)
class OutcomeData:
    """Prompts × models scores with each model's price; one row per distinct prompt text."""

    source: str  # the folder the files were read from
    digest: str  # SHA-256 of the files' bytes (hex, first 16 characters)
    prompts: tuple[str, ...]
    heldout: np.ndarray  # bool [prompt]: from the test file (disjoint from the training side)
    models: tuple[str, ...]
    scores: np.ndarray  # float64 [prompt, model] in [0, 1]
    input_price: np.ndarray  # USD per 1M input tokens [model]
    output_price: np.ndarray  # USD per 1M output tokens [model]
    size_b: np.ndarray  # parameters in billions [model] (NaN if not stated)

    @property
    def train_prompts(self) -> np.ndarray:
        return np.flatnonzero(~self.heldout)

    @property
    def heldout_prompts(self) -> np.ndarray:
        return np.flatnonzero(self.heldout)

    def mean_train_score(self) -> np.ndarray:
        """Mean score per model over the training-side prompts only (no peeking at held-out ones)."""
        return self.scores[~self.heldout].mean(axis=0)


def resolve_llmrouter_dir(path: Path) -> Path:
    """The folder holding the LLMRouter files: ``path`` itself or ``path/llmrouter``."""
    path = Path(path)
    for folder in (path, path / "llmrouter"):
        if all((folder / name).is_file() for name in LLMROUTER_FILES):
            return folder
    raise OutcomeDataError(f"{path}: no {', '.join(LLMROUTER_FILES)} here or under llmrouter/")


def _size_billions(text: object) -> float:
    found = re.fullmatch(r"\s*([\d.]+)\s*[bB]\s*", str(text))
    return float(found.group(1)) if found else float("nan")


def outcome_data_from_records(
    train: list[dict], test: list[dict], candidates: dict[str, dict], *, source: str, digest: str
) -> OutcomeData:
    """The data from already-decoded files (models: those scored on every question and priced)."""
    rows = [*train, *test]
    if not rows:
        raise OutcomeDataError(f"{source}: no questions")
    models = sorted(set.intersection(*(set(row["scores"]) for row in rows)) & set(candidates))
    if not models:
        raise OutcomeDataError(f"{source}: no model is scored on every question and priced")
    heldout_texts = {row["question"] for row in test}
    index: dict[str, int] = {}
    prompts: list[str] = []
    heldout: list[bool] = []
    scores: list[list[float]] = []
    for is_test, part in ((False, train), (True, test)):
        for row in part:
            text = row["question"]
            if text in index or (not is_test and text in heldout_texts):
                continue
            index[text] = len(prompts)
            prompts.append(text)
            heldout.append(is_test)
            scores.append([float(row["scores"][m]) for m in models])
    matrix = np.array(scores, dtype=np.float64)
    if np.isnan(matrix).any() or matrix.min() < 0.0 or matrix.max() > 1.0:
        raise OutcomeDataError(f"{source}: scores must lie in [0, 1]")
    return OutcomeData(
        source=source,
        digest=digest,
        prompts=tuple(prompts),
        heldout=np.array(heldout, dtype=bool),
        models=tuple(models),
        scores=matrix,
        input_price=np.array([float(candidates[m]["input_price"]) for m in models]),
        output_price=np.array([float(candidates[m]["output_price"]) for m in models]),
        size_b=np.array([_size_billions(candidates[m].get("size")) for m in models]),
    )


def load_outcome_data(path: Path) -> OutcomeData:
    """Read LLMRouter's files from ``path`` (or ``path/llmrouter``)."""
    folder = resolve_llmrouter_dir(path)
    raw = {name: (folder / name).read_bytes() for name in LLMROUTER_FILES}
    digest = hashlib.sha256()
    for name in LLMROUTER_FILES:
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw[name]).digest())
    train, test, candidates = (json.loads(raw[name]) for name in LLMROUTER_FILES)
    return outcome_data_from_records(
        train, test, candidates, source=str(folder.resolve()), digest=digest.hexdigest()[:16]
    )


def model_tiers(data: OutcomeData) -> dict[str, tuple[int, ...]]:
    """Models per catalog tier by price: ranked by blended price (input + output), then size, then
    name, the cheapest third is ``small``, the next ``medium``, the dearest ``large`` (a tier gets
    one more model when the count does not divide by three, the dearer tiers first)."""
    order = sorted(
        range(len(data.models)),
        key=lambda m: (
            data.input_price[m] + data.output_price[m],
            np.nan_to_num(data.size_b[m]),
            data.models[m],
        ),
    )
    tiers = SKU_TIERS[::-1]  # small, medium, large: cheapest first
    base, extra = divmod(len(order), len(tiers))
    counts = [base + (1 if i >= len(tiers) - extra else 0) for i in range(len(tiers))]
    if min(counts) == 0:
        raise OutcomeDataError(f"{len(order)} models cannot fill {len(tiers)} price tiers")
    result, start = {}, 0
    for tier, count in zip(tiers, counts, strict=True):
        result[tier] = tuple(order[start : start + count])
        start += count
    return result


def sku_model_map(catalog: Catalog, data: OutcomeData) -> tuple[int, ...]:
    """The model (index into ``data.models``) standing in for each catalog SKU, in catalog order.

    A SKU takes a model of its own tier's price band (:func:`model_tiers`). Within a tier the
    SKUs that are not long-context variants, newest generation first (then dearer list price,
    then name), take the tier's models in order of mean training-side score, best first, cycling
    when a tier has more SKUs than models; a long-context variant takes its base SKU's model
    (same family and generation), as in the invented world where they are the same model.
    """
    tiers = model_tiers(data)
    strength = data.mean_train_score()
    chosen: dict[str, int] = {}
    for tier in SKU_TIERS:
        models = sorted(tiers[tier], key=lambda m: (-strength[m], data.models[m]))
        base = sorted(
            (sku for sku in catalog.skus if sku.tier == tier and not sku.long_context),
            key=lambda sku: (-float(sku.generation), -sku.list_price.output, sku.name),
        )
        for rank, sku in enumerate(base):
            chosen[sku.name] = models[rank % len(models)]
    for sku in catalog.skus:
        if sku.name in chosen:
            continue
        twins = [
            other
            for other in catalog.skus
            if other.name in chosen and other.family == sku.family and other.generation == sku.generation
        ]
        if twins:
            chosen[sku.name] = chosen[twins[0].name]
        else:
            models = sorted(tiers[sku.tier], key=lambda m: (-strength[m], data.models[m]))
            chosen[sku.name] = models[0]
    return tuple(chosen[name] for name in catalog.names)
