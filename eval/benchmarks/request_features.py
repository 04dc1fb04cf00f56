"""The schema-v2 request features of a benchmark prompt, through ``features.request``.

Each prompt is read as one user turn of a plain API request (no system prompt, no tools,
``max_tokens`` 1024, tenant tier ``pro``); the values that then vary between prompts are the
token counts, ``has_code``, ``script`` and the task-type classifier's ``task_type``.

The facts are built here rather than by ``features.request.facts_from_request``: that function
also embeds the text with the packaged prompt embedding, which was fitted on these very prompts
(the harness fits its own per fold), and classifies one text at a time where
``predict_task_types`` takes the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.request import RequestFacts, request_features
from features.schema import REQUEST_FEATURE_NAMES
from features.task_classifier import predict_task_types
from features.text_signals import detect_script, has_code
from features.tokens import estimate_tokens

VARYING = ("prompt_tokens", "last_user_tokens", "has_code", "script", "task_type")
"""The request features that differ between benchmark prompts (the rest are constants here)."""


def request_feature_rows(texts: Sequence[str]) -> np.ndarray:
    """``[n, len(VARYING)]`` float32: the varying v2 request features of each prompt."""
    task_types = predict_task_types(texts)
    columns = [REQUEST_FEATURE_NAMES.index(name) for name in VARYING]
    rows = []
    for text, task_type in zip(texts, task_types, strict=True):
        tokens = estimate_tokens(text)
        facts = RequestFacts(
            prompt_tokens=tokens,
            system_tokens=0,
            last_user_tokens=tokens,
            turns=1,
            max_tokens=1024,
            has_code=has_code(text),
            has_tools=False,
            stream=False,
            script=detect_script(text),
            task_type=task_type,
        )
        vector = request_features(facts, tenant_tier="pro", surface="api")
        rows.append([vector[i] for i in columns])
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), len(VARYING))
