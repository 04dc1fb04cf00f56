"""RedisAdmission against a real redis-server: two gateways share one tenant's quota, and Redis going away."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from serving.admission import AdmissionLimits, InProcessAdmission
from serving.admission_redis import (
    RedisAdmission,
    RedisAdmissionConfig,
    build_admission,
    local_share,
    tenant_keys,
)
from serving.errors import ApiError
from serving.metrics import GatewayMetrics
from serving.resp_client import RespClient
from serving.settings import AdmissionSettings
from serving.tenants import Quotas, Tenant

LIMITS = AdmissionLimits(request_burst_s=10.0, token_burst_s=10.0)


def tenant(rpm=60, tpm=6_000_000, concurrency=1000, tier="pro"):
    return Tenant(
        tenant_id=f"t-{uuid.uuid4().hex[:8]}",
        tier=tier,
        home_region="us",
        residency_required=False,
        surface="api",
        entitled_skus=frozenset({"claude-haiku-4-5"}),
        quotas=Quotas(requests_per_minute=rpm, tokens_per_minute=tpm, max_concurrency=concurrency),
    )


def gateways(url, count=2, metrics=None, **config):
    settings = {"timeout_s": 0.5, "probe_interval_s": 0.2, **config}
    return [
        RedisAdmission.connect(RedisAdmissionConfig(url=url, **settings), LIMITS, metrics=metrics)
        for _ in range(count)
    ]


async def admits(admission, who, attempts, tokens=1):
    admitted = 0
    for _ in range(attempts):
        try:
            await admission.admit(who, tokens)
        except ApiError as error:
            assert (error.status, error.error_type) == (429, "rate_limit_error")
        else:
            admitted += 1
    return admitted


async def close(*admissions):
    for admission in admissions:
        await admission.aclose()


def test_keys_share_one_cluster_slot_per_tenant():
    bucket, slots = tenant_keys("acme")
    assert bucket != slots
    assert bucket.split("}")[0] == slots.split("}")[0] == "switchyard:adm:{acme"


def test_two_gateways_admit_a_burst_as_one_process_does(redis_server):
    who = tenant(rpm=60)  # 1 request/s, a burst of 10

    async def scenario():
        a, b = gateways(redis_server.url)
        shared = 0
        for _ in range(15):
            shared += await admits(a, who, 1) + await admits(b, who, 1)
        await close(a, b)
        return shared

    shared = asyncio.run(scenario())
    alone = InProcessAdmission(LIMITS)
    single = sum(1 for _ in range(30) if _admitted_now(alone, who))
    assert single == 10
    assert abs(shared - single) <= 1


def _admitted_now(admission, who):
    try:
        admission.admit_now(who, 1)
    except ApiError:
        return False
    return True


def test_rate_rejection_carries_the_wait_until_both_buckets_hold_enough(redis_server):
    who = tenant(rpm=60)

    async def scenario():
        a, b = gateways(redis_server.url)
        assert await admits(a, who, 10) == 10
        with pytest.raises(ApiError) as raised:
            await b.admit(who, 1)
        await close(a, b)
        return raised.value

    error = asyncio.run(scenario())
    assert error.status == 429
    assert "60 requests per minute" in error.message
    assert 0.8 < error.retry_after_s <= 1.0


def test_concurrency_cap_holds_across_gateways_and_release_frees_a_slot(redis_server):
    who = tenant(rpm=6000, concurrency=3)

    async def scenario():
        a, b = gateways(redis_server.url)
        first = await a.admit(who, 1)
        await b.admit(who, 1)
        await a.admit(who, 1)
        with pytest.raises(ApiError) as raised:
            await b.admit(who, 1)
        assert "at most 3 concurrent" in raised.value.message
        assert (a.in_flight, b.in_flight) == (2, 1)
        assert await first.release(1) is True
        assert await first.release(1) is False
        await b.admit(who, 1)
        await close(a, b)

    asyncio.run(scenario())


def test_release_reconciles_tokens_with_actual_usage(redis_server):
    who = tenant(rpm=6000, tpm=6000)  # 100 tokens/s, a bucket of 1000

    async def scenario():
        a, b = gateways(redis_server.url)
        ticket = await a.admit(who, 800)
        await ticket.release(100)  # 700 back: 900 left
        refunded = await b.admit(who, 800)
        await refunded.release(None)  # unknown usage: the 800 stay charged
        with pytest.raises(ApiError) as raised:
            await a.admit(who, 800)
        await close(a, b)
        return raised.value

    error = asyncio.run(scenario())
    assert "6000 tokens per minute" in error.message
    assert 6.0 < error.retry_after_s <= 7.0  # 100 left, 800 needed at 100/s


def test_an_oversize_request_is_admitted_on_a_full_bucket_and_leaves_debt(redis_server):
    who = tenant(rpm=6000, tpm=6000)

    async def scenario():
        a, b = gateways(redis_server.url)
        await a.admit(who, 5000)
        with pytest.raises(ApiError) as raised:
            await b.admit(who, 1)
        await close(a, b)
        return raised.value

    assert 40.0 < asyncio.run(scenario()).retry_after_s <= 40.1


def test_a_crashed_gateways_slots_expire_with_their_lease(redis_server):
    who = tenant(rpm=6000, concurrency=1)

    async def scenario():
        crashed, survivor = gateways(redis_server.url, slot_lease_s=0.3)
        await crashed.admit(who, 1)  # never released
        with pytest.raises(ApiError):
            await survivor.admit(who, 1)
        await asyncio.sleep(0.4)
        await survivor.admit(who, 1)
        await close(crashed, survivor)

    asyncio.run(scenario())


def test_redis_down_degrades_to_the_local_share_and_recovers(own_redis_server):
    who = tenant(rpm=60, concurrency=1000)  # a burst of 10 cluster-wide, 5 per process of 2
    metrics = GatewayMetrics()

    def degraded():
        return metrics.registry.get_sample_value("switchyard_admission_degraded")

    async def scenario():
        (a,) = gateways(own_redis_server.url, count=1, metrics=metrics, expected_processes=2)
        assert await admits(a, who, 3) == 3
        assert not a.degraded
        own_redis_server.stop()
        assert await admits(a, who, 20) == 5  # this process's share, not all and not none
        assert a.degraded and degraded() == 1.0
        assert metrics.registry.get_sample_value("switchyard_admission_degraded_decisions_total") == 20
        own_redis_server.start()
        deadline = time.monotonic() + 5.0
        while a.degraded and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await admits(a, who, 1)
        assert not a.degraded and degraded() == 0.0
        assert a.in_flight == 3 + 5 + 1  # a fresh Redis holds a full bucket; nothing was released
        await a.aclose()

    asyncio.run(scenario())


def test_a_redis_slower_than_the_timeout_counts_as_down():
    who = tenant(rpm=60)
    metrics = GatewayMetrics()

    async def scenario():
        async def never_answer(reader, writer):
            await reader.read(1 << 16)
            await asyncio.sleep(5)

        silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        (a,) = gateways(f"redis://127.0.0.1:{port}/0", count=1, metrics=metrics, timeout_s=0.05)
        started = time.monotonic()
        ticket = await a.admit(who, 1)
        waited = time.monotonic() - started
        assert a.degraded and ticket.owner is not a  # a local-share ticket
        assert await a.release(ticket, 1) is True and a.in_flight == 0
        await a.aclose()
        silent.close()
        return waited

    assert asyncio.run(scenario()) < 1.0
    assert metrics.registry.get_sample_value("switchyard_admission_degraded") == 1.0


def test_local_share_divides_quotas_and_rounds_concurrency_up():
    share = local_share(Quotas(requests_per_minute=100, tokens_per_minute=1000, max_concurrency=5), 2)
    assert (share.requests_per_minute, share.tokens_per_minute, share.max_concurrency) == (50, 500, 3)


def test_settings_pick_the_backend(monkeypatch, redis_server):
    assert isinstance(build_admission(AdmissionSettings()), InProcessAdmission)
    monkeypatch.setenv("SWITCHYARD_ADMISSION_REDIS_URL", redis_server.url)
    monkeypatch.setenv("SWITCHYARD_ADMISSION_EXPECTED_PROCESSES", "4")
    admission = build_admission(AdmissionSettings())
    assert isinstance(admission, RedisAdmission)
    assert (admission.config.url, admission.config.expected_processes) == (redis_server.url, 4)
    assert admission.config.timeout_s == 0.05
    asyncio.run(admission.aclose())


async def _bucket_and_slots(url, who):
    client = RespClient(url)
    bucket, slots = tenant_keys(who.tenant_id)
    tokens = (await client.call(1.0, "HMGET", bucket, "t"))[0]
    state = {
        "tokens": float(tokens) if tokens is not None else None,
        "bucket_ttl_ms": await client.call(1.0, "PTTL", bucket),
        "slots_ttl_ms": await client.call(1.0, "PTTL", slots),
        "slots": await client.call(1.0, "ZRANGE", slots, 0, -1),
    }
    await client.aclose()
    return state


def test_releases_sent_in_one_batch_reconcile_each_ticket_once(redis_server):
    who = tenant(rpm=6000, tpm=600)  # 10 tokens/s, a bucket of 100

    async def scenario():
        (a,) = gateways(redis_server.url, count=1)
        started = time.monotonic()
        tickets = [await a.admit(who, 20) for _ in range(4)]  # 20 tokens left
        assert [a.release_nowait(ticket, 5) for ticket in tickets[:3]] == [True] * 3
        assert a.release_nowait(tickets[0], 5) is False
        assert a.in_flight == 1
        assert await a.release(tickets[3], 5) is True  # joins the queued batch and waits for it
        assert await a.release(tickets[3], 5) is False
        state = await _bucket_and_slots(redis_server.url, who)
        await a.aclose()
        return state, time.monotonic() - started

    state, elapsed = asyncio.run(scenario())
    assert 80.0 <= state["tokens"] <= 80.0 + 10.0 * elapsed + 0.5  # 4 × 15 back, once each
    assert state["slots"] == [b"~"]  # every slot freed; the sentinel keeps the set and its expiry


def test_shutdown_sends_the_queued_releases(redis_server):
    who = tenant(rpm=6000, concurrency=1)

    async def scenario():
        a, b = gateways(redis_server.url)
        ticket = await a.admit(who, 1)
        assert a.release_nowait(ticket, 1) is True
        await a.aclose()
        await b.admit(who, 1)  # the slot was freed by a's shutdown
        await b.aclose()

    asyncio.run(scenario())


def test_keys_expire_and_expiry_is_pushed_out_when_a_charge_needs_longer(redis_server):
    who = tenant(rpm=6000, tpm=6000)  # 100 requests/s and 100 tokens/s; buckets of 1000

    async def scenario():
        (a,) = gateways(redis_server.url, count=1, slot_lease_s=30.0)
        ticket = await a.admit(who, 800)  # full again in 8 s
        admitted = await _bucket_and_slots(redis_server.url, who)
        await ticket.release(3000)  # 2200 more than reserved: -2000 tokens, full in 30 s
        charged = await _bucket_and_slots(redis_server.url, who)
        await a.aclose()
        return admitted, charged

    admitted, charged = asyncio.run(scenario())
    assert 9_000 < admitted["bucket_ttl_ms"] <= 19_000  # time to full + 1 s + 10 s headroom
    assert 31_000 < admitted["slots_ttl_ms"] <= 61_000  # lease + 1 s + min(lease, 60 s)
    assert charged["tokens"] == pytest.approx(-2000.0, abs=5.0)
    assert 31_000 < charged["bucket_ttl_ms"] <= 41_000
    assert charged["slots_ttl_ms"] > 31_000 and charged["slots"] == [b"~"]


def test_a_redis_that_forgot_the_scripts_still_admits_and_releases(redis_server):
    who = tenant(rpm=6000, concurrency=1)

    async def scenario():
        (a,) = gateways(redis_server.url, count=1)
        await (await a.admit(who, 1)).release(1)
        await a.client.call(1.0, "SCRIPT", "FLUSH")
        ticket = await a.admit(who, 1)
        await a.client.call(1.0, "SCRIPT", "FLUSH")
        await ticket.release(1)
        await (await a.admit(who, 1)).release(1)  # the slot was freed: concurrency 1 admits again
        await a.aclose()
        return a.degraded, a.client.connects

    assert asyncio.run(scenario()) == (False, 1)


def test_a_release_batch_that_fails_degrades_and_leaves_the_slot_to_its_lease(own_redis_server):
    who = tenant(rpm=6000)
    metrics = GatewayMetrics()

    async def scenario():
        (a,) = gateways(own_redis_server.url, count=1, metrics=metrics)
        ticket = await a.admit(who, 1)
        own_redis_server.stop()
        assert await a.release(ticket, 1) is True
        assert a.in_flight == 0 and a.degraded
        assert await a.release(ticket, 1) is False
        local = await a.admit(who, 1)  # degraded: a local-share ticket, released locally
        assert local.owner is not a and await a.release(local, 1) is True
        await a.aclose()

    asyncio.run(scenario())
    assert metrics.registry.get_sample_value("switchyard_admission_degraded") == 1.0


def test_queued_releases_go_out_with_the_next_admit_ahead_of_it(redis_server):
    who = tenant(rpm=6000, concurrency=1)

    async def scenario():
        (a,) = gateways(redis_server.url, count=1, release_delay_s=30.0)  # the timer never sends them
        for _ in range(5):
            ticket = await a.admit(who, 1)  # the slot the previous admit's write freed first
            assert a.release_nowait(ticket, 1) is True
        await a.aclose()

    asyncio.run(scenario())


def test_queued_releases_go_out_after_the_delay_without_another_admit(redis_server):
    who = tenant(rpm=6000, concurrency=1)

    async def scenario():
        a, b = gateways(redis_server.url, release_delay_s=0.05)
        ticket = await a.admit(who, 1)
        a.release_nowait(ticket, 1)
        with pytest.raises(ApiError):
            await b.admit(who, 1)  # not sent yet
        await asyncio.sleep(0.2)
        await b.admit(who, 1)
        await close(a, b)

    asyncio.run(scenario())
