"""The signals serving reads from a simulated request's text, for a whole table without the text.

``features.request.facts_from_request`` reads three signals from the last user turn:
``has_code``, ``task_type`` (the task-type classifier) and the prompt embedding. The bootstrap
simulates a million requests and cannot afford to render, classify and embed each turn, so
:class:`ServedSignals` looks all three up from the simulation's columns, and must get exactly
what serving gets from ``render_payload``'s text (tested in ``tests/unit/test_workload.py``).

A simulated user turn is ``lead`` [``code snippet``] ``padding`` ``marker``, paragraphs separated
by blank lines, the padding on one line (``simulator.prompts.join_user_turn``). So:

- ``has_code`` matches only the lead and the snippet (nothing in the padding or the marker
  matches it): a table over (script, task, template, snippet);
- the classifier reads only the first and the last paragraph
  (``features.task_classifier.read_window``): the lead sentence, and the marker, whose digits
  it reads as 0. The task index has one digit and the difficulty is written ``d.dd``, so only
  the number of digits of ``out`` shows: a table over (script, task, template, snippet, digits
  of ``out``). A cell's label is the classifier's label of the cell's turn without its padding
  paragraph, whose window is that of every padded turn of the cell, whatever its length;
- the prompt embedding reads the same window (``features.prompt_embedding.embedding_window``),
  digits as 0: the same table, one embedding per cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from features.prompt_embedding import PromptEmbedder, default_prompt_embedder, embedding_window
from features.schema import TASK_TYPES
from features.task_classifier import TaskClassifier, default_task_classifier, read_window
from simulator.prompts import (
    PROMPT_SCRIPTS,
    TEMPLATES_PER_TASK,
    join_user_turn,
    lead_has_code,
    sim_marker,
    visible_lead,
)

if TYPE_CHECKING:
    from simulator.workload import TurnTable

MAX_OUT_DIGITS = 9
"""Digits of the marker's ``out`` the table covers (up to 999,999,999 output tokens)."""


def out_digits(output_tokens: np.ndarray) -> np.ndarray:
    """Number of decimal digits of each non-negative ``out``, minus one (the table's last index)."""
    output_tokens = np.asarray(output_tokens)
    if output_tokens.size and (output_tokens.min() < 0 or output_tokens.max() >= 10**MAX_OUT_DIGITS):
        raise ValueError(f"output tokens outside [0, 10**{MAX_OUT_DIGITS})")
    return np.searchsorted(10 ** np.arange(1, MAX_OUT_DIGITS), output_tokens, side="right")


@dataclass(frozen=True, eq=False)
class ServedSignals:
    """``has_code``, ``task_type`` and the prompt embedding as serving computes them, for whole turn tables."""

    has_code: np.ndarray  # bool [script, task, template, snippet]
    task_type: np.ndarray  # int64 index into TASK_TYPES [script, task, template, snippet, digits of out - 1]
    prompt_embedding: np.ndarray  # float32 [script, task, template, snippet, digits of out - 1, dims]

    @classmethod
    def build(
        cls, classifier: TaskClassifier | None = None, embedder: PromptEmbedder | None = None
    ) -> ServedSignals:
        classifier = classifier or default_task_classifier()
        embedder = embedder or default_prompt_embedder()
        shape = (len(PROMPT_SCRIPTS), len(TASK_TYPES), TEMPLATES_PER_TASK, 2)
        has_code = np.zeros(shape, dtype=bool)
        task_type = np.zeros((*shape, MAX_OUT_DIGITS), dtype=np.int64)
        prompt_embedding = np.zeros((*shape, MAX_OUT_DIGITS, embedder.dims), dtype=np.float32)
        labels: dict[str, int] = {}  # by the classifier's window, which the snippet does not reach
        embeddings: dict[str, np.ndarray] = {}  # by the embedding's window (the same paragraphs)
        for index in np.ndindex(shape):
            script, task, template, snippet = (
                PROMPT_SCRIPTS[index[0]],
                TASK_TYPES[index[1]],
                index[2],
                index[3],
            )
            lead = visible_lead(script, task, template, bool(snippet))
            has_code[index] = lead_has_code(script, task, template, bool(snippet))
            for digits in range(MAX_OUT_DIGITS):
                # the turn without its padding paragraph: the same window as every padded turn of the cell
                turn = join_user_turn(lead, "", sim_marker(10**digits, task, 0.0))
                window = read_window(turn, classifier.max_chars)
                if window not in labels:
                    labels[window] = TASK_TYPES.index(classifier.predict(turn))
                task_type[(*index, digits)] = labels[window]
                read = embedding_window(turn)
                if read not in embeddings:
                    embeddings[read] = embedder.embed(turn)
                prompt_embedding[(*index, digits)] = embeddings[read]
        return cls(has_code=has_code, task_type=task_type, prompt_embedding=prompt_embedding)

    def code_flags(self, table: TurnTable) -> np.ndarray:
        return self.has_code[table.script, table.task, table.template, table.code.astype(np.int64)]

    def task_types(self, table: TurnTable) -> np.ndarray:
        """``task_type`` (index into TASK_TYPES) of each row, exactly as serving reads the rendered turn."""
        lead = (table.script, table.task, table.template, table.code.astype(np.int64))
        return self.task_type[(*lead, out_digits(table.output_tokens))]

    def prompt_embeddings(self, table: TurnTable) -> np.ndarray:
        """``[n, dims]`` float32: the prompt embedding of each row, exactly as serving reads the rendered turn."""
        lead = (table.script, table.task, table.template, table.code.astype(np.int64))
        return self.prompt_embedding[(*lead, out_digits(table.output_tokens))]
