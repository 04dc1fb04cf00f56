"""Request-time features: pure functions from a Messages API request to the router's inputs.

``facts_from_request`` reads an Anthropic Messages payload (already JSON-decoded) into
:class:`RequestFacts`, in two steps that can run apart: ``screen_facts`` (token estimates,
turns, flags: what policy and admission read) and ``routing_facts`` (what only the router reads,
among them the task-type classifier and the prompt embedding). ``request_features`` and
``candidate_features`` turn facts into the ordered vectors of ``features.schema``. Serving, training, the simulator's bootstrap and
monitoring all go through these functions, so a feature has exactly one definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from features.catalog import Sku
from features.identity_cache import IdentityCache
from features.prompt_embedding import embed_prompt
from features.schema import CANDIDATE_FEATURES, PROMPT_EMBEDDING_DIMS, SIGNAL_REQUEST_FEATURES
from features.task_classifier import predict_task_type
from features.text_signals import detect_script, has_code
from features.tokens import estimate_tokens


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the router knows about a request before choosing a SKU (no prompt text kept)."""

    prompt_tokens: int
    system_tokens: int
    last_user_tokens: int
    turns: int
    max_tokens: int
    has_code: bool
    has_tools: bool
    stream: bool
    script: str
    task_type: str
    prompt_embedding: tuple[float, ...] = ()
    """The last user turn's prompt embedding (``features.prompt_embedding``), ``PROMPT_EMBEDDING_DIMS``
    floats; empty when the facts were built without the text (its features are then NaN)."""


def content_text(content: object) -> str:
    """Text of a message ``content`` (a string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, Mapping):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(content_text(block.get("content", "")))
        return "\n".join(parts)
    return ""


def prompt_segments(payload: Mapping[str, object]) -> list[str]:
    """The prompt as ordered text segments: system first, then each message."""
    segments = [content_text(payload.get("system") or "")]
    for message in payload.get("messages") or ():  # type: ignore[union-attr]
        if isinstance(message, Mapping):
            segments.append(content_text(message.get("content", "")))
    return segments


@dataclass(frozen=True, slots=True)
class ScreenFacts:
    """The facts that admission and the checks before it read: counts and flags, no model.

    ``last_user_text`` is kept only until :func:`routing_facts` reads it; no record holds it.
    """

    prompt_tokens: int
    system_tokens: int
    last_user_tokens: int
    turns: int
    max_tokens: int
    has_tools: bool
    stream: bool
    last_user_text: str


def screen_facts(payload: Mapping[str, object]) -> ScreenFacts:
    """The cheap facts of a validated Messages request: token estimates, turns, the flags."""
    messages = [m for m in payload.get("messages") or () if isinstance(m, Mapping)]  # type: ignore[union-attr]
    segments = prompt_segments(payload)
    user_texts = [content_text(m.get("content", "")) for m in messages if m.get("role") == "user"]
    last_user = user_texts[-1] if user_texts else ""
    return ScreenFacts(
        prompt_tokens=sum(estimate_tokens(segment) for segment in segments),
        system_tokens=estimate_tokens(segments[0]),
        last_user_tokens=estimate_tokens(last_user),
        turns=len(user_texts),
        max_tokens=int(payload.get("max_tokens") or 0),  # type: ignore[arg-type]
        has_tools=bool(payload.get("tools")),
        stream=bool(payload.get("stream")),
        last_user_text=last_user,
    )


def routing_facts(screen: ScreenFacts) -> RequestFacts:
    """``screen`` plus what only the router reads from the last user turn: code, script, the
    task-type classifier and the prompt embedding (the costly part: two small models)."""
    last_user = screen.last_user_text
    return RequestFacts(
        prompt_tokens=screen.prompt_tokens,
        system_tokens=screen.system_tokens,
        last_user_tokens=screen.last_user_tokens,
        turns=screen.turns,
        max_tokens=screen.max_tokens,
        has_code=has_code(last_user),
        has_tools=screen.has_tools,
        stream=screen.stream,
        script=detect_script(last_user),
        task_type=predict_task_type(last_user),
        prompt_embedding=tuple(embed_prompt(last_user).tolist()),
    )


def facts_from_request(payload: Mapping[str, object]) -> RequestFacts:
    """Facts of an Anthropic Messages request; the payload must already be validated.

    The composition of :func:`screen_facts` and :func:`routing_facts`, which the gateway runs
    apart (the first before admission, the second after it).
    """
    return routing_facts(screen_facts(payload))


def request_features(facts: RequestFacts, *, tenant_tier: str, surface: str) -> list[float]:
    """The request-level vector, in ``REQUEST_FEATURES`` order: the named signals, then the embedding."""
    values = {
        "prompt_tokens": facts.prompt_tokens,
        "system_tokens": facts.system_tokens,
        "last_user_tokens": facts.last_user_tokens,
        "turns": facts.turns,
        "max_tokens": facts.max_tokens,
        "has_code": facts.has_code,
        "has_tools": facts.has_tools,
        "stream": facts.stream,
        "script": facts.script,
        "task_type": facts.task_type,
        "tenant_tier": tenant_tier,
        "surface": surface,
    }
    vector = [spec.encode(values[spec.name]) for spec in SIGNAL_REQUEST_FEATURES]
    return vector + embedding_features(facts.prompt_embedding)


_MISSING_EMBEDDING = [float("nan")] * PROMPT_EMBEDDING_DIMS


def embedding_features(embedding: Sequence[float]) -> list[float]:
    """The ``prompt_emb_*`` features of an embedding; NaN for each of them if there is none."""
    if not embedding:
        return _MISSING_EMBEDDING.copy()
    if len(embedding) != PROMPT_EMBEDDING_DIMS:
        raise ValueError(f"prompt embedding has {len(embedding)} dims, schema has {PROMPT_EMBEDDING_DIMS}")
    return list(embedding)


def expected_cache_hit(cached_prefix_tokens: int, prompt_tokens: int) -> float:
    """Share of the prompt expected to be served from a SKU's prompt cache."""
    if prompt_tokens <= 0:
        return 0.0
    return min(1.0, max(0.0, cached_prefix_tokens / prompt_tokens))


def candidate_features(sku: Sku, *, cache_hit: float) -> list[float]:
    """The request × SKU vector, in ``CANDIDATE_FEATURES`` order."""
    vector = _sku_part(sku).copy()
    vector[_CACHE_HIT_INDEX] = CANDIDATE_FEATURES[_CACHE_HIT_INDEX].encode(cache_hit)
    return vector


_CACHE_HIT_INDEX = [spec.name for spec in CANDIDATE_FEATURES].index("expected_cache_hit")


def _encoded_sku(sku: Sku) -> list[float]:
    """The SKU's own features (the cache hit left at 0), in ``CANDIDATE_FEATURES`` order."""
    values = {
        "sku_tier": sku.tier,
        "sku_generation": float(sku.generation),
        "sku_long_context": sku.long_context,
        "sku_price_input": sku.list_price.input,
        "sku_price_output": sku.list_price.output,
        "expected_cache_hit": 0.0,
    }
    return [spec.encode(values[spec.name]) for spec in CANDIDATE_FEATURES]


# the gateway asks ~12 times a request; hashing a Sku costs more than encoding it
_sku_part = IdentityCache(_encoded_sku)
