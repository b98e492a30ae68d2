"""Receipts and several requests to one thread: each accounted for exactly once."""

from __future__ import annotations

import _thread
import gc
import sys
import threading
import time
import weakref

import pytest

import hardstop
from conftest import DISCARDED_REASON, WAIT, Gate, Target, assert_nothing_pending, assert_runs_on_untouched, spin
from hardstop import _hardstop


def blocked_then_spinning(gate: Gate, stop: threading.Event):
    """A body that first blocks in a wait hardstop cannot wake, then runs Python code."""

    def body() -> None:
        gate.wait()
        spin(stop)

    return body


class Tagged(Exception):
    pass


def test_wait_returns_true_once_delivered_and_the_status_says_so() -> None:
    with Target() as target:
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wait(WAIT) is True
        assert receipt.status == "delivered"
        assert receipt.delivered is True
        assert receipt.reason is None
        assert receipt.thread is target.thread
        assert receipt.cancel() is False  # too late
        assert receipt.status == "delivered"


def test_cancel_before_delivery_withdraws_it_for_good() -> None:
    gate = Gate()
    stop = threading.Event()
    target = Target(blocked_then_spinning(gate, stop))
    with target:
        gate.until_blocked(target.thread)
        receipt = hardstop.interrupt(target.thread)
        assert receipt.status == "pending"
        assert receipt.wait(0.05) is False  # blocked: cannot be raised yet
        assert receipt.cancel() is True
        assert receipt.status == "cancelled"
        assert receipt.cancel() is False
        assert receipt.wait(WAIT) is False
        assert_nothing_pending(target.thread.ident)
        gate.open()
        assert_runs_on_untouched(target)
        stop.set()  # its spin, so that the target's loop sees its own stop
    assert target.caught == []


def test_several_requests_are_raised_one_at_a_time_in_order() -> None:
    gate = Gate()
    target = Target(blocked_then_spinning(gate, threading.Event()), wanted=3)
    with target:
        gate.until_blocked(target.thread)
        exceptions = [Tagged(i) for i in range(3)]
        receipts = [hardstop.interrupt(target.thread, exc) for exc in exceptions]
        assert [r.status for r in receipts] == ["pending"] * 3
        gate.open()
        assert all(r.wait(WAIT) for r in receipts)
        target.thread.join(WAIT)
    assert target.caught == exceptions
    assert [r.status for r in receipts] == ["delivered"] * 3
    assert_nothing_pending(target.thread.ident)


@pytest.mark.parametrize("withdrawn", [0, 1, 2])
def test_a_withdrawn_request_in_a_queue_is_skipped_and_the_rest_keep_order(withdrawn: int) -> None:
    gate = Gate()
    target = Target(blocked_then_spinning(gate, threading.Event()), wanted=2)
    with target:
        gate.until_blocked(target.thread)
        exceptions = [Tagged(i) for i in range(3)]
        receipts = [hardstop.interrupt(target.thread, exc) for exc in exceptions]
        assert receipts[withdrawn].cancel() is True
        gate.open()
        kept = [r for i, r in enumerate(receipts) if i != withdrawn]
        assert all(r.wait(WAIT) for r in kept)
        target.thread.join(WAIT)
        assert_runs_on_untouched_after_join(target)
    assert target.caught == [e for i, e in enumerate(exceptions) if i != withdrawn]
    assert receipts[withdrawn].status == "cancelled"


def assert_runs_on_untouched_after_join(target: Target) -> None:
    assert not target.thread.is_alive()
    assert target.finished_normally


def test_a_thread_that_ends_before_raising_leaves_the_receipt_undelivered() -> None:
    # A _thread thread whose whole body is one C call runs no bytecode after it,
    # so an exception armed while it is blocked there is never raised.
    lock = _thread.allocate_lock()
    lock.acquire()
    before = set(_hardstop.thread_idents())
    _thread.start_new_thread(lock.acquire, ())
    deadline = time.monotonic() + WAIT
    # 3.12+ list a new thread state with ident 0 until the thread binds to it.
    while not (new := set(_hardstop.thread_idents()) - before - {0}) and time.monotonic() < deadline:
        time.sleep(0.01)
    (ident,) = new
    receipt = hardstop.interrupt(ident)
    assert receipt.status == "pending"
    assert receipt.thread is None  # threading never knew this thread
    lock.release()  # the thread returns from C and ends
    assert receipt.wait(WAIT) is False
    assert receipt.status == "undelivered"
    assert receipt.reason == "the thread ended before it raised this exception"
    assert_nothing_pending(ident)


def test_wait_validates_its_timeout() -> None:
    with Target() as target:
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wait(WAIT)
        with pytest.raises(ValueError, match=r"^timeout must be a number of seconds or None, not nan$"):
            receipt.wait(float("nan"))
        with pytest.raises(TypeError, match=r"^timeout must be a number of seconds or None, not '1'$"):
            receipt.wait("1")


def test_a_receipt_cannot_be_made_by_hand() -> None:
    with pytest.raises(TypeError, match=r"^Receipt objects are made by hardstop.interrupt\(\), not directly\.$"):
        hardstop.Receipt()


def test_receipt_repr_names_status_exception_and_thread() -> None:
    with Target() as target:
        receipt = hardstop.interrupt(target.thread, Tagged("x"))
        receipt.wait(WAIT)
    assert repr(receipt) == f"<hardstop.Receipt delivered Tagged('x') -> thread {target.thread.ident}>"


def test_an_interrupt_discarded_by_c_code_is_accounted_for_and_the_queue_moves_on(native) -> None:
    testext, _ = native
    inner_stop = threading.Event()
    discarded: list[bool] = []
    in_c = threading.Event()

    def body() -> None:
        if not discarded:
            in_c.set()
            discarded.append(testext.call_and_clear(lambda: spin(inner_stop)))
        spin(target.stop)

    target = Target(body)
    with target:
        assert in_c.wait(WAIT)
        first = hardstop.interrupt(target.thread, Tagged("discarded"))
        deadline = time.monotonic() + WAIT
        while not discarded and time.monotonic() < deadline:
            time.sleep(0.01)
        assert discarded == [False]  # raised inside the call, then cleared by C
        second = hardstop.interrupt(target.thread, Tagged("second"))
        assert second.wait(WAIT)
        target.thread.join(WAIT)
    assert target.caught == [second.exception]
    if sys.version_info < (3, 12):
        # The exception object was never created: nothing can say it was raised.
        assert first.status == "undelivered"
        assert first.reason == DISCARDED_REASON
    else:
        assert first.status == "delivered"  # created as it was raised, then discarded


def test_a_request_made_while_the_target_handles_the_previous_one_waits_for_the_handler() -> None:
    in_handler = threading.Event()
    gate = Gate()
    finished_handlers: list[BaseException] = []

    def body() -> None:
        try:
            spin(target.stop)
        except Tagged as error:
            if not in_handler.is_set():
                in_handler.set()
                gate.wait()  # a slow handler: the next request must not cut it short
            finished_handlers.append(error)
            raise

    target = Target(body, wanted=2)
    with target:
        first = hardstop.interrupt(target.thread, Tagged("first"))
        assert first.wait(WAIT)
        assert in_handler.wait(WAIT)
        second = hardstop.interrupt(target.thread, Tagged("second"))
        assert second.wait(0.2) is False  # held back while the handler runs
        assert second.status == "pending"
        gate.open()
        assert second.wait(WAIT)
        target.thread.join(WAIT)
    assert finished_handlers == [first.exception, second.exception]
    assert target.caught == [first.exception, second.exception]


def test_a_delivered_exception_is_freed_once_its_receipt_is_dropped_while_the_thread_lives() -> None:
    """hardstop keeps no strong reference to a delivered request: not to the
    receipt, nor to its exception (whose traceback holds the unwound frames)."""
    running = threading.Event()
    caught = threading.Event()
    release = threading.Event()

    def body() -> None:
        try:
            running.set()
            spin(release)
        except hardstop.Interrupted:
            pass  # handled and dropped here
        caught.set()
        release.wait(WAIT)  # the thread lives on

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        assert running.wait(WAIT)
        receipt = hardstop.interrupt(thread, hardstop.Interrupted("kept alive?"))
        exception = weakref.ref(receipt.exception)
        assert caught.wait(WAIT)
        assert receipt.delivered
        assert _hardstop.last_delivered(thread.ident) is receipt  # still recognised while kept
        del receipt
        gc.collect()
        assert thread.is_alive()
        assert exception() is None, "the core keeps a delivered exception alive"
        assert _hardstop.last_delivered(thread.ident) is None
    finally:
        release.set()
        thread.join(WAIT)
