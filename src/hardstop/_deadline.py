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
import math
import os
import sys
import threading
import time
from collections.abc import Callable

from hardstop import _hardstop, _interrupt, _own_threads, _wake
from hardstop._errors import AmbiguousThread, DeadlineExceeded, ThreadNotFound, _DeadlinePassed
from hardstop._hardstop import Deadline, deadline, deadline_at

# typing costs more to import than all of hardstop: these exist for type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

_AMBIGUITY_RETRY = 0.001  # 3.10/3.11: the thread is starting another; try again shortly


def timeout(seconds: float | None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run every call of the function inside ``hardstop.deadline(seconds)``
    (``None``: no limit). Its ``DeadlineExceeded`` names the function and where it was called."""
    if callable(seconds):
        raise TypeError(
            f"hardstop.timeout() takes a number of seconds: write @hardstop.timeout(seconds) "
            f"over {_name(seconds)}, not @hardstop.timeout."
        )
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(
                f"hardstop.timeout() takes a number of seconds or None, not {type(seconds).__name__} {seconds!r}."
            )
        try:
            number = float(seconds)
        except OverflowError:  # an int no float can hold
            number = math.nan
        if math.isnan(number):
            raise ValueError(f"hardstop.timeout() takes a number of seconds or None, not {seconds!r}.")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        _refuse_suspendable(func)
        name = _name(func)

        @functools.wraps(func)
        def call_with_deadline(*args: P.args, **kwargs: P.kwargs) -> R:
            caller = sys._getframe(1)
            scope = deadline(seconds)
            try:
                with scope:
                    return func(*args, **kwargs)
            except DeadlineExceeded as error:
                if error.scope is scope:  # name the call, not this with statement (formatted only now: cheaper)
                    scope.label = f"the call of {name} at {caller.f_code.co_filename}:{caller.f_lineno}"
                    error.args = DeadlineExceeded(scope).args
                raise

        return call_with_deadline

    return decorate


def _name(func: object) -> str:
    qualname = getattr(func, "__qualname__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{qualname}()" if module else f"{qualname}()"


def _refuse_suspendable(func: object) -> None:
    """A call of these returns at once, and the body runs later, outside any deadline of the call."""
    import inspect  # here, not at import: it costs more than the rest of hardstop's import

    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"hardstop.timeout() cannot bound the async function {_name(func)}: a call returns a coroutine "
            "and its body runs later, on the event loop. Use asyncio.timeout() (3.11+) or asyncio.wait_for() "
            "around the await instead."
        )
    if inspect.isgeneratorfunction(func):
        raise TypeError(
            f"hardstop.timeout() cannot bound the generator function {_name(func)}: a call returns a generator "
            "and its body runs as it is consumed. Put hardstop.deadline() around the loop that consumes it instead."
        )


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


def _warm_up() -> None:
    """Fire one deadline of the watchdog's own, so that the first deadline of
    the process is not the one to pay for the firing path's first run (code
    not yet specialised, caches empty: the first fire took 1.4 ms, later ones
    0.016 ms, and the first ~50 deadlines of a busy run were 3-15 ms late)."""
    try:
        with deadline_at(math.inf) as scope:  # never scheduled: expire() fires it here
            scope.expire()
            _run_a_few_instructions()
    except DeadlineExceeded:
        pass  # as expected; had CPython swallowed it (a GC callback), the block simply ended


def _run_a_few_instructions() -> None:
    for _ in range(3):
        pass


def _watch() -> None:
    _warm_up()
    while True:
        due, wait = _hardstop.due_deadlines(time.monotonic())
        for scope in due:
            try:
                _fire(scope)
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive one failure
                _hardstop.write_unraisable(error, f"in the hardstop watchdog firing {scope!r}")
        if due:
            continue
        _hardstop._wakeup.acquire(True, -1 if wait is None or wait > threading.TIMEOUT_MAX else wait)


def _start_watchdog() -> None:
    try:
        _own_threads.start(_watch, "hardstop-watchdog", "watchdog, which fires every deadline of the process")
    except RuntimeError as error:
        if not getattr(threading, "_SHUTTING_DOWN", False):
            raise
        # 3.12 starts no thread once shutdown has begun, atexit handlers included.
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise RuntimeError(
            "hardstop cannot enforce this deadline: it is the first of the process, and the watchdog thread that "
            f"fires deadlines cannot start, because CPython {version} starts no new thread once the interpreter "
            "has begun to shut down (atexit handlers run then). Enter a deadline before exit to start the "
            "watchdog early (it then serves deadlines entered at exit too)."
        ) from error


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
