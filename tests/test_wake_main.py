"""The main thread, blocked in waits that retry on EINTR, woken by hardstop's signal."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import hardstop
from conftest import WAIT, assert_nothing_pending

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="Windows has no pthread_kill: its main thread is not woken by a signal"
)

LONG = 60.0


receipts: list[hardstop.Receipt] = []


def interrupt_main_soon(delay: float = 0.1) -> threading.Thread:
    main = threading.main_thread()
    receipts.clear()
    helper = threading.Thread(target=lambda: (time.sleep(delay), receipts.append(hardstop.interrupt(main))))
    helper.start()
    return helper


@pytest.fixture
def resources():
    lock = threading.Lock()
    lock.acquire()
    reader, writer = os.pipe()
    left, right = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    stuck = threading.Thread(target=lock.acquire, daemon=True)
    stuck.start()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield {"lock": lock, "pipe": reader, "socket": left, "listener": listener, "stuck": stuck, "child": child}
    child.kill()
    child.wait()
    lock.release()
    stuck.join(WAIT)
    for fd in (reader, writer):
        os.close(fd)
    for sock in (left, right, listener):
        sock.close()


WAITS = {
    "time.sleep": lambda r: time.sleep(LONG),
    "Lock.acquire": lambda r: r["lock"].acquire(timeout=LONG),
    "Thread.join": lambda r: r["stuck"].join(LONG),
    "select.select": lambda r: select.select([r["pipe"]], [], [], LONG),
    "os.read on a pipe": lambda r: os.read(r["pipe"], 1),
    "socket.recv": lambda r: r["socket"].recv(1),
    "socket.accept": lambda r: r["listener"].accept(),
    "subprocess wait": lambda r: r["child"].wait(LONG),
}


@pytest.mark.parametrize("name", WAITS)
def test_the_main_thread_is_woken_from(name: str, resources) -> None:
    assert threading.current_thread() is threading.main_thread()
    helper = interrupt_main_soon()
    t0 = time.monotonic()
    with pytest.raises(hardstop.Interrupted):
        WAITS[name](resources)
    assert time.monotonic() - t0 < WAIT
    helper.join(WAIT)
    assert receipts[0].wake == "SIGURG sent to the main thread"
    assert_nothing_pending(threading.get_ident())


def test_the_default_wake_signal_is_sigurg() -> None:
    assert hardstop.wake_signal() == signal.SIGURG


def test_without_a_wake_signal_the_main_thread_is_not_woken() -> None:
    hardstop.set_wake_signal(None)
    try:
        assert hardstop.wake_signal() is None
        assert signal.getsignal(signal.SIGURG) == signal.SIG_DFL
        receipts: list[hardstop.Receipt] = []
        main = threading.main_thread()

        def interrupter() -> None:
            time.sleep(0.1)
            receipts.append(hardstop.interrupt(main))
            time.sleep(0.3)
            receipts.append(receipts[0].cancel())

        helper = threading.Thread(target=interrupter)
        helper.start()
        time.sleep(0.6)  # not woken: the helper withdraws the request meanwhile
        helper.join(WAIT)
        assert receipts[1] is True
    finally:
        hardstop.set_wake_signal(signal.SIGURG)
    assert hardstop.wake_signal() == signal.SIGURG


def test_the_wake_signal_can_be_moved_to_another_signal() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    hardstop.set_wake_signal(signal.SIGUSR2)
    try:
        assert hardstop.wake_signal() == signal.SIGUSR2
        assert signal.getsignal(signal.SIGURG) == signal.SIG_DFL
        helper = interrupt_main_soon()
        with pytest.raises(hardstop.Interrupted):
            time.sleep(LONG)
        helper.join(WAIT)
    finally:
        hardstop.set_wake_signal(signal.SIGURG)
    assert signal.getsignal(signal.SIGUSR2) == before


def test_the_wake_signal_can_only_be_set_from_the_main_thread() -> None:
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            hardstop.set_wake_signal(signal.SIGUSR2)
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(WAIT)
    assert [str(e) for e in errors] == [
        f"hardstop.set_wake_signal({signal.SIGUSR2!r}) must be called from the main thread: "
        "CPython only lets the main thread install signal handlers."
    ]
    assert hardstop.wake_signal() == signal.SIGURG


def test_a_handler_installed_before_hardstop_is_chained_and_not_called_for_wakes() -> None:
    script = textwrap.dedent("""
        import os, signal, threading, time
        calls = []
        def users_handler(signum, frame):
            calls.append(signum)
        signal.signal(signal.SIGURG, users_handler)
        import hardstop
        os.kill(os.getpid(), signal.SIGURG)          # somebody else's SIGURG
        time.sleep(0.05)
        main = threading.main_thread()
        threading.Thread(target=lambda: (time.sleep(0.1), hardstop.interrupt(main))).start()
        try:
            time.sleep(60)
        except hardstop.Interrupted:
            print("woken")
        print("user handler calls:", len(calls))
        hardstop.set_wake_signal(None)
        print("restored:", signal.getsignal(signal.SIGURG) is users_handler)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["woken", "user handler calls: 1", "restored: True"]


def test_a_handler_installed_before_hardstop_is_not_called_for_withdrawn_wakes() -> None:
    # Each request is withdrawn right after its signal was sent: our handler then
    # runs with nothing armed, and must not pass hardstop's signal on.
    script = textwrap.dedent("""
        import os, signal, sys, threading, time
        calls = []
        signal.signal(signal.SIGURG, lambda signum, frame: calls.append(signum))
        import hardstop
        sys.setswitchinterval(1.0)  # the withdrawing thread keeps the GIL from interrupt() to cancel()
        main = threading.main_thread()
        done = threading.Event()
        outcomes = []
        started = threading.Event()
        def withdraw():
            # Not before the main thread is past start(): a wake in its Condition wait
            # releases a lock and cannot be withdrawn, so that exception would land.
            started.wait()
            for _ in range(20):
                receipt = hardstop.interrupt(main)
                outcomes.append((receipt.wake, receipt.cancel()))
                time.sleep(0.02)  # the main thread runs the handler meanwhile
            done.set()
        def nap():
            try:
                time.sleep(0.01)
            except hardstop.Interrupted:
                outcomes.append(("raised", False))
        threading.Thread(target=withdraw).start()
        started.set()
        while not done.is_set():
            nap()
        print("user handler calls:", len(calls))
        print("withdrawn after a signal:", sum(w == "SIGURG sent to the main thread" and c for w, c in outcomes) > 0)
        os.kill(os.getpid(), signal.SIGURG)  # somebody else's SIGURG still reaches the user's handler
        time.sleep(0.05)
        print("user handler calls:", len(calls))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "user handler calls: 0",
        "withdrawn after a signal: True",
        "user handler calls: 1",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux shows another thread's signal mask")
def test_a_main_thread_that_blocks_the_wake_signal_is_not_claimed_woken() -> None:
    script = textwrap.dedent("""
        import signal, threading, time
        import hardstop
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGURG])
        main = threading.main_thread()
        napping = threading.Event()
        receipts = []
        def interrupt_main():
            napping.wait(10)
            receipts.append(hardstop.interrupt(main))
        threading.Thread(target=interrupt_main).start()
        def nap():
            napping.set()
            time.sleep(1.0)
        try:
            nap()
        except hardstop.Interrupted:
            pass
        print(receipts[0].status)
        print(receipts[0].wake)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status, wake = result.stdout.splitlines()
    assert status == "delivered"
    assert re.fullmatch(
        re.escape("not woken: the thread blocks SIGURG, the wake signal, with signal.pthread_sigmask (it is in ")
        + r"\w+, <string>:\d+\)"
        + re.escape("; if it is blocked in C (time.sleep, Lock.acquire, I/O), it raises only when that call returns"),
        wake,
    ), wake


def test_a_join_ended_by_hardstop_leaves_the_joined_thread_alive_and_waited_for() -> None:
    # 3.10-3.12: threading's join released the running thread's own lock when an
    # exception ended the wait, so it read as stopped and was not waited for at exit.
    script = textwrap.dedent("""
        import sys, threading, time, hardstop
        phases_done = threading.Event()
        def work():
            try:
                phases_done.wait(60)
                time.sleep(0.2)  # the interpreter is exiting by now: it must wait for this thread
            finally:
                print("the worker's finally ran", flush=True)
        worker = threading.Thread(target=work)
        worker.start()
        def join_within_deadline():
            try:
                with hardstop.deadline(0.1):
                    worker.join()
            except hardstop.DeadlineExceeded:
                print("join ended by the deadline")
        waiting = "_wait_for_tstate_lock" if sys.version_info < (3, 13) else "join"
        def interrupt_once_joining(main):
            end = time.monotonic() + 10
            while hardstop._hardstop.current_frame(main.ident).f_code.co_name != waiting and time.monotonic() < end:
                time.sleep(0.001)
            hardstop.interrupt(main)
        def join_until_interrupted():
            main = threading.main_thread()
            threading.Thread(target=interrupt_once_joining, args=(main,), daemon=True).start()
            try:
                worker.join()
            except hardstop.Interrupted:
                print("join ended by an interrupt")
        for end_the_join in (join_within_deadline, join_until_interrupted):
            end_the_join()
            print("alive:", worker.is_alive())
            worker.join(0.05)
            print("alive after a second join:", worker.is_alive())
        phases_done.set()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "join ended by the deadline",
        "alive: True",
        "alive after a second join: True",
        "join ended by an interrupt",
        "alive: True",
        "alive after a second join: True",
        "the worker's finally ran",
    ]


def test_a_bad_signal_number_is_refused_and_changes_nothing() -> None:
    with pytest.raises(ValueError, match=re.escape("set_wake_signal() takes a signal that can be caught, not 100000.")):
        hardstop.set_wake_signal(100000)
    assert hardstop.wake_signal() == signal.SIGURG  # nothing changed
