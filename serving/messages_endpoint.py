"""``POST /v1/messages`` as a bare ASGI layer: the hot path, outside FastAPI's machinery.

Every other endpoint goes through FastAPI. This one does not, because it runs for every
request the service serves and FastAPI's layers (its telemetry check, Starlette's middleware
stack of error, telemetry and body-limit middleware, routing, the request object and the
handler wrapper) cost more than the gateway's worker call on this machine
(``bench/gateway_overhead.py``, ``bench/cpu_per_request.py``); what they would add here is
nothing the endpoint uses. :class:`GatewayApp` is the FastAPI app that answers this path
before any of its layers; :class:`MessagesEndpoint` does the same as a middleware inside
them (past FastAPI's telemetry check and Starlette's outer middleware).

The layer reads the body (at most ``max_body_bytes + 1`` bytes are kept: the gateway answers
413 from the length alone), hands body and headers to :meth:`Gateway.messages`, and sends a
:class:`JsonReply` itself or a :class:`StreamReply` through Starlette's ``StreamingResponse``
(which also watches for the client going away). A failure in here is an Anthropic-shaped 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from serving.errors import ApiError, error_body
from serving.gateway import JsonReply, StreamReply
from serving.request_parts import new_request_id

log = logging.getLogger("switchyard.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MESSAGES_PATH = "/v1/messages"
_JSON_HEADERS = ((b"content-type", b"application/json"),)


def is_messages_call(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["path"] == MESSAGES_PATH and scope["method"] == "POST"


async def serve_messages(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /v1/messages`` with the gateway in ``app.state.runtime``."""
    gateway = app.state.runtime.gateway
    try:
        body = await read_body(receive, gateway.caps.max_body_bytes + 1)
        if body is None:  # the client left before sending its body
            return
        reply = await gateway.messages(body, request_headers(scope))
    except Exception:
        log.exception("POST /v1/messages failed outside the gateway")
        await send_json(send, JsonReply(*_internal_error()))
        return
    if isinstance(reply, JsonReply):
        await send_json(send, reply)
    else:
        await stream_response(reply)(scope, receive, send)


class GatewayApp(FastAPI):
    """The FastAPI app, with ``POST /v1/messages`` answered before any of FastAPI's layers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_messages_call(scope):
            scope["app"] = self
            await serve_messages(self, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class MessagesEndpoint:
    """ASGI middleware: serves ``POST /v1/messages``, passes everything else to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_messages_call(scope):
            await self.app(scope, receive, send)
            return
        await serve_messages(scope["app"], scope, receive, send)


async def read_body(receive: Receive, keep_bytes: int) -> bytes | None:
    """The request body, cut at ``keep_bytes`` (the rest is read and dropped); None on disconnect."""
    chunks: list[bytes] = []
    kept = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if kept < keep_bytes and chunk:
            chunk = chunk[: keep_bytes - kept]
            chunks.append(chunk)
            kept += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_headers(scope: Scope) -> dict[str, str]:
    """Header names (lower-case, as ASGI servers give them) to the first value sent."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def send_json(send: Send, reply: JsonReply) -> None:
    headers = [
        *_JSON_HEADERS,
        (b"content-length", str(len(reply.body)).encode()),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def stream_response(reply: StreamReply) -> StreamingResponse:
    return StreamingResponse(
        reply.chunks,
        media_type="text/event-stream",
        headers={**reply.headers, "cache-control": "no-cache"},
        background=BackgroundTask(reply.finish),
    )


def _internal_error() -> tuple[int, bytes, dict[str, str]]:
    error = ApiError("api_error", "Internal server error")
    request_id = new_request_id()
    return error.status, error_body(error, request_id), {"request-id": request_id}
