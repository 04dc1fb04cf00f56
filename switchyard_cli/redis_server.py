"""A local ``redis-server`` process: what ``switchyard serve --processes N`` and the tests start.

Production points the gateway at a managed Redis or Valkey instead (``SWITCHYARD_CLUSTER_REDIS_URL``,
and ``REDIS_URL`` for Feast's Redis online store; docs/gateway.md).
The server here keeps nothing on disk (no RDB, no AOF): every key it holds is a lease, a bucket or a
rolling statistic that rebuilds itself after a restart.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Start, stop and restart one server on a fixed loopback port; ``url`` stays the same across restarts."""

    def __init__(self, port: int | None = None, *, log_file: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make redis-setup`")
        self.binary = binary
        self.port = port or free_port()
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL redis-py takes."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def feast_connection_string(self) -> str:
        """Feast's Redis online store syntax (``host:port``), for ``feature_store.redis.yaml``'s ``REDIS_URL``."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        output = subprocess.DEVNULL if self.log_file is None else self.log_file.open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._process.returncode} (port {self.port} taken?)"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING in time")

    def stop(self) -> None:
        """Kill the server (as a crash would: no save, clients see connection errors)."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None


@contextlib.contextmanager
def running_redis(port: int | None = None) -> Iterator[RedisServer]:
    server = RedisServer(port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
