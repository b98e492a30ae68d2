"""kill(): interrupt until the thread ends, or say where it is stuck and why."""

from __future__ import annotations

import _thread
import math
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import hardstop
from conftest import WAIT, spin


def started(target, *args) -> threading.Thread:
    """Start ``target`` in a thread that ends quietly when interrupted (pytest
    reports even SystemExit raised out of a thread)."""

    def quietly() -> None:
        try:
            target(*args)
        except (hardstop.Interrupted, SystemExit):
            pass

    thread = threading.Thread(target=quietly, daemon=True)
    thread.start()
    return thread


def test_a_thread_running_python_code_is_stopped_by_one_interrupt() -> None:
    running = threading.Event()

    def body() -> None:
        running.set()
        spin(threading.Event(), 3 * WAIT)

    thread = started(body)
    assert running.wait(WAIT)
    result = hardstop.kill(thread, timeout=WAIT, exc=SystemExit)
    assert result.stopped is True and bool(result) is True
    assert result.attempts == 1
    assert result.reason == "It ended after 1 interrupt."
    assert result.stack is None
    assert [r.status for r in result.receipts] == ["delivered"]
    assert not thread.is_alive()


def test_a_thread_that_swallows_the_first_interrupt_is_interrupted_again() -> None:
    running = threading.Event()
    swallowed: list[BaseException] = []

    def body() -> None:
        try:
            running.set()
            spin(threading.Event(), 3 * WAIT)
        except BaseException as error:  # noqa: BLE001 - the point: it swallows one
            swallowed.append(error)
        spin(threading.Event(), 3 * WAIT)

    thread = started(body)
    assert running.wait(WAIT)
    result = hardstop.kill(thread, timeout=WAIT, exc=SystemExit)
    assert result.stopped is True
    assert result.attempts == 2
    assert len(swallowed) == 1
    assert result.reason == "It ended after 2 interrupts."


def test_a_thread_in_an_event_wait_is_woken_and_stopped() -> None:
    thread = started(threading.Event().wait, 3 * WAIT)
    time.sleep(0.05)
    start = time.monotonic()
    result = hardstop.kill(thread, timeout=WAIT, exc=SystemExit)
    assert result.stopped is True
    assert time.monotonic() - start < WAIT / 2


def test_a_thread_blocked_where_it_cannot_be_woken_is_reported_not_stopped() -> None:
    held = threading.Lock()
    held.acquire()
    waiting = threading.Event()
    outcome: list[str] = []

    def stuck_in_acquire() -> None:
        try:
            waiting.set()
            held.acquire()  # a lock wait: no signal ends it in a worker, on any version
            held.release()
        except KeyError:
            outcome.append("raised once the wait returned")

    thread = started(stuck_in_acquire)
    assert waiting.wait(WAIT)
    time.sleep(0.05)  # into acquire()
    result = hardstop.kill(thread, timeout=0.3, exc=KeyError("stop"))
    assert result.stopped is False and bool(result) is False
    assert result.attempts == 1
    assert re.match(
        r"The interrupt was armed 0\.[23]\d s ago and has not been raised: the thread has run no Python code "
        r"since \(at `held.acquire\(\)  # a lock wait: .*`, in stuck_in_acquire, ",
        result.reason,
    )
    assert "It is blocked in a call into C that " in result.reason
    assert "(time.sleep, Lock.acquire" in result.reason or "(Lock.acquire, Thread.join" in result.reason  # 3.15+
    assert "in stuck_in_acquire" in result.stack
    assert result.receipts[-1].status == "pending"  # left armed: it raises once the call returns
    held.release()
    thread.join(WAIT)
    assert outcome == ["raised once the wait returned"]


def test_a_thread_in_a_shield_is_reported_as_deferred() -> None:
    leave = threading.Event()
    inside = threading.Event()

    def body() -> None:
        with hardstop.shield():
            inside.set()
            spin(leave)

    thread = started(body)
    assert inside.wait(WAIT)
    result = hardstop.kill(thread, timeout=0.2)
    assert result.stopped is False
    assert result.reason.startswith("It is inside a hardstop.shield() (at `")  # the line it runs, which varies
    assert result.reason.endswith("), which holds the interrupt back until it leaves.")
    assert "in body" in result.stack and "in spin" in result.stack
    leave.set()
    assert hardstop.kill(thread, timeout=WAIT).stopped is True


def test_a_thread_that_always_swallows_it_is_reported() -> None:
    stop = threading.Event()

    def swallow_forever() -> None:
        # Every loop has points outside its try (its condition, its back-edge):
        # an outer loop catches what lands there, so only the outer loop's own
        # back-edge, run once per such escape, is left uncovered.
        while not stop.is_set():
            try:
                while not stop.is_set():
                    try:
                        spin(stop, 0.01)
                    except BaseException:  # noqa: BLE001 - the point: it swallows everything
                        pass
            except BaseException:  # noqa: BLE001
                pass

    thread = started(swallow_forever)
    result = hardstop.kill(thread, timeout=0.5, exc=SystemExit)
    assert result.stopped is False
    assert result.attempts >= 2
    assert result.reason.startswith("It caught the interrupt and went on, ")
    stop.set()
    thread.join(WAIT)
    for receipt in result.receipts:
        assert receipt.status in ("delivered", "cancelled", "undelivered", "pending")


def test_a_finished_thread_is_reported_stopped_without_an_interrupt() -> None:
    thread = started(lambda: None)
    thread.join(WAIT)
    result = hardstop.kill(thread)
    assert (result.stopped, result.attempts, result.reason) == (True, 0, "It had already finished.")


def test_bad_arguments_are_refused_by_name() -> None:
    never_started = threading.Thread(target=lambda: None, name="idle")
    with pytest.raises(TypeError, match=r"^kill\(\) takes a threading.Thread, not int 5\.$"):
        hardstop.kill(5)  # type: ignore[arg-type]
    with pytest.raises(
        RuntimeError, match=r"^kill\(\) cannot stop the calling thread <_MainThread.*>: it would wait for itself\.$"
    ):
        hardstop.kill(threading.main_thread())
    with pytest.raises(RuntimeError, match=r"^kill\(\) cannot stop <Thread\(idle, initial\)>: it was never started\.$"):
        hardstop.kill(never_started)
    running = started(threading.Event().wait, WAIT)
    for bad, error in [(math.nan, ValueError), (-1, ValueError), ("1", TypeError), (None, TypeError)]:
        with pytest.raises(error, match=r"^kill\(\) takes a (non-negative )?timeout in seconds, not "):
            hardstop.kill(running, timeout=bad)  # type: ignore[arg-type]
    assert hardstop._hardstop.pending_count(running.ident) == 0  # nothing was armed by a refusal
    assert hardstop.kill(running, timeout=WAIT).stopped


def test_hardstops_own_threads_are_refused_and_a_stop_everything_loop_leaves_deadlines_working() -> None:
    # In a child: without the refusal, this loop stops the watchdog, and no deadline ever fires again.
    script = textwrap.dedent("""
        import threading, hardstop
        with hardstop.deadline(60):  # starts the watchdog
            pass
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                try:
                    hardstop.kill(thread, timeout=1.0)
                except RuntimeError as error:
                    print(error)
        try:
            with hardstop.deadline(0.1):
                threading.Event().wait(10)
            print("the deadline did not fire")
        except hardstop.DeadlineExceeded:
            print("the deadline fired")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    refusal, after = result.stdout.splitlines()
    assert re.fullmatch(
        re.escape("kill() refuses to stop <Thread(hardstop-watchdog, started daemon ")
        + r"\d+"
        + re.escape(
            ")>: it is hardstop's own watchdog, which fires every deadline of the process; "
            "it is a daemon thread that ends with the process, so leave it out."
        ),
        refusal,
    )
    assert after == "the deadline fired"


def test_a_thread_started_outside_threading_is_killed_and_reported() -> None:
    # threading only has a _DummyThread for it: join() raises, is_alive() is always True.
    seen: list[threading.Thread] = []
    ended = threading.Event()

    def body() -> None:
        try:
            seen.append(threading.current_thread())
            threading.Event().wait(3 * WAIT)
        except hardstop.Interrupted:
            pass
        finally:
            ended.set()

    _thread.start_new_thread(body, ())
    end = time.monotonic() + WAIT
    while not seen and time.monotonic() < end:
        time.sleep(0.001)
    dummy = seen[0]
    assert isinstance(dummy, threading._DummyThread)
    result = hardstop.kill(dummy, timeout=WAIT)
    assert ended.is_set()
    assert (result.stopped, result.attempts, result.reason) == (True, 1, "It ended after 1 interrupt.")
    assert [r.status for r in result.receipts] == ["delivered"]
