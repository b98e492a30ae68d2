"""``interrupt()``: validate the exception, find its carrier, arm or queue it.

The extension does the part that must be indivisible (check the target, arm the
slot, keep the receipt); this module does the part that may run Python code
(building the exception, making the carrier class) before that step.

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
from hardstop._errors import AmbiguousThread, Interrupted
from hardstop._hardstop import Receipt
from hardstop._targets import resolve

# One carrier per exception type, kept for the life of the process (a class is
# small, and creating one per request would cost more than the whole request).
_carriers: dict[type, type] = {}

# On 3.10/3.11 a thread that is starting another one shares its ident with the
# child's pre-allocated thread state until the child first runs; waiting that out
# beats a refusal. On a loaded machine the child can wait for a CPU well past
# 0.1 s (a CI run refused so), hence a full second.
_AMBIGUITY_PATIENCE = 1.0
_PUMP_INTERVAL = 0.001


def _exception_instance(exc: object) -> BaseException:
    if isinstance(exc, BaseException):
        return exc
    if isinstance(exc, type) and issubclass(exc, BaseException):
        try:
            return exc()
        except Exception as error:
            raise TypeError(
                f"{exc.__qualname__} cannot be created without arguments ({error}): pass an instance instead."
            ) from error
    raise TypeError(f"The exception must be a BaseException subclass or instance, not {type(exc).__name__} {exc!r}.")


def _carrier_for(kind: type) -> type:
    carrier = _carriers.get(kind)
    if carrier is None:
        namespace = {
            "__new__": staticmethod(_hardstop.deliver),
            "__module__": kind.__module__,
            "__qualname__": kind.__qualname__,
            "__slots__": (),
        }
        try:
            carrier = type(kind)(kind.__name__, (kind,), namespace)
        except TypeError as error:
            raise TypeError(f"{kind.__qualname__} cannot be raised in another thread: {error}.") from error
        carrier = _carriers.setdefault(kind, carrier)
    return carrier


def interrupt(thread: object, exc: object = Interrupted, *, wake: bool = True) -> Receipt:
    """Raise ``exc`` in ``thread`` as soon as it runs Python code; return a Receipt.

    ``thread`` is a ``threading.Thread`` (checked to be running and to still own
    its ident when the exception is armed) or an int ident (whichever live thread
    of this interpreter has that ident now). ``exc`` is an exception class
    (instantiated here, without arguments) or an instance, raised as that very
    object. With ``wake`` (the default), a target blocked in a wait that
    hardstop can end (``threading.Condition`` and what is built on it, or any
    wait inside ``hardstop.unblocking()``) is woken once the exception is armed;
    ``wake=False`` only arms. Raises ``ThreadNotFound``,
    ``AmbiguousThread`` or ``TypeError``; after a refusal nothing is pending.
    """
    target, ident = resolve(thread)
    instance = _exception_instance(exc)
    carrier = _carrier_for(type(instance))

    def arm() -> Receipt:
        give_up = None
        while True:
            try:
                return _hardstop.arm(target, ident, instance, carrier)
            except AmbiguousThread:
                now = time.monotonic()
                give_up = give_up or now + _AMBIGUITY_PATIENCE
                if now >= give_up:
                    raise
                time.sleep(0.001)

    if ident == threading.get_ident():
        receipt = arm()
        receipt.wake = "not needed: the calling thread raises it as soon as this call returns"
    elif wake:
        receipt = _wake.arm_and_wake(ident, arm)
    else:
        receipt = arm()
        receipt.wake = "not woken: wake=False"
    ensure_pump()
    return receipt


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


_hardstop._bind_interrupt(interrupt, _start_pump)
os.register_at_fork(after_in_child=_after_fork_in_child)
