"""Deadlines: ``deadline()``, ``deadline_at()``, ``@timeout``, and the watchdog.

A deadline is a scope (``hardstop._hardstop.Deadline``): entering it pushes its
time on one heap, leaving it withdraws whatever it armed, both in one step under
the GIL, so an expiry can land only inside its own block. Inside, the expiry is
a private ``BaseException``; the block's exit turns its own (never an outer
scope's) into ``hardstop.DeadlineExceeded``.

One watchdog thread per process serves every deadline: started with the first,
it sleeps until the earliest is due (an entry that becomes the earliest wakes
it), fires it through ``interrupt()``'s path (so waits hardstop can end are
woken, and a shield inside the block defers it), and sleeps again. Scopes that
leave before their time cost O(1) on the way out: their heap entries are
dropped when they come up, or in a sweep once they are most of the heap.
A fired deadline whose block goes on (its expiry was swallowed) fires again
10 ms later, until the block is left: level-triggered, as trio's cancel scopes.

In a child process after ``os.fork()`` a new watchdog starts as needed, and only
the deadlines of the thread that forked remain.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from hardstop import _hardstop, _interrupt, _wake
from hardstop._errors import AmbiguousThread, ThreadNotFound, _DeadlinePassed
from hardstop._hardstop import Deadline, deadline, deadline_at

P = ParamSpec("P")
R = TypeVar("R")

_AMBIGUITY_RETRY = 0.001  # 3.10/3.11: the thread is starting another; try again shortly


def timeout(seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run every call of the function inside ``hardstop.deadline(seconds)``."""
    deadline(seconds)  # refuse a bad value when decorating, not at the first call

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def call_with_deadline(*args: P.args, **kwargs: P.kwargs) -> R:
            with deadline(seconds):
                return func(*args, **kwargs)

        return call_with_deadline

    return decorate


def _fire(scope: Deadline) -> None:
    try:
        _wake.arm_and_wake(scope.ident, lambda: _hardstop.fire(scope))
    except _hardstop.NotFired:
        return
    except AmbiguousThread:
        _hardstop.retry_later(scope, _AMBIGUITY_RETRY)
        return
    except ThreadNotFound:
        return  # its thread is gone: nothing can be raised for it
    _interrupt.ensure_pump()


def _watch() -> None:
    while True:
        due, wait = _hardstop.due_deadlines(time.monotonic())
        for scope in due:
            try:
                _fire(scope)
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive one failure
                sys.unraisablehook(
                    _wake._Unraisable(error, f"Exception ignored in the hardstop watchdog firing {scope!r}")
                )
        if due:
            continue
        _hardstop._wakeup.acquire(True, -1 if wait is None or wait > threading.TIMEOUT_MAX else wait)


def _start_watchdog() -> None:
    threading.Thread(target=_watch, name="hardstop-watchdog", daemon=True).start()


def _after_fork_in_child() -> None:
    # _interrupt's handler (registered first) reset the extension's state.
    if _hardstop.claim_watchdog():
        try:
            _start_watchdog()
        except BaseException:
            _hardstop.release_watchdog()
            raise


def _fire_now(scope: Deadline) -> None:
    """``scope.expire()``: fire from the calling thread; a watchdog must run for
    the re-fires of a swallowed expiry."""
    _fire(scope)
    if _hardstop.claim_watchdog(True):
        try:
            _start_watchdog()
        except BaseException:
            _hardstop.release_watchdog()
            raise


def _chosen_exception(raises: object, what: str) -> tuple[BaseException, type]:
    """``raises=`` of a deadline: the instance it raises (a class is made now, without
    arguments, so that a bad one is refused here) and its carrier class."""
    if not (isinstance(raises, BaseException) or (isinstance(raises, type) and issubclass(raises, BaseException))):
        raise TypeError(
            f"{what} takes raises= as a BaseException subclass or instance, not {type(raises).__name__} {raises!r}."
        )
    instance = _interrupt._exception_instance(raises)
    return instance, _interrupt._carrier_for(type(instance))


_hardstop._bind_deadlines(_interrupt._carrier_for(_DeadlinePassed), _start_watchdog, _fire_now, _chosen_exception)
os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["Deadline", "deadline", "deadline_at", "timeout"]
