"""The HTTP/1.1 client of the worker calls: POST a body, read the answer whole or as it arrives.

One :class:`WorkerHttpClient` per pool holds keep-alive connections per endpoint (``host:port``),
at most ``limit`` in use at once; a request waits for a free one, and the wait plus the TCP
connect are bounded by ``connect_timeout_s`` (the connect alone by ``sock_connect_timeout_s``).
A released connection stays pooled for ``keepalive_s`` if its answer was read to its end and
the worker kept the connection open (``keepalive_s`` 0: every request opens and closes one).
Responses are parsed by httptools (llhttp: content length, chunked, or to the end of the
connection). Reading pauses past ``HIGH_WATER_BYTES`` of unread body and resumes once the reader
has taken it, so a slow consumer of a stream holds the worker back instead of filling memory.

It is the gateway's only client of ``/v1/messages`` and does only what that call needs, at a
fraction of a general client's cost per request (no URL objects, header multidicts, request
and payload objects, cookie or trace hooks): on this VM aiohttp's ``ClientSession.post`` plus
``read`` took ~300 µs of CPU per call more than this (``bench/cpu_per_request.py``).

Failures are aiohttp's exception types, so ``serving.worker_errors`` classifies them as it
always has: refused or unreachable → ``ClientConnectorError``; the pool wait or the connect ran
out of time → ``ConnectionTimeoutError``; the connection closed or broke before the response
head → ``ServerDisconnectedError``; after it, or a malformed answer → ``ClientPayloadError``.
Cancelling a call (the caller's timeout) closes its connection.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import aiohttp
import httptools
from aiohttp.client_reqrep import ConnectionKey

HIGH_WATER_BYTES = 1 << 18  # unread body bytes at which reading pauses


class WorkerResponse:
    """A response whose head has arrived; its body is read with :meth:`read` or :meth:`iter_any`.

    ``headers`` has lower-case names (the first value of a repeated header, as aiohttp's
    ``get`` gives). :meth:`close` must be called (the pool's attempt code does, in a
    ``finally``): it pools the connection again if the body was read to its end, else closes it.
    """

    __slots__ = ("_connection", "headers", "status")

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers

    async def read(self) -> bytes:
        """The whole body; ``ClientPayloadError`` if the connection broke before its end."""
        return await self._connection.read_body()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in the chunks the network gave (as aiohttp's ``iter_any``)."""
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        self._connection.finish()


class _Connection(asyncio.Protocol):
    """One TCP connection to a worker and the response in flight on it (httptools callbacks)."""

    def __init__(self, client: WorkerHttpClient, key: tuple[str, int, bool]) -> None:
        self._client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._keep_alive = False
        self._until_eof = False
        self._error: aiohttp.ClientError | None = None
        self._released = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._head is None or self._complete:  # nothing asked for: an answer out of turn
            self._abort(aiohttp.ClientPayloadError("data from the worker outside a response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._abort(aiohttp.ClientPayloadError(f"a malformed HTTP response: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.forget(self)
        if self._head is None or self._complete:
            return
        if self._until_eof and self._status:  # a body delimited by the end of the connection
            self._complete = True
            self._wake()
            return
        if not self._status:
            error: aiohttp.ClientError = aiohttp.ServerDisconnectedError()
        else:
            error = aiohttp.ClientPayloadError("the connection closed before the end of the body")
        self._fail(error)

    def pause_writing(self) -> None:  # the body is written in one call; the kernel buffers it
        pass

    def resume_writing(self) -> None:
        pass

    # ------------------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        headers = self._headers
        self._until_eof = "content-length" not in headers and "transfer-encoding" not in headers
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()  # read now: false once the callback returns
        self._wake()

    # ------------------------------------------------------------------ one exchange

    async def exchange(self, request: bytes, body: bytes) -> WorkerResponse:
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self.transport.writelines((request, body))  # type: ignore[union-attr]
        await self._head
        if self._error is not None and not self._status:
            raise self._error
        return WorkerResponse(self, self._status, self._headers)

    async def next_chunk(self) -> bytes:
        """The body bytes received since the last call, b"" at the end; raises if it broke."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_body(self) -> bytes:
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def finish(self) -> None:
        """The response is done with: pool the connection again, or close it."""
        if self._released:
            return
        self._released = True
        reusable = (
            self._complete
            and self._error is None
            and not self._until_eof
            and not self.closed
            and self._keep_alive
        )
        if not reusable:
            self.close()
        self._client.release(self, reusable)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: aiohttp.ClientError) -> None:
        self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)
        self._wake()

    def _abort(self, error: aiohttp.ClientError) -> None:
        self._fail(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def ready_for_reuse(self) -> None:
        self._reset()
        self._parser = httptools.HttpResponseParser(self)


class WorkerHttpClient:
    """Keep-alive HTTP/1.1 connections to the workers; make it inside the running event loop."""

    def __init__(
        self,
        *,
        limit: int,
        keepalive_s: float,
        connect_timeout_s: float,
        sock_connect_timeout_s: float,
    ) -> None:
        self.limit = limit
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.sock_connect_timeout_s = sock_connect_timeout_s
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._targets: dict[str, tuple[tuple[str, int, bool], str, bytes]] = {}
        self._ssl: ssl_module.SSLContext | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        return self._in_use

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> WorkerResponse:
        """POST ``body`` to ``url``; returns once the response head has arrived."""
        key, path, host = self._target(url)
        lines = [f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len(body)}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        if self.keepalive_s <= 0:
            lines.append("connection: close\r\n")
        lines.append("\r\n")
        request = "".join(lines).encode("latin-1")
        connection = await self._acquire(key)
        try:
            return await connection.exchange(request, body)
        except BaseException:
            connection.close()
            connection.finish()
            raise

    def _target(self, url: str) -> tuple[tuple[str, int, bool], str, bytes]:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            secure = parts.scheme == "https"
            port = parts.port or (443 if secure else 80)
            host = parts.hostname or ""
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = self._targets[url] = ((host, port, secure), path, parts.netloc)  # type: ignore[assignment]
        return target  # type: ignore[return-value]

    async def _acquire(self, key: tuple[str, int, bool]) -> _Connection:
        """A pooled connection to ``key`` or a new one, once fewer than ``limit`` are in use."""
        if self._closed:
            raise RuntimeError("the worker HTTP client is closed")
        if self._in_use < self.limit and not self._waiters:
            connection = self._pooled(key)
            if connection is not None:
                self._in_use += 1
                return connection
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                while self._in_use >= self.limit or self._waiters:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter in self._waiters:
                            self._waiters.remove(waiter)
                        elif waiter.done() and not waiter.cancelled():
                            self._wake_next()  # woken, but leaving: pass the free slot on
                        raise
                    if self._in_use < self.limit:
                        break
                self._in_use += 1
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(
                f"no free connection in {self.connect_timeout_s:g} s ({self.limit} in use)"
            ) from None
        try:
            connection = self._pooled(key)
            if connection is None:
                remaining = self.connect_timeout_s - (time.monotonic() - started)
                connection = await self._connect(key, min(self.sock_connect_timeout_s, remaining))
        except BaseException:
            self._in_use -= 1
            self._wake_next()
            raise
        return connection

    def _pooled(self, key: tuple[str, int, bool]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since <= self.keepalive_s:
                connection.ready_for_reuse()
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, int, bool], timeout_s: float) -> _Connection:
        host, port, secure = key
        connection = _Connection(self, key)
        if secure and self._ssl is None:
            self._ssl = ssl_module.create_default_context()
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await asyncio.get_running_loop().create_connection(
                    lambda: connection, host, port, ssl=self._ssl if secure else None
                )
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(f"connecting to {host}:{port} timed out") from None
        except OSError as error:
            raise aiohttp.ClientConnectorError(
                ConnectionKey(host, port, secure, True, None, None, None, None), error
            ) from None
        self._open.add(connection)
        return connection

    def release(self, connection: _Connection, reusable: bool) -> None:
        self._in_use -= 1
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.key, []).append(connection)
        self._wake_next()

    def forget(self, connection: _Connection) -> None:
        """A connection closed (by either side): no longer pooled."""
        self._open.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection, pooled or in use."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost
