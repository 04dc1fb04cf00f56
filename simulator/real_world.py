"""The real-outcomes world: the simulated traffic with real prompts and real per-SKU outcomes.

Everything about tenants, arrivals, conversations, latency, cost, failures and caching is the
invented world's machinery (:mod:`simulator.workload`, :mod:`simulator.outcomes`). What
changes, per request (:meth:`RealOutcomeWorld.realize`, applied to each window's new
conversations):

- **the user turns are real prompts** from :class:`simulator.real_outcomes.OutcomeData`, drawn
  uniformly per turn: requests arriving at or after ``heldout_from_us`` (the evaluation window)
  draw from the held-out prompts, earlier ones from the training-side prompts, which are
  disjoint; each user turn is the prompt, a blank line and the ``[[sim ...]]`` marker that tells
  the simulated worker the answer length (:func:`real_user_turn`);
- **P(good) on a SKU is the real score** of the model the SKU stands for
  (:func:`simulator.real_outcomes.sku_model_map`) on the last user turn's prompt, times the
  world's truncation factor if the answer was cut at ``max_tokens``;
- **answer length** (an assumption: the data records no tokens): lognormal with the invented
  world's per-task median and σ (``WorkloadParams.output_median``/``output_sigma``), the task
  being the prompt's *group*, the task-type classifier's label of the bare prompt text; capped
  by the client's ``max_tokens``;
- arrival times stay those the invented conversation drew (its think times included).

Request features go through ``features.request`` (:class:`PromptFeatures`): per distinct last
user turn, up to the marker's digits, ``facts_from_request`` and ``request_features`` on a
payload holding that turn; the row-level features (token counts, turns, flags, tenant) are
then set per request. So every feature serving computes from the text reaches the logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from features.catalog import Catalog
from features.request import facts_from_request, request_features
from features.schema import REQUEST_FEATURES, SCRIPTS, SURFACES, TASK_TYPES, TENANT_TIERS
from features.task_classifier import predict_task_type
from simulator.prompts import PROMPT_SCRIPTS, plain_text, sim_marker
from simulator.real_outcomes import OutcomeData, load_outcome_data, sku_model_map
from simulator.served_signals import out_digits
from simulator.sim_request import SIM_TOOLS, system_prompt_text
from simulator.workload import (
    US_PER_HOUR,
    US_PER_S,
    RequestWindow,
    TurnTable,
    WorkloadParams,
    generate_conversations,
    iter_request_windows,
)
from simulator.world import Tenant, World, stable_seed

WORLDS = ("invented", "real-outcomes")
MARKER_DIFFICULTY = 0.0  # the marker's difficulty field: the real world has none to tell


def real_user_turn(prompt: str, output_tokens: int, group: int) -> str:
    """A user turn of the real world: the real prompt, then the marker, as two paragraphs."""
    return f"{prompt}\n\n{sim_marker(output_tokens, TASK_TYPES[group], MARKER_DIFFICULTY)}"


@dataclass(frozen=True, eq=False)
class RealTurnTable(TurnTable):
    """A :class:`TurnTable` whose user turns are real prompts (``prompt``: index into the data)."""

    prompt: np.ndarray

    @classmethod
    def concat(cls, tables: list[TurnTable]) -> RealTurnTable:  # type: ignore[override]
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})


@dataclass(frozen=True, eq=False)
class PolicyFacts:
    """The request facts the logging policy reads, as columns (names as in ``FactsColumns``)."""

    prompt_tokens: np.ndarray
    has_code: np.ndarray
    task_type: np.ndarray  # index into TASK_TYPES
    tenant_tier: np.ndarray  # index into TENANT_TIERS
    surface: np.ndarray  # index into SURFACES


_VOCABULARY = {"tenant_tier": TENANT_TIERS, "surface": SURFACES}


@dataclass(eq=False)
class PromptFeatures:
    """Text-derived request features of real user turns, computed once per distinct turn text.

    A turn's text is its prompt and its marker; the marker differs between turns of one prompt
    only in the value of ``out``, and of that the features can see at most the number of digits
    (the classifier reads digits as 0). So the key is (prompt, digits of ``out``), and each key
    is computed from the turn with ``out = 10**digits``, which has the same bytes otherwise.
    """

    data: OutcomeData
    keys: dict[tuple[int, int], int] = field(default_factory=dict)
    vectors: list[list[float]] = field(default_factory=list)
    has_code: list[bool] = field(default_factory=list)
    task_type: list[int] = field(default_factory=list)
    script: list[int] = field(default_factory=list)  # index into SCRIPTS
    user_tokens: list[int] = field(default_factory=list)
    groups: dict[int, int] = field(default_factory=dict)

    def group(self, prompts: np.ndarray) -> np.ndarray:
        """Each prompt's group: the task-type classifier's label of the bare prompt text."""
        for p in np.unique(prompts).tolist():
            if p not in self.groups:
                self.groups[p] = TASK_TYPES.index(predict_task_type(self.data.prompts[p]))
        return np.array([self.groups[p] for p in prompts.tolist()], dtype=np.int64)

    def rows(self, prompts: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """Key index of each (prompt, output tokens) pair, computing keys not seen yet."""
        digits = out_digits(output_tokens)
        pairs = list(zip(prompts.tolist(), digits.tolist(), strict=True))
        groups = self.group(prompts)
        for (prompt, digit), group in zip(pairs, groups.tolist(), strict=True):
            if (prompt, digit) not in self.keys:
                self._add(prompt, digit, group)
        return np.array([self.keys[pair] for pair in pairs], dtype=np.int64)

    def _add(self, prompt: int, digit: int, group: int) -> None:
        text = real_user_turn(self.data.prompts[prompt], 10**digit, group)
        payload = {"model": "auto", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
        facts = facts_from_request(payload)
        self.keys[(prompt, digit)] = len(self.vectors)
        self.vectors.append(request_features(facts, tenant_tier=TENANT_TIERS[0], surface=SURFACES[0]))
        self.has_code.append(facts.has_code)
        self.task_type.append(TASK_TYPES.index(facts.task_type))
        self.script.append(SCRIPTS.index(facts.script))
        self.user_tokens.append(facts.last_user_tokens)


def _conversation_cumsum(values: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each turn 1 (rows ordered by conversation, then turn)."""
    total = np.cumsum(values)
    starts = np.flatnonzero(turn == 1)
    lengths = np.diff(np.append(starts, len(values)))
    return total - np.repeat(total[starts] - values[starts], lengths)


@dataclass(frozen=True, eq=False)
class RealOutcomeWorld:
    """Real prompts and outcomes layered on a simulated world (see the module docstring)."""

    data: OutcomeData
    sku_models: tuple[int, ...]  # index into data.models per catalog SKU
    heldout_from_us: int  # requests at or after this time draw held-out prompts
    features: PromptFeatures

    @property
    def digest(self) -> str:
        return self.data.digest

    def describe(self, catalog: Catalog) -> dict[str, object]:
        """What the manifest records: the data, its digest and the SKU → model map."""
        return {
            "outcomes_data": self.data.source,
            "outcomes_digest": self.data.digest,
            "heldout_from_us": self.heldout_from_us,
            "sku_models": {
                name: self.data.models[m] for name, m in zip(catalog.names, self.sku_models, strict=True)
            },
        }

    def p_good(self, prompts: np.ndarray) -> np.ndarray:
        """[n, sku] the real score of each SKU's model on each prompt."""
        return self.data.scores[np.asarray(prompts)][:, np.array(self.sku_models)]

    def draw_prompts(self, ts_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        heldout, train = self.data.heldout_prompts, self.data.train_prompts
        u = rng.random(len(ts_us))
        return np.where(
            ts_us >= self.heldout_from_us,
            heldout[(u * len(heldout)).astype(np.int64)],
            train[(u * len(train)).astype(np.int64)],
        )

    def realize(
        self, world: World, params: WorkloadParams, table: TurnTable, rng: np.random.Generator
    ) -> RealTurnTable:
        """The conversations of ``table`` (whole, ordered by conversation and turn) with real prompts."""
        prompt = self.draw_prompts(table.ts_us, rng)
        group = self.features.group(prompt)
        median = np.array([params.output_median[name] for name in TASK_TYPES])[group]
        drawn = np.maximum(1, rng.lognormal(np.log(median), params.output_sigma).astype(np.int64))
        output = np.minimum(drawn, table.max_tokens)
        keys = self.features.rows(prompt, output)  # computes the turns not seen yet
        user = np.array(self.features.user_tokens, dtype=np.int64)[keys]
        prompt_tokens = table.system_tokens + _conversation_cumsum(user + output, table.turn) - output
        limit = world.columns.max_prompt_tokens[table.tenant]
        keep = _conversation_cumsum((prompt_tokens > limit).astype(np.int64), table.turn) == 0
        script = np.array([PROMPT_SCRIPTS.index(s) if s in PROMPT_SCRIPTS else 0 for s in SCRIPTS])
        realized = RealTurnTable(
            **{f.name: getattr(table, f.name) for f in fields(TurnTable)},
            prompt=prompt,
        )
        realized = replace(
            realized,
            task=group,
            difficulty=1.0 - self.data.scores[prompt].mean(axis=1),
            script=script[np.array(self.features.script, dtype=np.int64)[keys]],
            template=np.zeros(len(table), dtype=np.int64),
            code=np.zeros(len(table), dtype=bool),
            user_tokens=user,
            output_tokens=output,
            truncated=drawn > table.max_tokens,
            prompt_tokens=prompt_tokens.astype(np.int64),
        )
        return realized.take(np.flatnonzero(keep))

    def request_facts(self, world: World, table: RealTurnTable) -> tuple[PolicyFacts, np.ndarray]:
        """The facts the policy reads and the request feature matrix ``[n, len(REQUEST_FEATURES)]``
        (float32), equal row by row to ``features.request`` on the rendered payload."""
        keys = self.features.rows(table.prompt, table.output_tokens)
        matrix = np.array(self.features.vectors, dtype=np.float64)[keys]
        tenants = world.columns
        values = {
            "prompt_tokens": table.prompt_tokens,
            "system_tokens": table.system_tokens,
            "turns": table.turn,
            "max_tokens": table.max_tokens,
            "has_tools": table.has_tools,
            "stream": table.stream,
            "tenant_tier": tenants.tier[table.tenant],
            "surface": tenants.surface[table.tenant],
        }
        for name, column in values.items():
            spec = REQUEST_FEATURES[_FEATURE_INDEX[name]]
            if spec.kind == "categorical":
                lookup = np.array([spec.categories.index(v) for v in _VOCABULARY[name]], dtype=np.float64)
                matrix[:, _FEATURE_INDEX[name]] = lookup[column]
            else:
                matrix[:, _FEATURE_INDEX[name]] = np.asarray(column, dtype=np.float64)
        facts = PolicyFacts(
            prompt_tokens=table.prompt_tokens,
            has_code=np.array(self.features.has_code, dtype=bool)[keys],
            task_type=np.array(self.features.task_type, dtype=np.int64)[keys],
            tenant_tier=tenants.tier[table.tenant],
            surface=tenants.surface[table.tenant],
        )
        return facts, matrix.astype(np.float32)


_FEATURE_INDEX = {spec.name: i for i, spec in enumerate(REQUEST_FEATURES)}


def build_real_world(catalog: Catalog, data_path: Path, *, heldout_from_us: int) -> RealOutcomeWorld:
    """The real-outcomes layer from the data at ``data_path`` (reads the files)."""
    data = load_outcome_data(data_path)
    return RealOutcomeWorld(data, sku_model_map(catalog, data), heldout_from_us, PromptFeatures(data))


def iter_real_windows(
    world: World,
    params: WorkloadParams,
    *,
    real: RealOutcomeWorld,
    seed: int,
    start_us: int,
    window_us: int,
    windows: int,
) -> Iterator[RequestWindow]:
    """:func:`simulator.workload.iter_request_windows` with real prompts; the prompts and answer
    lengths of window *i* are drawn from ``SeedSequence([seed, 3, i])``."""

    def realize(table: TurnTable, index: int) -> TurnTable:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, index]))
        return real.realize(world, params, table, rng)

    return iter_request_windows(
        world, params, seed=seed, start_us=start_us, window_us=window_us, windows=windows, transform=realize
    )


@dataclass(frozen=True, slots=True)
class RealRequest:
    """One request of the real world, as the demo sends it (the turns' prompts and answer lengths)."""

    world_seed: int
    conversation_id: int
    turn: int
    ts: datetime
    tenant: Tenant
    stream: bool
    has_tools: bool
    max_tokens: int
    prompts: tuple[int, ...]  # index into the data, turns 1..turn
    groups: tuple[int, ...]
    output_tokens: tuple[int, ...]
    truncated: bool

    @property
    def prompt(self) -> int:
        return self.prompts[-1]


def real_requests(world: World, table: RealTurnTable, real: RealOutcomeWorld) -> list[RealRequest]:
    """Each row of ``table`` as a :class:`RealRequest` (the table holds every earlier turn)."""
    groups = real.features.group(table.prompt)
    by_conversation: dict[int, list[int]] = {}
    for row in np.lexsort((table.turn, table.conversation_id)).tolist():
        by_conversation.setdefault(int(table.conversation_id[row]), []).append(row)
    requests = []
    for rows in by_conversation.values():
        for k, row in enumerate(rows):
            history = rows[: k + 1]
            requests.append(
                RealRequest(
                    world_seed=world.seed,
                    conversation_id=int(table.conversation_id[row]),
                    turn=int(table.turn[row]),
                    ts=datetime.fromtimestamp(table.ts_us[row] / US_PER_S, tz=UTC),
                    tenant=world.tenants[table.tenant[row]],
                    stream=bool(table.stream[row]),
                    has_tools=bool(table.has_tools[row]),
                    max_tokens=int(table.max_tokens[row]),
                    prompts=tuple(int(table.prompt[r]) for r in history),
                    groups=tuple(int(groups[r]) for r in history),
                    output_tokens=tuple(int(table.output_tokens[r]) for r in history),
                    truncated=bool(table.truncated[row]),
                )
            )
    return sorted(requests, key=lambda r: (r.ts, r.conversation_id, r.turn))


def render_real_payload(request: RealRequest, data: OutcomeData) -> dict[str, object]:
    """The Anthropic Messages payload of a real-world request: real user turns with their markers,
    earlier answers as filler of their length, the tenant's system prompt (``model`` "auto")."""
    messages: list[dict[str, object]] = []
    for index in range(request.turn):
        turn_text = real_user_turn(
            data.prompts[request.prompts[index]], request.output_tokens[index], request.groups[index]
        )
        messages.append({"role": "user", "content": turn_text})
        if index + 1 < request.turn:
            answer_seed = stable_seed(request.world_seed, request.conversation_id, index + 1, "assistant")
            messages.append(
                {"role": "assistant", "content": plain_text(answer_seed, request.output_tokens[index])}
            )
    optional = {
        "system": system_prompt_text(request.tenant) if request.tenant.system_prompt_tokens else None,
        "stream": True if request.stream else None,
        "tools": [dict(tool) for tool in SIM_TOOLS] if request.has_tools else None,
    }
    present = {key: value for key, value in optional.items() if value is not None}
    return {"model": "auto", "max_tokens": request.max_tokens, "messages": messages, **present}


def iter_real_requests(
    world: World, real: RealOutcomeWorld, params: WorkloadParams, *, seed: int, start_us: int
) -> Iterator[RealRequest]:
    """An endless stream of :class:`RealRequest` in arrival order from ``start_us`` (for the demo),
    hour by hour as :func:`simulator.workload.iter_sim_requests` does for the invented world."""
    pending: list[RealRequest] = []
    next_id, index = 0, 0
    while True:
        begin, end = start_us + index * US_PER_HOUR, start_us + (index + 1) * US_PER_HOUR
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
        fresh = generate_conversations(world, params, rng, start_us=begin, end_us=end, first_id=next_id)
        next_id += int((fresh.turn == 1).sum())
        realized = real.realize(
            world, params, fresh, np.random.default_rng(np.random.SeedSequence([seed, 3, index]))
        )
        pending.extend(real_requests(world, realized, real))
        pending.sort(key=lambda r: (r.ts, r.conversation_id, r.turn))
        cut = datetime.fromtimestamp(end / US_PER_S, tz=UTC)
        yield from (r for r in pending if r.ts < cut)
        pending = [r for r in pending if r.ts >= cut]
        index += 1
