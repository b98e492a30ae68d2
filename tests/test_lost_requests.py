"""Requests that leave the thread's slot without being raised (issue 18, items 6 and 12).

On 3.10/3.11 the exception object is created lazily, when a handler first sees
it: C code that clears an error raised in a Python callback (sqlite3's progress
handler does) drops our request before it is ever created, and seen from
outside the slot is simply empty. Such a request must not stay pending: a
deadline fires again (level-triggered) and ``kill()`` interrupts again.
"""

from __future__ import annotations

import ctypes
import sqlite3
import sys
import threading
import time
from collections.abc import Callable

import hardstop
from conftest import DISCARDED_REASON, WAIT, Gate, Target, assert_nothing_pending, spin
from hardstop import _hardstop

LONG_QUERY = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) SELECT count(*) FROM n"


class SwallowingQuery:
    """A long sqlite3 query whose progress handler, the first time it runs, waits
    in C (a lock hardstop cannot end) until ``resume`` is released: what was armed
    meanwhile is raised inside the handler, and sqlite3 clears it."""

    def __init__(self) -> None:
        self.in_handler = threading.Event()
        self.resume = threading.Lock()
        self.resume.acquire()
        self.outcome: list[str] = []

    def _handler(self) -> int:
        if not self.in_handler.is_set():
            self.in_handler.set()
            self.resume.acquire(True, WAIT)
        return 0

    def run(self) -> None:
        connection = sqlite3.connect(":memory:")
        connection.set_progress_handler(self._handler, 1000)
        try:
            connection.execute(LONG_QUERY).fetchall()
            self.outcome.append("query finished")
        except sqlite3.OperationalError as error:  # "interrupted": the handler's error, cleared by sqlite3
            self.outcome.append(f"query {error}")
        finally:
            connection.close()


def test_a_deadline_whose_expiry_c_code_discarded_fires_again() -> None:
    # Before, on 3.10/3.11: the expiry stayed pending and never fired again, so
    # the block ran on with no limit (here, until spin() gave up after WAIT).
    query = SwallowingQuery()
    stop = threading.Event()
    entered: list[hardstop.Deadline] = []

    def body() -> None:
        try:
            with hardstop.deadline(3 * WAIT) as scope:
                entered.append(scope)
                query.run()
                spin(stop, 3 * WAIT)
            query.outcome.append("block ended")
        except hardstop.DeadlineExceeded:
            query.outcome.append("DeadlineExceeded")

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        assert query.in_handler.wait(WAIT)
        assert entered[0].expire()  # armed while the handler waits in C
        query.resume.release()
        thread.join(WAIT)
        assert not thread.is_alive(), "the deadline did not fire again"
    finally:
        stop.set()
        thread.join(WAIT)
    assert query.outcome == ["query interrupted", "DeadlineExceeded"]
    assert _hardstop.pending_count(thread.ident) == 0


def test_kill_interrupts_again_after_c_code_discarded_its_interrupt() -> None:
    # Before, on 3.10/3.11: kill() made one attempt, waited out its timeout and
    # said the interrupt was armed and the thread had run no Python code since.
    query = SwallowingQuery()
    stop = threading.Event()

    def body() -> None:
        try:
            query.run()
            spin(stop, 3 * WAIT)
        except hardstop.Interrupted:
            query.outcome.append("Interrupted")

    thread = threading.Thread(target=body, daemon=True)
    thread.start()

    def release_once_kill_has_armed() -> None:
        end = time.monotonic() + WAIT
        while _hardstop.pending_count(thread.ident) == 0 and time.monotonic() < end:
            time.sleep(0.001)
        query.resume.release()

    helper = threading.Thread(target=release_once_kill_has_armed, daemon=True)
    try:
        assert query.in_handler.wait(WAIT)
        helper.start()
        result = hardstop.kill(thread, WAIT)
    finally:
        stop.set()
        thread.join(WAIT)
        helper.join(WAIT)
    assert result.stopped, result.reason
    assert result.attempts == 2
    first, second = result.receipts
    assert query.outcome == ["query interrupted", "Interrupted"]
    if sys.version_info < (3, 12):
        assert (first.status, first.reason) == ("undelivered", DISCARDED_REASON)
    else:
        assert first.status == "delivered"  # created as it was raised, then cleared by sqlite3
    assert second.status == "delivered"


# Another library's own PyThreadState_SetAsyncExc call (issue 18, item 12). CPython's
# slot holds one exception per thread, and the last writer wins: before, the
# replaced request stayed pending forever, and every later request to that thread
# (interrupts, kill(), deadlines) queued behind it for good (3.12+; 3.10/3.11 gave
# it up after a second, calling it discarded by C code).
REPLACED_REASON = (
    "replaced or cleared in the thread's slot by another caller of PyThreadState_SetAsyncExc "
    "before the thread raised it"
)


class Foreign(Exception):
    """What the other library raises."""


def raw_set_async_exc(ident: int, exc: type[BaseException]) -> int:
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
    set_async_exc.restype = ctypes.c_int
    return int(set_async_exc(ident, exc))


def blocked_then_spinning(gate: Gate, stop: threading.Event, caught: list[str]) -> Callable[[], None]:
    def body() -> None:
        try:
            gate.wait()  # a wait hardstop cannot end: requests stay armed
        except Foreign:
            caught.append("Foreign")
        spin(stop)

    return body


def test_a_request_replaced_by_another_caller_ends_undelivered_and_the_thread_is_interrupted_again() -> None:
    gate = Gate()
    stop = threading.Event()
    caught: list[str] = []
    target = Target(blocked_then_spinning(gate, stop, caught))
    with target:
        gate.until_blocked(target.thread)
        first = hardstop.interrupt(target.thread)
        assert _hardstop.is_armed(first)
        assert raw_set_async_exc(target.thread.ident, Foreign) == 1
        second = hardstop.interrupt(target.thread)
        assert (first.status, first.reason) == ("undelivered", REPLACED_REASON)
        assert second.status == "pending"  # after the other library's exception, not over it
        gate.open()
        assert second.wait(WAIT), second.wake
        target.thread.join(WAIT)
    assert caught == ["Foreign"]
    assert target.caught == [second.exception]
    assert_nothing_pending(target.thread.ident)


def test_waiting_for_a_request_that_another_caller_replaced_ends_undelivered() -> None:
    gate = Gate()
    stop = threading.Event()
    caught: list[str] = []
    target = Target(blocked_then_spinning(gate, stop, caught))
    with target:
        gate.until_blocked(target.thread)
        receipt = hardstop.interrupt(target.thread)
        assert raw_set_async_exc(target.thread.ident, Foreign) == 1
        assert receipt.wait(WAIT) is False
        assert (receipt.status, receipt.reason) == ("undelivered", REPLACED_REASON)
        gate.open()
        stop.set()
    assert caught == ["Foreign"]
    assert target.caught == []
    assert_nothing_pending(target.thread.ident)
