"""Fixtures shared by the integration tests: real redis-server processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchyard_cli.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One server for a test module (tests keep their keys apart)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop, restart or pause it."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
