"""``await hardstop.to_thread(func, ...)``: cancelling the await stops the thread.

``asyncio.to_thread`` (and trio's and anyio's ``to_thread.run_sync``) can only
abandon the thread when the awaiting task is cancelled: the work goes on behind
the caller's back. Here the cancellation makes the task's scope pass
(``Deadline.expire()``), so the thread raises inside ``func`` (woken from waits
hardstop can end), and the await ends only once the thread has left ``func``,
or after ``stop_timeout`` seconds (5 by default), with a ``RuntimeWarning``
naming the call and where the thread is. ``asyncio.timeout()`` around it
therefore really stops the work.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from hardstop._errors import non_negative_seconds
from hardstop.futures import Future, _Task

P = ParamSpec("P")
T = TypeVar("T")

STOP_TIMEOUT = 5.0  # the default of to_thread()'s stop_timeout


# Typed in two forms, as no keyword may follow ParamSpec's *args: a call without
# stop_timeout has its arguments checked against func; one with it, only its
# return type. (mypy cannot see that a call with stop_timeout misses the first.)
@overload
async def to_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...
@overload
async def to_thread(  # type: ignore[overload-cannot-match]
    func: Callable[..., T], /, *args: Any, stop_timeout: float, **kwargs: Any
) -> T: ...
async def to_thread(  # type: ignore[misc]
    func: Callable[..., T], /, *args: Any, stop_timeout: float = STOP_TIMEOUT, **kwargs: Any
) -> T:
    """Run ``func(*args, **kwargs)`` in the loop's default executor, as
    ``asyncio.to_thread`` does; cancelling the await stops it.

    A cancelled await waits at most ``stop_timeout`` seconds for the thread to
    leave ``func`` (a ``RuntimeWarning`` then says where it is). The keyword is
    to_thread's own: pass a ``stop_timeout`` meant for ``func`` with
    ``functools.partial``."""
    stop_timeout = non_negative_seconds(
        stop_timeout,
        "hardstop.to_thread()'s stop_timeout takes a number of seconds",
        "hardstop.to_thread()'s stop_timeout takes a non-negative number of seconds",
    )
    loop = _running_loop()
    future: Future[T] = Future()
    task = _Task(future, func, args, kwargs, math.inf, contextvars.copy_context())
    left = asyncio.Event()

    def signal_left() -> None:
        try:
            loop.call_soon_threadsafe(left.set)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    task.on_exit = signal_left
    loop.run_in_executor(None, task.run)
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        future.cancel()  # a task not started never runs; a running one is interrupted
        if task.started:
            await _until_left(left, task, stop_timeout)
        raise


def _running_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop running this call; a clear refusal under trio (anyio's trio
    backend included), where asyncio.get_running_loop() only says there is none."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if _in_trio():
        raise RuntimeError(
            "hardstop.to_thread() runs on asyncio's event loop, and this call runs under trio (anyio's trio "
            "backend is trio): use hardstop.anyio.run_sync(func, *args), which stops the thread on trio too."
        )
    raise RuntimeError("hardstop.to_thread() needs a running asyncio event loop, and none runs in this thread.")


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False  # not imported, so not running
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _until_left(left: asyncio.Event, task: _Task, stop_timeout: float) -> None:
    """Wait for the thread to leave func, for stop_timeout at most, even if the
    awaiting task is cancelled again meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + stop_timeout
    while not left.is_set() and (remaining := end - loop.time()) > 0:
        try:
            await asyncio.wait_for(asyncio.shield(left.wait()), None if remaining == math.inf else remaining)
        except asyncio.CancelledError:
            continue
        except (TimeoutError, asyncio.TimeoutError):
            break
    if not left.is_set():
        warnings.warn(
            f"hardstop.to_thread(): the thread is still running {task.where()} {stop_timeout:g} s after the "
            "await was cancelled (blocked where it cannot be woken); it stops when that call returns",
            RuntimeWarning,
            stacklevel=3,
        )
