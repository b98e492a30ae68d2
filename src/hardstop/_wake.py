"""Waking a blocked thread so that its armed interrupt is raised at once.

CPython raises a pending exception only when the target runs bytecode; a thread
blocked in C sleeps on. What can wake it is whatever the thread said would:
``with hardstop.unblocking(callback):`` registers, for the calling thread and
only inside the block, a function that ends its wait (``sock.shutdown``,
``event.set``, ``proc.kill``), as Ruby's "unblocking functions" do.
``interrupt()`` calls the innermost one once, from the interrupting thread, after
arming. ``hardstop.sleep()`` is a sleep built that way.

An unblocker runs under a per-block lock that the block's exit also takes, so it
is never called once its block has been left. An exception it raises cannot
reach the target and must not undo the arming, so it goes to
``sys.unraisablehook`` (printed by default), never swallowed.
"""

from __future__ import annotations

import _thread
import math
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from hardstop._hardstop import Receipt, is_armed

_unblockers: dict[int, list[_Unblocker]] = {}


class _Unblocker:
    __slots__ = ("active", "callback", "lock")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.lock = threading.Lock()
        self.active = True


class unblocking:  # noqa: N801 - used as `with hardstop.unblocking(...)`, like a function
    """``with hardstop.unblocking(callback):`` how an interrupt can end this thread's wait."""

    def __init__(self, callback: Callable[[], object]) -> None:
        if not callable(callback):
            raise TypeError(f"The unblocker must be callable, not {type(callback).__name__} {callback!r}.")
        self._entry = _Unblocker(callback)

    def __enter__(self) -> None:
        _unblockers.setdefault(threading.get_ident(), []).append(self._entry)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        ident = threading.get_ident()
        stack = _unblockers[ident]
        stack.remove(self._entry)  # first: no interrupter can find it from here on
        if not stack:
            del _unblockers[ident]
        with self._entry.lock:  # and one that already found it has finished with it
            self._entry.active = False


def unblock(receipt: Receipt) -> bool:
    """Call the target's innermost unblocker if ``receipt`` is armed; True if called."""
    stack = _unblockers.get(receipt.ident)
    if not stack or not is_armed(receipt):
        return False
    entry = stack[-1]
    with entry.lock:
        if not entry.active:
            return False
        try:
            entry.callback()
        except Exception as error:  # noqa: BLE001 - reported, never swallowed
            sys.unraisablehook(_Unraisable(error, f"Exception ignored in the hardstop unblocker {entry.callback!r}"))
    return True


class _Unraisable:
    """The argument ``sys.unraisablehook`` expects."""

    def __init__(self, error: BaseException, message: str) -> None:
        self.exc_type = type(error)
        self.exc_value = error
        self.exc_traceback = error.__traceback__
        self.err_msg = message
        self.object = None


def sleep(seconds: float) -> None:
    """Sleep like ``time.sleep``, in any thread, but end at once when interrupted."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"hardstop.sleep() takes a number of seconds, not {type(seconds).__name__} {seconds!r}.")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"hardstop.sleep() takes a non-negative number of seconds, not {seconds!r}.")
    wake = _thread.allocate_lock()
    wake.acquire()

    def release() -> None:
        if wake.locked():
            wake.release()

    end = time.monotonic() + seconds
    with unblocking(release):
        while (remaining := end - time.monotonic()) > 0:
            # Released by an interrupter: the exception is raised right here. If that
            # request was withdrawn meanwhile, sleep on for what is left.
            wake.acquire(True, -1 if remaining > _thread.TIMEOUT_MAX else remaining)
