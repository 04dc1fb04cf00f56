"""Circuit breakers for worker endpoints: stop sending traffic to an endpoint that keeps failing.

Per endpoint, three states::

    closed ──(failure_threshold consecutive failures)──► open
    open ──(cooldown_s elapsed; the next request is let through as the one probe)──► half_open
    half_open ──probe succeeds──► closed      half_open ──probe fails──► open (cooldown again)

Why *consecutive failures* and not a failure rate over a window: the state is two numbers
(a count and a timestamp), which a shared store updates atomically (Redis ``INCR`` / a small
Lua script); a dead or hung endpoint trips it after ``failure_threshold`` attempts whatever
the traffic; and partial degradation (say 20 % errors) is the router's business — it reads
per-SKU error rates as features — not a reason to take an endpoint out of rotation.

Only worker-side failures count (the caller decides: connect errors, per-attempt timeouts,
5xx, 529); a 4xx caused by the request is not a failure. A verdict is one of :class:`Verdict`:
``SUCCESS`` closes a half-open circuit and resets the count, ``FAILURE`` counts, ``NEUTRAL``
(the caller's deadline passed, the client went away, a 429) only hands back a half-open probe.

The transitions are pure functions over a :class:`BreakerRecord` and a ``now``; a
:class:`BreakerStore` keeps one record per endpoint key. :class:`InProcessBreakers` is a dict.
A Redis store would keep the same record in a hash per key, run :func:`acquire` and
:func:`record_verdict` as Lua scripts (atomic across API replicas), use wall-clock time (Redis
``TIME``) instead of the monotonic clock, and answer :meth:`BreakerStore.permits` from a local
mirror refreshed by pub/sub so that routing never waits on the network.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When to open, how long to stay open, how long a half-open probe may stay unanswered."""

    failure_threshold: int
    cooldown_s: float
    probe_timeout_s: float  # a probe with no verdict after this long is presumed lost; another may go

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if not (self.cooldown_s >= 0 and self.probe_timeout_s > 0):
            raise ValueError("cooldown_s must be >= 0 and probe_timeout_s > 0")


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """One endpoint's breaker state: plain, serialisable data."""

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None  # when the circuit last opened
    probe_started_at: float | None = None  # half-open: when the probe in flight was let through


CLOSED = BreakerRecord()


def permits(record: BreakerRecord, now: float, policy: BreakerPolicy) -> bool:
    """Whether a request may be sent to the endpoint now (without claiming a probe)."""
    if record.state is BreakerState.CLOSED:
        return True
    if record.state is BreakerState.OPEN:
        return record.opened_at is None or now - record.opened_at >= policy.cooldown_s
    return record.probe_started_at is None or now - record.probe_started_at >= policy.probe_timeout_s


def acquire(record: BreakerRecord, now: float, policy: BreakerPolicy) -> BreakerRecord | None:
    """The record after letting one request through, or None if the breaker refuses it.

    Closed: unchanged. Open past its cooldown, or half-open with no live probe: this request
    becomes the probe (the state turns half-open and remembers when).
    """
    if record.state is BreakerState.CLOSED:
        return record
    if not permits(record, now, policy):
        return None
    return replace(record, state=BreakerState.HALF_OPEN, probe_started_at=now)


def record_verdict(
    record: BreakerRecord, verdict: Verdict, now: float, policy: BreakerPolicy
) -> BreakerRecord:
    """The record after one attempt's outcome."""
    if verdict is Verdict.SUCCESS:
        if record.state is BreakerState.OPEN:
            return record  # a straggler that started before the circuit opened proves little
        return CLOSED
    if verdict is Verdict.NEUTRAL:
        if record.state is BreakerState.HALF_OPEN:
            return replace(record, probe_started_at=None)  # let the next request probe
        return record
    failures = record.consecutive_failures + 1
    if record.state is BreakerState.OPEN:
        return replace(record, consecutive_failures=failures)
    if record.state is BreakerState.HALF_OPEN or failures >= policy.failure_threshold:
        return BreakerRecord(BreakerState.OPEN, failures, opened_at=now)
    return replace(record, consecutive_failures=failures)


class BreakerStore(Protocol):
    """The breakers of every endpoint, by key. Synchronous: routing calls it on the hot path."""

    def permits(self, key: str) -> bool:
        """Whether a request may be sent to ``key`` now (routing filters with this)."""
        ...

    def acquire(self, key: str) -> bool:
        """Let one request through to ``key``, claiming the probe when half-open; False if refused."""
        ...

    def record(self, key: str, verdict: Verdict) -> None:
        """Report the outcome of a request that :meth:`acquire` let through."""
        ...

    def get(self, key: str) -> BreakerRecord:
        """The current record of ``key`` (for snapshots)."""
        ...


class InProcessBreakers:
    """A :class:`BreakerStore` in one process's memory; ``clock`` is injectable for tests."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._records: dict[str, BreakerRecord] = {}

    def permits(self, key: str) -> bool:
        record = self._records.get(key)
        return record is None or permits(record, self._clock(), self.policy)

    def acquire(self, key: str) -> bool:
        record = self._records.get(key, CLOSED)
        if record.state is BreakerState.CLOSED:
            return True
        updated = acquire(record, self._clock(), self.policy)
        if updated is None:
            return False
        self._records[key] = updated
        return True

    def record(self, key: str, verdict: Verdict) -> None:
        record = self._records.get(key, CLOSED)
        updated = record_verdict(record, verdict, self._clock(), self.policy)
        if updated is CLOSED:
            self._records.pop(key, None)
        elif updated is not record:
            self._records[key] = updated

    def get(self, key: str) -> BreakerRecord:
        return self._records.get(key, CLOSED)
