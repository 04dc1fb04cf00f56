"""What the Anthropic and OpenAI wire formats have in common once parsed.

Both parsers turn a request body into a :class:`ChatRequest` (plain data, no HTTP) or raise
:class:`WireError`, which each format renders in its own error shape. The prompt the worker
simulates is ``features.request.prompt_segments`` of the request -- ``[system, *message
texts]`` with ``features.request.content_text`` deciding what text a message has -- so the
worker's prompt token count (the sum of ``estimate_tokens`` over the segments) and its
prefix-cache keys (``prefix_block_hashes(segments)``) are the router's, by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request in either wire format, reduced to what the simulation needs."""

    model: str
    max_tokens: int | None  # None (OpenAI only): as many as the SKU and its context window allow
    segments: tuple[str, ...]  # system first, then one per message
    last_user_text: str
    stop_sequences: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None


def json_text(value: object) -> str:
    """Compact JSON text, for the parts of a response that are not precomputed."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
