"""The demo in the real-outcomes world: real prompts through the gateway, judged by real scores.

:func:`real_prepared_requests` renders :func:`simulator.real_world.iter_real_requests` with
:func:`simulator.real_world.render_real_payload`: the last user turn is a real prompt followed by
the ``[[sim ...]]`` marker that tells the simulated worker the answer length. Live traffic
draws from the data's training-side prompts only, so the held-out prompts stay unseen by any
router trained on the demo's logs. :class:`RealJudge` scores an answer with the real score of
the model the serving SKU stands for on that prompt (times the truncation factor if the answer
was cut at ``max_tokens``), then flips it with the judge's flip rate, as the bootstrap does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from simulator.ground_truth import truncated_quality
from simulator.real_world import (
    RealOutcomeWorld,
    RealRequest,
    build_real_world,
    iter_real_requests,
    render_real_payload,
)
from simulator.workload import US_PER_HOUR, US_PER_S, WorkloadParams
from simulator.world import World
from switchyard_cli.demo_traffic import Judge, PreparedRequest

NEVER = np.iinfo(np.int64).max  # live traffic never reaches the held-out prompts


def world_of(bootstrap: Path) -> tuple[str, Path | None]:
    """The world a bootstrap was simulated in and its outcome data (from ``_manifest.json``)."""
    manifest = json.loads((bootstrap / "_manifest.json").read_text(encoding="utf-8"))
    data = manifest.get("outcomes_data")
    return manifest.get("world", "invented"), Path(data) if data else None


def live_real_world(world: World, outcomes_data: Path) -> RealOutcomeWorld:
    """The real-outcomes layer for live traffic: training-side prompts only."""
    return build_real_world(world.catalog, outcomes_data, heldout_from_us=int(NEVER))


def real_prepared_requests(
    world: World, real: RealOutcomeWorld, keys: Mapping[str, str], *, seed: int
) -> Iterator[PreparedRequest]:
    """The real world's requests from the current hour on, for tenants with a key, rendered."""
    start_us = int(time.time()) * US_PER_S // US_PER_HOUR * US_PER_HOUR
    for request in iter_real_requests(world, real, WorkloadParams(), seed=seed, start_us=start_us):
        key = keys.get(request.tenant.tenant_id)
        if key is not None:
            payload = render_real_payload(request, real.data)
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            yield PreparedRequest(request, body, key)  # type: ignore[arg-type]


class RealJudge(Judge):
    """The judge of the real-outcomes world: good with the real score of the serving SKU's model."""

    def __init__(
        self, world: World, real: RealOutcomeWorld, keys_by_region: Mapping[str, str], share: float, seed: int
    ) -> None:
        super().__init__(world, keys_by_region, share, seed)
        self.real = real

    def score(self, item: PreparedRequest, sku: str, truncated: bool) -> float:
        request: RealRequest = item.sim  # type: ignore[assignment]
        p_good = self.real.p_good(np.array([request.prompt]))[0, self.truth.index(sku)]
        p_good = float(truncated_quality(self.truth.params, np.array([p_good]), np.array([truncated]))[0])
        good = bool(self.rng.random() < p_good)
        if self.rng.random() < self.truth.params.judge_flip_rate:
            good = not good
        return float(good)
