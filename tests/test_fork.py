"""os.fork(): the child starts clean, and the parent goes on as if nothing happened.

``tests/test_deadline.py::test_after_fork_the_child_has_a_working_watchdog_and_nothing_inherited``
covers the forking thread's own request held by a shield (undelivered in the
child, raised in the parent as the shield ends) and a new deadline in the child.
This file adds what it does not: requests armed, queued and held on *other*
threads, deadlines of other threads, new threads in the child that reuse the
parent threads' idents (glibc hands a child the stacks, so the pthread_t, of
the threads that did not survive the fork), the child's pump, a fork from a
worker thread whose own deadline carries on in the child, and an expiry that
had fired and was held by a shield when the process forked.

Each child reports through a pipe and leaves with ``os._exit``: it must never
return into pytest. An alarm ends a child that hangs.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

import pytest

import hardstop
from conftest import WAIT, Gate, Target, assert_nothing_pending, spin
from hardstop import _hardstop

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason=f"{sys.platform} has no os.fork()"),
    # 3.12+ warn that forking a multi-threaded process may deadlock the child. These
    # tests fork with threads running on purpose; the child only uses what hardstop's
    # and threading's at-fork handlers reset, and an alarm ends it if it hangs.
    pytest.mark.filterwarnings(
        r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks:DeprecationWarning"
    ),
]

CHILD_ALARM = int(WAIT * 3)  # seconds before a hung child is killed by SIGALRM


class Tagged(Exception):
    pass


def start_child(body: Callable[[], list[str]]) -> Callable[[], list[str]]:
    """Fork; run ``body`` in the child. Returns, in the parent, a function that
    waits for the child and returns the lines it reported.

    The child's exit status must be 0: a failure there sends its traceback instead.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            signal.alarm(CHILD_ALARM)
            os.write(writer, "\n".join(body()).encode())
            status = 0
        except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(writer, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(writer)

    def report() -> list[str]:
        with os.fdopen(reader, "rb") as pipe:
            text = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, text
        return text.splitlines()

    return report


def in_child(body: Callable[[], list[str]]) -> list[str]:
    return start_child(body)()


def wait_until(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + WAIT
    while not condition() and time.monotonic() < end:
        time.sleep(0.005)
    assert condition()


def blocked_then_spinning(gate: Gate, stop: threading.Event) -> Callable[[], None]:
    """A body that blocks in Lock.acquire (no wait hardstop can end), then runs Python code."""

    def body() -> None:
        gate.wait()
        spin(stop)

    return body


def shielded_wait(gate: Gate) -> Callable[[], None]:
    def body() -> None:
        with hardstop.shield():
            gate.wait()

    return body


def run_untouched_in_new_threads(count: int, seconds: float, old_idents: set[int]) -> list[str]:
    """In the child: start ``count`` threads that run Python code for ``seconds``.
    Nothing may land in them, whatever ident they got. Reports how many got an
    ident of the parent's threads (glibc usually reuses them), for the record."""
    targets = [Target(name=f"child-{i}") for i in range(count)]
    for target in targets:
        target.thread.start()
    for target in targets:
        assert target.ready.wait(WAIT)
    idents = {target.thread.ident for target in targets}
    spin(threading.Event(), seconds)
    for target in targets:
        target.stop.set()
        target.thread.join(WAIT)
        assert not target.thread.is_alive()
    caught = [error for target in targets for error in target.caught]
    return [f"caught in new threads: {caught}", f"reused idents: {len(idents & old_idents)}"]


def test_requests_armed_queued_and_held_on_other_threads_stay_in_the_parent() -> None:
    gate = Gate()
    blocked = Target(blocked_then_spinning(gate, threading.Event()), wanted=2, name="blocked")
    shielded = Target(shielded_wait(gate), name="shielded")
    exceptions = [Tagged("armed"), Tagged("queued"), Tagged("held")]
    with blocked, shielded:
        gate.until_blocked(shielded.thread)
        gate.until_blocked(blocked.thread)
        armed = hardstop.interrupt(blocked.thread, exceptions[0])
        queued = hardstop.interrupt(blocked.thread, exceptions[1])  # the pump polls for it meanwhile
        held = hardstop.interrupt(shielded.thread, exceptions[2])
        receipts = [armed, queued, held]
        assert [r.status for r in receipts] == ["pending", "pending", "deferred"]
        assert _hardstop.is_armed(armed)
        old_idents = {blocked.thread.ident, shielded.thread.ident}

        def child() -> list[str]:
            lines = [f"statuses: {[r.status for r in receipts]}"]
            lines.append(f"left: {[_hardstop.pending_count(ident) for ident in sorted(old_idents)]}")
            lines += run_untouched_in_new_threads(4, 0.3, old_idents)
            # The child's own pump: a second request waits for the first one's handler.
            with Target(wanted=2, name="child-queue") as target:
                mine = [hardstop.interrupt(target.thread, Tagged(i)) for i in range(2)]
                lines.append(f"child's requests: {[r.wait(WAIT) for r in mine]}")
                target.thread.join(WAIT)
            lines.append(f"child's caught: {[e is r.exception for e, r in zip(target.caught, mine, strict=True)]}")
            return lines

        lines = in_child(child)
        assert lines[:3] == [
            "statuses: ['undelivered', 'undelivered', 'undelivered']",
            "left: [0, 0]",
            "caught in new threads: []",
        ]
        print(lines[3])  # reused idents: how many of the child's threads had a parent thread's ident
        assert lines[4:] == ["child's requests: [True, True]", "child's caught: [True, True]"]

        # The parent: still pending, and raised in order once the threads can.
        assert [r.status for r in receipts] == ["pending", "pending", "deferred"]
        gate.open()
        assert all(r.wait(WAIT) for r in receipts)
        blocked.thread.join(WAIT)
        shielded.thread.join(WAIT)
    assert blocked.caught == exceptions[:2]
    assert shielded.caught == exceptions[2:]
    for ident in old_idents:
        assert_nothing_pending(ident)


def test_deadlines_of_other_threads_never_fire_in_the_child_and_fire_in_the_parent() -> None:
    """Their threads are gone in the child, and new threads there often get their
    idents: the child's watchdog must not know of those deadlines at all."""
    entered = threading.Barrier(4)
    outcomes: list[object] = []

    def guarded() -> None:
        try:
            with hardstop.deadline(0.3) as scope:
                entered.wait(WAIT)
                hardstop.sleep(WAIT)
            outcomes.append("not raised")
        except hardstop.DeadlineExceeded as error:
            outcomes.append(error.scope is scope)

    threads = [threading.Thread(target=guarded, name=f"guarded-{i}") for i in range(3)]
    for thread in threads:
        thread.start()
    entered.wait(WAIT)
    old_idents = {thread.ident for thread in threads}

    def child() -> list[str]:
        # Past the 0.3 s deadlines, with new threads and this one running Python code.
        return run_untouched_in_new_threads(4, 0.8, old_idents)

    lines = in_child(child)
    assert lines[0] == "caught in new threads: []"
    print(lines[1])
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert outcomes == [True, True, True]


def test_a_worker_that_forks_keeps_its_own_deadline_in_the_child_and_gets_a_new_watchdog() -> None:
    """The forking thread's deadline carries on in the child and fires there (a
    new watchdog); a deadline entered in the child fires too; and the parent's
    copy of the same deadline still fires in the parent."""
    results: list[object] = []
    other_entered = threading.Event()
    other_outcome: list[object] = []

    def other() -> None:  # a deadline of another thread, due while the child runs
        try:
            with hardstop.deadline(0.2) as scope:
                other_entered.set()
                hardstop.sleep(WAIT)
        except hardstop.DeadlineExceeded as error:
            other_outcome.append(error.scope is scope)

    def child_body(outer: hardstop.Deadline) -> list[str]:
        lines = []
        try:
            with hardstop.deadline(0.05) as inner:
                hardstop.sleep(WAIT)
        except hardstop.DeadlineExceeded as error:
            lines.append(f"inner: {error.scope is inner}")
        try:
            spin(threading.Event())  # until the outer deadline, entered before the fork, fires here
            lines.append("outer: did not fire")
        except BaseException as error:  # noqa: BLE001 - the private expiry of the outer block
            outer.cancel()  # it is level-triggered: it would fire again while this child reports
            lines.append(f"outer: {getattr(error, 'scope', None) is outer}")
        return lines  # the outer block is never left here: in_child() ends the child

    def worker() -> None:
        try:
            with hardstop.deadline(0.5) as outer:
                report = start_child(lambda: child_body(outer))
                hardstop.sleep(WAIT)
        except hardstop.DeadlineExceeded as error:
            results.append(error.scope is outer)
        results.append(report())  # read once the block is left: it ends while the child runs

    thread = threading.Thread(target=other)
    thread.start()
    assert other_entered.wait(WAIT)
    forker = threading.Thread(target=worker, name="forker")
    forker.start()
    forker.join(WAIT * 2)
    thread.join(WAIT)
    assert not forker.is_alive() and not thread.is_alive()
    assert results[0] is True  # the parent's copy fired in the parent
    assert results[1] == ["inner: True", "outer: True"]
    assert other_outcome == [True]


def test_an_expiry_held_by_a_shield_at_the_fork_fires_again_in_the_child_and_lands_in_both() -> None:
    """The forking thread's deadline had fired, and a shield entered inside its
    block held the expiry back. In the child that request is the parent's
    (undelivered there), so the deadline fires anew; both processes leave the
    shield into DeadlineExceeded of that scope."""
    parent = os.getpid()
    reader, writer = os.pipe()
    pid = -1
    outcome = "nothing raised"
    try:
        try:
            with hardstop.deadline(0.05) as scope:
                with hardstop.shield():
                    wait_until(lambda: scope.expired)  # fired by the watchdog, held by the shield
                    pid = os.fork()
                    if pid == 0:
                        signal.alarm(CHILD_ALARM)
                spin(threading.Event())  # it lands as the shield ends, at the latest here
        except hardstop.DeadlineExceeded as error:
            outcome = f"DeadlineExceeded of its scope: {error.scope is scope}"
        if pid == 0:
            assert_nothing_pending(threading.get_ident())
    except BaseException:
        if os.getpid() == parent:
            raise
        outcome = traceback.format_exc()
    finally:
        if os.getpid() != parent:  # the child reports and never returns into pytest
            os.write(writer, outcome.encode())
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "DeadlineExceeded of its scope: True"
    assert outcome == "DeadlineExceeded of its scope: True"
    assert_nothing_pending(threading.get_ident())


def test_a_new_thread_in_the_child_is_never_woken_through_a_parent_threads_unblocker() -> None:
    # The child's first threads get the parent's idents; before, one that reused
    # the ident of a thread inside hardstop.sleep() got that sleep's unblocker
    # called instead of its own Queue.get being woken.
    def sleeper() -> None:
        hardstop.sleep(3 * WAIT)

    def child() -> list[str]:
        items: queue.Queue[int] = queue.Queue()
        lines = []
        for _ in range(20):
            waiting = threading.Event()
            target = Target(lambda: (waiting.set(), items.get(timeout=3 * WAIT)))  # noqa: B023 - used at once
            with target:
                assert waiting.wait(WAIT)
                receipt = hardstop.interrupt(target.thread)
                lines.append(f"woken: {receipt.wait(WAIT)} ({receipt.wake})")
            if target.thread.ident == asleep.thread.ident:
                return [*lines, "reused the sleeper's ident"]
            wait_until(lambda: not os.path.exists(f"/proc/self/task/{target.thread.native_id}"))  # noqa: B023
        return lines

    with Target(sleeper) as asleep:
        wait_until(lambda: getattr(_hardstop.current_frame(asleep.thread.ident), "f_code", None) is SLEEP)
        lines = in_child(child)
        assert hardstop.interrupt(asleep.thread).wait(WAIT)
    woken = [line for line in lines if line.startswith("woken: ")]
    assert woken and all(line.startswith("woken: True (Condition.wait") for line in woken), lines
    if lines[-1] != "reused the sleeper's ident":
        pytest.skip(f"no thread of the child got the parent's idents here (Python {sys.version_info[:2]}, its libc)")


SLEEP = hardstop.sleep.__code__


def interrupt_me_from_another_thread() -> hardstop.Receipt:
    me = threading.current_thread()
    receipts: list[hardstop.Receipt] = []
    helper = threading.Thread(target=lambda: receipts.append(hardstop.interrupt(me)))
    try:
        helper.start()
        spin(threading.Event())
    except hardstop.Interrupted:
        pass
    helper.join(WAIT)
    return receipts[0]


def test_the_child_keeps_no_receipt_delivered_in_the_parent() -> None:
    """The record of the last delivered receipt (how a swallowed exception is
    recognised) goes with the fork: other threads' records are dropped, and the
    forking thread's forgets the parent's receipt."""
    stop = threading.Event()
    with Target(lambda: spin(stop), wanted=2) as target:
        theirs = hardstop.interrupt(target.thread)
        assert theirs.wait(WAIT)
        mine = interrupt_me_from_another_thread()
        assert mine.delivered
        worker, me = target.thread.ident, threading.get_ident()
        assert _hardstop.last_delivered(worker) is theirs
        assert _hardstop.last_delivered(me) is mine

        def child() -> list[str]:
            return [
                f"worker: {_hardstop.last_delivered(worker)}",
                f"forking thread: {_hardstop.last_delivered(me)}",
                f"pending for the worker: {_hardstop.pending_count(worker)}",
            ]

        lines = in_child(child)
        assert _hardstop.last_delivered(worker) is theirs  # the parent is untouched
        stop.set()
    assert lines == ["worker: None", "forking thread: None", "pending for the worker: 0"]
