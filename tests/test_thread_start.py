"""A thread that keeps starting threads, interrupted over and over.

On 3.10/3.11 `Thread.start()` pre-allocates the child's thread state with the
parent's ident; the bare recipe can then arm the child, which dies in bootstrap
while the parent hangs in `start()` forever. hardstop sees two states on the
ident and waits for the ambiguity to clear (or refuses): every request ends
delivered to the starter or refused, no child dies, nothing hangs.
"""

from __future__ import annotations

import threading

import hardstop
from conftest import WAIT

REQUESTS = 2000


def test_interrupting_a_thread_that_starts_threads_never_hits_a_child_or_hangs(monkeypatch) -> None:
    hook_saw: list[tuple[str, str]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hook_saw.append((args.exc_type.__name__, args.thread.name)))
    stop = threading.Event()
    started = threading.Event()
    tally = {"starter caught": 0}
    children: list[tuple[threading.Thread, threading.Event]] = []

    def starter() -> None:
        started.set()
        while not stop.is_set():
            try:
                finished = threading.Event()
                thread = threading.Thread(target=finished.set, name="child")
                children.append((thread, finished))
                thread.start()
                thread.join(WAIT)
            except hardstop.Interrupted:
                tally["starter caught"] += 1

    starter_thread = threading.Thread(target=starter, name="starter")
    starter_thread.start()
    assert started.wait(WAIT)
    outcomes = {"delivered": 0, "refused": 0}
    for _ in range(REQUESTS):
        try:
            receipt = hardstop.interrupt(starter_thread)
        except hardstop.AmbiguousThread:
            outcomes["refused"] += 1
            continue
        assert receipt.wait(WAIT), receipt
        outcomes["delivered"] += 1
    stop.set()
    starter_thread.join(WAIT)
    for thread, _ in children:
        if thread.ident is not None:
            thread.join(WAIT)
    # A child that got as far as knowing its ident was launched; it must have run.
    launched = [finished for thread, finished in children if thread.ident is not None]
    print(outcomes, tally, f"{len(launched)} children launched")
    assert not starter_thread.is_alive(), "the starter hung"
    assert outcomes["delivered"] + outcomes["refused"] == REQUESTS
    assert tally["starter caught"] == outcomes["delivered"]
    assert all(finished.is_set() for finished in launched)
    assert hook_saw == []
