"""``hardstop.futures.ThreadPoolExecutor``: running tasks can be cancelled too.

A drop-in subclass of ``concurrent.futures.ThreadPoolExecutor``. Each task runs
inside its own ``hardstop.deadline`` scope (infinite unless given a timeout):

* ``Future.cancel()`` on a running task makes that scope pass at once
  (``Deadline.expire()``): the worker raises inside the task, wherever it is
  (woken from waits hardstop can end), the future ends cancelled, and the
  worker goes on to the next task. A request never outlives its task: the
  scope's exit withdraws anything still pending, in one step under the GIL.
* ``submit_with_timeout(fn, timeout, ...)``: the scope's deadline, counted from
  when the task starts; the future fails with ``hardstop.DeadlineExceeded``.
* ``shutdown(cancel_futures=True)`` also stops the running tasks, and waits for
  the workers at most ``stop_timeout`` seconds (a ``RuntimeWarning`` names every
  task still running then, cancelled earlier or not, by the call as submitted).

The task (``_Task``) is the standard executor's work item: its workers run it,
and its shutdown and broken-pool paths reach the caller's future through it, so
a task costs one future and no done-callback, as in the standard executor. A
task is known to the executor until it has left its worker (or the pool dropped
it), not only until its future is done: a cancelled task may still be running.
Done-callbacks run after the future's lock is released, as in the standard
executor.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread as _stdlib_thread
import math
import reprlib
import time
import warnings
from collections.abc import Callable
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from typing import Any, ParamSpec, TypeVar

from hardstop._deadline import deadline
from hardstop._errors import non_negative_seconds
from hardstop._hardstop import ScopedTask, current_frame

P = ParamSpec("P")
T = TypeVar("T")


class Future(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also stops a running task."""

    # The task that runs it, until the task has left its worker: the task holds its
    # future too, and a cycle left in place would leave every finished pair to the
    # garbage collector (it cost 12 µs a task). Only a task the pool dropped unrun
    # (a broken pool) leaves it to the collector.
    _task: _Task | None

    def cancel(self) -> bool:
        """Cancel the task: a pending one never runs, a running one is stopped.

        True when the future is (now) cancelled; False once it had finished. A
        running task whose thread is blocked where hardstop cannot wake it stops
        when that call returns; the future reads cancelled at once. A task that
        cancels its own future is not interrupted (it is the caller, and may be
        cancelling the rest of its batch): its future ends cancelled at once,
        and what the task returns or raises later is dropped.
        """
        if super().cancel():
            return True
        with self._condition:
            if self._state != RUNNING:
                return False
        task = self._task
        if task is not None and not task.runs_here():
            task.stop()
        with self._condition:
            if self._state != RUNNING:
                return self.cancelled()
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # private, in every version 3.10-3.15
        return True


class _Task(ScopedTask):
    """Runs ``fn`` in a worker, inside a deadline scope another thread can expire.

    It is also the executor's work item: the standard worker calls ``run()``
    (``run(context)`` from 3.14), and its shutdown and broken-pool paths reach the
    caller's future as ``future``, so no second future and no done-callback is
    made per task. What runs for every task (``__init__``, ``run()``) is compiled
    (``ScopedTask``, ext/task.pxi); what runs for a task that is stopped or
    reported is here.
    """

    __slots__ = ()

    def stop(self) -> None:
        self.stop_requested = True  # before the expiry: run() reads it when that lands
        scope = self.scope
        if scope is not None:
            if scope.label is None:
                scope.label = self.label()
            scope.expire()

    def call(self) -> str:
        """The call as the user made it, e.g. ``time.sleep(8)``."""
        fn = self.fn
        module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        named = f"{module}.{name}" if module and name else name or repr(fn)
        arguments = [_short.repr(arg) for arg in self.args]
        arguments += [f"{key}={_short.repr(value)}" for key, value in self.kwargs.items()]
        return f"{named}({', '.join(arguments)})"

    def where(self) -> str:
        thread = self.thread
        frame = current_frame(thread.ident or 0) if thread is not None else None
        if frame is None or frame.f_code is self.runner_code:
            return self.call()  # not started or left, or inside a C function: no frame of the user's
        return f"{self.call()} at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


_NO_LIMIT = math.inf
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose futures can stop running tasks."""

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(max_workers, thread_name_prefix, initializer, initargs)
        # Submitted and not yet left their worker (or dropped by the pool). A set's
        # add() and discard() are atomic (with or without the GIL): no lock per task.
        self._tasks: set[_Task] = set()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._submit(fn, math.inf, args, kwargs)

    def submit_with_timeout(
        self, fn: Callable[P, T], timeout: float, /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Like ``submit()``; the task is stopped with ``hardstop.DeadlineExceeded``
        once it has run ``timeout`` seconds (counted from when it starts)."""
        deadline(timeout)  # refuse a bad value here, not in the worker
        return self._submit(fn, timeout, args, kwargs)

    def _submit(self, fn: Callable[..., T], timeout: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[T]:
        # The standard submit() with the task as its work item: the same checks, in
        # the same order, with the same errors, under the same locks.
        with self._shutdown_lock, _stdlib_thread._global_shutdown_lock:
            if self._broken:
                raise _stdlib_thread.BrokenThreadPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _stdlib_thread._shutdown:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            future: Future[T] = Future()
            task = _Task(future, fn, args, kwargs, timeout, None, self._tasks)
            self._work_queue.put(task)  # type: ignore[arg-type]  # a work item: run() and future
            self._adjust_thread_count()  # private, in every version 3.10-3.15
        return future

    def _initializer_failed(self) -> None:
        """A worker's initializer failed: the standard method fails every queued
        future with ``BrokenThreadPool``, but stops (``InvalidStateError``) at one
        cancelled while queued: go on past it. The dropped tasks never run."""
        while True:
            try:
                super()._initializer_failed()  # private, in every version 3.10-3.15
                break
            except concurrent.futures.InvalidStateError:
                continue  # that item is off the queue already
        self._forget_dropped()

    def _forget_dropped(self) -> None:
        """Forget the tasks the pool dropped from its queue (they will never run)."""
        for task in self._tasks.copy():
            if not task.started and task.future.done():
                self._tasks.discard(task)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, stop_timeout: float = 5.0) -> None:
        """As the standard ``shutdown()``; with ``cancel_futures``, running tasks are
        stopped too, and ``wait`` waits at most ``stop_timeout`` seconds for them."""
        stop_timeout = non_negative_seconds(
            stop_timeout,
            "ThreadPoolExecutor.shutdown()'s stop_timeout takes a number of seconds",
            "ThreadPoolExecutor.shutdown()'s stop_timeout takes a non-negative number of seconds",
        )
        if not cancel_futures:
            super().shutdown(wait=wait)
            return
        # The queue is emptied first: a worker freed by a stop would otherwise take
        # a queued task and run it (a freed worker runs at once without a GIL).
        super().shutdown(wait=False, cancel_futures=True)
        tasks = self._tasks.copy()
        for task in tasks:
            task.future.cancel()
            task.stop()  # also one whose future was cancelled earlier without stopping it (its own cancel())
        self._forget_dropped()
        if not wait:
            return
        end = time.monotonic() + stop_timeout
        for thread in list(self._threads):
            thread.join(None if stop_timeout == math.inf else max(0.0, end - time.monotonic()))
        stuck = [task.where() for task in tasks if task.thread is not None]
        if stuck:
            warnings.warn(
                f"ThreadPoolExecutor.shutdown(): {len(stuck)} task(s) still running after {stop_timeout:g} s: "
                + "; ".join(stuck),
                RuntimeWarning,
                stacklevel=2,
            )


__all__ = ["Future", "ThreadPoolExecutor"]
