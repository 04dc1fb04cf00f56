"""Bootstrap over prompts: resample counts shared by every router (a paired bootstrap).

A resample is a vector of counts ``[n]`` (how often each evaluated prompt was drawn, summing to
``n``); every metric is computed from weighted sums over prompts, so a resample costs O(n) and
no re-sorting. All routers of one evaluation see the same resamples. Intervals are the 2.5 and
97.5 percentiles (95%), over the resamples where the metric is defined.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CHUNK = 25


@dataclass(frozen=True, slots=True)
class Interval:
    """A metric on the full evaluated set and its 95% bootstrap percentile interval."""

    value: float
    low: float
    high: float
    defined_share: float = 1.0  # share of resamples where the metric exists (e.g. a quality reached)

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "defined_share": self.defined_share}


def resample_counts(n: int, reps: int, seed: int) -> Iterator[np.ndarray]:
    """``reps`` count vectors in chunks of ``[≤ CHUNK, n]`` (int32), from one seeded generator."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < reps:
        size = min(CHUNK, reps - done)
        draws = rng.integers(0, n, size=(size, n))
        counts = np.zeros((size, n), dtype=np.int32)
        np.add.at(counts, (np.repeat(np.arange(size), n), draws.ravel()), 1)
        done += size
        yield counts


def interval(value: float, samples: np.ndarray) -> Interval:
    samples = np.asarray(samples, dtype=np.float64)
    defined = samples[np.isfinite(samples)]
    if defined.size == 0:
        return Interval(float(value), float("nan"), float("nan"), 0.0)
    low, high = np.percentile(defined, [2.5, 97.5])
    return Interval(float(value), float(low), float(high), defined.size / samples.size)
