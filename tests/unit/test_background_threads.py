"""The gateway's background threads run below the event loop's priority (Linux: per-thread nice)."""

import os
import threading

from serving.background_threads import background_executor, idle_thread_executor, lower_thread_priority


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_executor_threads_are_niced_and_the_calling_thread_is_not():
    before = _nice_of_this_thread()
    with background_executor(5, max_workers=1) as executor:
        inside = executor.submit(_nice_of_this_thread).result(timeout=10)
    assert inside == min(19, before + 5)
    assert _nice_of_this_thread() == before


def test_the_nice_value_is_capped_at_19_and_zero_changes_nothing():
    with background_executor(50, max_workers=1) as executor:
        assert executor.submit(_nice_of_this_thread).result(timeout=10) == 19
    before = _nice_of_this_thread()
    with background_executor(0, max_workers=1) as executor:
        assert executor.submit(_nice_of_this_thread).result(timeout=10) == before
    assert lower_thread_priority(0) is None


def test_the_idle_executor_thread_is_sched_idle_and_the_calling_thread_is_not():
    before = os.sched_getscheduler(0)
    with idle_thread_executor("test-idle") as executor:
        assert executor.submit(os.sched_getscheduler, 0).result(timeout=10) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == before == os.SCHED_OTHER
