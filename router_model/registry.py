"""The model registry as serving sees it: resolve an alias, fetch the router artifact.

The only MLflow code on the serving side. Training registers versions and moves aliases
(``training/mlflow_log.py``); serving and the offline evaluation programs only read. MLflow keeps runs and the registry in a
SQLite database under ``mlruns/`` with artifacts beside it (docs/adr/0003).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_model.artifact import RouterArtifact, parse_artifact

REGISTERED_MODEL = "switchyard-router"
EXPERIMENT = "switchyard-router"
ARTIFACT_DIR = "router"
ARTIFACT_FILE = "router.onnx"
CHAMPION = "champion"
CHALLENGER = "challenger"


def tracking_uri_for(mlruns_dir: Path | str) -> str:
    """The MLflow tracking/registry URI for a local ``mlruns/`` folder."""
    return f"sqlite:///{Path(mlruns_dir).resolve() / 'mlflow.db'}"


@dataclass(frozen=True, slots=True)
class RegisteredRouter:
    version: str
    run_id: str
    artifact: RouterArtifact


class RouterRegistry:
    """Read-only access to the ``switchyard-router`` registered model."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient  # heavy import: only when a registry is actually used

        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def alias_version(self, alias: str = CHAMPION) -> str | None:
        """The version an alias points at, or None when the alias (or the model) does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self._client.get_model_version_by_alias(REGISTERED_MODEL, alias).version)
        except MlflowException:
            return None

    def load(self, alias: str = CHAMPION) -> RegisteredRouter | None:
        """Download and check the artifact an alias points at; None when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            version = self._client.get_model_version_by_alias(REGISTERED_MODEL, alias)
        except MlflowException:
            return None
        return self._download(version)

    def load_version(self, version: str) -> RegisteredRouter | None:
        """Download and check the artifact of a version number; None when there is no such version."""
        from mlflow.exceptions import MlflowException

        try:
            found = self._client.get_model_version(REGISTERED_MODEL, str(version))
        except MlflowException:
            return None
        return self._download(found)

    def _download(self, version: Any) -> RegisteredRouter:
        with tempfile.TemporaryDirectory(prefix="switchyard-router-") as folder:
            path = self._client.download_artifacts(version.run_id, f"{ARTIFACT_DIR}/{ARTIFACT_FILE}", folder)
            model_bytes = Path(path).read_bytes()
        return RegisteredRouter(str(version.version), version.run_id, parse_artifact(model_bytes))
