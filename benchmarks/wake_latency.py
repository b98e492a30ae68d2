"""Time from interrupt() to the exception caught in a thread blocked in a wait.

Run: python benchmarks/wake_latency.py [--trials N]

For each wait: a worker blocks in it, the main thread calls hardstop.interrupt()
and then waits on the receipt; the worker timestamps the exception as it
catches it. Rows marked (main) block the main thread instead, interrupted by a
helper thread (woken by hardstop's signal on POSIX). Reported: median and p99 over N trials, in milliseconds. Beside it,
the bare ctypes recipe on the same wait, which arms the exception and never
wakes the thread: its outcome after a bounded wait is reported.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import queue
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable

import hardstop

set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
set_async_exc.restype = ctypes.c_int

LONG = 30.0
BOUND = 0.5


class Stop(BaseException):
    pass


def waits() -> dict[str, object]:
    def condition_wait():
        condition = threading.Condition()
        with condition:
            condition.wait(LONG)

    return {
        "Condition.wait": condition_wait,
        "Event.wait": lambda: threading.Event().wait(LONG),
        "Queue.get": lambda: queue.Queue().get(timeout=LONG),
        "Semaphore.acquire": lambda: threading.Semaphore(0).acquire(timeout=LONG),
        "hardstop.sleep": lambda: hardstop.sleep(LONG),
    }


def one_trial(wait, arm) -> float | None:
    """Seconds from arming to the catch, or None if not caught within BOUND."""
    caught = []
    blocking = threading.Event()

    def worker():
        blocking.set()
        try:
            wait()
        except (hardstop.Interrupted, Stop):
            caught.append(time.perf_counter())

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    blocking.wait()
    time.sleep(0.002)  # into the wait itself
    t0 = time.perf_counter()
    arm(thread)
    thread.join(BOUND)
    return caught[0] - t0 if caught else None


def one_main_trial(wait, arm) -> float | None:
    """The same with this (the main) thread as the target and a helper arming."""
    sent: list[float] = []
    main = threading.main_thread()

    def helper():
        time.sleep(0.002)
        sent.append(time.perf_counter())
        arm(main)

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    try:
        wait()
    except (hardstop.Interrupted, Stop):
        caught = time.perf_counter()
        thread.join()
        return caught - sent[0]
    thread.join()
    return None


def worker_syscalls() -> dict[str, object]:
    """Woken in a worker by the wake signal on CPython 3.15+ only."""
    reader, writer = socket.socketpair()
    pipe_read, pipe_write = os.pipe()
    # The workers these leave blocked (where not woken) are let go at the end.
    release_at_end.append(lambda: writer.send(b"x" * 1024))
    release_at_end.append(lambda: os.write(pipe_write, b"x" * 1024))
    return {
        "time.sleep": lambda: time.sleep(LONG),
        "select.select": lambda: select.select([], [], [], LONG),
        "socket.recv": lambda: reader.recv(1),
        "os.read (pipe)": lambda: os.read(pipe_read, 1),
    }


release_at_end: list[Callable[[], object]] = []


def main_waits() -> dict[str, object]:
    lock = threading.Lock()
    lock.acquire()
    return {
        "time.sleep": lambda: time.sleep(BOUND),
        "Lock.acquire": lambda: lock.acquire(timeout=BOUND),
        "select.select": lambda: select.select([], [], [], BOUND),
    }


def with_hardstop(thread):
    hardstop.interrupt(thread).wait(BOUND)


def bare_recipe(thread):
    set_async_exc(thread.ident, Stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.machine()} {platform.system()}, {args.trials} trials per wait"
    )
    print(f"{'wait (thread)':22} {'hardstop median ms':>17} {'p99 ms':>8} {'woken':>8}   bare ctypes recipe")
    rows = [(f"{name}", wait, one_trial) for name, wait in waits().items()]
    rows += [(f"{name} (main)", wait, one_main_trial) for name, wait in main_waits().items()]
    rows += [(f"{name} (worker)", wait, one_trial) for name, wait in worker_syscalls().items()]
    for name, wait, trial in rows:
        samples = []
        for _ in range(args.trials):
            samples.append(trial(wait, with_hardstop))
            if len(samples) == 3 and samples == [None] * 3:
                break  # not woken on this version: three blocked trials say so
        woken = [s * 1e3 for s in samples if s is not None]
        bare = trial(wait, bare_recipe)
        if bare is None:
            bare_text = f"not woken: armed, still blocked after {BOUND:.1f} s"
        elif bare >= BOUND * 0.9:
            bare_text = f"not woken: raised only when the {BOUND:.1f} s wait ended by itself"
        else:
            bare_text = f"woken in {bare * 1e3:.2f} ms"
        if woken:
            p99 = statistics.quantiles(woken, n=100)[98] if len(woken) > 1 else woken[0]
            print(
                f"{name:22} {statistics.median(woken):17.3f} {p99:8.3f} {len(woken):>4}/{len(samples):<3}   {bare_text}"
            )
        else:
            print(f"{name:22} {'-':>17} {'-':>8} {0:>4}/{len(samples):<3}   {bare_text}")
    for release in release_at_end:
        release()


if __name__ == "__main__":
    main()
