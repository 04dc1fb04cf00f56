"""Fault injection for the simulated worker: what can go wrong, how often, reproducibly.

A :class:`FaultConfig` says how often each fault happens. Per request the worker draws one
uniform number from a seeded RNG and maps it onto the cumulative rates (error, overload,
rate limit, hang, in that order), so ``overload_rate=1.0`` answers every request with 529 and
two workers with the same seed and the same request order fail the same requests.
``crash_after_tokens`` and ``slow_token_factor`` are not drawn: they apply to every request.

The worker holds a default config and optional per-model overrides, set at start and
replaceable at runtime through ``POST /admin/faults``.
"""

from __future__ import annotations

import enum
import random

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(enum.Enum):
    NONE = "none"
    ERROR = "error"
    OVERLOAD = "overload"
    RATE_LIMIT = "rate_limit"
    HANG = "hang"


class FaultConfig(BaseModel):
    """How often each fault happens; all zero means a healthy worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 500 api_error")
    overload_rate: float = Field(0.0, ge=0, le=1, description="share answered 529 overloaded_error")
    rate_limit_rate: float = Field(0.0, ge=0, le=1, description="share answered 429 rate_limit_error")
    hang_rate: float = Field(0.0, ge=0, le=1, description="share accepted and never answered")
    retry_after_s: int = Field(1, ge=0, description="retry-after header value on 429 and 529")
    crash_after_tokens: int | None = Field(
        None, ge=0, description="drop the connection after this many output tokens (None: never)"
    )
    slow_token_factor: float = Field(1.0, gt=0, description="multiplier on the inter-token time")

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        if self.error_rate + self.overload_rate + self.rate_limit_rate + self.hang_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + overload_rate + rate_limit_rate + hang_rate must be <= 1")
        return self

    @property
    def draws(self) -> bool:
        """Whether any request-level fault can be drawn (skip the RNG when not)."""
        return self.error_rate + self.overload_rate + self.rate_limit_rate + self.hang_rate > 0.0


class FaultUpdate(FaultConfig):
    """Body of ``POST /admin/faults``: a full config, for one ``model`` or the worker default."""

    model: str | None = None
    reset: bool = Field(False, description="drop every per-model override first")


def choose_fault(config: FaultConfig, uniform: float) -> FaultKind:
    """The fault a request gets for a uniform draw in [0, 1) (pure; the RNG lives outside)."""
    threshold = config.error_rate
    if uniform < threshold:
        return FaultKind.ERROR
    threshold += config.overload_rate
    if uniform < threshold:
        return FaultKind.OVERLOAD
    threshold += config.rate_limit_rate
    if uniform < threshold:
        return FaultKind.RATE_LIMIT
    threshold += config.hang_rate
    if uniform < threshold:
        return FaultKind.HANG
    return FaultKind.NONE


class WorkerFaults:
    """The worker's fault configs (default + per model) and its seeded RNG."""

    def __init__(self, default: FaultConfig, seed: int) -> None:
        self.default = default
        self.per_model: dict[str, FaultConfig] = {}
        self._rng = random.Random(seed)

    def config_for(self, model: str) -> FaultConfig:
        return self.per_model.get(model, self.default)

    def draw(self, model: str) -> tuple[FaultConfig, FaultKind]:
        config = self.per_model.get(model, self.default)
        if not config.draws:
            return config, FaultKind.NONE
        return config, choose_fault(config, self._rng.random())

    def apply(self, update: FaultUpdate) -> None:
        if update.reset:
            self.per_model.clear()
        config = FaultConfig.model_validate(update.model_dump(exclude={"model", "reset"}))
        if update.model is None:
            self.default = config
        else:
            self.per_model[update.model] = config

    def snapshot(self) -> dict[str, object]:
        return {
            "default": self.default.model_dump(),
            "models": {name: config.model_dump() for name, config in sorted(self.per_model.items())},
        }
