"""The router model artifact: one ONNX graph, its metadata, and the contract with training.

A router artifact is a single ONNX model with one float32 input ``features`` of shape
``[n_candidates, len(feature_names)]`` (the columns of ``features.schema.FEATURE_NAMES`` in
order) and one float32 output per prediction head, each of shape ``[n_candidates]``.
Its metadata records the feature schema version it was trained on; loading refuses a model
whose schema version or feature list differs from the code's, because a model fed columns
in the wrong order fails silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION

INPUT_NAME = "features"
HEADS: tuple[str, ...] = ("p_quality", "ttft_p50_ms", "ttft_p90_ms", "e2e_p50_ms", "output_tokens")


class ArtifactError(ValueError):
    """The model file is not a usable router artifact for this code."""


@dataclass(frozen=True, slots=True)
class RouterArtifact:
    model_bytes: bytes
    router_version: str
    feature_schema_version: str
    feature_names: tuple[str, ...]
    heads: tuple[str, ...]
    metadata: dict[str, str]


def artifact_metadata(router_version: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The metadata training writes into every router artifact."""
    return {
        "router_version": router_version,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "feature_names": json.dumps(list(FEATURE_NAMES)),
        "heads": json.dumps(list(HEADS)),
        **(extra or {}),
    }


def parse_artifact(
    model_bytes: bytes, *, expected_schema_version: str = FEATURE_SCHEMA_VERSION
) -> RouterArtifact:
    """Check and describe a serialized router model; raises :class:`ArtifactError`."""
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as error:  # onnx raises DecodeError and friends
        raise ArtifactError(f"not an ONNX model: {error}") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    missing = {"router_version", "feature_schema_version", "feature_names", "heads"} - metadata.keys()
    if missing:
        raise ArtifactError(f"router artifact lacks metadata {sorted(missing)}")
    version = metadata["feature_schema_version"]
    if version != expected_schema_version:
        raise ArtifactError(
            f"model was trained on feature schema v{version}, this code serves v{expected_schema_version}"
        )
    names = tuple(json.loads(metadata["feature_names"]))
    if names != FEATURE_NAMES:
        raise ArtifactError("model's feature list differs from features.schema.FEATURE_NAMES")
    heads = tuple(json.loads(metadata["heads"]))
    outputs = tuple(output.name for output in model.graph.output)
    if set(HEADS) - set(outputs) or heads != HEADS:
        raise ArtifactError(f"model outputs {outputs} do not provide the heads {HEADS}")
    inputs = [i.name for i in model.graph.input]
    if inputs != [INPUT_NAME]:
        raise ArtifactError(f"model inputs {inputs} are not [{INPUT_NAME!r}]")
    return RouterArtifact(
        model_bytes=model_bytes,
        router_version=metadata["router_version"],
        feature_schema_version=version,
        feature_names=names,
        heads=heads,
        metadata=metadata,
    )


def load_artifact(path: Path | str) -> RouterArtifact:
    return parse_artifact(Path(path).read_bytes())
