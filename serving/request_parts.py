"""The small pure parts of a Messages request the gateway reads or makes: request ids, the API
key, the worker body's encoding, the conversation key. No state beyond a per-process id key."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import secrets
from collections.abc import Mapping

import orjson

from features.request import content_text


def new_request_id() -> str:
    """``req_`` + 24 hex digits, unguessable (feedback is keyed by it) and unique per process.

    A keyed BLAKE2b of a counter: ~1 µs and no system call. ``uuid4`` reads ``os.urandom``,
    which releases the GIL; under load the event loop then waits for the event-log thread to
    hand the GIL back (up to the switch interval) on every request.
    """
    return "req_" + _request_ids().next_id()


class _RequestIds:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._counter = itertools.count()

    def next_id(self) -> str:
        # the pid keeps ids apart in processes forked after the key was drawn
        number = os.getpid().to_bytes(4, "little") + next(self._counter).to_bytes(8, "little")
        return hashlib.blake2b(number, key=self._key, digest_size=12).hexdigest()


@functools.cache
def _request_ids() -> _RequestIds:
    return _RequestIds()


def encode_json(document: object) -> bytes:
    """Compact UTF-8 JSON: orjson, or the standard library for what orjson refuses (integers
    beyond 64 bits, lone surrogates that ``json.loads`` accepted)."""
    try:
        return orjson.dumps(document)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )


def api_key_from(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def conversation_key(tenant_id: str, document: Mapping[str, object]) -> str:
    """Hash of tenant and the text of the first user turn: groups a conversation's requests
    without keeping text."""
    messages = document.get("messages") or []
    first = next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), {})  # type: ignore[union-attr]
    text = content_text(first.get("content", ""))
    digest = hashlib.blake2b(tenant_id.encode() + b"\x1f", digest_size=12)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()
