"""Raw ASGI plumbing for the worker's hot endpoints: body reading, responses, disconnects.

The chat endpoints are plain ASGI callables rather than Starlette request/response handlers
because they need what Starlette's responses do not give: a stream that can be cut without
its final chunk (the crash fault), a request that never answers (the hang fault), and
cancellation of a simulated request when its client goes away (uvicorn's httptools protocol
silently drops writes to a closed connection, so nobody would notice otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from features.wire import WireError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = Sequence[tuple[bytes, bytes]]

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)
SSE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
)


class ClientGone(Exception):
    """The client disconnected before the request body was read."""


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> WireError:
    return WireError(413, "request_too_large", f"Request exceeds the maximum size of {limit} bytes.")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it passes ``limit`` bytes."""
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_body(send: Send, status: int, body: bytes, headers: Headers = JSON_HEADERS) -> None:
    """A complete response with a content-length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (or, under uvicorn, when the response completed)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class Completion:
    """Set by the work coroutine before its final write, so a late disconnect does not abort it."""

    __slots__ = ("finished",)

    def __init__(self) -> None:
        self.finished = False


async def run_until_disconnect(
    work: Callable[[Completion], Coroutine[Any, Any, None]], receive: Receive
) -> None:
    """Run ``work`` but cancel it if the client disconnects before it finishes its response."""
    completion = Completion()
    task = asyncio.ensure_future(work(completion))
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if not task.done() and not completion.finished:
        task.cancel()
    if not watcher.done():
        watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class ChatFastPath:
    """ASGI middleware that sends ``POST`` to the chat paths straight to their endpoints.

    Starlette's router and exception middleware cost ~70 µs a request in profiles, a third of
    the worker's whole request cost; the chat endpoints handle their own errors, so they skip
    both. Everything else (and other methods on these paths) goes through Starlette.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], endpoints: dict[str, Any]
    ) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
