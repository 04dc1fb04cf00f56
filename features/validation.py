"""Validation errors that name the field: shared by every config file loader."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def describe_validation_error(error: ValidationError, raw: Mapping[str, object], *, name_key: str) -> str:
    """One line per problem, located like ``skus[claude-opus-4-5].latency.ttft_base_ms: …``.

    List items are shown by their ``name_key`` value when they have one, else by index.
    """
    lines = []
    for item in error.errors():
        parts: list[str] = []
        node: object = raw
        for key in item["loc"]:
            if isinstance(key, int) and isinstance(node, list) and key < len(node):
                node = node[key]
                name = node.get(name_key) if isinstance(node, dict) else None
                parts.append(f"[{name or key}]")
            else:
                node = node.get(key) if isinstance(node, dict) else None
                parts.append(f".{key}")
        lines.append(f"{''.join(parts).lstrip('.') or 'file'}: {item['msg']}")
    return "; ".join(lines)
