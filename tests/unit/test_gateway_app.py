"""GatewayApp: POST /v1/messages answered before FastAPI's layers; every other call through them."""

import asyncio
import types

import httpx
from fastapi.responses import Response

from serving.gateway import JsonReply
from serving.messages_endpoint import GatewayApp


class EchoGateway:
    """A stand-in gateway: answers with the body it got and the API key header it saw."""

    caps = types.SimpleNamespace(max_body_bytes=1024)

    async def messages(self, body: bytes, headers: dict[str, str]) -> JsonReply:
        return JsonReply(201, body, {"x-key": headers.get("x-api-key", ""), "request-id": "req_1"})


def build() -> tuple[GatewayApp, list[str]]:
    app = GatewayApp(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = types.SimpleNamespace(gateway=EchoGateway())
    seen: list[str] = []

    @app.middleware("http")
    async def record(request, call_next):  # FastAPI's middleware stack: not on the messages path
        seen.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app, seen


async def calls(app: GatewayApp) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return [
            await client.post("/v1/messages", content=b'{"model":"auto"}', headers={"X-Api-Key": "k1"}),
            await client.get("/healthz"),
            await client.get("/v1/messages"),  # not the hot path: FastAPI answers (no such route)
        ]


def test_messages_skip_fastapis_layers_and_the_rest_go_through_them() -> None:
    app, seen = build()
    posted, health, wrong_method = asyncio.run(calls(app))
    assert (posted.status_code, posted.content) == (201, b'{"model":"auto"}')
    assert posted.headers["x-key"] == "k1" and posted.headers["content-type"] == "application/json"
    assert posted.headers["content-length"] == str(len(posted.content))
    assert health.status_code == 200 and wrong_method.status_code == 404
    assert seen == ["GET /healthz", "GET /v1/messages"]
