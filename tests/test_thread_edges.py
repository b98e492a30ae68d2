"""Threads at their edges: interrupts aimed at a thread as it starts, as its
``run()`` returns, and while it starts and joins threads of its own.

``threading``'s own bookkeeping (``_bootstrap_inner``, ``_delete``, the
``_started`` event) is code an exception must not land in: a request aimed
there waits until the thread runs its target, or ends undelivered when the
thread ends first. Every request here ends final; no join hangs; no thread is
left in ``threading.enumerate()``; ``threading.excepthook`` sees nothing but
the test's own ``SystemExit``s (which it keeps quiet).
"""

from __future__ import annotations

import collections
import random
import sys
import threading
import time

import hardstop
from conftest import SWALLOWED_REASON, WAIT

ROUNDS = 400


def _edge_run(body, aim) -> collections.Counter[str]:
    """Start a thread running ``body`` ROUNDS times, aim one request at it as
    ``aim`` says, and count how each request ended."""
    counts: collections.Counter[str] = collections.Counter()
    hooked: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.exc_value, SystemExit):  # the default hook keeps these quiet
            hooked.append(f"{args.exc_type.__name__}: {args.exc_value!r}")

    threading.excepthook = hook
    before = set(threading.enumerate())
    try:
        for n in range(ROUNDS):
            thread = threading.Thread(target=body, name=f"edge-{n}")
            receipt = aim(thread)
            thread.join(WAIT)
            assert not thread.is_alive(), f"{thread!r} did not end"
            if receipt is None:
                counts["refused: not running"] += 1
            else:
                assert receipt.wait(WAIT) or receipt.status in ("undelivered", "cancelled"), receipt
                counts[receipt.status] += 1
    finally:
        threading.excepthook = previous
    assert hooked == []
    time.sleep(0.05)  # hardstop's pump, if started, ends once nothing is queued
    left = [t for t in set(threading.enumerate()) - before if not t.name.startswith("hardstop-")]
    assert left == []
    print(dict(counts))
    return counts


def _aim_at(thread: threading.Thread, delay: float = 0.0) -> hardstop.Receipt | None:
    if delay:
        time.sleep(delay)
    try:
        return hardstop.interrupt(thread, SystemExit)  # quiet, wherever it lands
    except hardstop.ThreadNotFound:
        return None


def test_interrupts_aimed_as_threads_start() -> None:
    def body() -> None:
        time.sleep(0.001)

    def aim(thread: threading.Thread) -> hardstop.Receipt | None:
        thread.start()
        return _aim_at(thread)  # often before the thread has run a line of its target

    counts = _edge_run(body, aim)
    assert counts["delivered"] + counts["undelivered"] + counts["refused: not running"] == ROUNDS


def test_interrupts_aimed_as_run_returns() -> None:
    rng = random.Random(5)
    started = threading.Event()

    def body() -> None:
        started.set()
        time.sleep(0.0003)

    def aim(thread: threading.Thread) -> hardstop.Receipt | None:
        started.clear()
        thread.start()
        started.wait(WAIT)
        return _aim_at(thread, rng.random() * 0.0008)  # before, as or after run() returns

    counts = _edge_run(body, aim)
    assert sum(counts.values()) == ROUNDS
    assert counts["refused: not running"] < ROUNDS  # some did arrive while it was ending


def test_interrupts_aimed_at_a_thread_starting_and_joining_others() -> None:
    """The target spends its time in Thread.start() and join(), threading's code.

    Dropping each finished child runs the weakref callback of threading's
    ``_dangling`` WeakSet in the target: a request that lands there is swallowed
    by CPython into ``sys.unraisablehook`` (seen on 3.15 in CI) and must end
    ``"undelivered"``, saying so, never ``"delivered"``.
    """
    stop = threading.Event()
    outcomes: collections.Counter[str] = collections.Counter()
    swallowed: list[BaseException | None] = []
    previous_unraisable = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: swallowed.append(unraisable.exc_value)

    def rounds() -> None:
        while not stop.is_set():
            try:
                child = threading.Thread(target=lambda: None)
                child.start()
                child.join(WAIT)
                outcomes["child joined"] += 1
            except KeyError:
                outcomes["interrupted"] += 1

    def starter() -> None:
        while not stop.is_set():
            try:
                rounds()
            except KeyError:  # landed at the loop's own check, outside its try (after join() returned)
                outcomes["interrupted"] += 1

    thread = threading.Thread(target=starter)
    thread.start()
    receipts = []
    try:
        for _ in range(200):
            receipts.append(hardstop.interrupt(thread, KeyError("edge")))
            receipts[-1].wait(WAIT)
            assert receipts[-1].status in ("delivered", "undelivered"), receipts[-1]
            time.sleep(0.0005)
    finally:
        stop.set()
        thread.join(WAIT)
        sys.unraisablehook = previous_unraisable
    assert not thread.is_alive()
    statuses = collections.Counter(receipt.status for receipt in receipts)
    print(dict(outcomes), dict(statuses), f"{len(swallowed)} swallowed in a weakref callback")
    assert statuses["delivered"] + statuses["undelivered"] == 200
    assert outcomes["interrupted"] == statuses["delivered"]
    assert [r.reason for r in receipts if r.status == "undelivered"] == [SWALLOWED_REASON] * len(swallowed)
    assert all(isinstance(error, KeyError) for error in swallowed), swallowed
