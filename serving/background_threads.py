"""The gateway's background threads run at a lower OS priority than its event loop.

Everything the gateway hands to a thread (``asyncio.to_thread``: the event log's Arrow
conversion and Parquet writes, the verdict-file and champion polls, Feast reads and pushes)
runs in the loop's default executor, which :func:`background_executor` builds. The event loop
itself is the only thread that serves requests, and on a busy core it shares the CPU with
those threads: at equal priority the kernel time-slices them (slices of a few ms), so a request
whose worker reply arrived while the event log was converting a batch waited for the slice to
end. Measured on a 2-core VM at concurrency 1, that was the gateway's whole p99 tail (11-50 ms
against a p50 of 1.5-3 ms). A thread with a higher nice value loses the core to the waking
event loop at once and still gets the idle time and a share under contention (nice 10: ~10%
of a saturated core, several times what the event log needs at the gateway's saturation).

On Linux ``setpriority(PRIO_PROCESS, tid)`` changes one thread; elsewhere this is a no-op.

Nice is a weight, not a preemption rule: under the kernel's EEVDF scheduler a nice-10 thread
that is running keeps the core until its slice ends, so the GIL-free part of the event log's
work (Parquet encoding and compression, fsync) still delayed the loop's wake-ups on a shared
core. A ``SCHED_IDLE`` thread is preempted by any normal thread at once (and gets the core
when it is idle, but only a ~0.3% share of a saturated one): :func:`idle_thread_executor` is
for work that can wait while the loop is busy, such as the event log's writer while it keeps
up (``serving.eventlog``).

Both are off by default (ADR 0011, measured): when other processes keep every core busy, a
lowered thread that holds the GIL is preempted and the event loop waits for the GIL until that
thread runs again. They suit a gateway that has its cores to itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


def lower_thread_priority(increment: int) -> int | None:
    """Raise the calling thread's nice value by ``increment`` (capped at 19); the new value, or
    None where threads cannot be reprioritized."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return None
    thread = threading.get_native_id()
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment)
        os.setpriority(os.PRIO_PROCESS, thread, nice)
    except OSError as error:  # raising a nice value is always allowed; a sandbox may still refuse
        log.warning("could not lower the priority of background thread %d: %s", thread, error)
        return None
    return nice


def background_executor(nice_increment: int, max_workers: int | None = None) -> ThreadPoolExecutor:
    """A thread pool whose threads run ``nice_increment`` below the process's priority."""
    return ThreadPoolExecutor(
        max_workers=max_workers,
        thread_name_prefix="switchyard-background",
        initializer=lower_thread_priority,
        initargs=(nice_increment,),
    )


def use_idle_policy() -> bool:
    """Put the calling thread in ``SCHED_IDLE``; False where that is unsupported or refused.

    One way only: an unprivileged thread cannot leave ``SCHED_IDLE`` again (RLIMIT_NICE), so
    callers keep a normal thread for when the work cannot wait.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as error:
        log.warning("could not put background thread %d in SCHED_IDLE: %s", threading.get_native_id(), error)
        return False
    return True


def idle_thread_executor(name: str) -> ThreadPoolExecutor:
    """One thread in ``SCHED_IDLE`` (a plain thread where that is refused)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=use_idle_policy)
