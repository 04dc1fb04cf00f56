"""Prompt-embedding drift: can a classifier tell the served prompts from the reference prompts?

The prompt embedding (``prompt_emb_00``.., feature schema v3) is checked per dimension like every
numeric feature (``eval.drift_features``), but a change of topic moves many dimensions a little
each, in directions no single dimension shows. So the embedding is also checked as a whole, with
a *domain classifier*: a logistic regression on the embedding dimensions learns to tell current
rows from reference rows (equal numbers of each, at most ``max_rows`` a side), and its
cross-validated ROC AUC is the score. 0.5: the windows are indistinguishable; 1.0: they share no
prompts' kind. The score needs no p-value (which at thousands of rows flags anything), its
thresholds mean the same at any sample size above ``min_rows``, and it reads as "a classifier
tells served prompts from reference prompts with AUC 0.83". Beside it the distance between the two
windows' mean embeddings says how far the centre moved.

Rows whose embedding is missing (NaN: facts built without the text) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.drift_verdict import Status
from features.schema import PROMPT_EMBEDDING_FEATURE_NAMES


@dataclass(frozen=True, slots=True)
class EmbeddingDriftRules:
    warn_auc: float = 0.65
    critical_auc: float = 0.75
    min_rows: int = 200  # per side, rows with an embedding
    max_rows: int = 5_000  # per side, sampled
    folds: int = 3
    seed: int = 0


@dataclass(frozen=True, slots=True)
class EmbeddingDrift:
    auc: float  # cross-validated AUC of the domain classifier; NaN when not compared
    mean_distance: float  # Euclidean distance between the windows' mean embeddings
    reference_rows: int
    current_rows: int
    severity: Status
    warn_threshold: float
    critical_threshold: float
    note: str = ""

    @property
    def compared(self) -> bool:
        return not math.isnan(self.auc)

    def describe(self) -> str:
        threshold = self.warn_threshold if self.severity == "warning" else self.critical_threshold
        return (
            f"prompt embedding drifted: a classifier tells served prompts from reference prompts with "
            f"AUC {self.auc:.3f} ≥ {threshold:g} (mean embedding moved {self.mean_distance:.3f})"
        )


def embedding_matrix(frame: pl.DataFrame) -> np.ndarray:
    """``[n, dims]`` float64: the embedding of each row that has one (no NaN or null)."""
    if frame.height == 0:
        return np.zeros((0, len(PROMPT_EMBEDDING_FEATURE_NAMES)))
    matrix = frame.select(pl.col(name).cast(pl.Float64) for name in PROMPT_EMBEDDING_FEATURE_NAMES)
    values = matrix.to_numpy().astype(np.float64)
    return values[np.isfinite(values).all(axis=1)]


def domain_classifier_auc(reference: np.ndarray, current: np.ndarray, folds: int, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``current`` rows from ``reference`` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    features = np.concatenate([reference, current])
    labels = np.concatenate([np.zeros(len(reference)), np.ones(len(current))])
    scores = np.zeros(len(labels))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels)
    for train, test in splits:
        model = LogisticRegression(C=1.0, max_iter=500).fit(features[train], labels[train])
        scores[test] = model.decision_function(features[test])
    return float(roc_auc_score(labels, scores))


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= n else rows[rng.choice(len(rows), n, replace=False)]


def embedding_drift(
    reference: pl.DataFrame, current: pl.DataFrame, rules: EmbeddingDriftRules = EmbeddingDriftRules()
) -> EmbeddingDrift:
    """The domain-classifier check of ``current``'s prompt embeddings against ``reference``'s."""
    ref, cur = embedding_matrix(reference), embedding_matrix(current)
    if min(len(ref), len(cur)) < rules.min_rows:
        return EmbeddingDrift(
            float("nan"),
            float("nan"),
            len(ref),
            len(cur),
            "ok",
            rules.warn_auc,
            rules.critical_auc,
            note=f"not compared: fewer than {rules.min_rows} rows with a prompt embedding on a side",
        )
    rng = np.random.default_rng(rules.seed)
    n = min(len(ref), len(cur), rules.max_rows)
    ref, cur = _sample(ref, n, rng), _sample(cur, n, rng)
    auc = domain_classifier_auc(ref, cur, rules.folds, rules.seed)
    distance = float(np.linalg.norm(cur.mean(axis=0) - ref.mean(axis=0)))
    severity: Status = "ok"
    if auc >= rules.critical_auc:
        severity = "critical"
    elif auc >= rules.warn_auc:
        severity = "warning"
    return EmbeddingDrift(auc, distance, n, n, severity, rules.warn_auc, rules.critical_auc)
