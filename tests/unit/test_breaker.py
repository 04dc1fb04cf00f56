"""Circuit breaker transitions (pure) and the in-process store under a fake clock."""

from __future__ import annotations

import pytest

from serving.breaker import (
    CLOSED,
    BreakerPolicy,
    BreakerRecord,
    BreakerState,
    InProcessBreakers,
    Verdict,
    acquire,
    permits,
    record_verdict,
)

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10.0, probe_timeout_s=30.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(record: BreakerRecord, times: int, now: float = 0.0) -> BreakerRecord:
    for _ in range(times):
        record = record_verdict(record, Verdict.FAILURE, now, POLICY)
    return record


def test_opens_after_threshold_consecutive_failures_only() -> None:
    record = fail(CLOSED, 2)
    assert record.state is BreakerState.CLOSED and record.consecutive_failures == 2
    record = record_verdict(record, Verdict.SUCCESS, 0.0, POLICY)
    assert record == CLOSED  # a success resets the run
    record = fail(record, 2)
    record = record_verdict(record, Verdict.NEUTRAL, 0.0, POLICY)  # neutral neither counts nor resets
    assert record.consecutive_failures == 2
    record = fail(record, 1, now=5.0)
    assert record.state is BreakerState.OPEN and record.opened_at == 5.0 and record.consecutive_failures == 3


def test_open_refuses_until_cooldown_then_lets_exactly_one_probe() -> None:
    record = fail(CLOSED, 3, now=100.0)
    assert not permits(record, 109.9, POLICY)
    assert acquire(record, 109.9, POLICY) is None
    assert permits(record, 110.0, POLICY)
    probing = acquire(record, 110.0, POLICY)
    assert (
        probing is not None and probing.state is BreakerState.HALF_OPEN and probing.probe_started_at == 110.0
    )
    assert not permits(probing, 111.0, POLICY)  # the probe is in flight
    assert acquire(probing, 111.0, POLICY) is None


def test_probe_success_closes_failure_reopens_neutral_releases() -> None:
    probing = acquire(fail(CLOSED, 3, now=0.0), 10.0, POLICY)
    assert probing is not None
    assert record_verdict(probing, Verdict.SUCCESS, 11.0, POLICY) == CLOSED
    reopened = record_verdict(probing, Verdict.FAILURE, 11.0, POLICY)
    assert reopened.state is BreakerState.OPEN and reopened.opened_at == 11.0
    assert not permits(reopened, 20.9, POLICY) and permits(reopened, 21.0, POLICY)
    released = record_verdict(probing, Verdict.NEUTRAL, 11.0, POLICY)
    assert released.state is BreakerState.HALF_OPEN and permits(released, 11.0, POLICY)


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    probing = acquire(fail(CLOSED, 3, now=0.0), 10.0, POLICY)
    assert probing is not None
    assert not permits(probing, 39.9, POLICY)
    again = acquire(probing, 40.0, POLICY)
    assert again is not None and again.probe_started_at == 40.0


def test_success_while_open_is_a_straggler_and_changes_nothing() -> None:
    record = fail(CLOSED, 3, now=0.0)
    assert record_verdict(record, Verdict.SUCCESS, 1.0, POLICY) is record
    assert record_verdict(record, Verdict.FAILURE, 1.0, POLICY).opened_at == 0.0  # no extension


def test_in_process_store_with_a_fake_clock() -> None:
    clock = FakeClock()
    store = InProcessBreakers(POLICY, clock)
    assert store.permits("a") and store.acquire("a") and store.get("a") == CLOSED
    for _ in range(3):
        store.record("a", Verdict.FAILURE)
    assert store.get("a").state is BreakerState.OPEN
    assert not store.permits("a") and not store.acquire("a")
    assert store.permits("b")  # keys are independent
    clock.now += 10.0
    assert store.permits("a") and store.acquire("a")
    assert store.get("a").state is BreakerState.HALF_OPEN
    assert not store.acquire("a")  # one probe at a time
    store.record("a", Verdict.SUCCESS)
    assert store.get("a") == CLOSED and store.acquire("a")


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        BreakerPolicy(failure_threshold=0, cooldown_s=1.0, probe_timeout_s=1.0)
    with pytest.raises(ValueError, match="cooldown_s"):
        BreakerPolicy(failure_threshold=1, cooldown_s=-1.0, probe_timeout_s=1.0)
