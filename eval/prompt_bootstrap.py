"""Intervals for the matched-cost margins of the real-outcomes world, resampling held-out prompts.

The truth of the real-outcomes world is exact per (request, SKU), but its held-out window draws
from a few hundred distinct prompts, each seen many times: the uncertainty of a comparison is
over *which prompts* were held out. :func:`prompt_bootstrap` resamples the distinct prompts with
replacement (a cluster bootstrap: every request of a drawn prompt comes along) and recomputes
each policy's mean true quality and cost per request; :func:`matched_margin_intervals` then
matches the router's frontier (its λ points) to each baseline's cost in every replicate, as
``eval.matched_cost`` does once, and reports percentile intervals of the margins and the share
of replicates in which the router wins. Pure functions over polars frames and numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from offline.frontier import FrontierPoint, best_pure_point, quality_at_cost


def prompt_bootstrap(
    truth: pl.DataFrame,
    truth_by_candidate: pl.DataFrame,
    policies: Mapping[str, pl.DataFrame],
    *,
    replicates: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Per policy, ``[replicates, 2]`` (mean true quality, mean cost per request) over resampled prompts.

    ``truth`` holds ``request_id`` and ``prompt_id`` of the held-out requests; each policy's
    choices (``[request_id, sku]``) must cover them.
    """
    prompts = truth.select("request_id", "prompt_id")
    distinct, inverse = np.unique(prompts["prompt_id"].to_numpy(), return_inverse=True)
    index = prompts.select("request_id").with_columns(_prompt=pl.Series(inverse, dtype=pl.Int64))
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(distinct), np.full(len(distinct), 1.0 / len(distinct)), size=replicates)
    result = {}
    for name, choices in policies.items():
        joined = (
            choices.select("request_id", "sku")
            .join(
                truth_by_candidate.select("request_id", "sku", "p_good", "cost_usd"), on=["request_id", "sku"]
            )
            .join(index, on="request_id")
        )
        if joined.height != truth.height:
            raise ValueError(f"{name}: {joined.height:,} choices with truth for {truth.height:,} requests")
        prompt = joined["_prompt"].to_numpy()
        requests = np.bincount(prompt, minlength=len(distinct)).astype(np.float64)
        quality = np.bincount(prompt, joined["p_good"].to_numpy(), minlength=len(distinct))
        cost = np.bincount(prompt, joined["cost_usd"].to_numpy(), minlength=len(distinct))
        n = counts @ requests
        result[name] = np.column_stack([counts @ quality / n, counts @ cost / n])
    return result


def matched_margin_intervals(
    replicated: Mapping[str, np.ndarray],
    frontier: Mapping[float, str],
    baselines: list[str],
    *,
    level: float = 0.95,
) -> pl.DataFrame:
    """One row per baseline: the router's matched-cost margin (its hull at the baseline's cost minus
    the baseline's quality) and its best-single-λ margin, as percentile intervals over the
    replicates, with the share of replicates where each is positive. ``frontier`` maps each λ to
    the name of its policy in ``replicated``."""
    tail = (1.0 - level) / 2.0
    rows = []
    for baseline in baselines:
        mixed, pure = [], []
        for r, (quality, cost) in enumerate(replicated[baseline]):
            points = [
                FrontierPoint(lam, float(replicated[name][r, 1]), float(replicated[name][r, 0]))
                for lam, name in frontier.items()
            ]
            learned, _ = quality_at_cost(points, float(cost))
            mixed.append(np.nan if learned is None else learned - quality)
            best = best_pure_point(points, float(cost))
            pure.append(np.nan if best is None else best.quality - quality)
        row: dict[str, object] = {"baseline": baseline}
        for label, values in (("margin", np.array(mixed)), ("pure_margin", np.array(pure))):
            known = values[~np.isnan(values)]
            low, high = np.quantile(known, [tail, 1.0 - tail]) if len(known) else (np.nan, np.nan)
            row |= {
                f"{label}_low": float(low),
                f"{label}_high": float(high),
                f"{label}_positive_share": float((values > 0).mean()),
                f"{label}_defined_share": float(len(known) / len(values)),
            }
        rows.append(row)
    return pl.DataFrame(rows)
