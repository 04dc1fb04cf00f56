"""RespClient against a real redis-server: pipelining, deadlines, NOSCRIPT, AUTH/SELECT, Redis killed mid-call."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from serving.resp_client import LuaScript, RedisEndpoint, RedisReplyError, RespClient

# Holds the server for about ARGV[1] milliseconds, then answers 'slow'.
BUSY = "local t0 = redis.call('TIME') local until_us = t0[1] * 1e6 + t0[2] + ARGV[1] * 1000 " + (
    "while true do local t = redis.call('TIME') if t[1] * 1e6 + t[2] >= until_us then break end end return 'slow'"
)


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_concurrent_calls_pipeline_on_one_connection_and_each_gets_its_own_reply(redis_server, run):
    async def scenario():
        client = RespClient(redis_server.url)
        replies = await asyncio.gather(*(client.call(1.0, "ECHO", f"v{i}") for i in range(500)))
        counts = await asyncio.gather(
            *(client.call(1.0, "INCR", "resp:counter:" + run.__module__) for _ in range(50))
        )
        await client.aclose()
        return replies, counts, client.connects

    replies, counts, connects = run(scenario())
    assert replies == [f"v{i}".encode() for i in range(500)]
    assert counts == sorted(counts) and counts[-1] - counts[0] == 49
    assert connects == 1


def test_an_error_reply_raises_and_the_connection_stays_in_step(redis_server):
    async def scenario():
        client = RespClient(redis_server.url)
        await client.call(1.0, "SET", "resp:string", "x")
        failing = client.call(1.0, "HGET", "resp:string", "field")
        after = client.call(1.0, "GET", "resp:string")
        results = await asyncio.gather(failing, after, return_exceptions=True)
        await client.aclose()
        return results, client.connects

    (error, value), connects = asyncio.run(scenario())
    assert isinstance(error, RedisReplyError) and "WRONGTYPE" in str(error)
    assert value == b"x" and connects == 1


def test_an_expired_call_fails_in_time_and_its_late_reply_is_dropped_not_handed_to_the_next(redis_server):
    busy = LuaScript.of(BUSY)

    async def scenario():
        client = RespClient(redis_server.url, stale_after_s=5.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.evalsha(busy, (), (300,), 0.05)
        waited = time.monotonic() - started
        after = await client.call(2.0, "ECHO", "next")  # queued behind the busy script's late reply
        await client.aclose()
        return waited, after, client.connects

    waited, after, connects = asyncio.run(scenario())
    assert waited < 0.25  # the EVAL fallback for NOSCRIPT had its own 50 ms
    assert after == b"next"
    assert connects == 1


def test_one_slow_call_after_an_idle_spell_keeps_the_connection(redis_server):
    busy = LuaScript.of(BUSY)

    async def scenario():
        client = RespClient(redis_server.url, stale_after_s=0.2)
        blocker = RespClient(redis_server.url)
        await blocker.call(1.0, "SCRIPT", "LOAD", busy.body)
        assert await client.call(1.0, "PING") == b"PONG"
        await asyncio.sleep(0.4)  # idle longer than stale_after_s: not silence, nothing was asked
        blocking = asyncio.ensure_future(blocker.evalsha(busy, (), (150,), 2.0))
        await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await client.call(0.05, "PING")
        assert await blocking == b"slow"
        pong = await client.call(1.0, "PING")
        for each in (client, blocker):
            await each.aclose()
        return pong, client.connects

    assert asyncio.run(scenario()) == (b"PONG", 1)


def test_a_silent_server_drops_the_connection_after_stale_after_and_the_next_call_reconnects():
    async def scenario():
        accepted = 0

        async def never_answer(reader, writer):
            nonlocal accepted
            accepted += 1
            await reader.read(1 << 16)
            await asyncio.sleep(5)

        silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}/0", stale_after_s=0.2)
        with pytest.raises(TimeoutError):
            await client.call(0.05, "PING")
        kept = client.connects
        await asyncio.sleep(0.2)
        with pytest.raises((TimeoutError, ConnectionError)):
            await client.call(0.05, "PING")  # its expiry finds the server silent for > 0.2 s
        with pytest.raises(TimeoutError):
            await client.call(0.05, "PING")
        await client.aclose()
        silent.close()
        return kept, client.connects, accepted

    kept, connects, accepted = asyncio.run(scenario())
    assert kept == 1
    assert connects == accepted == 2


def test_noscript_after_a_script_flush_runs_the_script_by_eval_and_loads_it(redis_server):
    script = LuaScript.of("return {KEYS[1], ARGV[1]}")

    async def scenario():
        client = RespClient(redis_server.url)
        await client.call(1.0, "SCRIPT", "FLUSH")
        first = await client.evalsha(script, ("k",), ("a",), 1.0)
        loaded = await client.call(1.0, "SCRIPT", "EXISTS", script.sha)
        await client.call(1.0, "SCRIPT", "FLUSH")
        many = await client.evalsha_many(script, [(("k1",), ("b",)), (("k2",), ("c",))], 1.0)
        await client.aclose()
        return first, loaded, many

    first, loaded, many = asyncio.run(scenario())
    assert first == [b"k", b"a"] and loaded == [1]
    assert many == [[b"k1", b"b"], [b"k2", b"c"]]


def test_evalsha_many_hands_each_call_its_own_result_or_error(redis_server):
    script = LuaScript.of("if ARGV[1] == 'bad' then return redis.error_reply('no good') end return ARGV[1]")

    async def scenario():
        client = RespClient(redis_server.url)
        results = await client.evalsha_many(script, [((), ("a",)), ((), ("bad",)), ((), ("c",))], 1.0)
        await client.aclose()
        return results

    first, second, third = asyncio.run(scenario())
    assert (first, third) == (b"a", b"c")
    assert isinstance(second, RedisReplyError) and "no good" in str(second)


def test_redis_killed_mid_call_fails_the_waiting_calls_and_a_restarted_redis_is_used_again(own_redis_server):
    async def scenario():
        client = RespClient(own_redis_server.url)
        waiting = asyncio.ensure_future(client.call(5.0, "BLPOP", "resp:never", 4))
        await asyncio.sleep(0.1)
        own_redis_server.stop()
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            await waiting
        failed_after = time.monotonic() - started
        with pytest.raises(OSError):
            await client.call(0.5, "PING")  # refused while down
        own_redis_server.start()
        pong = await client.call(1.0, "PING")
        await client.aclose()
        return failed_after, pong, client.connects

    failed_after, pong, connects = asyncio.run(scenario())
    assert failed_after < 0.5
    assert pong == b"PONG" and connects == 2


def test_url_credentials_and_database_are_sent_before_the_first_call(own_redis_server):
    async def scenario():
        admin = RespClient(own_redis_server.url)
        await admin.call(1.0, "CONFIG", "SET", "requirepass", "s3cret")
        port = own_redis_server.port
        anonymous = RespClient(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(RedisReplyError, match="NOAUTH"):
            await anonymous.call(1.0, "PING")
        db3 = RespClient(f"redis://:s3cret@127.0.0.1:{port}/3")
        user_db3 = RespClient(f"redis://default:s3cret@127.0.0.1:{port}/3")
        db0 = RespClient(f"redis://:s3cret@127.0.0.1:{port}/0")
        await db3.call(1.0, "SET", "resp:where", "three")
        seen = (await user_db3.call(1.0, "GET", "resp:where"), await db0.call(1.0, "GET", "resp:where"))
        for client in (admin, anonymous, db3, user_db3, db0):
            await client.aclose()
        return seen

    assert asyncio.run(scenario()) == (b"three", None)


def test_endpoint_parses_redis_and_rediss_urls():
    assert RedisEndpoint.from_url("rediss://u:p%40ss@cache.example:6380/2") == RedisEndpoint(
        "cache.example", 6380, 2, "u", "p@ss", True
    )
    assert RedisEndpoint.from_url("redis://localhost") == RedisEndpoint("localhost", 6379)
    assert RedisEndpoint.from_url("redis://h:1/0").handshake() == []
    assert RedisEndpoint.from_url("redis://:pw@h:1/4").handshake() == [("AUTH", "pw"), ("SELECT", 4)]
    with pytest.raises(ValueError, match="scheme"):
        RedisEndpoint.from_url("unix:///tmp/redis.sock")
