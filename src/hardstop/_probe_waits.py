"""Waits, probed now: can hardstop end a thread's wait on this interpreter?

Each probe puts a thread in one wait (a worker thread, then the main thread),
interrupts it from another thread with ``hardstop.interrupt()``, and gives it
``BOUND`` seconds to raise. A wait counts as stopped only if the exception was
raised inside the wait, within the bound; the thread said when it entered the
wait, and the request is sent only after that and a short settling pause. A
request that was not raised in time is withdrawn (``receipt.cancel()``) and the
thread released (event set, byte written, lock released, child killed), then
joined: nothing is left armed or running. The worker probes run side by side,
so that the waits nothing ends cost one bound in all, not one each.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import hardstop

BOUND = 1.0  # seconds a thread is given to raise once interrupted
SETTLE = 0.05  # pause between a thread saying it enters a wait and the request
# Waits that nothing but the interrupt can end early (sleeps) last this long, so
# that one not stopped ends by itself soon after its request was withdrawn.
UNRELEASABLE = BOUND + SETTLE + 0.5
_BRIEFLY = 0.05  # waited for each stop before the next request is made
BACKSTOP = BOUND * 3  # the timeout of every other wait: released long before

WORKER = "worker"
MAIN = "main"

# A probe's outcome.
STOPPED = "stopped"  # raised inside the wait, within the bound
NOT_STOPPED = "not stopped"  # still waiting after the bound: withdrawn, then released
LATE = "stopped late"  # raised after the bound, as it was being withdrawn
RETURNED_FIRST = "returned first"  # the wait ended by itself before the exception was raised
NOT_PROBED = "not probed"  # see the note


@dataclass
class _Setup:
    """One wait, ready to run: ``wait()`` blocks, ``release()`` ends it from outside."""

    wait: Callable[[], object]
    release: Callable[[], None]
    close: Callable[[], None] = lambda: None
    # Seconds after which the wait ends by itself (its timeout; None: never). An
    # exception raised that late was raised as it returned, not inside it: on a
    # loaded machine a request can come that late (3.14t CI: a worker's
    # time.sleep read "stopped" so).
    lasts: float | None = BACKSTOP


def _pure_python_loop() -> _Setup:
    stop = [False]

    def spin() -> None:
        end = time.monotonic() + BACKSTOP
        while not stop[0] and time.monotonic() < end:
            pass

    return _Setup(spin, lambda: stop.__setitem__(0, True))


def _event_wait() -> _Setup:
    event = threading.Event()
    return _Setup(lambda: event.wait(BACKSTOP), event.set)


def _condition_wait() -> _Setup:
    condition = threading.Condition()

    def wait() -> None:
        with condition:
            condition.wait(BACKSTOP)

    def release() -> None:
        with condition:
            condition.notify_all()

    return _Setup(wait, release)


def _queue_get() -> _Setup:
    items: queue.Queue[None] = queue.Queue()
    return _Setup(lambda: items.get(timeout=BACKSTOP), lambda: items.put(None))


def _hardstop_sleep() -> _Setup:
    return _Setup(lambda: hardstop.sleep(UNRELEASABLE), lambda: None, lasts=UNRELEASABLE)


def _time_sleep() -> _Setup:
    return _Setup(lambda: time.sleep(UNRELEASABLE), lambda: None, lasts=UNRELEASABLE)


def _lock_acquire() -> _Setup:
    lock = threading.Lock()
    lock.acquire()

    def wait() -> None:
        if lock.acquire(True, BACKSTOP):
            lock.release()

    def release() -> None:
        if lock.locked():
            lock.release()

    return _Setup(wait, release)


def _socket_pair(wait: Callable[[socket.socket], object]) -> _Setup:
    reader, writer = socket.socketpair()
    reader.settimeout(BACKSTOP)

    def release() -> None:
        writer.send(b"x")

    def close() -> None:
        reader.close()
        writer.close()

    return _Setup(lambda: wait(reader), release, close)


def _select_select() -> _Setup:
    return _socket_pair(lambda reader: select.select([reader], [], [], BACKSTOP))


def _socket_recv() -> _Setup:
    return _socket_pair(lambda reader: reader.recv(1))


def _pipe_read() -> _Setup:
    reader, writer = os.pipe()

    def release() -> None:
        os.write(writer, b"x")

    def close() -> None:
        os.close(reader)
        os.close(writer)

    return _Setup(lambda: os.read(reader, 1), release, close, lasts=None)


def _subprocess_wait() -> _Setup:
    # Popen.wait() with a timeout polls in Python; without one it blocks in waitpid.
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", f"import time; time.sleep({BACKSTOP * 2})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def close() -> None:
        child.kill()
        child.wait()

    return _Setup(child.wait, child.kill, close, lasts=None)


@dataclass(frozen=True)
class Wait:
    """A kind of wait the probes put a thread in."""

    label: str
    # "python": bytecode; "hardstop": a wait hardstop ends itself (Condition, its
    # own sleep); "syscall": a system call that retries on EINTR; "lock": a lock
    # wait in C. The main thread's syscall and lock waits are ended by the wake
    # signal only.
    kind: str
    make: Callable[[], _Setup]


WAITS = [
    Wait("pure-Python loop", "python", _pure_python_loop),
    Wait("threading.Event.wait()", "hardstop", _event_wait),
    Wait("threading.Condition.wait()", "hardstop", _condition_wait),
    Wait("queue.Queue.get()", "hardstop", _queue_get),
    Wait("hardstop.sleep()", "hardstop", _hardstop_sleep),
    Wait("time.sleep()", "syscall", _time_sleep),
    Wait("select.select()", "syscall", _select_select),
    Wait("socket.recv()", "syscall", _socket_recv),
    Wait("os.read() on a pipe", "syscall", _pipe_read),
    Wait("subprocess.Popen.wait()", "syscall", _subprocess_wait),
    Wait("threading.Lock.acquire()", "lock", _lock_acquire),
]


@dataclass
class WaitResult:
    """What one wait probe found."""

    wait: str
    thread: str  # "worker" or "main"
    outcome: str  # STOPPED, NOT_STOPPED, LATE, RETURNED_FIRST or NOT_PROBED
    stopped: bool  # raised inside the wait within the bound: the only "yes"
    latency_ms: float | None  # from the interrupt() call to the exception caught there
    note: str  # why, for anything but a plain stop


@dataclass
class _Record:
    """Written by the thread in the wait."""

    entered: float | None = None
    raised_at: float | None = None  # when the exception was caught around the wait
    returned_at: float | None = None  # when the wait returned without it
    error: str | None = None


def _run_wait(setup: _Setup, record: _Record) -> None:
    """The body of a probed thread (or of the main thread, for its own probes)."""
    try:
        try:
            record.entered = time.perf_counter()
            setup.wait()
        except hardstop.Interrupted:
            raised_at = time.perf_counter()
            ran = raised_at - record.entered if record.entered is not None else 0.0
            if setup.lasts is not None and ran >= setup.lasts:
                record.returned_at = raised_at  # it ran its whole length: raised as it returned
            else:
                record.raised_at = raised_at
            return
        except Exception as error:  # noqa: BLE001 - a wait's own timeout or error: it returned
            record.error = repr(error)
        record.returned_at = time.perf_counter()
    except hardstop.Interrupted:
        pass  # landed after the wait had returned: not a stop of the wait


@dataclass
class _Request:
    """The probe's side: what it sent, and what became of it."""

    sent: float = 0.0
    released: float | None = None  # when the probe released the wait, after withdrawing its request
    delivered: bool = False
    withdrawn: bool = False
    not_sent: str = ""


def _conclude(wait: Wait, thread: str, record: _Record, request: _Request) -> WaitResult:
    if request.not_sent:
        return WaitResult(wait.label, thread, NOT_PROBED, False, None, request.not_sent)
    if record.raised_at is not None and request.delivered:
        latency = round((record.raised_at - request.sent) * 1e3, 3)
        return WaitResult(wait.label, thread, STOPPED, True, latency, "")
    if record.raised_at is not None:
        note = f"raised after {BOUND:g} s, as its request was being withdrawn"
        return WaitResult(wait.label, thread, LATE, False, None, note)
    if record.returned_at is not None and (request.released is None or record.returned_at < request.released):
        note = "the wait ended by itself before the exception was raised"
        if record.error:
            note += f" ({record.error})"
        return WaitResult(wait.label, thread, RETURNED_FIRST, False, None, note)
    note = f"still waiting after {BOUND:g} s: its request was withdrawn"
    if thread == WORKER and wait.kind in ("syscall", "lock"):
        note += "; a worker blocked in C raises only when the call returns"
    return WaitResult(wait.label, thread, NOT_STOPPED, False, None, note)


def _wait_for(condition: Callable[[], bool], limit: float) -> bool:
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= end:
            return False
        time.sleep(0.001)
    return True


def _interrupt(thread: threading.Thread, request: _Request) -> hardstop.Receipt:
    request.sent = time.perf_counter()
    return hardstop.interrupt(thread)


def _settle_results(receipts: list[tuple[hardstop.Receipt, _Request]]) -> None:
    """Give each request the bound to be raised; withdraw those that were not."""
    end = time.monotonic() + BOUND
    for receipt, request in receipts:
        request.delivered = receipt.wait(max(0.0, end - time.monotonic()))
    for receipt, request in receipts:
        if not request.delivered:
            request.withdrawn = receipt.cancel()


def _interrupt_each(targets: list[tuple[threading.Thread, _Request]]) -> list[tuple[hardstop.Receipt, _Request]]:
    """Interrupt the targets one by one, waiting briefly for each: a thread woken
    while the next request is being made would wait for the GIL, and its time to
    stop would be the requests' time, not its own."""
    receipts = []
    for thread, request in targets:
        receipt = _interrupt(thread, request)
        receipt.wait(_BRIEFLY)
        receipts.append((receipt, request))
    return receipts


def probe_workers(waits: list[Wait]) -> list[WaitResult]:
    """Probe ``waits`` in worker threads, side by side."""
    runs = []
    for wait in waits:
        setup, record, request = wait.make(), _Record(), _Request()
        thread = threading.Thread(
            target=_run_wait, args=(setup, record), name=f"hardstop-probe: {wait.label}", daemon=True
        )
        runs.append((wait, setup, record, request, thread))
    try:
        for _, _, _, _, thread in runs:
            thread.start()
        _wait_for(lambda: all(record.entered is not None for _, _, record, _, _ in runs), BOUND)
        time.sleep(SETTLE)  # from "entering" to inside the wait
        targets = []
        for _, _, record, request, thread in runs:
            if record.entered is None:
                request.not_sent = f"the thread did not reach the wait within {BOUND:g} s"
            else:
                targets.append((thread, request))
        _settle_results(_interrupt_each(targets))
    finally:
        for _, setup, _, request, _ in runs:
            request.released = time.perf_counter()
            setup.release()
        for _, setup, _, _, thread in runs:
            thread.join(UNRELEASABLE + BOUND)
            setup.close()
    return [_conclude(wait, WORKER, record, request) for wait, _, record, request, _ in runs]


def probe_main_thread(wait: Wait) -> WaitResult:
    """Probe ``wait`` in this thread, which must be the main thread, interrupted by a helper."""
    if threading.current_thread() is not threading.main_thread():
        return WaitResult(wait.label, MAIN, NOT_PROBED, False, None, "the probes ran outside the main thread")
    if wait.kind in ("syscall", "lock") and hardstop.wake_signal() is None:
        note = "no wake signal is installed, and only it ends the main thread's system calls and lock waits"
        return WaitResult(wait.label, MAIN, NOT_PROBED, False, None, note)
    setup, record, request = wait.make(), _Record(), _Request()
    main = threading.current_thread()

    def interrupter() -> None:
        try:
            if not _wait_for(lambda: record.entered is not None, BOUND):
                request.not_sent = f"the main thread did not reach the wait within {BOUND:g} s"
                return
            time.sleep(SETTLE)
            _settle_results([(_interrupt(main, request), request)])
        finally:
            request.released = time.perf_counter()
            setup.release()

    helper = threading.Thread(target=interrupter, name=f"hardstop-probe: interrupt main ({wait.label})", daemon=True)
    helper.start()
    try:
        _run_wait(setup, record)
    finally:
        helper.join(BOUND * 3)
        setup.close()
    return _conclude(wait, MAIN, record, request)


def probe_waits() -> list[WaitResult]:
    """Every wait in a worker thread, then in the main thread."""
    # The loop alone first: spinning, it would slow every other probe's request.
    loop, others = WAITS[0], WAITS[1:]
    results = probe_workers([loop]) + probe_workers(others)
    results += [probe_main_thread(wait) for wait in WAITS]
    return results
