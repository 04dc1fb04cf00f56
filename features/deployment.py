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
        ...
      ]
    }

An endpoint URL is a base URL: clients append ``/v1/messages``, ``/metrics`` and so on.
:func:`load_deployment` validates the file and answers ``endpoints(sku, region)``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_DEPLOYMENT_PATH = Path(".switchyard/deployment.json")


class DeploymentError(ValueError):
    """The deployment map is missing or invalid."""


class SkuDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str
    region: str
    endpoints: tuple[str, ...] = Field(min_length=1)


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
                return deployment.endpoints
        return ()

    def skus_in(self, region: str) -> tuple[str, ...]:
        return tuple(d.sku for d in self.deployments if d.region == region)


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
