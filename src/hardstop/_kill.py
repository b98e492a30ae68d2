"""``kill()``: stop a thread, and say why when it cannot be stopped.

Interrupt, then wait for the thread to end. A thread that catches the exception
and goes on is interrupted again (each new request waits until the thread has
left its handler, so clean-up in ``except``/``finally`` is never cut short), as
long as the time allows. When the thread does not end, the result says where it
is (its stack) and why hardstop could not reach it, from the last receipt.
"""

from __future__ import annotations

import linecache
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import FrameType

from hardstop import _own_threads, _wake
from hardstop._errors import Interrupted, ThreadNotFound, non_negative_seconds
from hardstop._hardstop import (
    Receipt,
    current_frame,
    in_protected_code,
    is_armed,
    settle_lost,
    still_handling,
    thread_idents,
)
from hardstop._interrupt import _carrier_for, _exception_instance, interrupt

# How often kill() looks at the thread while it waits. After a delivery, a thread
# that is still alive and out of its handler one look later swallowed it.
_LOOK_EVERY = 0.05
_DUMMY_POLL = 0.005  # a thread that threading cannot join is polled this often


@dataclass(frozen=True)
class KillResult:
    """What ``kill()`` achieved. True (as a bool) when the thread ended."""

    thread: threading.Thread
    stopped: bool
    attempts: int  # requests made (interrupt() calls)
    elapsed: float  # seconds kill() took
    reason: str  # a sentence: how it ended, or why it did not
    stack: str | None  # where the thread is, when it did not end
    receipts: tuple[Receipt, ...]

    def __bool__(self) -> bool:
        return self.stopped


def kill(thread: threading.Thread, timeout: float = 5.0, exc: object = Interrupted) -> KillResult:
    """Interrupt ``thread`` with ``exc`` until it ends or ``timeout`` seconds pass.

    Returns a ``KillResult``; raises ``TypeError``/``ValueError`` for bad
    arguments and ``RuntimeError`` for the calling thread or one never started.
    """
    if not isinstance(thread, threading.Thread):
        raise TypeError(f"kill() takes a threading.Thread, not {type(thread).__name__} {thread!r}.")
    seconds = non_negative_seconds(
        timeout, "kill() takes a timeout in seconds", "kill() takes a non-negative timeout in seconds"
    )
    if thread is threading.current_thread():
        raise RuntimeError(f"kill() cannot stop the calling thread {thread!r}: it would wait for itself.")
    if thread.ident is None:
        raise RuntimeError(f"kill() cannot stop {thread!r}: it was never started.")
    role = _own_threads.role_of(thread)
    if role is not None:
        raise RuntimeError(
            f"kill() refuses to stop {thread!r}: it is hardstop's own {role}; "
            "it is a daemon thread that ends with the process, so leave it out."
        )
    _carrier_for(type(_exception_instance(exc)))  # refuse a bad exception now, not at the first interrupt
    start = time.monotonic()
    end = start + seconds
    receipts: list[Receipt] = []
    last_sent = start

    def result(stopped: bool, reason: str, stack: str | None = None) -> KillResult:
        return KillResult(thread, stopped, len(receipts), time.monotonic() - start, reason, stack, tuple(receipts))

    if sys.is_finalizing():  # threading may even say it ended: CPython dropped its thread state
        return result(
            False,
            "The interpreter is shutting down: other threads run no more Python code, so none can be interrupted; "
            "this one stays where it is until the process exits.",
        )
    if not _alive(thread):
        return result(True, "It had already finished.")
    while True:
        if not receipts or _needs_another(receipts[-1], thread):
            try:
                receipts.append(interrupt(thread, exc))
            except ThreadNotFound:
                _wait_for_end(thread, end - time.monotonic())  # its thread state is gone: it is ending
                break
            last_sent = time.monotonic()
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        _wait_for_end(thread, min(remaining, _LOOK_EVERY))
        if not _alive(thread):
            break
    if not _alive(thread):
        count = len(receipts)
        return result(True, f"It ended after {count} interrupt{'s' if count != 1 else ''}.")
    for receipt in receipts[:-1]:
        receipt.cancel()  # none left behind to land once it is out of its handler
    frame = current_frame(thread.ident or 0)
    return result(False, _why_alive(receipts, thread, time.monotonic() - last_sent, frame), _stack(frame))


def _alive(thread: threading.Thread) -> bool:
    """Whether ``thread`` still runs. A thread started outside ``threading`` (by C
    code or ``_thread``) has a ``_DummyThread`` that always says it is alive and
    cannot be joined: it runs as long as a thread state of its ident exists."""
    if isinstance(thread, threading._DummyThread):
        return thread.ident in thread_idents()
    return thread.is_alive()


def _wait_for_end(thread: threading.Thread, seconds: float) -> None:
    """Wait up to ``seconds`` for ``thread`` to end."""
    if not isinstance(thread, threading._DummyThread):
        thread.join(max(0.0, seconds))
        return
    end = time.monotonic() + seconds
    while _alive(thread) and (remaining := end - time.monotonic()) > 0:
        time.sleep(min(remaining, _DUMMY_POLL))


def _needs_another(receipt: Receipt, thread: threading.Thread) -> bool:
    """The thread runs on although the last request was raised (and it is out of
    its handler), or was swallowed by CPython in a finalizer, or left the slot
    without being raised (discarded by C code, replaced by another caller): interrupt again."""
    if receipt.status == "pending":
        settle_lost(receipt)
    if receipt.status == "undelivered":
        return True
    return receipt.delivered and not still_handling(thread.ident or 0)


def _why_alive(receipts: list[Receipt], thread: threading.Thread, age: float, frame: FrameType | None) -> str:
    where = _where(frame)
    if not receipts:
        return f"Its thread state was gone before it could be interrupted, yet it has not ended ({where})."
    last = receipts[-1]
    caught = sum(receipt.delivered for receipt in receipts)
    if last.status == "deferred":
        return f"It is inside a hardstop.shield() ({where}), which holds the interrupt back until it leaves."
    if still_handling(thread.ident or 0):
        return f"It raised the interrupt and is still handling it, in an except or finally block ({where})."
    if caught:
        return f"It caught the interrupt and went on, {caught} time{'s' if caught != 1 else ''} ({where})."
    if last.status == "pending" and not is_armed(last):
        if in_protected_code(thread.ident or 0):
            return (
                f"It is inside the standard library's own lock handling ({where}), where an exception would "
                "leave a lock held; the interrupt is raised as soon as it returns from there."
            )
        return f"The interrupt is queued behind an earlier request that has not been raised ({where})."
    if last.status == "pending":
        return (
            f"The interrupt was armed {age:.2f} s ago and has not been raised: the thread has run no "
            f"Python code since ({where}). {_blocked_why(thread)}"
        )
    return f"The last interrupt ended {last.status}: {last.reason} ({where})."


def _blocked_why(thread: threading.Thread) -> str:
    signum = _wake.wake_signal()
    if signum is not None and _wake._blocks_signal(thread.ident or 0, signum):
        return (
            f"It blocks {signal.Signals(signum).name}, the wake signal, with signal.pthread_sigmask, so it is not "
            "woken; the interrupt stays armed and is raised when its call into C returns."
        )
    if thread is threading.main_thread():
        return "It is blocked in a call that the wake signal does not end, or the signal is turned off."
    if _wake._SIGNAL_WORKERS and _wake.wake_signal() is not None:
        calls = (
            "that the wake signal does not end in a non-main thread (Lock.acquire, Thread.join, a C extension), "
            "or one hardstop does not see (a blocking call made from C, such as iterating over a file)"
        )
    else:
        calls = (
            "that CPython cannot interrupt in a non-main thread "
            "(time.sleep, Lock.acquire, socket or file I/O, a C extension)"
        )
    return f"It is blocked in a call into C {calls}; the interrupt stays armed and is raised when that call returns."


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "no Python frame"
    code = frame.f_code
    line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    call = f"at `{line}`, " if line else ""
    return f"{call}in {code.co_name}, {code.co_filename}:{frame.f_lineno}"


def _stack(frame: FrameType | None) -> str | None:
    return "".join(traceback.format_stack(frame)) if frame is not None else None
