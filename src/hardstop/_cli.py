"""``python -m hardstop``: what this interpreter supports, then a live demonstration.

Every row of the demonstration is measured as it runs: a thread is put in a
known state, interrupted, and given a bound to raise. What did not stop is said
so, its request is withdrawn (so nothing lands later) and the thread is released.
"""

from __future__ import annotations

import argparse
import platform
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

import hardstop

BOUND = 1.0  # seconds a stuck thread is given to raise


def _scenarios(release: threading.Event, lock: threading.Lock) -> list[tuple[str, Callable[[], object]]]:
    """Ways for a worker thread to be stuck; each ends by itself once released."""

    def loop() -> None:
        while not release.is_set():
            pass

    def acquire() -> None:
        if lock.acquire(timeout=BOUND * 3):
            lock.release()

    return [
        ("pure-Python loop", loop),
        ("threading.Event.wait()", lambda: release.wait(BOUND * 3)),
        ("queue.Queue.get()", lambda: queue.Queue().get(timeout=BOUND * 3)),
        ("hardstop.sleep()", lambda: hardstop.sleep(BOUND * 3)),
        ("time.sleep()", lambda: time.sleep(BOUND * 1.5)),
        ("Lock.acquire()", acquire),
    ]


def _measure(name: str, body: Callable[[], object]) -> tuple[str, str, str, str]:
    started = threading.Event()
    outcome: list[str] = []

    def run() -> None:
        started.set()
        try:
            body()
            outcome.append("returned")
        except hardstop.Interrupted:
            outcome.append("interrupted")
        except queue.Empty:
            outcome.append("timed out")

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    started.wait(BOUND)
    time.sleep(0.05)  # let it settle into the state being shown
    t0 = time.perf_counter()
    receipt = hardstop.interrupt(thread)
    delivered = receipt.wait(BOUND)
    elapsed = time.perf_counter() - t0
    if delivered:
        return name, "stopped", f"{elapsed * 1e3:.2f} ms", ""
    withdrawn = receipt.cancel()
    note = "a worker blocked in C: raised only when the call returns"
    if not withdrawn:
        note += " (raised late)"
    return name, "NOT stopped", f"> {BOUND:.1f} s", note


def _main_thread_row(name: str, body: Callable[[], object]) -> tuple[str, str, str, str]:
    """Run ``body`` in this (the main) thread while a helper interrupts it."""
    main = threading.current_thread()
    ready = threading.Event()
    sent: list[float] = []
    receipts: list[hardstop.Receipt] = []

    def interrupter() -> None:
        ready.wait(BOUND)
        time.sleep(0.05)  # let the main thread settle into the state being shown
        sent.append(time.perf_counter())
        receipts.append(hardstop.interrupt(main))
        if not receipts[0].wait(BOUND):
            receipts[0].cancel()

    helper = threading.Thread(target=interrupter, daemon=True)
    helper.start()
    try:
        ready.set()
        body()
    except hardstop.Interrupted:
        elapsed = time.perf_counter() - sent[0]
        helper.join(BOUND * 2)
        return f"{name}, main thread", "stopped", f"{elapsed * 1e3:.2f} ms", ""
    helper.join(BOUND * 2)
    why = "no wake signal here (see hardstop.set_wake_signal)" if hardstop.wake_signal() is None else ""
    return f"{name}, main thread", "NOT stopped", f"> {BOUND:.1f} s", why


def _spin_until(end: float) -> None:
    while time.monotonic() < end:
        pass


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _main_thread_line() -> str:
    signum = hardstop.wake_signal()
    if signum is None:
        return "main thread in time.sleep, locks, joins, I/O: not woken (no wake signal installed)"
    name = signal.Signals(signum).name
    return f"main thread in time.sleep, locks, joins, select, I/O, subprocess waits: woken by {name}"


def describe() -> str:
    from hardstop import _hardstop

    return "\n".join(
        [
            f"hardstop {hardstop.__version__}",
            f"Python {platform.python_version()} ({platform.python_implementation()}) on {platform.system()} "
            f"{platform.machine()}",
            f"extension: {_hardstop.__file__}",
            "raised at once: pure-Python code, in any thread, including the main thread and the caller itself",
            "woken in any thread: threading.Condition waits (Event, Queue, Semaphore, Barrier), hardstop.sleep(), "
            "and any wait inside hardstop.unblocking()",
            _main_thread_line(),
            _worker_line(),
        ]
    )


def _worker_line() -> str:
    from hardstop import _wake

    if _wake._SIGNAL_WORKERS and hardstop.wake_signal() is not None:
        return (
            "worker threads in time.sleep, select, socket and pipe I/O, subprocess waits: woken by the wake signal "
            "(CPython 3.15+); not woken: Lock.acquire and other waits in C, raised when they return"
        )
    return (
        "not woken: other waits in C (time.sleep, Lock.acquire, I/O) in worker threads; their requests stay "
        "pending and can be withdrawn (a signal ends a worker's system call only from CPython 3.15)"
    )


def demo() -> str:
    release = threading.Event()
    lock = threading.Lock()
    lock.acquire()
    rows = [("thread stuck in", "result", "time to stop", "why")]
    try:
        rows.extend(_measure(name, body) for name, body in _scenarios(release, lock))
        rows.append(_main_thread_row("pure-Python loop", lambda: _spin_until(time.monotonic() + BOUND * 1.5)))
        rows.append(_main_thread_row("time.sleep()", lambda: time.sleep(BOUND * 1.5)))
    finally:
        release.set()
        lock.release()
    return _table(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from hardstop.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m hardstop", description=__doc__.splitlines()[0])
    parser.add_argument("--no-demo", action="store_true", help="only print what this interpreter supports")
    args = parser.parse_args(argv)
    print(describe())
    if not args.no_demo:
        print()
        print(demo())
    return 0
