"""``await hardstop.to_thread(func, ...)``: cancelling the await stops the thread.

``asyncio.to_thread`` (and trio's and anyio's ``to_thread.run_sync``) can only
abandon the thread when the awaiting task is cancelled: the work goes on behind
the caller's back. Here the cancellation makes the task's scope pass
(``Deadline.expire()``), so the thread raises inside ``func`` (woken from waits
hardstop can end), and the await ends only once the thread has left ``func``,
or after ``STOP_TIMEOUT`` seconds, with a ``RuntimeWarning`` saying where it is.
``asyncio.timeout()`` around it therefore really stops the work.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from hardstop.futures import Future, _Task

P = ParamSpec("P")
T = TypeVar("T")

STOP_TIMEOUT = 5.0  # seconds a cancelled await waits for the thread to leave func


async def to_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func(*args, **kwargs)`` in the loop's default executor, as
    ``asyncio.to_thread`` does; cancelling the await stops it."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    future: Future[T] = Future()
    task = _Task(future, call, (), {}, math.inf)
    future._task = task
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
            await _until_left(left, task)
        raise


async def _until_left(left: asyncio.Event, task: _Task) -> None:
    """Wait for the thread to leave func, for STOP_TIMEOUT at most, even if the
    awaiting task is cancelled again meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + STOP_TIMEOUT
    while not left.is_set() and (remaining := end - loop.time()) > 0:
        try:
            await asyncio.wait_for(asyncio.shield(left.wait()), remaining)
        except asyncio.CancelledError:
            continue
        except (TimeoutError, asyncio.TimeoutError):
            break
    if not left.is_set():
        warnings.warn(
            f"hardstop.to_thread(): the thread is still running {task.where()} {STOP_TIMEOUT} s after the "
            "await was cancelled (blocked where it cannot be woken); it stops when that call returns",
            RuntimeWarning,
            stacklevel=3,
        )
