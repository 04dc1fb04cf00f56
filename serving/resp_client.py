"""A small pipelined Redis client for the request path: one asyncio connection, hiredis parsing.

Why not redis-py here: admission makes one or two script calls per request, and redis-py's
asyncio path (a connection pool with its own lock, per-command packing and response
machinery, ``asyncio.timeout`` around each call) cost ~0.15 ms of gateway CPU per call, and a
call cancelled by its deadline leaves redis-py's connection mid-reply, so redis-py drops it
and the next call reconnects. Here every call is written to one connection and its reply is
matched by order (Redis answers a connection's commands in the order sent), so:

- **deadlines** are a ``loop.call_later`` per call: an expired call fails with
  :class:`TimeoutError` and its late reply, when it comes, is read and discarded — the
  connection stays in step and is kept. Only when Redis has sent nothing for
  ``stale_after_s`` while calls wait is the connection dropped (the next call reconnects);
- **concurrent callers pipeline** on the one connection for free;
- **scripts** run by ``EVALSHA``; a ``NOSCRIPT`` reply (a restarted or flushed Redis) is
  retried once with ``EVAL``, which also loads the script for the calls after it;
- **connection loss** (Redis killed mid-call) fails every waiting call with
  :class:`ConnectionError`; the next call connects again. Connecting shares one attempt
  between concurrent callers and is bounded by ``connect_timeout_s``.

URLs: ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS with the default
trust store). Replies are hiredis's: bytes, ints, lists; an error reply raises
:class:`RedisReplyError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

Arg = bytes | str | int | float


class RedisReplyError(Exception):
    """Redis answered a command with an error reply."""


@dataclass(frozen=True)
class RedisEndpoint:
    """Where and how to connect, parsed from a ``redis://`` or ``rediss://`` URL."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} (redis:// or rediss://)")
        path = parts.path.strip("/")
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(path) if path else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
        )

    def handshake(self) -> list[tuple[Arg, ...]]:
        """The commands a new connection sends before any call: AUTH and SELECT when needed."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            commands.append(
                ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            )
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


@dataclass(frozen=True)
class LuaScript:
    """A script's body and SHA1, as ``EVALSHA`` names it."""

    body: bytes
    sha: bytes

    @classmethod
    def of(cls, body: str) -> LuaScript:
        raw = body.encode()
        return cls(raw, hashlib.sha1(raw).hexdigest().encode())


class _Connection(asyncio.Protocol):
    """One socket; replies are handed to the waiting calls in the order the calls were written."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], asyncio.TimerHandle | None]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_heard = loop.time()  # the last reply, or when calls began waiting on a quiet connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.last_heard = self.loop.time()

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        try:
            reply = reader.gets()
            while reply is not False:
                future, timer = waiting.popleft()
                if timer is not None:
                    timer.cancel()
                if not future.done():  # expired or cancelled calls drop their reply here
                    if isinstance(reply, hiredis.ReplyError):
                        future.set_exception(RedisReplyError(str(reply)))
                    else:
                        future.set_result(reply)
                reply = reader.gets()
        except (hiredis.ProtocolError, IndexError) as exc:  # out of step: nothing after this can be trusted
            self.abort(ConnectionError(f"Redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def abort(self, exc: Exception) -> None:
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, exc: Exception) -> None:
        self.closed = True
        while self.waiting:
            future, timer = self.waiting.popleft()
            if timer is not None:
                timer.cancel()
            if not future.done():
                future.set_exception(exc)

    def send(self, packed: bytes, timeout_s: float, expire: Any) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        if not self.waiting:
            self.last_heard = self.loop.time()  # silence counts from the first unanswered call
        timer = self.loop.call_later(timeout_s, expire, self, future) if timeout_s > 0 else None
        self.waiting.append((future, timer))
        assert self.transport is not None
        self.transport.write(packed)
        return future

    def send_many(self, packed: list[bytes], timeout_s: float, expire: Any) -> list[asyncio.Future[Any]]:
        """Several commands in one write (one system call)."""
        loop = self.loop
        if not self.waiting:
            self.last_heard = loop.time()
        futures = []
        for _ in packed:
            future = loop.create_future()
            self.waiting.append((future, loop.call_later(timeout_s, expire, self, future)))
            futures.append(future)
        assert self.transport is not None
        self.transport.write(b"".join(packed))
        return futures


class RespClient:
    """Calls to one Redis over one pipelined connection; see the module docstring for the rules."""

    def __init__(self, url: str, *, connect_timeout_s: float = 1.0, stale_after_s: float = 1.0) -> None:
        self.endpoint = RedisEndpoint.from_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.stale_after_s = stale_after_s
        self.connects = 0  # connections opened so far (a steady state opens one)
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def call(self, timeout_s: float, *args: Arg) -> Any:
        """One command's reply within ``timeout_s`` (connecting, when needed, counts against it)."""
        connection = self._connection
        if connection is None or connection.closed:
            async with asyncio.timeout(timeout_s):
                connection = await self._connect()
        return await connection.send(hiredis.pack_command(args), timeout_s, self._expire)

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    @staticmethod
    def pack_evalsha(script: LuaScript, keys: tuple[Arg, ...], args: tuple[Arg, ...]) -> bytes:
        return hiredis.pack_command((b"EVALSHA", script.sha, len(keys), *keys, *args))

    def write_now(self, packed: list[bytes], timeout_s: float) -> list[asyncio.Future[Any]] | None:
        """Write packed commands at once on the open connection (one system call) and return their
        replies' futures; None when there is no open connection (nothing written)."""
        connection = self._connection
        if connection is None or connection.closed:
            return None
        return connection.send_many(packed, timeout_s, self._expire)

    async def settle_evalsha(
        self,
        reply: asyncio.Future[Any],
        script: LuaScript,
        keys: tuple[Arg, ...],
        args: tuple[Arg, ...],
        timeout_s: float,
    ) -> Any:
        """The reply of a written ``EVALSHA``; on ``NOSCRIPT`` run the script once by ``EVAL`` (which loads it)."""
        try:
            return await reply
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.call(timeout_s, b"EVAL", script.body, len(keys), *keys, *args)

    async def evalsha(
        self, script: LuaScript, keys: tuple[Arg, ...], args: tuple[Arg, ...], timeout_s: float
    ) -> Any:
        """Run ``script``; on ``NOSCRIPT`` run it once by ``EVAL`` (which loads it)."""
        connection = self._connection
        if connection is None or connection.closed:
            async with asyncio.timeout(timeout_s):
                connection = await self._connect()
        reply = connection.send(self.pack_evalsha(script, keys, args), timeout_s, self._expire)
        return await self.settle_evalsha(reply, script, keys, args, timeout_s)

    async def evalsha_many(
        self, script: LuaScript, calls: list[tuple[tuple[Arg, ...], tuple[Arg, ...]]], timeout_s: float
    ) -> list[Any]:
        """Run ``script`` once per ``(keys, args)``, all in one write (one round trip); each entry of
        the result is the reply or the exception that call raised."""
        connection = self._connection
        if connection is None or connection.closed:
            async with asyncio.timeout(timeout_s):
                connection = await self._connect()
        packed = [self.pack_evalsha(script, keys, args) for keys, args in calls]
        replies = connection.send_many(packed, timeout_s, self._expire)
        return await self.settle_many(replies, script, calls, timeout_s)

    async def settle_many(
        self,
        replies: list[asyncio.Future[Any]],
        script: LuaScript,
        calls: list[tuple[tuple[Arg, ...], tuple[Arg, ...]]],
        timeout_s: float,
    ) -> list[Any]:
        """:meth:`settle_evalsha` for each written call: its reply or the exception it raised."""
        results: list[Any] = []
        for reply, (keys, args) in zip(replies, calls, strict=True):
            try:
                results.append(await self.settle_evalsha(reply, script, keys, args, timeout_s))
            except (RedisReplyError, OSError, TimeoutError) as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._connection is not None:
            self._connection.abort(ConnectionError("client closed"))
            self._connection = None

    def _expire(self, connection: _Connection, future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(TimeoutError("Redis did not answer in time"))
        if connection.loop.time() - connection.last_heard > self.stale_after_s:
            connection.abort(ConnectionError(f"Redis silent for more than {self.stale_after_s} s"))

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[_Connection]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._connection = attempt.result()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        endpoint = self.endpoint
        async with asyncio.timeout(self.connect_timeout_s):
            _, connection = await loop.create_connection(
                lambda: _Connection(loop),
                endpoint.host,
                endpoint.port,
                ssl=ssl.create_default_context() if endpoint.tls else None,
            )
            try:
                for command in endpoint.handshake():
                    await connection.send(hiredis.pack_command(command), 0, self._expire)
            except BaseException:
                connection.abort(ConnectionError("Redis handshake failed"))
                raise
        self.connects += 1
        return connection
