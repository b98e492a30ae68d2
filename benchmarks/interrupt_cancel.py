"""Cost of one request and its withdrawal: hardstop against the bare ctypes recipe.

Run: python benchmarks/interrupt_cancel.py [--pairs N] [--batches B]

Everything runs in this one process, side by side: for each case, B batches of
N pairs of the bare recipe and of hardstop, interleaved (bare, hardstop, bare,
...), each batch timed in this thread's CPU time. Reported per case: the median
microseconds per pair of each, and bare / hardstop (>= 1.0: hardstop costs no
more). The bare recipe is the corrected ctypes one (``argtypes`` with
``c_ulong``), arming a class then clearing the slot with NULL; hardstop checks
the target, keeps a receipt, and on 3.10-3.12 resets the interpreter-wide flag
that the bare recipe leaves set.

Cases:

* ``wake=False``: ``interrupt(t, wake=False).cancel()``, the target blocked in
  ``Lock.acquire``.
* default wake, the target running Python (the odd request that lands before
  the withdrawal is caught by the target and counted).
* default wake, the target blocked in ``Lock.acquire`` (nothing can end it).
* an exception instance (default wake, target in ``Lock.acquire``).
* a real ``Condition`` wake: the target in ``Event.wait``; hardstop's request
  ends the wait and, its wake begun, cannot be withdrawn, so it lands; the bare
  recipe arms and notifies the condition (the closest it can do). Timed: the
  interrupter's CPU time per request; untimed: waiting for the target to be
  back in its wait.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import threading
import time
from collections.abc import Callable

import hardstop
from hardstop._hardstop import in_protected_code

set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
set_async_exc.restype = ctypes.c_int
clear_async_exc = ctypes.PyDLL(None).PyThreadState_SetAsyncExc
clear_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
clear_async_exc.restype = ctypes.c_int

Method = Callable[[threading.Thread, int], float]  # returns CPU seconds spent on the pairs


class Poke(Exception):
    """What both methods raise; targets catch it and go on."""


def bare(thread: threading.Thread, pairs: int) -> float:
    ident = thread.ident
    t0 = time.thread_time()
    for _ in range(pairs):
        set_async_exc(ident, Poke)
        clear_async_exc(ident, None)
    return time.thread_time() - t0


def hardstop_no_wake(thread: threading.Thread, pairs: int) -> float:
    interrupt = hardstop.interrupt
    t0 = time.thread_time()
    for _ in range(pairs):
        interrupt(thread, Poke, wake=False).cancel()
    return time.thread_time() - t0


def hardstop_default(thread: threading.Thread, pairs: int) -> float:
    interrupt = hardstop.interrupt
    t0 = time.thread_time()
    for _ in range(pairs):
        interrupt(thread, Poke).cancel()
    return time.thread_time() - t0


def hardstop_instance(thread: threading.Thread, pairs: int) -> float:
    interrupt = hardstop.interrupt
    poke = Poke("an instance")
    t0 = time.thread_time()
    for _ in range(pairs):
        interrupt(thread, poke).cancel()
    return time.thread_time() - t0


def spin_catching(stop: threading.Event, landed: list[int]) -> None:
    while not stop.is_set():
        try:
            spin(stop)
        except Poke:
            landed[0] += 1


def spin(stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1


class EventWaiter:
    """A thread that waits on an Event, catches Poke, and waits again."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.back = threading.Semaphore(0)  # released each time it is about to wait again
        self.landed = 0
        self.woken = True  # the last request ended its wait: it comes back to wait again
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.event.is_set():
            try:
                self._wait()
            except Poke:
                self.landed += 1

    def _wait(self) -> None:
        self.back.release()
        self.event.wait()

    def in_wait(self) -> None:
        """Until the target is back, blocked at its wait (not in the lock handling around it)."""
        if self.woken:
            self.back.acquire()
        condition = self.event._cond  # type: ignore[attr-defined]
        while not condition._waiters or in_protected_code(self.thread.ident):
            time.sleep(0)


def condition_bare(waiter: EventWaiter, pairs: int) -> float:
    ident = waiter.thread.ident
    condition = waiter.event._cond  # type: ignore[attr-defined]
    spent = 0.0
    for _ in range(pairs):
        waiter.in_wait()
        t0 = time.thread_time()
        set_async_exc(ident, Poke)
        with condition:
            condition.notify()
        spent += time.thread_time() - t0
    return spent


def condition_hardstop(waiter: EventWaiter, pairs: int) -> float:
    interrupt = hardstop.interrupt
    spent = 0.0
    for _ in range(pairs):
        waiter.in_wait()
        t0 = time.thread_time()
        waiter.woken = not interrupt(waiter.thread, Poke).cancel()
        spent += time.thread_time() - t0
    return spent


def side_by_side(target: object, methods: tuple[Callable, Callable], pairs: int, batches: int) -> tuple[float, float]:
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(batches):
        for method, into in zip(methods, samples, strict=True):
            into.append(method(target, pairs) / pairs * 1e6)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=9)
    args = parser.parse_args()

    blocker = threading.Lock()
    blocker.acquire()
    blocked = threading.Thread(target=blocker.acquire, daemon=True)
    blocked.start()
    stop = threading.Event()
    landed = [0]
    running = threading.Thread(target=spin_catching, args=(stop, landed), daemon=True)
    running.start()
    waiter = EventWaiter()
    waiter.thread.start()
    condition_pairs = max(args.pairs // 20, 50)
    rows = []
    try:
        rows.append(("wake=False", *side_by_side(blocked, (bare, hardstop_no_wake), args.pairs, args.batches)))
        rows.append(
            ("default wake, running Python", *side_by_side(running, (bare, hardstop_default), args.pairs, args.batches))
        )
        rows.append(
            (
                "default wake, in Lock.acquire",
                *side_by_side(blocked, (bare, hardstop_default), args.pairs, args.batches),
            )
        )
        rows.append(("exception instance", *side_by_side(blocked, (bare, hardstop_instance), args.pairs, args.batches)))
        rows.append(
            (
                "Condition wake (Event.wait)",
                *side_by_side(waiter, (condition_bare, condition_hardstop), condition_pairs, args.batches),
            )
        )
    finally:
        blocker.release()
        stop.set()
        waiter.event.set()
    print(
        f"Python {platform.python_version()} on {platform.machine()} {platform.system()}: "
        f"{args.pairs} pairs ({condition_pairs} for the Condition wake) x {args.batches} interleaved batches; "
        f"CPU time of the requesting thread"
    )
    print(f"{'case':32} {'bare us':>9} {'hardstop us':>12} {'bare / hardstop':>16}")
    for name, bare_us, hardstop_us in rows:
        print(f"{name:32} {bare_us:9.3f} {hardstop_us:12.3f} {bare_us / hardstop_us:16.2f}")
    print(f"(requests that landed in the running target before their withdrawal: {landed[0]})")


if __name__ == "__main__":
    main()
