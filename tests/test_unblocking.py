"""Unblockers, hardstop.sleep and wake=False: waking a thread that said how."""

from __future__ import annotations

import os
import queue
import re
import socket
import sys
import threading
import time

import pytest

import hardstop
from conftest import WAIT, Target, assert_nothing_pending, spin
from hardstop import _wake

LONG = 60.0  # a wait that would outlast every bound below if it were not woken


def test_an_event_wait_inside_unblocking_is_woken_and_raises() -> None:
    event = threading.Event()

    def body() -> None:
        with hardstop.unblocking(event.set):
            event.wait(LONG)
        spin(target.stop)  # set() ended the wait: the armed exception is raised here at the latest

    target = Target(body)
    with target:
        time.sleep(0.05)
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wake == f"unblocker {event.set!r} called"
        assert receipt.wait(WAIT)
        target.thread.join(WAIT)
    assert event.is_set()
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_a_socket_recv_is_woken_by_shutdown() -> None:
    left, right = socket.socketpair()
    in_recv = threading.Event()

    def body() -> None:
        with hardstop.unblocking(lambda: left.shutdown(socket.SHUT_RDWR)):
            in_recv.set()
            left.recv(1)

    try:
        with Target(body) as target:
            assert in_recv.wait(WAIT)
            time.sleep(0.05)
            receipt = hardstop.interrupt(target.thread, TimeoutError("recv took too long"))
            assert receipt.wait(WAIT)
            target.thread.join(WAIT)
        assert target.caught == [receipt.exception]
    finally:
        left.close()
        right.close()


@pytest.mark.parametrize("where", ["worker", "main"])
def test_hardstop_sleep_ends_at_once_when_interrupted(where: str) -> None:
    if where == "worker":
        with Target(lambda: hardstop.sleep(LONG)) as target:
            time.sleep(0.05)
            assert hardstop.interrupt(target.thread).wait(WAIT)
            target.thread.join(WAIT)
        assert [type(e) for e in target.caught] == [hardstop.Interrupted]
        return
    main = threading.current_thread()
    helper = threading.Thread(target=lambda: (time.sleep(0.1), hardstop.interrupt(main)))
    helper.start()
    t0 = time.monotonic()
    with pytest.raises(hardstop.Interrupted):
        hardstop.sleep(LONG)
    assert time.monotonic() - t0 < LONG
    helper.join(WAIT)
    assert_nothing_pending(main.ident)


def test_hardstop_sleep_sleeps_its_time_when_left_alone() -> None:
    t0 = time.monotonic()
    hardstop.sleep(0.05)
    assert time.monotonic() - t0 >= 0.05
    hardstop.sleep(0)


def test_a_sleep_woken_for_a_request_withdrawn_at_once_sleeps_on() -> None:
    # interrupt() wakes the sleeper; cancel() right after, still holding the GIL,
    # usually withdraws the request before the sleeper can raise it.
    for _ in range(20):
        slept: list[float] = []

        def body(slept: list[float] = slept) -> None:
            t0 = time.monotonic()
            hardstop.sleep(0.3)
            slept.append(time.monotonic() - t0)

        with Target(body) as target:
            time.sleep(0.05)
            receipt = hardstop.interrupt(target.thread)
            withdrawn = receipt.cancel()
        # (Leaving the with block stops the target's loop and joins it.)
        if withdrawn:
            assert target.caught == []
            assert slept and slept[0] >= 0.3  # it slept its whole time despite the wake
            return
        assert receipt.delivered and [type(e) for e in target.caught] == [hardstop.Interrupted]
    pytest.fail("cancel() never won the race against the woken sleeper in 20 tries")


@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        ("1", TypeError, "hardstop.sleep() takes a number of seconds, not str '1'."),
        (None, TypeError, "hardstop.sleep() takes a number of seconds, not NoneType None."),
        (float("nan"), ValueError, "hardstop.sleep() takes a non-negative number of seconds, not nan."),
        (-1, ValueError, "hardstop.sleep() takes a non-negative number of seconds, not -1."),
    ],
)
def test_hardstop_sleep_refuses_bad_lengths(seconds, error, message) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        hardstop.sleep(seconds)


def test_wake_false_arms_without_calling_the_unblocker() -> None:
    called: list[int] = []
    event = threading.Event()

    def body() -> None:
        with hardstop.unblocking(lambda: called.append(1)):
            event.wait(LONG)

    with Target(body) as target:
        time.sleep(0.05)
        receipt = hardstop.interrupt(target.thread, wake=False)
        assert receipt.wake == "not woken: wake=False"
        assert receipt.wait(0.2) is False
        assert receipt.cancel() is True
        event.set()
    assert called == []
    assert target.caught == []


def test_only_the_innermost_unblocker_is_called_and_only_once() -> None:
    calls: list[str] = []
    event = threading.Event()

    def body() -> None:
        with hardstop.unblocking(lambda: calls.append("outer")):
            with hardstop.unblocking(lambda: (calls.append("inner"), event.set())):
                event.wait(LONG)
            spin(target.stop)

    target = Target(body)
    with target:
        time.sleep(0.05)
        assert hardstop.interrupt(target.thread).wait(WAIT)
        target.thread.join(WAIT)
    assert calls == ["inner"]


def test_an_unblocker_is_never_called_after_its_block_was_left() -> None:
    calls: list[int] = []
    left = threading.Event()

    def body() -> None:
        with hardstop.unblocking(lambda: calls.append(1)):
            pass
        left.set()
        spin(target.stop)

    target = Target(body)
    with target:
        assert left.wait(WAIT)
        assert hardstop.interrupt(target.thread).wait(WAIT)
        target.thread.join(WAIT)
    assert calls == []
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def interrupt_past_a_failing_unblocker() -> Target:
    """A target in an Event.wait whose unblocker raises: interrupted, and ended."""
    event = threading.Event()

    def broken() -> None:
        event.set()
        raise OSError("unblocker failed")

    def body() -> None:
        with hardstop.unblocking(broken):
            event.wait(LONG)
        spin(target.stop)

    target = Target(body)
    with target:
        time.sleep(0.05)
        assert hardstop.interrupt(target.thread).wait(WAIT)
        target.thread.join(WAIT)
    return target


def test_an_unblocker_that_fails_is_reported_and_the_interrupt_stands(monkeypatch) -> None:
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    target = interrupt_past_a_failing_unblocker()
    assert len(reported) == 1
    assert str(reported[0].exc_value) == "unblocker failed"
    assert reported[0].err_msg.startswith("Exception ignored in the hardstop unblocker <function")
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_an_unblocker_that_fails_is_reported_by_the_default_hook(monkeypatch, capsys) -> None:
    """CPython's default hook accepts only its own UnraisableHookArgs: hardstop's
    report of a failed unblocker made it raise TypeError instead of printing."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    target = interrupt_past_a_failing_unblocker()
    printed = capsys.readouterr().err
    assert "Exception ignored in the hardstop unblocker <function" in printed
    assert "OSError: unblocker failed" in printed
    assert "TypeError" not in printed
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_unblocking_needs_a_callable() -> None:
    with pytest.raises(TypeError, match=r"^The unblocker must be callable, not int 3\.$"):
        hardstop.unblocking(3)


def enter_and_leave_blocks(round_number: int, entered: queue.Queue[int]) -> None:
    entered.put(round_number)
    while True:
        with hardstop.unblocking(lambda: None):
            pass


def test_interrupts_landing_as_blocks_are_entered_and_left_leave_no_unblocker_behind() -> None:
    # Before: about one interrupt in eight left its entry behind, and the final
    # Queue.get was then "woken" by calling that stale callback, which ends nothing.
    rounds = 300
    entered: queue.Queue[int] = queue.Queue()
    items: queue.Queue[int] = queue.Queue()
    waiting = threading.Event()
    outcome: list[str] = []

    def worker() -> None:
        for round_number in range(rounds):
            try:
                enter_and_leave_blocks(round_number, entered)
            except hardstop.Interrupted:
                pass
        waiting.set()
        try:
            items.get(timeout=3 * WAIT)
            outcome.append("not woken")
        except hardstop.Interrupted:
            outcome.append("woken")

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    for round_number in range(rounds):
        assert entered.get(timeout=WAIT) == round_number
        assert hardstop.interrupt(thread).wait(WAIT)
    assert waiting.wait(WAIT)
    receipt = hardstop.interrupt(thread)
    assert receipt.wait(WAIT), receipt.wake
    thread.join(WAIT)
    assert outcome == ["woken"]
    assert receipt.wake is not None and receipt.wake.startswith("Condition.wait"), receipt.wake
    assert thread.ident not in _wake._stacks  # nothing outlives its thread


def enter_without_leaving(callback) -> None:
    """What an exception at the first instruction of __exit__ leaves: an entry whose block is gone."""
    hardstop.unblocking(callback).__enter__()


def test_an_entry_whose_frame_is_gone_is_not_called() -> None:
    called: list[int] = []
    items: queue.Queue[int] = queue.Queue()
    waiting = threading.Event()

    def body() -> None:
        enter_without_leaving(lambda: called.append(1))
        waiting.set()
        items.get(timeout=LONG)

    target = Target(body)
    with target:
        assert waiting.wait(WAIT)
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wait(WAIT), receipt.wake
    assert called == []
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_an_interrupt_at_the_first_instruction_of_exit_leaves_no_unblocker_behind() -> None:
    # The with statement's frame goes on after the block. Before, an exception
    # raised at __exit__'s first instruction left its entry behind, and the next
    # interrupt called that callback instead of waking Queue.get (issue 18, item 7).
    condition = threading.Condition(threading.Lock())
    called: list[int] = []
    items: queue.Queue[int] = queue.Queue()
    waiting = threading.Event()
    outcome: list[str] = []

    def body() -> None:
        try:
            with hardstop.unblocking(lambda: called.append(1)):
                # Blocks in threading's lock handling: the request aimed here waits, is
                # armed as the thread returns, and is raised at its next check, which
                # is the first instruction of a Python __exit__.
                condition.__enter__()
        except hardstop.Interrupted:
            outcome.append("raised")
        waiting.set()
        try:
            items.get(timeout=LONG)
            outcome.append("not woken")
        except hardstop.Interrupted:
            outcome.append("woken")

    condition.acquire()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    end = time.monotonic() + WAIT
    while not hardstop._hardstop.in_protected_code(thread.ident or 0) and time.monotonic() < end:
        time.sleep(0.001)
    first = hardstop.interrupt(thread)
    condition.release()
    assert first.wait(WAIT), first.wake
    assert waiting.wait(WAIT)
    second = hardstop.interrupt(thread)
    second_delivered = second.wait(WAIT)
    items.put(0)  # ends the wait if the interrupt did not
    thread.join(WAIT)
    assert outcome == ["raised", "woken"]
    assert second_delivered, second.wake
    assert called == []


def wait_until_gone(thread: threading.Thread) -> None:
    """join() returns before the system thread has exited; glibc reuses its stack,
    so its ident, only after that (Linux shows the thread's task until then)."""
    task = f"/proc/self/task/{thread.native_id}"
    end = time.monotonic() + WAIT
    while os.path.exists(task) and time.monotonic() < end:
        time.sleep(0.001)


def test_an_entry_left_by_an_ended_thread_does_not_reach_the_next_thread_with_its_ident() -> None:
    called: list[int] = []
    first = threading.Thread(target=enter_without_leaving, args=(lambda: called.append(1),))
    first.start()
    first.join(WAIT)
    wait_until_gone(first)
    items: queue.Queue[int] = queue.Queue()
    for _ in range(20):  # glibc hands the next thread the ended one's stack, so its ident
        waiting = threading.Event()
        target = Target(lambda: (waiting.set(), items.get(timeout=LONG)))  # noqa: B023 - used at once
        with target:
            assert waiting.wait(WAIT)
            receipt = hardstop.interrupt(target.thread)
            assert receipt.wait(WAIT), receipt.wake
        assert called == []
        assert [type(e) for e in target.caught] == [hardstop.Interrupted]
        if target.thread.ident == first.ident:
            return
        wait_until_gone(target.thread)
    pytest.skip("this platform did not give a new thread the ident of one that ended")
