"""The gateway's worker client against real simulated workers on loopback.

Faults come from the worker's own ``/admin/faults``; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest

from features.deployment import DeploymentMap, SkuDeployment
from serving.breaker import BreakerPolicy, BreakerStore, InProcessBreakers
from serving.settings import WorkerSettings
from serving.workers import (
    EndpointSnapshot,
    WorkerAttemptError,
    WorkerPool,
    WorkerStreamBroken,
    WorkerUsage,
)
from simulator.worker import WorkerConfig, running_worker

pytestmark = pytest.mark.anyio

MODEL = "claude-haiku-4-5"
REGION = "us"
SYSTEM = "You are the Switchyard worker-client test. Answer plainly and briefly. " * 12


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def worker_config(seed: int = 11) -> WorkerConfig:
    return WorkerConfig(skus=(MODEL,), time_scale=0.01, seed=seed)


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[str, str]]:
    with running_worker(worker_config()) as first, running_worker(worker_config()) as second:
        yield first, second


@pytest.fixture(autouse=True)
def healthy_replicas(replicas: tuple[str, str]) -> Iterator[None]:
    yield
    for url in replicas:
        set_faults(url)


def set_faults(url: str, **faults: object) -> None:
    response = httpx.post(f"{url}/admin/faults", json={"reset": True, **faults}, timeout=5)
    assert response.status_code == 200, response.text


def body(out: int = 30, *, stream: bool = False, max_tokens: int = 1000, system: str | None = None) -> bytes:
    document: dict[str, object] = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": f"Tell me about harbours. [[sim out={out}]]"}],
    }
    if system is not None:
        document["system"] = system
    return json.dumps(document).encode()


def within(seconds: float) -> float:
    return time.monotonic() + seconds


@contextlib.asynccontextmanager
async def open_pool(
    urls: Sequence[str], *, breakers: BreakerStore | None = None, **settings: object
) -> AsyncIterator[WorkerPool]:
    deployment = DeploymentMap(deployments=(SkuDeployment(sku=MODEL, region=REGION, endpoints=tuple(urls)),))
    # no health probe and one replica per call by default: these tests pin down the breaker and
    # the classification of each attempt (test_worker_probe.py covers probing and replica retry)
    settings = {"probe_interval_s": 0, "replica_attempts": 1, **settings}
    pool = WorkerPool(deployment, WorkerSettings(**settings), breakers=breakers)
    try:
        yield pool
    finally:
        await pool.aclose()


def endpoint(pool: WorkerPool, url: str) -> EndpointSnapshot:
    [row] = [row for row in pool.snapshot() if row.url == url]
    return row


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """A plain, non-incremental parse of a complete SSE body (independent of the scanner)."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def test_complete_returns_the_body_and_parsed_usage(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    async with open_pool([first]) as pool:
        cold = await pool.complete(MODEL, REGION, body(42, system=SYSTEM), deadline=within(10))
        warm = await pool.complete(MODEL, REGION, body(42, system=SYSTEM), deadline=within(10))
        assert endpoint(pool, first).in_flight == 0
    for reply in (cold, warm):
        document = json.loads(reply.body)
        assert document["type"] == "message" and document["model"] == MODEL
        assert reply.usage == WorkerUsage(
            document["usage"]["input_tokens"],
            document["usage"]["cache_read_input_tokens"],
            document["usage"]["output_tokens"],
        )
        assert reply.usage.output_tokens == 42 and reply.stop_reason == "end_turn"
        assert reply.replica == first and reply.e2e_ms > 0 and reply.ttft_ms is None
    assert cold.usage.cache_read_input_tokens == 0
    assert warm.usage.cache_read_input_tokens > 0  # the same prefix again hits the worker's prefix cache
    assert warm.usage.input_tokens + warm.usage.cache_read_input_tokens == cold.usage.input_tokens


async def test_streamed_bytes_pass_through_as_the_worker_sent_them() -> None:
    request = body(120, stream=True, system=SYSTEM)
    with (
        running_worker(worker_config(seed=5)) as direct_url,
        running_worker(worker_config(seed=5)) as pooled_url,
    ):
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("POST", f"{direct_url}/v1/messages", content=request) as response,
        ):
            assert response.status_code == 200
            direct = b"".join([chunk async for chunk in response.aiter_raw()])
        async with open_pool([pooled_url]) as pool:
            async with await pool.open_stream(MODEL, REGION, request, deadline=within(10)) as stream:
                passed = stream.buffered + b"".join([chunk async for chunk in stream.iter_raw()])
                assert endpoint(pool, pooled_url).in_flight == 1
            assert endpoint(pool, pooled_url).in_flight == 0

    head_end = direct.index(b"\n\n") + 2
    assert passed == direct[head_end:]  # byte for byte after message_start (only its id differs)
    [(name, direct_start), *rest] = sse_events(direct)
    assert name == "message_start" and stream.message_start["type"] == "message_start"
    assert {**stream.message_start["message"], "id": "-"} == {**direct_start["message"], "id": "-"}

    [message_delta] = [data for name, data in rest if name == "message_delta"]
    progress = stream.progress
    assert progress.usage.output_tokens == message_delta["usage"]["output_tokens"] == 120
    assert progress.usage.input_tokens == message_delta["usage"]["input_tokens"]
    assert progress.usage.cache_read_input_tokens == message_delta["usage"]["cache_read_input_tokens"]
    assert progress.stop_reason == message_delta["delta"]["stop_reason"] == "end_turn"
    assert progress.completed and progress.error_type is None
    assert progress.bytes_received == len(direct)
    assert stream.e2e_ms is not None and progress.ttft_ms is not None
    assert 0 < progress.ttft_ms <= stream.e2e_ms


@pytest.mark.parametrize(
    ("fault", "http_status", "status", "error_type", "retry_after"),
    [
        ("overload_rate", 529, "overloaded", "overloaded_error", 7.0),
        ("error_rate", 500, "error", "api_error", None),
        ("rate_limit_rate", 429, "rate_limited", "rate_limit_error", 7.0),
    ],
)
async def test_worker_errors_before_the_first_byte(
    replicas: tuple[str, str],
    fault: str,
    http_status: int,
    status: str,
    error_type: str,
    retry_after: float | None,
) -> None:
    first, _ = replicas
    set_faults(first, **{fault: 1.0, "retry_after_s": 7})
    async with open_pool([first]) as pool:
        for attempt in (
            pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(10)),
            pool.complete(MODEL, REGION, body(), deadline=within(10)),
        ):
            with pytest.raises(WorkerAttemptError) as caught:
                await attempt
            error = caught.value
            assert (error.status, error.http_status, error.error_type) == (status, http_status, error_type)
            assert error.retryable and error.replica == first and error.message
            assert error.retry_after_s == retry_after and error.elapsed_ms > 0
        row = endpoint(pool, first)
        assert row.in_flight == 0
        assert row.consecutive_failures == (0 if http_status == 429 else 2)  # a 429 is not a fault


async def test_a_bad_request_is_not_retryable_and_not_held_against_the_worker(
    replicas: tuple[str, str],
) -> None:
    first, _ = replicas
    async with open_pool([first]) as pool:
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.complete(MODEL, REGION, body(max_tokens=10_000_000), deadline=within(10))
        error = caught.value
        assert (error.status, error.http_status, error.error_type) == ("error", 400, "invalid_request_error")
        assert not error.retryable and "max_tokens" in error.message
        assert error.as_api_error().status == 400
        assert endpoint(pool, first).consecutive_failures == 0


async def test_a_crash_mid_stream_ends_iteration_with_stream_broken(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    set_faults(first, crash_after_tokens=5)
    async with open_pool([first]) as pool:
        stream = await pool.open_stream(MODEL, REGION, body(200, stream=True), deadline=within(10))
        received = stream.buffered
        async with stream:
            with pytest.raises(WorkerStreamBroken) as caught:
                async for chunk in stream.iter_raw():
                    received += chunk
        broken = caught.value
        assert (broken.reason, broken.status, broken.replica) == ("connection_lost", "error", first)
        assert b"event: content_block_delta" in received and b"message_stop" not in received
        assert broken.progress.first_delta_at is not None and not broken.progress.completed
        assert broken.progress.stop_reason is None  # no message_delta came
        row = endpoint(pool, first)
        assert row.in_flight == 0 and row.consecutive_failures == 1


async def test_a_stalled_stream_hits_the_idle_timeout(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    set_faults(first, slow_token_factor=20_000.0)  # the first token is on time, then seconds per token
    async with open_pool([first], idle_timeout_s=0.3) as pool:
        async with await pool.open_stream(
            MODEL, REGION, body(50, stream=True), deadline=within(10)
        ) as stream:
            started = time.monotonic()
            with pytest.raises(WorkerStreamBroken) as caught:
                async for _ in stream.iter_raw():
                    pass
        assert (caught.value.reason, caught.value.status) == ("idle_timeout", "timeout")
        assert 0.25 < time.monotonic() - started < 2.0
        assert endpoint(pool, first).consecutive_failures == 1


async def test_a_hung_worker_times_out_per_attempt_or_at_the_deadline(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    set_faults(first, hang_rate=1.0)
    async with open_pool([first]) as pool:
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.open_stream(
                MODEL, REGION, body(stream=True), deadline=within(10), attempt_timeout_s=0.3
            )
        error = caught.value
        assert (error.status, error.error_type, error.retryable) == ("timeout", "first_event_timeout", True)
        assert 250 < error.elapsed_ms < 2000
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.complete(MODEL, REGION, body(), deadline=within(10), attempt_timeout_s=0.3)
        assert (caught.value.error_type, caught.value.retryable) == ("response_timeout", True)
        assert endpoint(pool, first).consecutive_failures == 2
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(0.3))
        error = caught.value
        assert (error.status, error.error_type, error.retryable) == ("timeout", "deadline_exceeded", False)
        assert endpoint(pool, first).consecutive_failures == 2  # the caller's deadline is not a worker fault
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.complete(MODEL, REGION, body(), deadline=time.monotonic() - 1)
        assert (caught.value.error_type, caught.value.replica) == ("deadline_exceeded", None)
        assert endpoint(pool, first).in_flight == 0


async def test_a_dead_port_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with open_pool([dead]) as pool:
        for attempt in (
            pool.complete(MODEL, REGION, body(), deadline=within(10)),
            pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(10)),
        ):
            started = time.monotonic()
            with pytest.raises(WorkerAttemptError) as caught:
                await attempt
            assert time.monotonic() - started < 1.0
            error = caught.value
            assert (error.status, error.error_type, error.retryable) == ("error", "connect_error", True)
            assert error.replica == dead and error.http_status is None
        assert endpoint(pool, dead).consecutive_failures == 2


async def test_an_open_circuit_is_skipped_and_closes_after_the_cooldown(replicas: tuple[str, str]) -> None:
    first, second = replicas
    clock = FakeClock()
    breakers = InProcessBreakers(
        BreakerPolicy(failure_threshold=2, cooldown_s=5.0, probe_timeout_s=30.0), clock
    )
    set_faults(first, error_rate=1.0)
    async with open_pool(replicas, breakers=breakers) as pool:
        served = []
        for _ in range(4):  # ties round-robin: first, second, first, second
            try:
                served.append((await pool.complete(MODEL, REGION, body(), deadline=within(10))).replica)
            except WorkerAttemptError as error:
                served.append(f"failed {error.replica}")
        assert served == [f"failed {first}", second, f"failed {first}", second]
        assert (endpoint(pool, first).breaker_state, endpoint(pool, first).consecutive_failures) == (
            "open",
            2,
        )
        assert pool.available(MODEL, REGION)
        for _ in range(3):  # the open endpoint gets nothing, even when it is the tie's turn
            assert (await pool.complete(MODEL, REGION, body(), deadline=within(10))).replica == second
        set_faults(first)  # the worker recovers
        clock.now += 4.9
        assert (await pool.complete(MODEL, REGION, body(), deadline=within(10))).replica == second
        clock.now += 0.1
        probe = await pool.complete(MODEL, REGION, body(), deadline=within(10))
        assert probe.replica == first  # the cooldown passed: one probe, and it succeeds
        assert (endpoint(pool, first).breaker_state, endpoint(pool, first).consecutive_failures) == (
            "closed",
            0,
        )


async def test_a_sku_whose_only_circuit_is_open_is_unavailable(replicas: tuple[str, str]) -> None:
    first, _ = replicas
    clock = FakeClock()
    breakers = InProcessBreakers(
        BreakerPolicy(failure_threshold=1, cooldown_s=5.0, probe_timeout_s=30.0), clock
    )
    set_faults(first, overload_rate=1.0)
    async with open_pool([first], breakers=breakers) as pool:
        assert pool.available(MODEL, REGION)
        with pytest.raises(WorkerAttemptError):
            await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(10))
        assert not pool.available(MODEL, REGION)
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.complete(MODEL, REGION, body(), deadline=within(10))
        error = caught.value
        assert (error.replica, error.status, error.error_type, error.retryable) == (
            None, "overloaded", "circuit_open", True,
        )  # fmt: skip
        assert not pool.available(MODEL, "eu")
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.complete(MODEL, "eu", body(), deadline=within(10))
        assert (caught.value.error_type, caught.value.replica) == ("not_deployed", None)
        set_faults(first)
        clock.now += 5.0
        assert pool.available(MODEL, REGION)
        async with await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(10)) as stream:
            assert endpoint(pool, first).breaker_state == "closed"  # closed at the probe's message_start
            async for _ in stream.iter_raw():
                pass


async def test_in_flight_counts_and_the_least_loaded_replica_wins(replicas: tuple[str, str]) -> None:
    async with open_pool(replicas) as pool:
        stream = await pool.open_stream(MODEL, REGION, body(400, stream=True), deadline=within(10))
        busy = stream.replica
        assert endpoint(pool, busy).in_flight == 1
        for _ in range(3):  # the idle replica wins every time while the stream is open
            reply = await pool.complete(MODEL, REGION, body(5), deadline=within(10))
            assert reply.replica != busy
        await stream.aclose()  # closed before its end: the connection is dropped, nothing is held
        await stream.aclose()  # idempotent
        assert [row.in_flight for row in pool.snapshot()] == [0, 0]
        assert {row.breaker_state for row in pool.snapshot()} == {"closed"}
        assert all(row.consecutive_failures == 0 for row in pool.snapshot())


# ---------------------------------------------------------------- what the simulator never sends
# A minimal HTTP/1.1 server on loopback answering every request with fixed bytes: a vLLM-style
# stream with an in-band error and its ``data: [DONE]`` trailer, or a body that ends cleanly
# (close-delimited) before ``message_stop``.

START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_x","type":"message",'
    b'"role":"assistant","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":9,"output_tokens":0}}}\n\n'
)
DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}\n\n'
OVERLOADED = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
DONE = b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def canned_worker(stream_body: bytes) -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        writer.write(stream_body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_an_in_band_error_mid_stream_ends_the_stream_and_counts_against_the_worker() -> None:
    async with canned_worker(START + DELTA + OVERLOADED + DONE) as url, open_pool([url]) as pool:
        async with await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(5)) as stream:
            passed = stream.buffered + b"".join([chunk async for chunk in stream.iter_raw()])
            assert endpoint(pool, url).consecutive_failures == 0  # message_start was a success
        assert passed == DELTA + OVERLOADED + DONE  # passed through, trailer and all
        progress = stream.progress
        assert (progress.error_type, progress.error_message) == ("overloaded_error", "busy")
        assert not progress.completed and progress.usage.input_tokens == 9
        assert endpoint(pool, url).consecutive_failures == 1


async def test_a_body_that_ends_before_message_stop_is_a_broken_stream() -> None:
    async with canned_worker(START + DELTA) as url, open_pool([url]) as pool:
        async with await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(5)) as stream:
            with pytest.raises(WorkerStreamBroken) as caught:
                async for _ in stream.iter_raw():
                    pass
        assert (caught.value.reason, caught.value.status) == ("incomplete", "error")
        assert caught.value.progress.ttft_ms is not None
        assert endpoint(pool, url).consecutive_failures == 1


async def test_an_error_event_before_message_start_is_a_failed_attempt() -> None:
    async with canned_worker(OVERLOADED + DONE) as url, open_pool([url]) as pool:
        with pytest.raises(WorkerAttemptError) as caught:
            await pool.open_stream(MODEL, REGION, body(stream=True), deadline=within(5))
        error = caught.value
        assert (error.status, error.error_type, error.message, error.retryable) == (
            "overloaded", "overloaded_error", "busy", True,
        )  # fmt: skip
        assert error.http_status is None and error.replica == url
        assert (endpoint(pool, url).in_flight, endpoint(pool, url).consecutive_failures) == (0, 1)


MESSAGE = (
    b'{"id":"msg_x","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],'
    b'"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}'
)


@contextlib.asynccontextmanager
async def keep_alive_worker(connections: list[int]) -> AsyncIterator[str]:
    """Answers every request on a connection with MESSAGE; appends to ``connections`` per connection."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(MESSAGE)}\r\n\r\n".encode()
                    + MESSAGE
                )
                await writer.drain()
        except asyncio.IncompleteReadError:  # the client closed the connection
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_connections_are_kept_alive_unless_keep_alive_is_off() -> None:
    for expiry, expected in ((4.0, 1), (0.0, 3)):
        connections: list[int] = []
        async with keep_alive_worker(connections) as url, open_pool([url], keepalive_expiry_s=expiry) as pool:
            for _ in range(3):
                reply = await pool.complete(MODEL, REGION, body(), deadline=within(5))
                assert reply.body == MESSAGE and reply.usage.input_tokens == 9
        assert len(connections) == expected, expiry


async def test_a_full_connection_pool_is_the_gateways_overload_not_the_workers(
    replicas: tuple[str, str],
) -> None:
    first, _ = replicas
    set_faults(first, slow_token_factor=20_000.0)  # the stream stays open, holding its connection
    async with open_pool([first], max_connections=1, pool_timeout_s=0.2, connect_timeout_s=0.2) as pool:
        stream = await pool.open_stream(MODEL, REGION, body(50, stream=True), deadline=within(10))
        started = time.monotonic()
        with pytest.raises(WorkerAttemptError) as caught:  # the stream holds the only connection
            await pool.complete(MODEL, REGION, body(5), deadline=within(10))
        assert time.monotonic() - started < 2.0
        error = caught.value
        assert (error.status, error.error_type, error.retryable) == ("overloaded", "pool_timeout", False)
        assert endpoint(pool, first).consecutive_failures == 0  # not held against the worker
        await stream.aclose()
        set_faults(first)
        reply = await pool.complete(MODEL, REGION, body(5), deadline=within(10))
        assert reply.usage.output_tokens == 5
        assert endpoint(pool, first).in_flight == 0
