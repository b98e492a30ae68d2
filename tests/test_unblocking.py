"""Unblockers, hardstop.sleep and wake=False: waking a thread that said how."""

from __future__ import annotations

import re
import socket
import sys
import threading
import time

import pytest

import hardstop
from conftest import WAIT, Target, assert_nothing_pending, spin

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


def test_an_unblocker_that_fails_is_reported_and_the_interrupt_stands(monkeypatch) -> None:
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
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
    assert len(reported) == 1
    assert str(reported[0].exc_value) == "unblocker failed"
    assert reported[0].err_msg.startswith("Exception ignored in the hardstop unblocker <function")
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_unblocking_needs_a_callable() -> None:
    with pytest.raises(TypeError, match=r"^The unblocker must be callable, not int 3\.$"):
        hardstop.unblocking(3)
