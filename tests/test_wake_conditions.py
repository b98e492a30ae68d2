"""Waits built on threading.Condition are ended by interrupt(), in any thread,
without breaking the primitive for anyone else."""

from __future__ import annotations

import queue
import random
import sys
import threading
import time

import pytest

import hardstop
from conftest import SWALLOWED_REASON, WAIT, Target
from hardstop import _hardstop

LONG = 60.0


def lock_is_free(lock) -> bool:
    if lock.acquire(False):
        lock.release()
        return True
    return False


def full_queue() -> queue.Queue:
    q: queue.Queue = queue.Queue(maxsize=1)
    q.put("occupant")
    return q


def waits():
    condition = threading.Condition()
    event = threading.Event()
    semaphore = threading.Semaphore(0)
    bounded = threading.BoundedSemaphore(1)
    bounded.acquire()
    barrier = threading.Barrier(2)
    queues = {kind.__name__: kind() for kind in (queue.Queue, queue.LifoQueue, queue.PriorityQueue)}
    putting = full_queue()

    def cond_wait() -> None:
        with condition:
            condition.wait(LONG)

    def cond_wait_for() -> None:
        with condition:
            condition.wait_for(lambda: False, LONG)

    cases = [
        ("Condition.wait", cond_wait, condition),
        ("Condition.wait_for", cond_wait_for, condition),
        ("Event.wait", lambda: event.wait(LONG), event._cond),
        ("Semaphore.acquire", lambda: semaphore.acquire(timeout=LONG), semaphore._cond),
        ("BoundedSemaphore.acquire", lambda: bounded.acquire(timeout=LONG), bounded._cond),
        ("Barrier.wait", lambda: barrier.wait(LONG), barrier._cond),
        ("Queue.put on a full queue", lambda: putting.put("more", timeout=LONG), putting.not_full),
    ]
    for name, q in queues.items():
        cases.append((f"{name}.get", lambda q=q: q.get(timeout=LONG), q.not_empty))
    return cases


@pytest.mark.parametrize("index", range(10))
def test_each_condition_wait_is_ended_and_left_clean(index: int) -> None:
    name, body, condition = waits()[index]
    with Target(body) as target:
        time.sleep(0.05)  # let it block
        receipt = hardstop.interrupt(target.thread, TimeoutError(name))
        assert receipt.wait(WAIT), f"{name} was not woken"
        assert receipt.wake == "Condition.wait: its waiter was released"
        target.thread.join(WAIT)
    assert target.caught == [receipt.exception]
    assert len(condition._waiters) == 0, name
    assert lock_is_free(condition._lock), name


def test_queue_invariants_hold_after_an_interrupted_get() -> None:
    q: queue.Queue = queue.Queue()
    with Target(lambda: q.get(timeout=LONG)) as target:
        time.sleep(0.05)
        assert hardstop.interrupt(target.thread).wait(WAIT)
    q.put(1)
    assert (q.qsize(), q.unfinished_tasks) == (1, 1)
    assert q.get(timeout=WAIT) == 1
    q.task_done()
    assert (q.qsize(), q.unfinished_tasks) == (0, 0)


def test_a_notified_waiter_that_is_interrupted_hands_the_notification_on() -> None:
    condition = threading.Condition()
    results: dict[str, object] = {}

    def waiter(name: str) -> None:
        with condition:
            try:
                results[name] = condition.wait(LONG)
            except hardstop.Interrupted as error:
                results[name] = error

    def until_waiting(count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(condition._waiters) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(condition._waiters) == count

    first = threading.Thread(target=waiter, args=("first",))
    first.start()
    until_waiting(1)
    second = threading.Thread(target=waiter, args=("second",))
    second.start()
    until_waiting(2)
    with condition:
        condition.notify(1)  # notifies the first waiter...
        receipt = hardstop.interrupt(first)  # ...which then raises instead of acting on it
    first.join(WAIT)
    second.join(WAIT)
    assert receipt.delivered
    assert isinstance(results["first"], hardstop.Interrupted)
    assert results["second"] is True  # got the notification the first could not use
    assert receipt.wake == "Condition.wait: it was notified already; the notification was handed on"
    assert len(condition._waiters) == 0


def test_a_busy_condition_lock_does_not_block_the_interrupter() -> None:
    lock = threading.Lock()
    condition = threading.Condition(lock)

    def body() -> None:
        with condition:
            condition.wait(LONG)

    with Target(body) as target:
        time.sleep(0.05)
        with condition:  # the interrupter itself holds the (non-reentrant) lock
            t0 = time.monotonic()
            receipt = hardstop.interrupt(target.thread)
            returned_after = time.monotonic() - t0
            assert receipt.status == "pending"
            assert receipt.wake == "Condition.wait: its lock is busy; a helper thread ends the wait once it gets it"
        assert receipt.wait(WAIT)  # a helper finished the wake once the lock was free
        target.thread.join(WAIT)
    assert returned_after < WAIT
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]
    assert len(condition._waiters) == 0


def test_stress_consumers_interrupted_while_waiting_on_queues(monkeypatch) -> None:
    """Producers and consumers on shared queues, consumers interrupted at random."""
    escaped: list[object] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    # CPython swallows an interrupt that lands in a finalizer or a GC callback (a
    # plugin's gc.callbacks entry ran in a consumer, 3.12 CI): its receipt says so.
    swallowed: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_value))
    rng = random.Random(1234)
    queues = [queue.Queue() for _ in range(2)]
    consumed: list[int] = []
    interrupted = [0]
    stop = threading.Event()
    items = 6000

    def consume_until_sentinel(q: queue.Queue) -> None:
        while True:
            item = q.get()  # no timeout: a lost notification would strand it
            if item is None:
                return
            consumed.append(item)

    def consume(q: queue.Queue) -> None:
        # The loop lives in a called function, so that an interrupt landing
        # anywhere in it (even at its back-edge) reaches this handler.
        while True:
            try:
                consume_until_sentinel(q)
                return
            except hardstop.Interrupted:
                interrupted[0] += 1

    consumers = [threading.Thread(target=consume, args=(queues[i % 2],)) for i in range(4)]
    for thread in consumers:
        thread.start()

    def produce(first: int) -> None:
        for n in range(first, items, 2):
            queues[n % 2].put(n)
            if n % 4 == first:
                time.sleep(0.001)  # paced, so that consumers spend their time waiting

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
    for thread in producers:
        thread.start()
    receipts = []
    deadline = time.monotonic() + 20
    while any(p.is_alive() for p in producers) and time.monotonic() < deadline:
        receipts.append(hardstop.interrupt(rng.choice(consumers)))
        time.sleep(rng.random() * 0.002)
    for thread in producers:
        thread.join(WAIT)
    for receipt in receipts:
        receipt.wait(WAIT)
    for q in queues:
        for _ in range(2):
            q.put(None)  # one sentinel per consumer of that queue
    for thread in consumers:
        thread.join(WAIT)
    stop.set()
    assert not any(thread.is_alive() for thread in consumers), "a consumer stayed blocked"
    delivered = sum(r.delivered for r in receipts)
    # An interrupt that lands just after get() returned loses that item: counted, not hidden.
    lost = items - len(consumed)
    print(
        f"{len(receipts)} interrupts, all {delivered} delivered and caught; "
        f"{lost} items taken then lost to an interrupt that landed after get() returned"
    )
    assert len(consumed) == len(set(consumed)), "an item was consumed twice"
    undelivered = [r for r in receipts if r.status != "delivered"]
    assert all((r.status, r.reason) == ("undelivered", SWALLOWED_REASON) for r in undelivered), undelivered
    assert len(undelivered) == len(swallowed)
    assert all(isinstance(exception, hardstop.Interrupted) for exception in swallowed), swallowed
    assert interrupted[0] == delivered
    assert escaped == []  # no exception left any thread
    assert lost <= delivered
    for q in queues:
        assert q.qsize() == 0
        assert len(q.not_empty._waiters) == 0
        assert lock_is_free(q.mutex)


def test_a_worker_in_a_wait_nobody_can_end_gets_an_honest_receipt() -> None:
    held = threading.Lock()
    held.acquire()
    with Target(lambda: held.acquire(True, 0.5)) as target:  # a lock wait: no version ends it in a worker
        time.sleep(0.05)
        receipt = hardstop.interrupt(target.thread)
        assert receipt.wake.startswith(
            "not woken: no wait hardstop can end was found in this worker thread (it is in <lambda>, "
        )
        if sys.version_info >= (3, 15) and hardstop.wake_signal() is not None:
            # No signal is sent: it would end a sleep or I/O there, never a lock wait.
            assert receipt.wake.endswith(
                "; it is in no call that hardstop knows the wake signal ends (time.sleep, select, socket, pipe or "
                "subprocess waits): if it is blocked in C (Lock.acquire, Thread.join, a C extension), it raises only "
                "when that call returns"
            )
        else:
            assert receipt.wake.endswith(
                "; if it is blocked in C (time.sleep, Lock.acquire, I/O), it raises only when that call returns"
            )
        assert receipt.wait(0.1) is False  # still in the lock wait
        assert receipt.wait(WAIT)  # raised once the wait returned by itself


# A request whose wake has begun (its waiter released, or its notification handed
# on) can no longer be withdrawn: cancel() says False and the exception lands.
# Withdrawn, the released wait would return as if notified (Event.wait -> True
# with the flag unset). Each case: (name, call that must not return, its condition).
def withdrawal_cases():
    condition = threading.Condition()
    event = threading.Event()
    semaphore = threading.Semaphore(0)
    barrier = threading.Barrier(2)
    empty: queue.Queue = queue.Queue()
    full = full_queue()

    def cond_wait() -> object:
        with condition:
            return condition.wait(LONG)

    def cond_wait_for() -> object:
        with condition:
            return condition.wait_for(lambda: False, LONG)

    return [
        ("Event.wait", lambda: event.wait(LONG), event._cond),
        ("Condition.wait", cond_wait, condition),
        ("Condition.wait_for", cond_wait_for, condition),
        ("Queue.get", lambda: empty.get(timeout=LONG), empty.not_empty),
        ("Queue.put", lambda: full.put("more", timeout=LONG), full.not_full),
        ("Semaphore.acquire", lambda: semaphore.acquire(timeout=LONG), semaphore._cond),
        ("Barrier.wait", lambda: barrier.wait(LONG), barrier._cond),
    ]


def until_blocked_in_wait(condition, thread: threading.Thread) -> None:
    """Until ``thread`` is listed as a waiter and blocked at the wait itself."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition._waiters and not _hardstop.in_protected_code(thread.ident):
            return
        time.sleep(0.001)
    raise AssertionError("the target never blocked in its wait")


@pytest.mark.parametrize("index", range(7))
def test_a_request_whose_wake_has_begun_cannot_be_withdrawn(index: int) -> None:
    name, call, condition = withdrawal_cases()[index]
    outcome: list[object] = []

    def body() -> None:
        try:
            outcome.append(("returned", call()))
        except hardstop.Interrupted as error:
            outcome.append(("raised", error))

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    until_blocked_in_wait(condition, thread)
    receipt = hardstop.interrupt(thread)
    assert receipt.wake == "Condition.wait: its waiter was released", name
    withdrawn = receipt.cancel()
    thread.join(WAIT)
    assert not thread.is_alive(), f"{name} stayed blocked"
    assert outcome == [("raised", receipt.exception)], f"{name}: {outcome} (cancel() said {withdrawn})"
    assert withdrawn is False, name
    assert receipt.status == "delivered"
    assert len(condition._waiters) == 0, name
    assert lock_is_free(condition._lock), name
