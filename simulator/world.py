"""The simulated world: tenants, their traffic and entitlements, and the SKUs' ground truth.

A :class:`World` is built from a seed (:func:`build_world`) and is fully reproducible: the
same seed, catalog and parameters give the same tenants. Nothing is global; every random
draw comes from a ``numpy.random.Generator`` seeded from the world seed.

Tenants are placed in (tier, region) cells with configured traffic shares; within a cell
each tenant's share is lognormal, so traffic is heavy-tailed and a few tenants are hot.
Internal tenants are the first-party app (surface ``app``), one per region. The SKU ground
truth (quality, latency, failures) lives in :mod:`simulator.ground_truth`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from features.catalog import REGIONS, Catalog, Sku, load_catalog
from features.schema import SURFACES, TASK_TYPES, TENANT_TIERS
from simulator.ground_truth import GroundTruthParams, SkuTruth


def _mix(**shares: float) -> tuple[float, ...]:
    values = np.array([shares.get(task, 0.0) for task in TASK_TYPES])
    return tuple(float(v) for v in values / values.sum())


@dataclass(frozen=True)
class TenantParams:
    """How tenants are drawn; defaults are the documented world (docs/simulator.md)."""

    n_tenants: int = 2000
    tier_tenant_share: dict[str, float] = field(
        default_factory=lambda: {"free": 0.72, "pro": 0.22, "enterprise": 0.06}  # internal: one per region
    )
    tier_traffic_share: dict[str, float] = field(
        default_factory=lambda: {"free": 0.12, "pro": 0.23, "enterprise": 0.35, "internal": 0.30}
    )
    region_share: dict[str, float] = field(default_factory=lambda: {"us": 0.5, "eu": 0.3, "apac": 0.2})
    traffic_sigma: float = 1.6  # lognormal sigma of a tenant's share within its (tier, region) cell
    residency_share: dict[str, dict[str, float]] = field(
        default_factory=lambda: {"enterprise": {"us": 0.15, "eu": 0.7, "apac": 0.4}}
    )
    entitled_sku_tiers: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "free": ("medium", "small"),
            "pro": ("large", "medium", "small"),
            "enterprise": ("large", "medium", "small"),
            "internal": ("large", "medium", "small"),
        }
    )
    long_context_tiers: tuple[str, ...] = ("enterprise", "internal")
    system_tokens_median: float = 700.0
    system_tokens_sigma: float = 0.9
    system_tokens_max: int = 12_000
    no_system_share: float = 0.1
    app_system_tokens: int = 2500
    task_mix: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "api": _mix(
                chat=0.20,
                code=0.25,
                summarization=0.10,
                extraction=0.15,
                reasoning=0.10,
                creative=0.05,
                math=0.05,
                knowledge=0.10,
            ),
            "app": _mix(
                chat=0.35,
                code=0.12,
                summarization=0.08,
                extraction=0.03,
                reasoning=0.10,
                creative=0.10,
                math=0.07,
                knowledge=0.15,
            ),
        }
    )
    task_mix_concentration: float = 30.0  # Dirichlet concentration of a tenant's mix around its surface's mix
    max_tokens_choices: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32000, 64000)
    max_tokens_probs: tuple[float, ...] = (0.15, 0.20, 0.30, 0.20, 0.08, 0.05, 0.02)
    app_max_tokens: int = 8192
    tools_tenant_share: float = 0.25  # share of api tenants that offer tools
    tools_request_share: float = 0.8  # share of such a tenant's conversations with tools
    difficulty_shift: dict[str, float] = field(
        default_factory=lambda: {"free": -0.05, "pro": 0.0, "enterprise": 0.05, "internal": 0.0}
    )
    difficulty_shift_sigma: float = 0.05
    streaming_share: float = 0.70  # over all requests
    app_stream_share: float = 0.9
    continue_prob: dict[str, float] = field(default_factory=lambda: {"api": 0.3, "app": 0.55})
    max_turns: int = 40


@dataclass(frozen=True, slots=True)
class Tenant:
    index: int
    tenant_id: str
    tier: str
    region: str
    residency_required: bool
    surface: str
    entitled_skus: tuple[str, ...]
    traffic_share: float  # share of all requests
    system_prompt_id: str  # stable id of the tenant's shared system prompt
    system_prompt_tokens: int
    task_mix: tuple[float, ...]  # in TASK_TYPES order
    max_tokens: int
    tools_share: float
    difficulty_shift: float
    stream_share: float
    continue_prob: float
    max_turns: int

    @property
    def expected_turns(self) -> float:
        """Mean turns per conversation (geometric continuation, capped), before context caps."""
        p = self.continue_prob
        return (1.0 - p**self.max_turns) / (1.0 - p)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes (unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(str(part) for part in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, element-wise over uint64 (a vectorised stable hash of integers)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def entitled_skus(catalog: Catalog, tier: str, params: TenantParams) -> tuple[str, ...]:
    allowed = params.entitled_sku_tiers[tier]
    long_context = tier in params.long_context_tiers
    return tuple(
        sku.name for sku in catalog if sku.tier in allowed and (long_context or not sku.long_context)
    )


@dataclass(frozen=True, eq=False)
class World:
    seed: int
    catalog: Catalog
    tenants: tuple[Tenant, ...]
    truth: SkuTruth
    tenant_params: TenantParams

    @property
    def params(self) -> GroundTruthParams:
        return self.truth.params

    def tenant(self, tenant_id: str) -> Tenant:
        return self._tenant_by_id[tenant_id]

    @cached_property
    def _tenant_by_id(self) -> dict[str, Tenant]:
        return {tenant.tenant_id: tenant for tenant in self.tenants}

    def eligible_in_home_region(self, tenant: Tenant) -> tuple[Sku, ...]:
        """SKUs the tenant is entitled to that are deployed in its home region (context not checked)."""
        return tuple(
            sku for sku in self.catalog if sku.name in tenant.entitled_skus and sku.deployed_in(tenant.region)
        )

    @cached_property
    def tenant_sku_mask(self) -> np.ndarray:
        """[tenant, sku] entitled and deployed in the tenant's home region."""
        mask = np.zeros((len(self.tenants), len(self.catalog)), dtype=bool)
        for tenant in self.tenants:
            for sku in self.eligible_in_home_region(tenant):
                mask[tenant.index, self.truth.index(sku.name)] = True
        return mask

    @cached_property
    def columns(self) -> TenantColumns:
        return TenantColumns.from_world(self)

    def expected_task_mix(self, *, per: str = "conversation") -> np.ndarray:
        """Traffic-weighted task mix over conversations (``per="conversation"``) or requests."""
        weights = self.columns.conversation_share if per == "conversation" else self.columns.traffic_share
        return weights @ self.columns.task_mix


@dataclass(frozen=True, eq=False)
class TenantColumns:
    """Tenant attributes as arrays indexed by tenant index, for vectorised simulation."""

    tier: np.ndarray  # index into TENANT_TIERS
    region: np.ndarray  # index into REGIONS
    surface: np.ndarray  # index into SURFACES
    residency_required: np.ndarray
    traffic_share: np.ndarray
    conversation_share: np.ndarray  # share of conversation starts: traffic share / expected turns
    system_tokens: np.ndarray
    task_mix: np.ndarray  # [tenant, task]
    max_tokens: np.ndarray
    tools_share: np.ndarray
    difficulty_shift: np.ndarray
    stream_share: np.ndarray
    continue_prob: np.ndarray
    max_turns: np.ndarray
    max_prompt_tokens: np.ndarray  # the largest prompt some eligible SKU can take
    tenant_ids: tuple[str, ...]

    @classmethod
    def from_world(cls, world: World) -> TenantColumns:
        tenants = world.tenants
        truth = world.truth
        max_tokens = np.array([t.max_tokens for t in tenants], dtype=np.int64)
        room = truth.context_window[None, :] - np.minimum(
            max_tokens[:, None], truth.max_output_tokens[None, :]
        )
        max_prompt = np.where(world.tenant_sku_mask, room, 0).max(axis=1)
        conversations = np.array([t.traffic_share / t.expected_turns for t in tenants])
        return cls(
            tier=np.array([TENANT_TIERS.index(t.tier) for t in tenants]),
            region=np.array([REGIONS.index(t.region) for t in tenants]),
            surface=np.array([SURFACES.index(t.surface) for t in tenants]),
            residency_required=np.array([t.residency_required for t in tenants]),
            traffic_share=np.array([t.traffic_share for t in tenants]),
            conversation_share=conversations / conversations.sum(),
            system_tokens=np.array([t.system_prompt_tokens for t in tenants], dtype=np.int64),
            task_mix=np.array([t.task_mix for t in tenants]),
            max_tokens=max_tokens,
            tools_share=np.array([t.tools_share for t in tenants]),
            difficulty_shift=np.array([t.difficulty_shift for t in tenants]),
            stream_share=np.array([t.stream_share for t in tenants]),
            continue_prob=np.array([t.continue_prob for t in tenants]),
            max_turns=np.array([t.max_turns for t in tenants], dtype=np.int64),
            max_prompt_tokens=max_prompt.astype(np.int64),
            tenant_ids=tuple(t.tenant_id for t in tenants),
        )


def _tenant_cells(params: TenantParams) -> list[tuple[str, str, int]]:
    """(tier, region, tenant count) for every cell; every cell with traffic has at least one tenant."""
    cells = []
    for tier in TENANT_TIERS:
        for region in REGIONS:
            if tier == "internal":
                count = 1
            else:
                count = round(params.n_tenants * params.tier_tenant_share[tier] * params.region_share[region])
            cells.append((tier, region, max(1, count)))
    return cells


def build_tenants(catalog: Catalog, params: TenantParams, rng: np.random.Generator) -> tuple[Tenant, ...]:
    tenants: list[Tenant] = []
    app_share = params.tier_traffic_share["internal"]
    api_stream_share = (params.streaming_share - params.app_stream_share * app_share) / (1.0 - app_share)
    for tier, region, count in _tenant_cells(params):
        cell_share = params.tier_traffic_share[tier] * params.region_share[region]
        weights = rng.lognormal(0.0, params.traffic_sigma, size=count)
        shares = cell_share * weights / weights.sum()
        residency_p = params.residency_share.get(tier, {}).get(region, 0.0)
        surface = "app" if tier == "internal" else "api"
        for k in range(count):
            index = len(tenants)
            tenant_id = f"claude-app-{region}" if tier == "internal" else f"tn-{index:05d}"
            if surface == "app":
                system_tokens = params.app_system_tokens
                max_tokens = params.app_max_tokens
                tools_share = 0.0
            else:
                system_tokens = int(
                    min(
                        params.system_tokens_max,
                        rng.lognormal(np.log(params.system_tokens_median), params.system_tokens_sigma),
                    )
                )
                if rng.random() < params.no_system_share:
                    system_tokens = 0
                max_tokens = int(rng.choice(params.max_tokens_choices, p=params.max_tokens_probs))
                tools_share = params.tools_request_share if rng.random() < params.tools_tenant_share else 0.0
            mix = rng.dirichlet(params.task_mix_concentration * np.array(params.task_mix[surface]) + 1e-3)
            tenants.append(
                Tenant(
                    index=index,
                    tenant_id=tenant_id,
                    tier=tier,
                    region=region,
                    residency_required=bool(rng.random() < residency_p),
                    surface=surface,
                    entitled_skus=entitled_skus(catalog, tier, params),
                    traffic_share=float(shares[k]),
                    system_prompt_id=f"sp-{stable_seed('system-prompt', tenant_id, rng.integers(1 << 30)):016x}",
                    system_prompt_tokens=system_tokens,
                    task_mix=tuple(float(x) for x in mix),
                    max_tokens=max_tokens,
                    tools_share=tools_share,
                    difficulty_shift=float(
                        params.difficulty_shift[tier] + rng.normal(0.0, params.difficulty_shift_sigma)
                    ),
                    stream_share=params.app_stream_share if surface == "app" else api_stream_share,
                    continue_prob=params.continue_prob[surface],
                    max_turns=params.max_turns,
                )
            )
    return tuple(tenants)


def build_world(
    seed: int,
    *,
    catalog: Catalog | None = None,
    tenant_params: TenantParams | None = None,
    truth_params: GroundTruthParams | None = None,
) -> World:
    """The world for ``seed``: the same arguments always give the same tenants and ground truth."""
    catalog = catalog or load_catalog()
    tenant_params = tenant_params or TenantParams()
    truth_params = truth_params or GroundTruthParams()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    return World(
        seed=seed,
        catalog=catalog,
        tenants=build_tenants(catalog, tenant_params, rng),
        truth=SkuTruth.from_catalog(catalog, truth_params),
        tenant_params=tenant_params,
    )
