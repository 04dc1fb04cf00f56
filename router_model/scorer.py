"""Scoring every candidate of a request in one onnxruntime call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from router_model.artifact import INPUT_NAME, RouterArtifact


class RouterScorer:
    """An onnxruntime session over a router artifact; one ``run`` per request."""

    def __init__(self, artifact: RouterArtifact, *, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.artifact = artifact
        self._session = ort.InferenceSession(
            artifact.model_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._heads = list(artifact.heads)

    @property
    def router_version(self) -> str:
        return self.artifact.router_version

    def score(self, rows: np.ndarray, heads: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Predictions per head for a ``[n_candidates, n_features]`` float32 matrix.

        ``heads`` limits the run to those outputs (onnxruntime then skips the trees of the
        others): the gateway asks only for the heads the policy reads.
        """
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.artifact.feature_names):
            raise ValueError(f"expected [n, {len(self.artifact.feature_names)}] features, got {matrix.shape}")
        names = self._heads if heads is None else list(heads)
        outputs = self._session.run(names, {INPUT_NAME: matrix})
        return dict(zip(names, outputs, strict=True))
