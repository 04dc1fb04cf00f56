"""The event-loop lag monitor: what it records, when it warns, and that it sees a real stall."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from serving.loop_lag import LoopLagMonitor


def test_lags_are_recorded_clamped_and_the_warning_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[float] = []
    monitor = LoopLagMonitor(seen.append, interval_s=0.1, warn_after_s=0.5, warn_every_s=10.0)
    with caplog.at_level(logging.WARNING, logger="serving.loop_lag"):
        monitor.record(-0.001, now=1.0)  # woke a hair early: no negative lag
        monitor.record(0.002, now=2.0)
        monitor.record(0.7, now=3.0)  # warns
        monitor.record(1.5, now=8.0)  # within 10 s of the last warning: recorded, not warned
        monitor.record(0.6, now=13.5)  # warns again
    assert seen == [0.0, 0.002, 0.7, 1.5, 0.6]
    assert monitor.worst_s == 1.5
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "stalled for 0.70 s" in warnings[0] and "0.60 s" in warnings[1]


def test_a_blocked_loop_shows_up_as_lag_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[float] = []

    async def main() -> None:
        monitor = LoopLagMonitor(seen.append, interval_s=0.01, warn_after_s=0.2)
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)  # a blocking call on the loop
        await asyncio.sleep(0.4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="serving.loop_lag"):
        asyncio.run(main())
    assert len(seen) >= 5
    assert 0.25 <= max(seen) < 1.0  # the 0.3 s block, less what was left of the 10 ms sleep
    assert sorted(seen)[len(seen) // 2] < 0.1  # the other wake-ups were on time
    assert any("stalled for" in r.getMessage() for r in caplog.records)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        LoopLagMonitor(lambda _: None, interval_s=0)
    with pytest.raises(ValueError):
        LoopLagMonitor(lambda _: None, warn_after_s=0)
