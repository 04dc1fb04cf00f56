"""One simulated request: its ground truth, its fast-path facts and its rendered payload.

:class:`SimRequest` carries the truth of a request (task, difficulty, tenant, token counts,
conversation and turn). ``SimRequest.facts()`` gives the :class:`features.request.RequestFacts`
serving would compute from the text, rendering only the last user turn; :func:`render_payload`
renders a real Anthropic Messages payload whose facts are exactly those: the training-serving
consistency contract, tested in ``tests/unit/test_workload.py``.
:func:`facts_columns` and :func:`request_feature_matrix` are the same fast path for a whole
:class:`simulator.workload.TurnTable` at once, as the bootstrap uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from features.prompt_embedding import embed_prompt
from features.request import RequestFacts
from features.schema import SCRIPTS, SIGNAL_REQUEST_FEATURES, SURFACES, TASK_TYPES, TENANT_TIERS
from features.task_classifier import predict_task_type
from simulator.prompts import PROMPT_SCRIPTS, conversation_user_turn, lead_has_code, plain_text
from simulator.world import Tenant, World, stable_seed

if TYPE_CHECKING:
    from simulator.served_signals import ServedSignals
    from simulator.workload import TurnTable


@dataclass(frozen=True, eq=False)
class FactsColumns:
    """The fast-path request facts as columns: what serving would compute from the rendered text."""

    prompt_tokens: np.ndarray
    system_tokens: np.ndarray
    last_user_tokens: np.ndarray
    turns: np.ndarray
    max_tokens: np.ndarray
    has_code: np.ndarray
    has_tools: np.ndarray
    stream: np.ndarray
    script: np.ndarray  # index into features.schema.SCRIPTS
    task_type: np.ndarray  # index into TASK_TYPES: the classifier's reading, not the truth
    tenant_tier: np.ndarray  # index into TENANT_TIERS
    surface: np.ndarray  # index into SURFACES
    prompt_embedding: np.ndarray  # float32 [n, PROMPT_EMBEDDING_DIMS]


def facts_columns(world: World, table: TurnTable, signals: ServedSignals) -> FactsColumns:
    script_in_schema = np.array([SCRIPTS.index(name) for name in PROMPT_SCRIPTS])
    return FactsColumns(
        prompt_tokens=table.prompt_tokens,
        system_tokens=table.system_tokens,
        last_user_tokens=table.user_tokens,
        turns=table.turn,
        max_tokens=table.max_tokens,
        has_code=signals.code_flags(table),
        has_tools=table.has_tools,
        stream=table.stream,
        script=script_in_schema[table.script],
        task_type=signals.task_types(table),
        tenant_tier=world.columns.tier[table.tenant],
        surface=world.columns.surface[table.tenant],
        prompt_embedding=signals.prompt_embeddings(table),
    )


_VOCABULARY = {"script": SCRIPTS, "task_type": TASK_TYPES, "tenant_tier": TENANT_TIERS, "surface": SURFACES}


def request_feature_matrix(facts: FactsColumns) -> np.ndarray:
    """[n, len(REQUEST_FEATURES)] float32, equal row by row to ``features.request.request_features``."""
    columns = []
    for spec in SIGNAL_REQUEST_FEATURES:
        values = getattr(facts, spec.name)
        if spec.kind == "categorical":
            lookup = np.array(
                [spec.categories.index(name) for name in _VOCABULARY[spec.name]], dtype=np.float64
            )
            columns.append(lookup[values])
        else:
            columns.append(np.asarray(values, dtype=np.float64))
    signals = np.stack(columns, axis=1).astype(np.float32)
    return np.concatenate([signals, np.asarray(facts.prompt_embedding, dtype=np.float32)], axis=1)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One simulated request with its ground truth (never sent to the router as such)."""

    world_seed: int
    conversation_id: int
    turn: int  # 1-based
    ts: datetime
    tenant: Tenant
    task: str  # the true task
    difficulty: float  # 0 (trivial) .. 1 (hardest)
    script: str
    stream: bool
    has_tools: bool
    max_tokens: int
    user_tokens: tuple[int, ...]  # user message tokens of turns 1..turn
    output_tokens: tuple[int, ...]  # answer tokens of turns 1..turn (the last is this request's)
    templates: tuple[int, ...]
    code_snippets: tuple[bool, ...]
    truncated: bool

    @property
    def prompt_tokens(self) -> int:
        return self.tenant.system_prompt_tokens + sum(self.user_tokens) + sum(self.output_tokens[:-1])

    @property
    def expected_output_tokens(self) -> int:
        return self.output_tokens[-1]

    def user_text(self, turn: int) -> str:
        """The user message of ``turn`` (1-based), marker included, exactly as it is sent."""
        index = turn - 1
        return conversation_user_turn(
            self.world_seed,
            self.conversation_id,
            turn,
            script=self.script,
            task=self.task,
            template=self.templates[index],
            code=self.code_snippets[index],
            tokens=self.user_tokens[index],
            output_tokens=self.output_tokens[index],
            difficulty=self.difficulty,
        )

    def facts(self) -> RequestFacts:
        """The request facts, rendering only the last user turn (for the task-type classifier and
        the prompt embedding)."""
        last_user = self.user_text(self.turn)
        return RequestFacts(
            prompt_tokens=self.prompt_tokens,
            system_tokens=self.tenant.system_prompt_tokens,
            last_user_tokens=self.user_tokens[-1],
            turns=self.turn,
            max_tokens=self.max_tokens,
            has_code=lead_has_code(self.script, self.task, self.templates[-1], self.code_snippets[-1]),
            has_tools=self.has_tools,
            stream=self.stream,
            script=self.script,
            task_type=predict_task_type(last_user),
            prompt_embedding=tuple(embed_prompt(last_user).tolist()),
        )


SIM_TOOLS = (
    {
        "name": "lookup_order",
        "description": "Look up an order by its id.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
)


def system_prompt_text(tenant: Tenant) -> str:
    """The tenant's shared system prompt: the same text for every request of the tenant."""
    return plain_text(stable_seed("system-prompt", tenant.system_prompt_id), tenant.system_prompt_tokens)


def render_payload(request: SimRequest) -> dict[str, object]:
    """A real Anthropic Messages payload for the request (``model`` "auto": the router chooses)."""
    messages: list[dict[str, object]] = []
    for index in range(request.turn):
        turn = index + 1
        messages.append({"role": "user", "content": request.user_text(turn)})
        if turn < request.turn:
            answer = plain_text(
                stable_seed(request.world_seed, request.conversation_id, turn, "assistant"),
                request.output_tokens[index],
            )
            messages.append({"role": "assistant", "content": answer})
    payload: dict[str, object] = {"model": "auto", "max_tokens": request.max_tokens, "messages": messages}
    if request.tenant.system_prompt_tokens:
        payload["system"] = system_prompt_text(request.tenant)
    if request.stream:
        payload["stream"] = True
    if request.has_tools:
        payload["tools"] = [dict(tool) for tool in SIM_TOOLS]
    return payload
