"""The workload: conversations and their requests, their arrival times, and their payloads.

Conversations start as a non-homogeneous Poisson process per region (the diurnal curve of
:func:`simulator.ground_truth.diurnal_multiplier` in the region's time zone); each belongs to
a tenant (drawn by traffic share), has one task, difficulty, script and streaming flag, and
continues turn after turn with the tenant's continuation probability. A later turn carries
the earlier turns, so its prompt is the previous prompt + the previous answer + a new user
message, which is what makes prefix caching matter. The distributions are
:class:`simulator.workload_params.WorkloadParams` (re-exported here).

Generation is columnar (:class:`TurnTable`, numpy arrays) so the bootstrap can simulate a
million requests in seconds; :class:`SimRequest` is one request with its ground truth, which
gives the fast-path :class:`features.request.RequestFacts` directly and renders a real
Anthropic Messages payload with :func:`render_payload`. ``facts_from_request(render_payload(r))
== r.facts()`` is the training-serving consistency contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np

from features.catalog import REGIONS
from features.schema import TASK_TYPES
from simulator.ground_truth import diurnal_multiplier
from simulator.prompts import MIN_USER_TOKENS, PROMPT_SCRIPTS, TEMPLATES_PER_TASK
from simulator.sim_request import (
    FactsColumns,
    SimRequest,
    facts_columns,
    render_payload,
    request_feature_matrix,
    system_prompt_text,
)
from simulator.workload_params import WorkloadParams
from simulator.world import World

__all__ = [
    "FactsColumns",
    "RequestWindow",
    "SimRequest",
    "TurnTable",
    "WorkloadParams",
    "arrival_times",
    "facts_columns",
    "generate_conversations",
    "iter_request_windows",
    "iter_sim_requests",
    "render_payload",
    "request_feature_matrix",
    "system_prompt_text",
]

US_PER_S = 1_000_000
US_PER_HOUR = 3600 * US_PER_S
US_PER_DAY = 24 * US_PER_HOUR


@dataclass(frozen=True, eq=False)
class TurnTable:
    """One row per request (a conversation turn); every column a numpy array of the same length."""

    conversation_id: np.ndarray
    turn: np.ndarray  # 1-based
    ts_us: np.ndarray  # arrival, microseconds since the epoch (UTC)
    tenant: np.ndarray  # tenant index
    task: np.ndarray  # index into TASK_TYPES (the truth)
    difficulty: np.ndarray
    script: np.ndarray  # index into PROMPT_SCRIPTS
    stream: np.ndarray
    has_tools: np.ndarray
    template: np.ndarray  # lead template of this turn
    code: np.ndarray  # a code snippet in this turn
    user_tokens: np.ndarray  # this turn's user message
    output_tokens: np.ndarray  # this turn's answer (after the client's max_tokens)
    truncated: np.ndarray  # the answer hit max_tokens
    system_tokens: np.ndarray
    prompt_tokens: np.ndarray
    max_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.conversation_id)

    def take(self, index: np.ndarray) -> TurnTable:
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, tables: list[TurnTable]) -> TurnTable:
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})

    def time_order(self) -> np.ndarray:
        """Row order by arrival time; ties by conversation and turn, so the order is deterministic."""
        return np.lexsort((self.turn, self.conversation_id, self.ts_us))

    def sim_request(self, world: World, row: int) -> SimRequest:
        """Row ``row`` as a :class:`SimRequest`; the table must hold the conversation's earlier turns."""
        conversation = self.conversation_id[row]
        rows = np.flatnonzero((self.conversation_id == conversation) & (self.turn <= self.turn[row]))
        rows = rows[np.argsort(self.turn[rows])]
        if len(rows) != self.turn[row]:
            raise ValueError("the table does not hold every earlier turn of this conversation")
        return SimRequest(
            world_seed=world.seed,
            conversation_id=int(conversation),
            turn=int(self.turn[row]),
            ts=datetime.fromtimestamp(self.ts_us[row] / US_PER_S, tz=UTC),
            tenant=world.tenants[self.tenant[row]],
            task=TASK_TYPES[self.task[row]],
            difficulty=float(self.difficulty[row]),
            script=PROMPT_SCRIPTS[self.script[row]],
            stream=bool(self.stream[row]),
            has_tools=bool(self.has_tools[row]),
            max_tokens=int(self.max_tokens[row]),
            user_tokens=tuple(int(x) for x in self.user_tokens[rows]),
            output_tokens=tuple(int(x) for x in self.output_tokens[rows]),
            templates=tuple(int(x) for x in self.template[rows]),
            code_snippets=tuple(bool(x) for x in self.code[rows]),
            truncated=bool(self.truncated[row]),
        )


def _categorical(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One draw per row of a [n, k] probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return np.minimum((u >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _group_cumsum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at each group (groups contiguous)."""
    if len(values) == 0:
        return values
    total = np.cumsum(values)
    before = np.repeat(total[starts] - values[starts], lengths)
    return total - before


def arrival_times(
    world: World, rng: np.random.Generator, region: str, count: int, start_us: int, end_us: int
) -> np.ndarray:
    """``count`` arrival times in [start, end) distributed as the region's diurnal curve (sorted)."""
    minutes = max(1, (end_us - start_us) // (60 * US_PER_S))
    edges_us = start_us + np.arange(minutes + 1) * (end_us - start_us) // minutes
    hours = ((edges_us[:-1] + edges_us[1:]) / 2 / US_PER_HOUR) % 24
    density = diurnal_multiplier(world.params, region, hours)
    cumulative = np.concatenate([[0.0], np.cumsum(density)])
    u = rng.random(count) * cumulative[-1]
    bucket = np.minimum(np.searchsorted(cumulative, u, side="right") - 1, minutes - 1)
    within = (u - cumulative[bucket]) / density[bucket]
    times = edges_us[bucket] + (within * (edges_us[bucket + 1] - edges_us[bucket])).astype(np.int64)
    return np.sort(times)


def expected_conversations(
    world: World, params: WorkloadParams, region: str, start_us: int, end_us: int
) -> float:
    """Expected conversation starts of a region in [start, end)."""
    tenants = world.columns
    in_region = tenants.region == REGIONS.index(region)
    per_day = params.requests_per_day * float(
        (
            tenants.traffic_share[in_region]
            / np.array([world.tenants[i].expected_turns for i in np.flatnonzero(in_region)])
        ).sum()
    )
    step = 60 * US_PER_S
    grid = np.arange(start_us, end_us, step) + step / 2
    mean_multiplier = (
        float(diurnal_multiplier(world.params, region, (grid / US_PER_HOUR) % 24).mean())
        if len(grid)
        else 0.0
    )
    return per_day * mean_multiplier * (end_us - start_us) / US_PER_DAY


def generate_conversations(
    world: World,
    params: WorkloadParams,
    rng: np.random.Generator,
    *,
    start_us: int,
    end_us: int,
    first_id: int,
) -> TurnTable:
    """Every turn of the conversations that start in [start, end), ordered by conversation and turn."""
    tenants = world.columns
    starts, owners = [], []
    for r, region in enumerate(REGIONS):
        count = int(rng.poisson(expected_conversations(world, params, region, start_us, end_us)))
        members = np.flatnonzero(tenants.region == r)
        weights = tenants.conversation_share[members]
        starts.append(arrival_times(world, rng, region, count, start_us, end_us))
        owners.append(rng.choice(members, size=count, p=weights / weights.sum()))
    start = np.concatenate(starts)
    tenant = np.concatenate(owners)
    order = np.argsort(start, kind="stable")
    start, tenant = start[order], tenant[order]
    n = len(start)

    task = _categorical(rng, tenants.task_mix[tenant]) if n else np.zeros(0, dtype=np.int64)
    beta = np.array([params.difficulty_beta[name] for name in TASK_TYPES])
    difficulty = np.clip(rng.beta(beta[task, 0], beta[task, 1]) + tenants.difficulty_shift[tenant], 0.0, 1.0)
    script_mix = np.array([params.script_mix[region] for region in REGIONS])
    script = _categorical(rng, script_mix[tenants.region[tenant]]) if n else np.zeros(0, dtype=np.int64)
    stream = rng.random(n) < tenants.stream_share[tenant]
    has_tools = rng.random(n) < tenants.tools_share[tenant]
    turns = np.minimum(rng.geometric(1.0 - tenants.continue_prob[tenant]), tenants.max_turns[tenant])

    # expand to turns
    lengths = turns
    first = (np.cumsum(lengths) - lengths).astype(np.int64)
    conv = np.repeat(np.arange(n), lengths)
    turn = np.arange(len(conv)) - np.repeat(first, lengths) + 1
    ttask = task[conv]
    median_first = np.array([params.first_turn_median[name] for name in TASK_TYPES])
    document = rng.random(len(conv)) < np.array([params.document_share[name] for name in TASK_TYPES])[ttask]
    first_body = np.where(
        document,
        rng.lognormal(np.log(params.document_median), params.document_sigma, len(conv)),
        rng.lognormal(np.log(median_first[ttask]), params.first_turn_sigma),
    )
    follow_body = rng.lognormal(np.log(params.follow_up_median), params.follow_up_sigma, len(conv))
    user = MIN_USER_TOKENS + np.where(turn == 1, first_body, follow_body).astype(np.int64)
    system = tenants.system_tokens[tenant][conv]
    room = tenants.max_prompt_tokens[tenant][conv] - system
    redraw = (turn == 1) & (user > room)
    user[redraw] = np.maximum(
        MIN_USER_TOKENS,
        (rng.uniform(params.overflow_low_fraction, 1.0, int(redraw.sum())) * room[redraw]).astype(np.int64),
    )
    median_out = np.array([params.output_median[name] for name in TASK_TYPES])
    drawn_out = np.maximum(1, rng.lognormal(np.log(median_out[ttask]), params.output_sigma).astype(np.int64))
    max_tokens = tenants.max_tokens[tenant][conv]
    output = np.minimum(drawn_out, max_tokens)
    prompt = system + _group_cumsum(user + output, first, lengths) - output
    template = rng.integers(0, TEMPLATES_PER_TASK, len(conv))
    code = rng.random(len(conv)) < np.array([params.code_snippet_share[name] for name in TASK_TYPES])[ttask]

    think = np.minimum(
        params.think_time_max_s,
        rng.lognormal(np.log(params.think_time_median_s), params.think_time_sigma, len(conv)),
    )
    previous_output = np.concatenate([[0], output[:-1]])
    gap_us = np.where(turn == 1, 0, (think + params.reading_s_per_output_token * previous_output) * US_PER_S)
    ts = start[conv] + _group_cumsum(gap_us.astype(np.int64), first, lengths)

    # a conversation ends before its first turn that no eligible SKU can take
    too_long = (prompt > tenants.max_prompt_tokens[tenant][conv]).astype(np.int64)
    keep = _group_cumsum(too_long, first, lengths) == 0
    table = TurnTable(
        conversation_id=(first_id + conv).astype(np.int64),
        turn=turn.astype(np.int64),
        ts_us=ts.astype(np.int64),
        tenant=tenant[conv],
        task=ttask,
        difficulty=difficulty[conv],
        script=script[conv],
        stream=stream[conv],
        has_tools=has_tools[conv],
        template=template,
        code=code,
        user_tokens=user,
        output_tokens=output,
        truncated=drawn_out > max_tokens,
        system_tokens=system,
        prompt_tokens=prompt.astype(np.int64),
        max_tokens=max_tokens,
    )
    return table.take(np.flatnonzero(keep))


@dataclass(frozen=True, eq=False)
class RequestWindow:
    index: int
    start_us: int
    end_us: int
    requests: TurnTable  # the requests arriving in [start, end), in time order


def iter_request_windows(
    world: World,
    params: WorkloadParams,
    *,
    seed: int,
    start_us: int,
    window_us: int,
    windows: int,
    transform: Callable[[TurnTable, int], TurnTable] | None = None,
) -> Iterator[RequestWindow]:
    """Consecutive windows of requests in time order; turns that fall after their window carry over.

    ``transform(table, window index)``, if given, rewrites each window's new conversations before
    they are split by arrival time (the real-outcomes world puts real prompts in them).
    """
    carried: TurnTable | None = None
    next_id = 0
    for index in range(windows):
        begin, end = start_us + index * window_us, start_us + (index + 1) * window_us
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
        fresh = generate_conversations(world, params, rng, start_us=begin, end_us=end, first_id=next_id)
        next_id += int((fresh.turn == 1).sum())
        if transform is not None:
            fresh = transform(fresh, index)
        table = fresh if carried is None else type(fresh).concat([carried, fresh])
        due = table.ts_us < end
        carried = table.take(np.flatnonzero(~due))
        window = table.take(np.flatnonzero(due))
        yield RequestWindow(index, begin, end, window.take(window.time_order()))


def iter_sim_requests(
    world: World, params: WorkloadParams, *, seed: int, start_us: int, window_us: int = US_PER_HOUR
) -> Iterator[SimRequest]:
    """An endless stream of :class:`SimRequest` in arrival order (for load generators)."""
    pending: list[SimRequest] = []
    next_id = 0
    index = 0
    while True:
        begin, end = start_us + index * window_us, start_us + (index + 1) * window_us
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
        fresh = generate_conversations(world, params, rng, start_us=begin, end_us=end, first_id=next_id)
        next_id += int((fresh.turn == 1).sum())
        pending.extend(fresh.sim_request(world, row) for row in range(len(fresh)))
        pending.sort(key=lambda r: (r.ts, r.conversation_id, r.turn))
        cut = datetime.fromtimestamp(end / US_PER_S, tz=UTC)
        due = [r for r in pending if r.ts < cut]
        pending = [r for r in pending if r.ts >= cut]
        yield from due
        index += 1
