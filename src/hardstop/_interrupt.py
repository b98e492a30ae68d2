"""``interrupt()`` and the pump thread that arms queued requests.

``interrupt()`` itself is compiled (``_hardstop.interrupt``, ext/interrupt.pxi):
one call checks the target and the exception, finds the carrier, arms or
queues, and wakes the target (handing the waits that need Python to
``hardstop._wake``). This module runs what must be Python: the pump thread.

Several requests aimed at one thread form a queue: one is armed at a time, so
each request is raised once, in order, or ends cancelled or undelivered. The
next is armed when the previous one was withdrawn, or was raised and the target
has left every ``except``/``finally`` block handling it: a handler of ours is
never cut short by the next request. A helper thread ("hardstop-pump") checks
for that every millisecond, and runs only while something is queued.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from hardstop import _hardstop, _own_threads, _protected, _wake  # noqa: F401 - _protected binds on import
from hardstop._hardstop import interrupt

if sys.version_info[:2] == (3, 14):  # the only version whose with statement needs it
    from hardstop import _with_entry  # noqa: F401 - binds on import

__all__ = ["ensure_pump", "interrupt"]

_carrier_for = _hardstop.carrier_for
_exception_instance = _hardstop.exception_instance

_PUMP_INTERVAL = 0.001


def ensure_pump() -> None:
    """Start the pump thread if something queued needs it and none runs."""
    if _hardstop.claim_pump():
        _start_pump()


def _pump() -> None:
    while True:
        armed, keep_going = _hardstop.pump()
        for receipt in armed:
            _wake.wake_armed(receipt)
        if not keep_going:
            return
        time.sleep(_PUMP_INTERVAL)


def _start_pump() -> None:
    try:
        _own_threads.start(_pump, "hardstop-pump", "pump, which arms queued interrupts and wakes their targets")
    except RuntimeError:
        # "can't create new thread at interpreter shutdown" (atexit, 3.12+): what is
        # queued stays pending, and ends undelivered as the interpreter drops its thread.
        _hardstop.release_pump()
        if not sys.is_finalizing() and threading.main_thread().is_alive():
            raise
    except BaseException:
        _hardstop.release_pump()
        raise


def _after_fork_in_child() -> None:
    _hardstop.after_fork_in_child()


def _excepthook_with_real_type(args: threading.ExceptHookArgs) -> None:
    real = type(args.exc_value) if args.exc_value is not None else args.exc_type
    if real is not args.exc_type:
        args = threading.ExceptHookArgs([real, args.exc_value, args.exc_traceback, args.thread])
    threading.__excepthook__(args)


if sys.version_info < (3, 11) and threading.excepthook is threading.__excepthook__:
    # 3.10 hands threading.excepthook hardstop's carrier as exc_type, so its
    # `exc_type == SystemExit` test fails, and a thread stopped with SystemExit
    # would print a traceback. Only the default hook is replaced.
    threading.excepthook = _excepthook_with_real_type


_hardstop._bind_interrupt(_start_pump, _wake)
os.register_at_fork(after_in_child=_after_fork_in_child)
