"""Requests that leave the thread's slot without being raised (issue 18, item 6).

On 3.10/3.11 the exception object is created lazily, when a handler first sees
it: C code that clears an error raised in a Python callback (sqlite3's progress
handler does) drops our request before it is ever created, and seen from
outside the slot is simply empty. Such a request must not stay pending: a
deadline fires again (level-triggered) and ``kill()`` interrupts again.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time

import hardstop
from conftest import DISCARDED_REASON, WAIT, spin
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
