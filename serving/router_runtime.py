"""The router the gateway scores with: the MLflow champion, hot-swapped, or a static prior.

- :class:`ChampionHolder` loads the ``champion`` alias of ``switchyard-router`` at start-up
  and polls the alias; a new version is downloaded and checked off the event loop (in a
  thread) and swapped in with one reference assignment, so a request uses one model from
  start to end. A registry or artifact failure is logged and counted, and the gateway keeps
  serving the model it has.
- :class:`StaticPriorScorer` scores candidates when no champion is loaded (first start
  before training, or a registry that is down at start-up): quality by capability tier,
  TTFT from the catalog's latency profile and the live per-SKU TTFT when known, output
  tokens from ``max_tokens``. Same interface as ``router_model.scorer.RouterScorer``, so
  the policy and the logs do not care which one decided; its ``router_version`` says it.
- :class:`BudgetPacer` keeps λ (the price of cost in the policy's utility) where the blended
  serving cost per request meets the budget (``router_model.policy.pace_cost_multiplier``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from features.catalog import Catalog
from features.schema import FEATURE_NAMES, SKU_TIERS
from router_model.artifact import ArtifactError, RouterArtifact, load_artifact
from router_model.candidates import POLICY_HEADS
from router_model.policy import pace_cost_multiplier
from router_model.registry import CHAMPION, RouterRegistry
from router_model.scorer import RouterScorer

log = logging.getLogger("switchyard.router")

STATIC_PRIOR_VERSION = "static-prior-v1"
_TIER_QUALITY = {"large": 0.80, "medium": 0.70, "small": 0.55}
_STATIC_OUTPUT_TOKENS = 400.0
_COLUMN = {name: index for index, name in enumerate(FEATURE_NAMES)}


class StaticPriorScorer:
    """Heads from catalog priors; used only when no trained router is available."""

    router_version = STATIC_PRIOR_VERSION

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        # per tier index: the latency profiles of the catalog's SKUs of that tier
        self._profiles = {
            index: [s.latency for s in catalog.skus if s.tier == tier] for index, tier in enumerate(SKU_TIERS)
        }

    def score(self, rows: np.ndarray, heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        tiers = rows[:, _COLUMN["sku_tier"]].astype(int)
        quality = np.array([_TIER_QUALITY[SKU_TIERS[t]] for t in tiers], dtype=np.float32)
        prompt = rows[:, _COLUMN["prompt_tokens"]].astype(np.float64)
        uncached = prompt * (1.0 - np.clip(rows[:, _COLUMN["expected_cache_hit"]], 0.0, 1.0))
        # The SKU is identified by its descriptors; the static prior only needs its tier's
        # latency, taken as the slowest SKU of the tier (a conservative prior).
        ttft = np.empty(len(rows), dtype=np.float32)
        for i, (tier, tokens) in enumerate(zip(tiers.tolist(), uncached.astype(int).tolist(), strict=True)):
            ttft[i] = max(p.ttft_ms(tokens) for p in self._profiles[tier])
        live = rows[:, _COLUMN["sku_ttft_p95_1m_ms"]]
        ttft = np.where(np.isnan(live), ttft, np.maximum(ttft, live)).astype(np.float32)
        tokens = np.minimum(rows[:, _COLUMN["max_tokens"]], _STATIC_OUTPUT_TOKENS).astype(np.float32)
        predictions = {
            "p_quality": quality,
            "ttft_p50_ms": ttft * 0.8,
            "ttft_p90_ms": ttft,
            "e2e_p50_ms": ttft + tokens * 20.0,
            "output_tokens": tokens,
        }
        return predictions if heads is None else {head: predictions[head] for head in heads}


Scorer = RouterScorer | StaticPriorScorer


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    scorer: Scorer
    registry_version: str | None  # None: not from the registry (a file, or the static prior)
    loaded_at: float  # time.time()

    @property
    def router_version(self) -> str:
        return self.scorer.router_version


@dataclass
class ChampionStats:
    loads: int = 0
    load_errors: int = 0
    polls: int = 0
    last_error: str | None = None


class ChampionHolder:
    """The current router; ``current`` is replaced atomically when the champion alias moves."""

    def __init__(
        self,
        fallback: StaticPriorScorer,
        *,
        registry: Callable[[], RouterRegistry] | None = None,
        model_file: str | None = None,
        poll_interval_s: float = 10.0,
    ) -> None:
        self._registry_factory = registry
        self._registry: RouterRegistry | None = None
        self._model_file = model_file
        self.poll_interval_s = poll_interval_s
        self.current = LoadedRouter(fallback, None, time.time())
        self.stats = ChampionStats()

    @property
    def has_trained_router(self) -> bool:
        return not isinstance(self.current.scorer, StaticPriorScorer)

    def _load_file(self) -> LoadedRouter:
        artifact = load_artifact(self._model_file)  # type: ignore[arg-type]
        return LoadedRouter(RouterScorer(artifact, heads=POLICY_HEADS), None, time.time())

    def _fetch_champion(self) -> LoadedRouter | None:
        """Blocking: the champion if it differs from the current one, else None."""
        if self._registry is None:
            self._registry = self._registry_factory()  # type: ignore[misc]
        version = self._registry.alias_version(CHAMPION)
        if version is None or version == self.current.registry_version:
            return None
        registered = self._registry.load(CHAMPION)
        if registered is None:
            return None
        return LoadedRouter(
            RouterScorer(registered.artifact, heads=POLICY_HEADS), registered.version, time.time()
        )

    async def refresh(self) -> bool:
        """Load a new champion if there is one; True when the router changed. Never raises."""
        self.stats.polls += 1
        try:
            if self._model_file is not None:
                if self.has_trained_router:
                    return False
                loaded = await asyncio.to_thread(self._load_file)
            elif self._registry_factory is not None:
                loaded = await asyncio.to_thread(self._fetch_champion)
            else:
                return False
        except (ArtifactError, OSError, Exception) as error:  # keep serving on any registry failure
            self.stats.load_errors += 1
            self.stats.last_error = f"{type(error).__name__}: {error}"
            log.warning(
                "router: could not load the champion, keeping %s: %s", self.current.router_version, error
            )
            return False
        if loaded is None:
            return False
        previous = self.current.router_version
        self.current = loaded
        self.stats.loads += 1
        log.info(
            "router: now serving %s (registry version %s), was %s",
            loaded.router_version,
            loaded.registry_version,
            previous,
        )
        return True

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            await self.refresh()


def artifact_of(router: LoadedRouter) -> RouterArtifact | None:
    scorer = router.scorer
    return scorer.artifact if isinstance(scorer, RouterScorer) else None


class BudgetPacer:
    """λ from observed serving cost per request: an EWMA of outcomes, one controller step per period."""

    def __init__(
        self,
        budget_usd: float,
        *,
        initial_lambda: float = 0.25,
        period_s: float = 5.0,
        half_life_requests: float = 2_000.0,
        min_requests: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_usd = budget_usd
        self.cost_multiplier = initial_lambda
        self.period_s = period_s
        self._decay = 0.5 ** (1.0 / half_life_requests)
        self._min_requests = min_requests
        self._clock = clock
        self._ewma: float | None = None
        self._seen = 0
        self._last_step = clock()

    @property
    def observed_cost_usd(self) -> float | None:
        return self._ewma

    def observe(self, cost_usd: float) -> None:
        self._seen += 1
        self._ewma = (
            cost_usd if self._ewma is None else self._decay * self._ewma + (1 - self._decay) * cost_usd
        )
        now = self._clock()
        if self._seen >= self._min_requests and now - self._last_step >= self.period_s:
            self._last_step = now
            self.cost_multiplier = pace_cost_multiplier(self.cost_multiplier, self._ewma, self.budget_usd)
