"""A thread that keeps starting threads, interrupted over and over.

On 3.10/3.11 `Thread.start()` pre-allocates the child's thread state with the
parent's ident; the bare recipe can then arm the child, which dies in bootstrap
while the parent hangs in `start()` forever. hardstop sees two states on the
ident and waits for the ambiguity to clear (or refuses): every request ends
delivered to the starter or refused, no child dies, nothing hangs.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any

import hardstop
from conftest import SWALLOWED_REASON, WAIT
from hardstop import _hardstop

REQUESTS = 2000


def _stack_of(thread: threading.Thread) -> str:
    frame = _hardstop.current_frame(thread.ident or 0)  # (sys._current_frames(): see test_frames_of_other_threads)
    return "".join(traceback.format_stack(frame)) if frame else "no frame"


def test_interrupting_a_thread_that_starts_threads_never_hits_a_child_or_hangs(monkeypatch) -> None:
    hook_saw: list[tuple[str, str]] = []
    died_of: list[BaseException | None] = []  # formatted in the failure message, not here

    def excepthook(args: threading.ExceptHookArgs) -> None:
        died_of.append(args.exc_value)
        hook_saw.append((args.exc_type.__name__, args.thread.name))

    monkeypatch.setattr(threading, "excepthook", excepthook)
    # An interrupt landing in a weakref callback (threading's WeakSet of threads)
    # is swallowed by CPython into sys.unraisablehook: count those. Anything else
    # reported there (another test's garbage, collected now) goes on to the hook
    # installed before. (hardstop runs the hook with requests held.)
    swallowed: list[object] = []
    previous_hook = sys.unraisablehook

    def unraisablehook(report: Any) -> None:
        # issubclass: on 3.10/3.11 the hook is given hardstop's carrier subclass as the type.
        if issubclass(report.exc_type, hardstop.Interrupted):
            swallowed.append(report)
        else:
            previous_hook(report)

    monkeypatch.setattr(sys, "unraisablehook", unraisablehook)
    stop = threading.Event()
    started = threading.Event()
    tally = {"starter caught": 0}
    caught_ids: set[int] = set()
    children: list[tuple[threading.Thread, threading.Event]] = []

    inside = threading.Event()  # the starter is inside its try: aim the next one

    def rounds() -> None:
        inside.set()
        while not stop.is_set():
            finished = threading.Event()
            thread = threading.Thread(target=finished.set, name="child")
            children.append((thread, finished))
            thread.start()
            thread.join(WAIT)

    def starter() -> None:
        started.set()
        while True:
            try:
                rounds()
                return
            except hardstop.Interrupted as error:
                tally["starter caught"] += 1
                caught_ids.add(id(error))

    starter_thread = threading.Thread(target=starter, name="starter", daemon=True)
    starter_thread.start()
    assert started.wait(WAIT)
    outcomes = {"delivered": 0, "refused": 0, "undelivered": 0}
    receipt = None
    delivered_receipts = []

    def back_in_try() -> bool:
        # The last one was handled (the starter is back in its try), or swallowed in a
        # callback after it read delivered (it never left its try). Not any report to
        # the hook: another test's garbage may report there too, while the starter is
        # still in its handler, where the next request would kill it.
        return inside.is_set() or (
            receipt is not None and (receipt.status, receipt.reason) == ("undelivered", SWALLOWED_REASON)
        )

    for _ in range(REQUESTS):
        deadline = time.monotonic() + WAIT
        while not back_in_try() and time.monotonic() < deadline:
            time.sleep(0.0005)
        assert back_in_try(), (outcomes, tally, receipt, _stack_of(starter_thread))
        inside.clear()
        try:
            receipt = hardstop.interrupt(starter_thread)
        except hardstop.AmbiguousThread:
            outcomes["refused"] += 1
            inside.set()
            continue
        except hardstop.ThreadNotFound:
            lost = [
                f"{report.err_msg} {report.object!r}:\n" + "".join(traceback.format_tb(report.exc_traceback))
                for report in swallowed
            ]
            raise AssertionError(
                f"the starter died after {outcomes}, {tally}, last {receipt}; the hook saw {hook_saw}:\n"
                + "".join("".join(traceback.format_exception(error)) for error in died_of if error is not None)
                + "\nswallowed:\n"
                + "\n".join(lost)
            ) from None
        receipt.wait(WAIT)
        assert receipt.status in ("delivered", "undelivered"), receipt
        outcomes[receipt.status] += 1
        delivered_receipts.append(receipt)
        if receipt.status == "undelivered":
            inside.set()  # it never reached the starter's handler
    stop.set()
    starter_thread.join(WAIT)
    for thread, _ in children:
        if thread.ident is not None:
            thread.join(WAIT)
    # A child that got as far as knowing its ident was launched; it must have run.
    launched = [finished for thread, finished in children if thread.ident is not None]
    lost_in_callbacks = len(swallowed)
    print(outcomes, tally, f"{len(launched)} children launched, {lost_in_callbacks} swallowed in callbacks")
    assert not starter_thread.is_alive(), "the starter hung"
    assert sum(outcomes.values()) == REQUESTS
    missing = [i for i, r in enumerate(delivered_receipts) if id(r.exception) not in caught_ids]
    # Final states: a request CPython swallowed in a callback reads "undelivered"
    # (with that reason), never "delivered"; every "delivered" one was caught.
    final = [receipt.status for receipt in delivered_receipts]
    swallowed_receipts = [r for r in delivered_receipts if r.reason and "inside a finalizer" in r.reason]
    assert tally["starter caught"] == final.count("delivered"), (missing, swallowed)
    assert len(swallowed_receipts) == lost_in_callbacks
    assert all(finished.is_set() for finished in launched)
    assert hook_saw == []
