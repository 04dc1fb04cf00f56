"""What a simulated request will produce, decided before any time passes (pure).

:func:`plan_generation` counts the prompt, computes its prefix-cache keys and picks the
answer: its length (the ``[[sim out=N]]`` hint of the last user message, else a lognormal
draw seeded by the prompt), capped by ``max_tokens``, read from the worker's text tape and
cut before the earliest stop sequence. The output token count is ``estimate_tokens`` of the
text actually returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from features.catalog import Sku
from features.prefix import PrefixHasher
from features.tokens import estimate_tokens
from features.wire import invalid
from simulator.text import TextTape, cut_at_stop_sequence, drawn_output_tokens, parse_sim_hints
from simulator.wire_common import ChatRequest

StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


@dataclass(frozen=True, slots=True)
class GenerationPlan:
    prompt_tokens: int
    block_hashes: Sequence[int]
    text: str
    output_tokens: int
    stop_reason: StopReason
    stop_sequence: str | None


def plan_generation(request: ChatRequest, sku: Sku, tape: TextTape, hasher: PrefixHasher) -> GenerationPlan:
    """The prompt's size and cache keys and the answer's text, or a 400 if it cannot fit.

    Prompt tokens are the sum of ``estimate_tokens`` over the segments (as
    ``features.request.facts_from_request`` counts them); the cache keys are
    ``features.prefix.prefix_block_hashes(request.segments)`` (computed by the memoizing ``hasher``).
    """
    segments = request.segments
    prompt_tokens = sum(estimate_tokens(segment) for segment in segments)
    max_tokens = request.max_tokens
    if max_tokens is None:  # like vLLM: what the context window leaves, up to the SKU's output cap
        max_tokens = max(1, min(sku.max_output_tokens, sku.context_window - prompt_tokens))
    if prompt_tokens + max_tokens > sku.context_window:
        raise invalid(
            f"input length and `max_tokens` exceed context limit: {prompt_tokens} + {max_tokens} > "
            f"{sku.context_window}, decrease input length or `max_tokens` and try again",
            "max_tokens",
        )
    chain = hasher.chain(segments)
    digest = tape.prompt_digest(request.model, chain.prompt_fingerprint())
    wanted = parse_sim_hints(request.last_user_text).output_tokens or drawn_output_tokens(digest)
    tokens = min(wanted, max_tokens)
    stop_reason: StopReason = "max_tokens" if wanted > max_tokens else "end_turn"
    text = tape.read(digest, tokens)
    stop_sequence: str | None = None
    if request.stop_sequences:
        text, stop_sequence = cut_at_stop_sequence(text, request.stop_sequences)
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
    return GenerationPlan(
        prompt_tokens=prompt_tokens,
        block_hashes=chain.hashes,
        text=text,
        output_tokens=estimate_tokens(text),
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
    )
