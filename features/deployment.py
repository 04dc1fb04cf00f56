"""The deployment map: where each SKU is served, per region — the contract between fleet and gateway.

The worker fleet (``switchyard workers up``, ``simulator.fleet``) writes it; the gateway's
worker pool (``serving.workers``) reads it. It lives here, in the shared bottom layer, so
neither side imports the other. The file (``.switchyard/deployment.json`` by default)::

    {
      "version": 1,
      "created_at": "2025-01-01T00:00:00+00:00",
      "time_scale": 1.0,
      "deployments": [
        {"sku": "claude-haiku-4-5", "region": "eu", "endpoints": ["http://127.0.0.1:8117"]},
        {"sku": "claude-haiku-4-5", "region": "us", "endpoints": [
          {"url": "http://127.0.0.1:8200", "kind": "vllm"}, "http://127.0.0.1:8118"]},
        ...
      ]
    }

An endpoint is a base URL (clients append ``/v1/messages``, ``/metrics`` and so on) and a
*kind*: ``simulated`` (``simulator.worker``; a bare URL string means this) or ``vllm`` (a
real vLLM server, ``switchyard workers vllm up``). Both speak the same API and metrics, so a
(SKU, region) may mix them; the kind tells operators (and the gateway's snapshot) which is
which. :func:`load_deployment` validates the file and answers ``endpoints(sku, region)``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator

DEFAULT_DEPLOYMENT_PATH = Path(".switchyard/deployment.json")


class DeploymentError(ValueError):
    """The deployment map is missing or invalid."""


EndpointKind = Literal["simulated", "vllm"]


class Endpoint(BaseModel):
    """One worker endpoint: its base URL and what kind of server answers there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1)
    kind: EndpointKind = "simulated"


class SkuDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str
    region: str
    endpoints: tuple[Endpoint, ...] = Field(min_length=1)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _bare_urls_are_simulated(cls, endpoints: object) -> object:
        if isinstance(endpoints, list | tuple):
            return tuple({"url": e} if isinstance(e, str) else e for e in endpoints)
        return endpoints

    @field_serializer("endpoints")
    def _simulated_as_bare_urls(self, endpoints: tuple[Endpoint, ...]) -> list[object]:
        return [e.url if e.kind == "simulated" else e.model_dump() for e in endpoints]

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(e.url for e in self.endpoints)


class DeploymentMap(BaseModel):
    """Where each SKU is served, per region: (sku, region) -> endpoint base URLs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    created_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    time_scale: float = 1.0
    deployments: tuple[SkuDeployment, ...] = ()

    def endpoints(self, sku: str, region: str) -> tuple[str, ...]:
        """Endpoint base URLs of ``sku`` in ``region`` (empty if it is not deployed there)."""
        for deployment in self.deployments:
            if deployment.sku == sku and deployment.region == region:
                return deployment.urls
        return ()

    def skus_in(self, region: str) -> tuple[str, ...]:
        return tuple(d.sku for d in self.deployments if d.region == region)

    def overridden_by(self, other: DeploymentMap) -> DeploymentMap:
        """This map with every (sku, region) that ``other`` deploys taken from ``other`` instead."""
        replaced = {(d.sku, d.region) for d in other.deployments}
        kept = tuple(d for d in self.deployments if (d.sku, d.region) not in replaced)
        return self.model_copy(update={"deployments": kept + other.deployments})


def load_deployment(path: Path | str = DEFAULT_DEPLOYMENT_PATH) -> DeploymentMap:
    """Read and validate a deployment map written by ``switchyard workers up``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DeploymentError(f"{path}: cannot read the deployment map: {error.strerror}") from None
    try:
        return DeploymentMap.model_validate_json(text)
    except ValidationError as error:
        raise DeploymentError(f"{path}: invalid deployment map: {error}") from None


def write_deployment(deployment: DeploymentMap, path: Path | str = DEFAULT_DEPLOYMENT_PATH) -> Path:
    """Write the map atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(deployment.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path
