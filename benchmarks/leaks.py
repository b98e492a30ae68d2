"""Leak check: many interrupt + cancel pairs and many deadline blocks leave no memory behind.

Run: python benchmarks/leaks.py [--quick] [--count N] [--limit-kb K]

Two workloads, each run ``N`` times (1,000,000 by default; 100,000 with
``--quick``) after a warm-up of ``N / 10``:

1. pairs: ``hardstop.interrupt(target, exc).cancel()`` against a live thread
   blocked in ``Lock.acquire()`` (which nothing wakes in a worker), so that
   every request is really armed in its thread state's slot and withdrawn,
   never raised; each ``cancel()`` must return True;
2. blocks: ``with hardstop.deadline(60): pass``, each scheduled with the
   watchdog and withdrawn on exit.

Each workload is measured twice: a plain pass for the resident set size (from
/proc/self/statm, after ``gc.collect()``) and, on a debug interpreter, for
``sys.gettotalrefcount()``; then a pass under ``tracemalloc`` for the bytes
still allocated through Python's allocators (the extension allocates nothing
else). Separate passes, because tracemalloc's own tables would count in the
RSS. Limits: growth under ``K`` KiB (1024 for N = 1,000,000, proportional to N
otherwise, never under 512 KiB: the watchdog's heap keeps up to ~1,000 left
deadlines until it compacts, a sawtooth of ~210 KiB on 3.12, and the RSS moves
by whole pages), and a refcount drift under 1 per 100 operations, never under
10,000 (that heap's sawtooth moves it by up to ~5,000).
Exit status 1 if any is exceeded.

``--exercise N`` instead runs the extension's main paths N times: requests
raised in a busy thread (a class, an instance, one queued behind another),
withdrawn while armed and while queued, held by a shield and raised as the
thread leaves it and ends; deadlines that expire (in a sleep and in a loop),
are withdrawn, or end unused; then a deadline expiring in a worker, and a
``kill()`` that stops a thread and one that cannot. It is the short run that
``.ci/memcheck`` puts under valgrind, where a million of anything is too slow.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

import hardstop
from hardstop import _hardstop

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def total_refs() -> int | None:
    counter = getattr(sys, "gettotalrefcount", None)  # debug builds only
    return counter() if counter else None


def wait_on(lock: threading.Lock) -> None:
    # A frame of our own around the wait: hardstop arms nothing while a thread's
    # innermost frame is threading's own code (Thread.run, if the target were
    # lock.acquire itself), so the requests would only be queued.
    lock.acquire()
    checkpoint()  # once released: a function's start, where what is armed is raised in our own frame


def checkpoint() -> None:
    pass


def start_blocked(lock: threading.Lock) -> threading.Thread:
    """A thread blocked in ``lock.acquire()``, which nothing wakes in a worker thread."""
    lock.acquire()
    thread = threading.Thread(target=wait_on, args=(lock,), name="blocked", daemon=True)
    thread.start()
    time.sleep(0.2)  # let it reach the acquire: a request made before then would be raised
    probe = hardstop.interrupt(thread)
    armed = _hardstop.is_armed(probe)  # private, but the only way to know the pairs below really arm
    if not probe.cancel() or not armed:
        raise AssertionError(f"a request to the blocked thread was not armed and withdrawn: {probe}")
    return thread


def pairs(target: threading.Thread, count: int) -> None:
    interrupt, error = hardstop.interrupt, TimeoutError("never raised")
    for _ in range(count):
        if not interrupt(target, error).cancel():
            raise AssertionError("a request was raised: the target is not blocked")


def blocks(count: int) -> None:
    deadline = hardstop.deadline
    for _ in range(count):
        with deadline(60):
            pass


def measure(name: str, run: Callable[[int], None], count: int, limit: int) -> list[str]:
    """Run ``run(count)`` after a warm-up; print its growth; return what exceeded a limit."""
    run(max(count // 10, 1))  # warm-up: caches, free lists, the watchdog thread, dict sizes
    gc.collect()
    rss, refs = rss_bytes(), total_refs()
    run(count)
    gc.collect()
    rss_growth = rss_bytes() - rss
    ref_drift = None if refs is None else total_refs() - refs

    tracemalloc.start()
    run(max(count // 10, 1))
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    run(count)
    gc.collect()
    traced_growth = tracemalloc.get_traced_memory()[0] - traced
    tracemalloc.stop()

    refs_text = "n/a (not a debug build)" if ref_drift is None else f"{ref_drift:+d}"
    print(
        f"{name:7} {count:>9,}: RSS {rss_growth / 1024:+8.1f} KiB   tracemalloc {traced_growth / 1024:+8.1f} KiB"
        f"   refcount {refs_text}"
    )
    failures = []
    if rss_growth >= limit:
        failures.append(f"{name}: RSS grew by {rss_growth / 1024:.1f} KiB (limit {limit / 1024:.0f})")
    if traced_growth >= limit:
        failures.append(f"{name}: tracemalloc grew by {traced_growth / 1024:.1f} KiB (limit {limit / 1024:.0f})")
    if ref_drift is not None and abs(ref_drift) >= max(count // 100, 10_000):
        failures.append(f"{name}: total refcount drifted by {ref_drift:+d}")
    return failures


def busy(stop: threading.Event, caught: list[BaseException]) -> None:
    """Run Python code until ``stop``, recording each exception raised in it."""
    while not stop.is_set():
        try:
            spin(stop)
        except BaseException as error:  # noqa: BLE001 - recording is the point
            caught.append(error)


def spin(stop: threading.Event) -> None:
    # A loop in a function of its own: see the back-edge caveat in docs/known-issues.md.
    while not stop.is_set():
        pass


def shielded_ending(inside: threading.Event, go: threading.Event) -> None:
    with hardstop.shield():
        inside.set()
        go.wait()
    # Left the shield: the held request is raised here, and the thread ends with it.


def exercise(rounds: int) -> int:
    """Each path of the extension, ``rounds`` times; returns 1 if one misbehaved."""
    stop, caught = threading.Event(), []
    ended_by: list[BaseException | None] = []
    # Threads that end with the Interrupted raised in them are the point here: record, do not print.
    threading.excepthook = lambda hook: ended_by.append(hook.exc_value)
    worker = threading.Thread(target=busy, args=(stop, caught), daemon=True)
    worker.start()
    blocker = threading.Lock()
    blocked = start_blocked(blocker)
    wrong = []
    began = time.monotonic()
    for n in range(rounds):
        if n and n % 10 == 0:  # under valgrind a round takes seconds: show it is moving
            print(f"exercise: round {n}, {time.monotonic() - began:.0f} s", flush=True)
        # Raised: a class, an instance, and one queued behind another.
        receipts = [hardstop.interrupt(worker), hardstop.interrupt(worker, ValueError(n))]
        if not all(receipt.wait(10) for receipt in receipts):
            wrong.append(f"round {n}: not delivered: {receipts}")
        # Withdrawn while armed, and while queued.
        first, second = hardstop.interrupt(blocked), hardstop.interrupt(blocked)
        if not (second.cancel() and first.cancel()):
            wrong.append(f"round {n}: not withdrawn: {first}, {second}")
        # Deadlines: one that expires here, one withdrawn, one left before its time.
        try:
            with hardstop.deadline(0.001):
                spin(threading.Event()) if n % 2 else hardstop.sleep(10)
        except hardstop.DeadlineExceeded:
            pass
        else:
            wrong.append(f"round {n}: the deadline did not expire")
        with hardstop.deadline(60) as scope:
            scope.cancel()
        with hardstop.deadline(60), hardstop.shield():
            pass
        # Held by a shield, raised when it is left; then the thread ends.
        inside, go = threading.Event(), threading.Event()
        ender = threading.Thread(target=shielded_ending, args=(inside, go))
        ender.start()
        inside.wait()
        held = hardstop.interrupt(ender)
        if held.status != "deferred":
            wrong.append(f"round {n}: not held by the shield: {held.status}")
        go.set()
        ender.join()
        if held.status != "delivered":
            wrong.append(f"round {n}: not raised after the shield: {held.status}")
    # A deadline expiring in a worker thread.
    outcome = []

    def timed() -> None:
        try:
            with hardstop.deadline(0.01):
                hardstop.sleep(10)
        except hardstop.DeadlineExceeded as error:
            outcome.append(error)

    expiring = threading.Thread(target=timed)
    expiring.start()
    expiring.join()
    if len(outcome) != 1:
        wrong.append("the worker's deadline did not expire")
    # kill(): one thread it stops, one it cannot reach (blocked in Lock.acquire).
    stop.set()
    victim = threading.Thread(target=spin, args=(threading.Event(),), daemon=True)
    victim.start()
    if not hardstop.kill(victim, timeout=10):
        wrong.append("kill() did not stop a busy thread")
    stuck = hardstop.interrupt(blocked)
    if hardstop.kill(blocked, timeout=0.2):
        wrong.append("kill() says it stopped a thread blocked in Lock.acquire")
    blocker.release()  # it returns to Python and raises what is armed: the thread ends
    blocked.join(10)
    worker.join(10)
    if blocked.is_alive() or worker.is_alive() or stuck.status != "delivered":
        wrong.append(f"threads left: blocked {blocked.is_alive()}, busy {worker.is_alive()}; {stuck}")
    if any(not isinstance(error, hardstop.Interrupted) for error in ended_by):
        wrong.append(f"threads ended by something else: {ended_by}")
    if len(caught) < 2 * rounds:
        wrong.append(f"the busy thread caught {len(caught)} exceptions, not {2 * rounds}")
    for line in wrong:
        print(f"WRONG: {line}")
    print(f"exercise: {rounds} rounds " + ("FAILED" if wrong else "ok"))
    return 1 if wrong else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 of each instead of 1,000,000")
    parser.add_argument("--count", type=int, help="operations per workload")
    parser.add_argument("--limit-kb", type=float, help="allowed growth in KiB (default: 1024 per million, >= 512)")
    parser.add_argument("--exercise", type=int, metavar="N", help="run each path of the extension N times instead")
    args = parser.parse_args()
    if args.exercise:
        return exercise(args.exercise)
    count = args.count or (100_000 if args.quick else 1_000_000)
    limit = int((args.limit_kb or max(1024 * count / 1_000_000, 512)) * 1024)
    print(
        f"Python {platform.python_version()} ({sys.executable}), {'debug' if total_refs() else 'release'} build, "
        f"hardstop from {os.path.dirname(hardstop.__file__)}; limit {limit / 1024:.0f} KiB per workload"
    )

    blocker = threading.Lock()
    target = start_blocked(blocker)
    try:
        failures = measure("pairs", lambda n: pairs(target, n), count, limit)
    finally:
        blocker.release()
        target.join()
    failures += measure("blocks", blocks, count, limit)

    for failure in failures:
        print(f"LEAK? {failure}")
    print("leaks: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
