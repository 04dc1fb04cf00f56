"""serving.worker_http against real HTTP servers on loopback: raw asyncio servers that answer as
written, so each case (chunked, cut, closed, slow reader, full pool) is exactly what the wire says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from serving.worker_http import HIGH_WATER_BYTES, WorkerHttpClient

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A server running ``handler`` per connection; yields its URL and the connection count."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with listener:
        yield f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1/messages", connections


@contextlib.asynccontextmanager
async def client(**settings: float) -> AsyncIterator[WorkerHttpClient]:
    options = {"limit": 8, "keepalive_s": 4.0, "connect_timeout_s": 1.0, "sock_connect_timeout_s": 1.0}
    http = WorkerHttpClient(**{**options, **settings})  # type: ignore[arg-type]
    try:
        yield http
    finally:
        await http.close()


def answer(body: bytes, *, status: int = 200, extra: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head, body = await read_request(reader)
        assert head.startswith(b"POST /v1/messages HTTP/1.1\r\n") and b"x-request-id: r1\r\n" in head
        writer.write(answer(body, extra=b"retry-after: 2\r\nRetry-After: 9\r\n"))
        await writer.drain()


async def test_a_post_reads_the_body_and_reuses_the_connection() -> None:
    async with server(echo) as (url, connections), client() as http:
        for index in range(3):
            response = await http.post(url, b'{"n":%d}' % index, {"x-request-id": "r1"})
            assert (response.status, await response.read()) == (200, b'{"n":%d}' % index)
            assert response.headers["content-type"] == "application/json"
            assert response.headers["retry-after"] == "2"  # the first of a repeated header
            response.close()
        assert len(connections) == 1 and http.in_use == 0


async def test_chunked_bodies_arrive_as_sent_and_connection_close_is_honoured() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            )
            writer.write(b"connection: close\r\n\r\n")
            for piece in (b"event: a\n\n", b"event: b\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with server(chunked) as (url, connections), client() as http:
        for _ in range(2):
            response = await http.post(url, b"{}", {})
            pieces = [chunk async for chunk in response.iter_any()]
            response.close()
            assert b"".join(pieces) == b"event: a\n\nevent: b\n\n" and len(pieces) == 2
        assert len(connections) == 2  # the worker said close: not pooled


async def test_no_keep_alive_opens_a_connection_per_request_and_says_so() -> None:
    heads: list[bytes] = []

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await read_request(reader)
        heads.append(head)
        writer.write(answer(body))
        await writer.drain()

    async with server(once) as (url, connections), client(keepalive_s=0.0) as http:
        for _ in range(2):
            response = await http.post(url, b"{}", {})
            assert await response.read() == b"{}"
            response.close()
        assert len(connections) == 2 and all(b"connection: close\r\n" in head for head in heads)


async def test_a_close_before_the_head_and_a_cut_body_are_aiohttp_errors() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"x" * 100)[:-40])
        await writer.drain()

    async with server(hang_up) as (url, _), client() as http:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.post(url, b"{}", {})
        assert http.in_use == 0
    async with server(cut) as (url, _), client() as http:
        response = await http.post(url, b"{}", {})
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
        response.close()
        assert http.in_use == 0


async def test_refused_and_malformed_answers() -> None:
    async with server(echo) as (url, _):
        pass  # closed: the port refuses now
    async with client() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            await http.post(url, b"{}", {})
        assert http.in_use == 0

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with server(garbage) as (url, _), client() as http:
        with pytest.raises(aiohttp.ClientPayloadError):
            await http.post(url, b"{}", {})


async def test_a_cancelled_call_closes_its_connection_and_frees_its_slot() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            await asyncio.sleep(0.3)
            writer.write(answer(body))
            await writer.drain()

    async with server(slow) as (url, connections), client(limit=1) as http:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await http.post(url, b"{}", {})
        assert http.in_use == 0
        response = await http.post(url, b"{}", {})  # a fresh connection: the first was closed
        assert await response.read() == b"{}"
        response.close()
        assert len(connections) == 2


async def test_a_full_pool_waits_for_a_release_then_times_out() -> None:
    async with server(echo) as (url, _), client(limit=1, connect_timeout_s=0.2) as http:
        held = await http.post(url, b"{}", {"x-request-id": "r1"})
        waiting = asyncio.create_task(http.post(url, b"{}", {"x-request-id": "r1"}))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await held.read()
        held.close()  # the waiting call gets the connection
        response = await waiting
        assert await response.read() == b"{}"
        with pytest.raises(aiohttp.ConnectionTimeoutError):  # the slot is still held
            await http.post(url, b"{}", {"x-request-id": "r1"})
        response.close()
        assert http.in_use == 0


async def test_reading_pauses_while_the_reader_lags_and_the_body_arrives_whole() -> None:
    total = 8 * HIGH_WATER_BYTES
    payload = bytes(range(256)) * (total // 256)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(payload))
        await writer.drain()

    async with server(big) as (url, _), client() as http:
        response = await http.post(url, b"{}", {})
        received = bytearray()
        async for chunk in response.iter_any():
            received += chunk
            await asyncio.sleep(0.001)  # a slow consumer
        response.close()
        assert bytes(received) == payload
