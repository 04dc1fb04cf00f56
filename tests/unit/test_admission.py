import asyncio

import pytest

from serving.admission import AdmissionLimits, InProcessAdmission, token_reservation
from serving.errors import ApiError, error_headers
from serving.settings import AdmissionSettings
from serving.tenants import Quotas, Tenant


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tenant(tenant_id="t1", tier="pro", rpm=60, tpm=60_000, concurrency=100):
    return Tenant(
        tenant_id=tenant_id,
        tier=tier,
        home_region="us",
        residency_required=False,
        surface="api",
        entitled_skus=frozenset({"claude-haiku-4-5"}),
        quotas=Quotas(requests_per_minute=rpm, tokens_per_minute=tpm, max_concurrency=concurrency),
    )


def gate(clock, **limits):
    defaults = {"request_burst_s": 10.0, "token_burst_s": 60.0}
    return InProcessAdmission(AdmissionLimits(**{**defaults, **limits}), clock=clock)


def rejection(admission, who, tokens=1):
    with pytest.raises(ApiError) as raised:
        admission.admit_now(who, tokens)
    return raised.value


def test_request_bucket_bursts_then_refills_at_the_quota_rate():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=60)  # 1 request/s, burst of 10
    for _ in range(10):
        admission.release_now(admission.admit_now(who, 1))
    error = rejection(admission, who)
    assert (error.status, error.error_type) == (429, "rate_limit_error")
    assert error.retry_after_s == pytest.approx(1.0)
    assert "60 requests per minute" in error.message
    clock.advance(0.5)
    assert rejection(admission, who).retry_after_s == pytest.approx(0.5)
    clock.advance(0.5)
    admission.admit_now(who, 1)
    clock.advance(3.0)  # three more, not more
    for _ in range(3):
        admission.admit_now(who, 1)
    rejection(admission, who)
    clock.advance(3600)  # refills only up to the burst
    for _ in range(10):
        admission.admit_now(who, 1)
    rejection(admission, who)


def test_retry_after_is_exactly_when_the_bucket_has_enough():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=100_000, tpm=6_000)  # 100 tokens/s, bucket of 6000
    admission.admit_now(who, 5_000)
    error = rejection(admission, who, 2_500)  # has 1000, needs 2500: 15 s
    assert error.retry_after_s == pytest.approx(15.0)
    assert "6000 tokens per minute" in error.message
    assert error_headers(error)["retry-after"] == "15"
    clock.advance(error.retry_after_s - 0.01)
    rejection(admission, who, 2_500)
    clock.advance(0.01)
    admission.admit_now(who, 2_500)


def test_retry_after_covers_both_buckets_when_both_are_short():
    clock = FakeClock()
    admission = gate(clock, request_burst_s=1.0)
    who = tenant(rpm=60, tpm=600)  # 1 request/s (bucket 1), 10 tokens/s (bucket 600)
    admission.admit_now(who, 590)
    error = rejection(admission, who, 100)  # request: 1 s; tokens: 90 short -> 9 s
    assert error.retry_after_s == pytest.approx(9.0)
    clock.advance(8.9)
    rejection(admission, who, 100)
    clock.advance(0.1)
    admission.admit_now(who, 100)


def test_a_rejection_reserves_nothing():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=60, tpm=6_000)
    admission.admit_now(who, 6_000)
    for _ in range(50):
        rejection(admission, who, 600)
    clock.advance(6.0)  # exactly 600 tokens back: the rejections took none
    admission.admit_now(who, 600)
    assert admission.in_flight == 2


def test_reconciliation_refunds_unused_tokens_and_charges_overruns():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=6_000, tpm=60_000)  # bucket 60K tokens, 1K tokens/s
    ticket = admission.admit_now(who, token_reservation(prompt_tokens=10_000, max_tokens=40_000))
    rejection(admission, who, 20_000)  # 10K left
    assert admission.release_now(ticket, actual_tokens=12_000)  # 38K back
    admission.admit_now(who, 48_000)
    other = tenant("t2", rpm=6_000, tpm=60_000)
    ticket = admission.admit_now(other, 1_000)
    admission.release_now(ticket, actual_tokens=31_000)  # 30K more than reserved: 29K left
    assert rejection(admission, other, 30_000).retry_after_s == pytest.approx(1.0)
    third = tenant("t3", rpm=6_000, tpm=60_000)
    ticket = admission.admit_now(third, 50_000)
    admission.release_now(ticket, actual_tokens=None)  # unknown usage: the reservation stands
    assert rejection(admission, third, 20_000).retry_after_s == pytest.approx(10.0)


def test_refunds_never_fill_the_bucket_past_its_capacity():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=6_000, tpm=60_000)
    ticket = admission.admit_now(who, 50_000)
    clock.advance(3600)
    admission.release_now(ticket, actual_tokens=0)
    admission.admit_now(who, 60_000)
    rejection(admission, who, 1)


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_then_goes_into_debt():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=6_000, tpm=6_000)  # bucket 6000, 100 tokens/s
    admission.admit_now(who, 1_000)
    error = rejection(admission, who, 20_000)  # needs a full bucket: 1000 short
    assert error.retry_after_s == pytest.approx(10.0)
    clock.advance(10.0)
    admission.admit_now(who, 20_000)  # bucket now at -14000
    assert rejection(admission, who, 100).retry_after_s == pytest.approx(141.0)


def test_tenant_concurrency_and_release_exactly_once():
    clock = FakeClock()
    admission = gate(clock, concurrency_retry_after_s=0.25)
    who = tenant(rpm=60_000, concurrency=2)
    first, second = admission.admit_now(who, 1), admission.admit_now(who, 1)
    error = rejection(admission, who)
    assert (error.status, error.retry_after_s) == (429, 0.25)
    assert "2 concurrent requests" in error.message
    assert admission.release_now(first) is True
    assert admission.release_now(first) is False  # a second release frees nothing
    assert admission.tenant_in_flight("t1") == 1 and admission.in_flight == 1
    third = admission.admit_now(who, 1)
    rejection(admission, who)  # still two in flight: second and third
    for ticket in (second, third):
        admission.release_now(ticket)
    assert admission.in_flight == 0 and admission.tenant_in_flight("t1") == 0


def test_async_context_manager_releases_once_and_reconciles():
    clock = FakeClock()
    admission = gate(clock)
    who = tenant(rpm=6_000, tpm=60_000)

    async def scenario():
        ticket = await admission.admit(who, 50_000)
        async with ticket:
            assert admission.in_flight == 1
            ticket.actual_tokens = 5_000
        assert admission.in_flight == 0
        assert await ticket.release() is False
        with pytest.raises(RuntimeError):
            async with await admission.admit(who, 10):
                raise RuntimeError("worker crashed")
        assert admission.in_flight == 0

    asyncio.run(scenario())
    admission.admit_now(who, 55_000 - 10)  # 45K refunded; the crashed one kept its 10


def test_a_ticket_from_another_backend_is_refused():
    clock = FakeClock()
    one, two = gate(clock), gate(clock)
    ticket = one.admit_now(tenant(), 1)
    with pytest.raises(ValueError):
        two.release_now(ticket)


def test_shedding_order_by_tier_under_saturation():
    clock = FakeClock()
    admission = gate(
        clock,
        max_in_flight=100,
        shed_fraction={"free": 0.5, "pro": 0.8, "enterprise": 1.0, "internal": 1.0},
        overload_retry_after_s=3.0,
    )
    tenants = {
        tier: tenant(tier, tier, rpm=10**6, tpm=10**9, concurrency=1000)
        for tier in ("free", "pro", "enterprise", "internal")
    }
    tickets = [admission.admit_now(tenants["enterprise"], 1) for _ in range(50)]

    def admitted(tier):
        try:
            tickets.append(admission.admit_now(tenants[tier], 1))
        except ApiError as error:
            assert (error.status, error.error_type, error.retry_after_s) == (529, "overloaded_error", 3.0)
            return False
        return True

    assert not admitted("free") and admitted("pro")  # 51 in flight
    tickets += [admission.admit_now(tenants["pro"], 1) for _ in range(29)]  # 80
    assert not admitted("free") and not admitted("pro")
    assert admitted("enterprise") and admitted("internal")
    tickets += [admission.admit_now(tenants["internal"], 1) for _ in range(18)]  # 100
    assert [admitted(tier) for tier in ("free", "pro", "enterprise", "internal")] == [False] * 4
    for ticket in tickets[:51]:  # back to 49
        admission.release_now(ticket)
    assert admitted("free")


def test_limits_are_validated():
    with pytest.raises(ValueError, match="must not decrease"):
        AdmissionLimits(shed_fraction={"free": 0.9, "pro": 0.5, "enterprise": 1.0, "internal": 1.0})
    with pytest.raises(ValueError, match="no value for tier 'internal'"):
        AdmissionLimits(shed_fraction={"free": 0.5, "pro": 0.8, "enterprise": 1.0})
    with pytest.raises(ValueError):
        AdmissionLimits(max_in_flight=0)


def test_quota_changes_apply_to_existing_tenants():
    clock = FakeClock()
    admission = gate(clock, request_burst_s=1.0)
    slow = tenant(rpm=60)
    admission.admit_now(slow, 1)
    rejection(admission, slow)
    fast = tenant(rpm=600)  # same tenant id, new quotas (a reloaded file)
    clock.advance(0.1)  # 0.1 s at 10/s is one request
    admission.admit_now(fast, 1)


def test_admission_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SWITCHYARD_ADMISSION_MAX_IN_FLIGHT", "10")
    monkeypatch.setenv(
        "SWITCHYARD_ADMISSION_SHED_FRACTION", '{"free":0.5,"pro":0.6,"enterprise":1,"internal":1}'
    )
    limits = AdmissionSettings().limits()
    assert (limits.shed_at("free"), limits.shed_at("pro"), limits.shed_at("internal")) == (5, 6, 10)
    monkeypatch.setenv(
        "SWITCHYARD_ADMISSION_SHED_FRACTION", '{"free":0.9,"pro":0.6,"enterprise":1,"internal":1}'
    )
    with pytest.raises(ValueError, match="must not decrease"):
        AdmissionSettings()
