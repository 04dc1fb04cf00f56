"""How late the gateway's event loop runs: the stalls no worker can be blamed for.

Every request is served by one event loop. When that loop does not run (the process is starved
of CPU, throttled by a container's CPU quota, or something blocks the loop), every timer in it
fires late, and a worker's connect or first byte can look like a timeout that is really the
gateway's own (how CI once failed: ADR 0010).

:class:`LoopLagMonitor` sleeps ``interval_s`` over and over and records how much later than
asked it woke: ``switchyard_event_loop_lag_seconds`` (a histogram), and a warning in the log
for a lag of ``warn_after_s`` or more (at most one per ``warn_every_s``), which names the stall
next to the worker timeouts it caused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class LoopLagMonitor:
    def __init__(
        self,
        observe: Callable[[float], None],
        *,
        interval_s: float = 0.1,
        warn_after_s: float = 0.5,
        warn_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or warn_after_s <= 0:
            raise ValueError("need interval_s > 0 and warn_after_s > 0")
        self.observe = observe
        self.interval_s = interval_s
        self.warn_after_s = warn_after_s
        self.warn_every_s = warn_every_s
        self._clock = clock
        self._warned_at: float | None = None
        self.worst_s = 0.0  # the longest lag seen since start

    def record(self, lag_s: float, now: float) -> None:
        """One sample: ``lag_s`` late at ``now`` (clock seconds)."""
        lag_s = max(0.0, lag_s)
        self.observe(lag_s)
        self.worst_s = max(self.worst_s, lag_s)
        if lag_s >= self.warn_after_s and (
            self._warned_at is None or now - self._warned_at >= self.warn_every_s
        ):
            self._warned_at = now
            log.warning(
                "the event loop stalled for %.2f s: worker timeouts around now may be the "
                "gateway's own (CPU starvation or a blocking call), not the workers'",
                lag_s,
            )

    async def run(self) -> None:
        while True:
            asked = self._clock()
            await asyncio.sleep(self.interval_s)
            woke = self._clock()
            self.record(woke - asked - self.interval_s, woke)
