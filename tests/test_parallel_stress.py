"""Parallel stress: several interrupters, several targets, deadlines and kill() at once.

Where test_stress.py has one interrupter, here every request is made while
others are made, withdrawn, delivered and expiring in other threads, the way a
free-threaded build runs them truly in parallel (the tests run on every version:
with the GIL they check the same bookkeeping under heavy switching). Each
request carries an exception object of its own, so the test knows exactly which
ones the targets caught:

- every receipt ends final (delivered, cancelled or undelivered), none pending;
- the delivered ones are exactly the ones caught, each caught once;
- nothing cancelled was ever caught;
- a deadline's expiry never leaves its own block;
- kill() stops threads blocked in Event.wait and Queue.get while other threads
  use the same queue, and leaves the queue usable;
- nothing reaches threading.excepthook, and every thread ends.

``HARDSTOP_STRESS_SECONDS`` sets how long each part runs (3 s by default).
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time

import hardstop
from conftest import WAIT

SECONDS = float(os.environ.get("HARDSTOP_STRESS_SECONDS", "3"))
INTERRUPTERS = 4
TARGETS = 4
BACKLOG = 8  # requests an interrupter leaves pending before it waits for the oldest
FINAL = {"delivered", "cancelled", "undelivered"}


class Token(BaseException):
    """One request's own exception: which request it was is its number."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


class Excepthook:
    """Collects what reaches threading.excepthook (an exception that escaped a thread)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> Excepthook:
        self.previous = threading.excepthook
        threading.excepthook = lambda args: self.seen.append(f"{args.exc_type.__name__} in {args.thread!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        threading.excepthook = self.previous


def spin(rounds: int) -> int:
    total = 0
    for n in range(rounds):
        total += n
    return total


def work(kind: int, rng: random.Random, shared: queue.Queue[int], event: threading.Event) -> None:
    """One step of a target: Python code, or a wait hardstop can end."""
    if kind == 0:
        spin(rng.randrange(100, 3000))
    elif kind == 1:
        event.wait(0.005)
    else:
        shared.put(1)
        try:
            shared.get(timeout=0.005)
        except queue.Empty:
            pass


def steps(kind: int, seed: int, stop: threading.Event, caught: list[Token], shared: queue.Queue[int]) -> None:
    rng = random.Random(seed)
    event = threading.Event()
    while not stop.is_set():
        try:
            work(kind, rng, shared, event)
        except Token as token:
            caught.append(token)


def target(kind: int, seed: int, stop: threading.Event, caught: list[Token], shared: queue.Queue[int]) -> None:
    while not stop.is_set():
        try:
            steps(kind, seed, stop, caught, shared)
        except Token as token:  # landed between two steps
            caught.append(token)


def interrupter(targets: list[threading.Thread], seed: int, receipts: list[hardstop.Receipt]) -> None:
    rng = random.Random(seed)
    numbers = itertools.count(seed * 10**9)  # one range per interrupter: the numbers are unique
    outstanding: list[hardstop.Receipt] = []
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        receipt = hardstop.interrupt(rng.choice(targets), Token(next(numbers)), wake=rng.random() < 0.8)
        receipts.append(receipt)
        if rng.random() < 0.5:
            receipt.cancel()
        else:
            outstanding.append(receipt)
        if len(outstanding) > BACKLOG:
            outstanding.pop(0).wait(WAIT)  # a target raises one request at a time: keep its queue short


def test_several_interrupters_and_targets_account_for_every_request() -> None:
    stop = threading.Event()
    shared: queue.Queue[int] = queue.Queue()
    caught: list[list[Token]] = [[] for _ in range(TARGETS)]
    targets = [
        threading.Thread(target=target, args=(n % 3, n, stop, caught[n], shared), name=f"target-{n}", daemon=True)
        for n in range(TARGETS)
    ]
    receipts: list[list[hardstop.Receipt]] = [[] for _ in range(INTERRUPTERS)]
    interrupters = [
        threading.Thread(target=interrupter, args=(targets, 1 + n, receipts[n]), daemon=True)
        for n in range(INTERRUPTERS)
    ]
    with Excepthook() as hook:
        for thread in targets:
            thread.start()
        started = time.monotonic()
        for thread in interrupters:
            thread.start()
        for thread in interrupters:
            thread.join(SECONDS + 6 * WAIT)
        every = [receipt for made in receipts for receipt in made]
        requested = time.monotonic() - started
        # The targets keep running until every request is raised: nothing may stay pending.
        settle = time.monotonic() + 6 * WAIT
        while time.monotonic() < settle and any(receipt.status not in FINAL for receipt in every):
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        stop.set()
        for thread in targets:
            thread.join(WAIT)
    statuses = {status: sum(receipt.status == status for receipt in every) for status in FINAL}
    print(
        f"{len(every)} requests from {INTERRUPTERS} threads to {TARGETS} in {requested:.1f} s, "
        f"all final {elapsed:.1f} s after the first: {statuses}"
    )
    assert not [thread for thread in targets + interrupters if thread.is_alive()]
    assert hook.seen == []
    assert [receipt for receipt in every if receipt.status not in FINAL] == []
    caught_numbers = [token.number for tokens in caught for token in tokens]
    assert len(caught_numbers) == len(set(caught_numbers)), "a request was raised twice"
    delivered = {receipt.exception.number for receipt in every if receipt.status == "delivered"}  # type: ignore[attr-defined]
    cancelled = {receipt.exception.number for receipt in every if receipt.status == "cancelled"}  # type: ignore[attr-defined]
    assert set(caught_numbers) == delivered
    assert not cancelled & set(caught_numbers)
    assert statuses["delivered"] > 0
    assert statuses["cancelled"] > 0


def deadlines(seed: int, stop: threading.Event, strays: list[str], counts: list[int]) -> None:
    rng = random.Random(seed)
    event = threading.Event()
    while not stop.is_set():
        scope = hardstop.deadline(rng.random() * 0.003)
        try:
            with scope:
                if rng.random() < 0.5:
                    spin(rng.randrange(100, 5000))
                else:
                    event.wait(0.003)
            counts[0] += 1
        except hardstop.DeadlineExceeded as error:
            if error.scope is not scope:
                strays.append(f"{error!r} left the block of another scope")
            counts[1] += 1


def test_deadlines_entered_and_expiring_in_many_threads_stay_in_their_blocks() -> None:
    stop = threading.Event()
    strays: list[str] = []
    counts = [[0, 0] for _ in range(TARGETS * 2)]
    threads = [
        threading.Thread(target=deadlines, args=(n, stop, strays, counts[n]), daemon=True) for n in range(TARGETS * 2)
    ]
    with Excepthook() as hook:
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)  # the load runs for this long; every assertion is on its outcome
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    finished, expired = sum(count[0] for count in counts), sum(count[1] for count in counts)
    print(f"{finished + expired} deadlines in {len(threads)} threads: {expired} expired, {finished} left in time")
    assert not [thread for thread in threads if thread.is_alive()]
    assert hook.seen == []
    assert strays == []
    assert expired > 0


def wait_forever(kind: int, shared: queue.Queue[int]) -> None:
    while True:
        if kind == 0:
            threading.Event().wait(6 * WAIT)
        else:
            shared.get(timeout=6 * WAIT)  # an item the queue's users put: wait again


def blocked(kind: int, shared: queue.Queue[int], ready: threading.Event, ended: dict[str, str]) -> None:
    try:
        ready.set()
        wait_forever(kind, shared)
    except hardstop.Interrupted:
        ended[threading.current_thread().name] = "interrupted"


def queue_user(shared: queue.Queue[int], stop: threading.Event, used: list[int]) -> None:
    while not stop.is_set():
        shared.put(1)
        try:
            shared.get(timeout=0.005)
            used.append(1)
        except queue.Empty:
            pass


def test_kill_stops_blocked_threads_while_others_use_the_same_queue() -> None:
    shared: queue.Queue[int] = queue.Queue()
    stop = threading.Event()
    used: list[int] = []  # one entry per item a user got back (list.append is atomic on every build)
    ended: dict[str, str] = {}  # victim's name -> how it ended
    users = [threading.Thread(target=queue_user, args=(shared, stop, used), daemon=True) for _ in range(2)]
    results: list[hardstop.KillResult] = []
    killers: list[threading.Thread] = []
    with Excepthook() as hook:
        for user in users:
            user.start()
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            victims = []
            for kind in (0, 1, 0, 1):
                ready = threading.Event()
                victim = threading.Thread(target=blocked, args=(kind, shared, ready, ended), daemon=True)
                victim.start()
                assert ready.wait(WAIT)
                victims.append(victim)

            def kill(victim: threading.Thread) -> None:
                results.append(hardstop.kill(victim, WAIT))

            killers = [threading.Thread(target=kill, args=(victim,), daemon=True) for victim in victims]
            for killer in killers:
                killer.start()
            for killer in killers:
                killer.join(2 * WAIT)
        stop.set()
        for user in users:
            user.join(WAIT)
    print(f"{len(results)} kills while {len(users)} threads used the queue {len(used)} times")
    assert not [thread for thread in users + killers if thread.is_alive()]
    assert [result.reason for result in results if not result.stopped] == []
    assert used
    assert hook.seen == []
    assert len(ended) == len(results)  # each victim ended by its own kill()
    assert not shared.mutex.locked()
    shared.put(2)  # the queue still works for everyone
    assert shared.get(timeout=WAIT) in (1, 2)
