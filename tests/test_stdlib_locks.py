"""Interrupts never land inside the standard library's own lock handling.

Without that, a thread doing Queue traffic under a rain of interrupts leaves the
queue's lock held within a few interrupts on every version (an exception at the
first line of ``threading.Condition.__exit__``), and every later user of the
queue hangs. See ``hardstop._protected``.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time

import pytest

import hardstop
from conftest import SWALLOWED_REASON, WAIT
from hardstop import _hardstop

RAIN = 12  # each waits for its delivery, which can take a second in this loop


def wait_until_blocked_in_lock_handling(thread: threading.Thread) -> None:
    """Until ``thread`` is blocked in a lock's acquire inside threading's or queue's code."""
    give_up = time.monotonic() + WAIT
    while not _hardstop.in_protected_code(thread.ident or 0) and time.monotonic() < give_up:
        time.sleep(0.001)
    time.sleep(0.05)  # in there, and now blocked in the lock's acquire


def _catch_all_and_go_on(body, stop: threading.Event, caught: list[int]) -> None:
    while not stop.is_set():
        try:
            _rounds(body, stop, caught)
        except hardstop.Interrupted:  # the next request, armed as a handler below ended, landed between rounds
            caught[0] += 1


def _rounds(body, stop: threading.Event, caught: list[int]) -> None:
    while not stop.is_set():
        try:
            body(stop)
        except hardstop.Interrupted:
            caught[0] += 1


def test_queue_traffic_under_interrupts_never_leaves_its_lock_held() -> None:
    q: queue.Queue[int] = queue.Queue()

    def traffic(stop: threading.Event) -> None:
        while not stop.is_set():
            q.put(1)
            q.get(timeout=1)

    stop, caught = threading.Event(), [0]
    worker = threading.Thread(target=_catch_all_and_go_on, args=(traffic, stop, caught))
    worker.start()
    try:
        delivered = [hardstop.interrupt(worker).wait(6 * WAIT) for _ in range(RAIN)]
    finally:
        stop.set()
        worker.join(WAIT)
    assert not worker.is_alive()  # it never hung on a lock left held
    assert delivered == [True] * RAIN
    assert caught[0] == RAIN
    assert not q.mutex.locked()
    assert q.get_nowait() is not None if q.qsize() else True  # still usable


@pytest.mark.parametrize("kind", [threading.Lock, threading.RLock])
def test_a_condition_wait_interrupted_as_it_returns_still_restores_its_lock_and_its_waiters(kind) -> None:
    """A request armed while the target is at a wait of Condition.wait is
    raised at its next check; if the target had just returned from the wait, that
    check is inside the finally that takes the lock back and unlists the waiter
    (at the start of a Lock-based condition's _acquire_restore, or right after
    an RLock-based one's). On a free-threaded build, where the target is stopped
    at a check to be looked at, this happens almost every time: the lock was
    left unheld (RuntimeError: release unlocked lock) or the waiter listed."""
    condition = threading.Condition(kind())
    errors: list[BaseException] = []

    def waits(stop: threading.Event) -> None:
        try:
            with condition:
                condition.wait(0.0005)
        except RuntimeError as error:
            errors.append(error)
            stop.set()

    stop, caught = threading.Event(), [0]
    # One that lands in a GC callback (hypothesis installs one) is swallowed by
    # CPython: its receipt says so, and it is not caught.
    swallowed: list[BaseException | None] = []
    previous_unraisable = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: swallowed.append(unraisable.exc_value)
    worker = threading.Thread(target=_catch_all_and_go_on, args=(waits, stop, caught))
    worker.start()
    try:
        end = time.monotonic() + 1.0
        receipts = []
        while time.monotonic() < end and not stop.is_set():
            receipts.append(hardstop.interrupt(worker))
            receipts[-1].wait(WAIT)
    finally:
        stop.set()
        worker.join(WAIT)
        sys.unraisablehook = previous_unraisable
    assert not worker.is_alive()
    assert errors == []
    assert [r.reason for r in receipts if r.status != "delivered"] == [SWALLOWED_REASON] * len(swallowed)
    assert caught[0] == len(receipts) - len(swallowed)
    assert condition.acquire(timeout=WAIT)
    try:
        assert list(condition._waiters) == []  # type: ignore[attr-defined]
    finally:
        condition.release()


def test_a_wait_on_an_event_is_still_woken_at_once() -> None:
    """Condition.wait (under Event.wait) is where these modules wait: armed and
    woken there as before, not put off."""
    event = threading.Event()
    outcome: list[str] = []

    def waits() -> None:
        try:
            event.wait()
        except hardstop.Interrupted:
            outcome.append("interrupted")

    worker = threading.Thread(target=waits)
    worker.start()
    while not _hardstop.current_frame(worker.ident or 0) or worker.ident is None:
        time.sleep(0.001)
    time.sleep(0.05)  # inside the wait
    assert not _hardstop.in_protected_code(worker.ident)
    receipt = hardstop.interrupt(worker)
    assert receipt.wait(WAIT)
    worker.join(WAIT)
    assert outcome == ["interrupted"]
    assert receipt.wake == "Condition.wait: its waiter was released"
    assert not event._cond._lock.locked()


def test_a_request_aimed_inside_lock_handling_waits_and_says_so() -> None:
    """A thread held inside Condition.__enter__ (its lock is busy) is in
    threading's code: the request stays pending, and lands once it is out."""
    condition = threading.Condition(threading.Lock())
    outcome: list[str] = []

    def enters() -> None:
        try:
            with condition:
                while True:
                    pass
        except hardstop.Interrupted:
            outcome.append("interrupted")

    with condition:
        worker = threading.Thread(target=enters)
        worker.start()
        wait_until_blocked_in_lock_handling(worker)
        assert _hardstop.in_protected_code(worker.ident or 0)
        receipt = hardstop.interrupt(worker)
        assert receipt.status == "pending"
        assert not _hardstop.is_armed(receipt)
        assert receipt.wake.startswith("not yet: the thread is inside the standard library's own lock handling")
    assert receipt.wait(WAIT)
    worker.join(WAIT)
    assert outcome == ["interrupted"]
    assert not condition._lock.locked()  # it did not land in Condition.__enter__, after the acquire


def test_a_request_waiting_in_lock_handling_lands_while_another_thread_holds_one_it_cannot_raise() -> None:
    """CPython 3.11 freezes a thread that has a profile function at its next
    function call while another thread's exception is pending (the flag is
    shared): hardstop's own profile function, which arms a request as its thread
    leaves lock handling, froze a Queue.get holding the queue's lock (and so every
    other user of the queue). Found killing threads blocked in Queue.get."""
    q: queue.Queue[int] = queue.Queue()
    blocker = threading.Lock()
    blocker.acquire()
    outcome: list[str] = []

    def stays_blocked() -> None:  # in C: its request stays armed, unraised, until the lock is free
        try:
            blocker.acquire()
        except hardstop.Interrupted:
            outcome.append("blocked one interrupted")

    def gets() -> None:
        try:
            q.get(timeout=6 * WAIT)
        except hardstop.Interrupted:
            outcome.append("getter interrupted")

    stuck = threading.Thread(target=stays_blocked)
    stuck.start()
    with q.mutex:
        getter = threading.Thread(target=gets)
        getter.start()
        wait_until_blocked_in_lock_handling(getter)
        receipt = hardstop.interrupt(getter)
        assert receipt.status == "pending"  # put off: it is inside lock handling
        unraised = hardstop.interrupt(stuck, wake=False)
        assert _hardstop.is_armed(unraised)
    # The getter takes the queue's lock and runs Queue.get's own code (calls to
    # _qsize, Condition.wait) while the stuck thread's request is pending.
    assert receipt.wait(WAIT), receipt.wake
    getter.join(WAIT)
    blocker.release()
    assert unraised.wait(WAIT)
    stuck.join(WAIT)
    assert sorted(outcome) == ["blocked one interrupted", "getter interrupted"]
    assert not q.mutex.locked()


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="CPython 3.10/3.11 create the exception later, away from the __exit__ it was raised in: "
    "hardstop cannot see it land",
)
@pytest.mark.parametrize(
    ("lock", "held"),
    [
        (threading.Condition(threading.Lock()), lambda condition: condition._lock.locked()),
        (threading.Semaphore(2), lambda semaphore: semaphore._value != 2),
        (threading.BoundedSemaphore(1), lambda semaphore: semaphore._value != 1),
    ],
    ids=["Condition", "Semaphore", "BoundedSemaphore"],
)
def test_a_with_statement_in_user_code_never_leaves_the_lock_held(lock, held) -> None:
    """The with statement calls the lock's Python ``__exit__`` from this frame,
    unprotected. A request put off while ``__enter__`` ran is armed as it returns,
    and with nothing in the body to check for it, it is raised at ``__exit__``'s
    first instruction: hardstop releases the lock there first."""

    def user_code(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                pass

    stop, caught = threading.Event(), [0]
    # A daemon: one left blocked on a leaked lock fails the test, not the session's exit.
    worker = threading.Thread(target=_catch_all_and_go_on, args=(user_code, stop, caught), daemon=True)
    worker.start()
    try:
        delivered = [hardstop.interrupt(worker).wait(6 * WAIT) for _ in range(RAIN * 4)]
    finally:
        stop.set()
        worker.join(WAIT)
    assert not worker.is_alive()
    assert delivered == [True] * (RAIN * 4)
    assert not held(lock)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason=f"{sys.platform} cannot signal a thread")
def test_a_request_armed_on_leaving_lock_handling_still_wakes_the_wait_that_follows() -> None:
    """This (main) thread is held in Condition.__enter__ (threading's code) when the
    request comes, so it waits; the thread arms it itself as it returns, and goes
    straight into time.sleep, a C call it cannot interrupt itself: the pump's wake
    signal ends that sleep."""
    condition = threading.Condition(threading.Lock())
    main = threading.current_thread()
    receipts: list[hardstop.Receipt] = []

    def interrupter() -> None:
        with condition:
            wait_until_blocked_in_lock_handling(main)
            receipts.append(hardstop.interrupt(main))

    helper = threading.Thread(target=interrupter)
    helper.start()
    started = time.monotonic()
    with pytest.raises(hardstop.Interrupted):
        with condition:
            time.sleep(6 * WAIT)
    elapsed = time.monotonic() - started
    helper.join(WAIT)
    assert receipts[0].status == "delivered"
    assert elapsed < 3 * WAIT  # the sleep was ended, not waited out
    assert not condition._lock.locked()


CONDITION_ENTER = threading.Condition.__enter__.__code__


class PausingTracer:
    """A pure-Python profile or trace function (as debuggers, coverage tools and
    profilers install) that, once, pauses inside the event that follows the lock
    being taken in ``Condition.__enter__``: the innermost frame is then the
    tracer's, called from threading's lock handling."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.resume_lock = threading.Lock()  # a wait hardstop cannot end in a worker
        self.resume_lock.acquire()

    def _pause_once(self, frame, event: str) -> None:
        wanted = "c_return" if self.kind == "profile" else "return"
        if event == wanted and frame.f_code is CONDITION_ENTER and not self.paused.is_set():
            self.paused.set()
            self.resume_lock.acquire(True, WAIT)

    def profile(self, frame, event: str, arg: object) -> None:
        self._pause_once(frame, event)

    def trace(self, frame, event: str, arg: object):
        self._pause_once(frame, event)
        return self.trace  # the local trace function: it sees the "return" event

    def install(self) -> None:
        if self.kind == "profile":
            sys.setprofile(self.profile)
        else:
            sys.settrace(self.trace)

    def remove(self) -> None:
        sys.setprofile(None)
        sys.settrace(None)


@pytest.mark.parametrize("kind", ["profile", "trace"])
def test_a_tracer_called_from_lock_handling_is_lock_handling_too(kind: str) -> None:
    # Before: the request was armed inside the tracer, raised as it returned, and
    # Condition.__enter__ ended with its lock taken and nobody to release it
    # (issue 18, item 11; a Queue's mutex leaked that way under a rain of interrupts).
    tracer = PausingTracer(kind)
    condition = threading.Condition(threading.Lock())
    outcome: list[str] = []
    stop = threading.Event()

    def body() -> None:
        tracer.install()
        try:
            with condition:
                spin_until(stop)  # (a body with no check would get it at Condition.__exit__'s start: see above)
        except hardstop.Interrupted:
            outcome.append("interrupted")
        finally:
            tracer.remove()

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    try:
        assert tracer.paused.wait(WAIT)
        receipt = hardstop.interrupt(worker)
        wake = receipt.wake
        tracer.resume_lock.release()
        assert receipt.wait(WAIT), receipt.wake
        worker.join(WAIT)
    finally:
        stop.set()
        worker.join(WAIT)
    assert not condition._lock.locked()
    assert outcome == ["interrupted"]
    assert wake.startswith("not yet: the thread is inside the standard library's own lock handling"), wake


def spin_until(stop: threading.Event) -> None:
    end = time.monotonic() + WAIT
    while not stop.is_set() and time.monotonic() < end:
        pass
