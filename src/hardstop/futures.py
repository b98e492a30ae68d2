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

The standard executor runs a wrapper (``_Task.run``) that drives the future the
caller holds; its own future for the wrapper is internal, and passes on what
only the standard executor knows (``BrokenThreadPool`` when an initializer
failed). A task is known to the executor until it has left its worker, not
only until its future is done: a cancelled task may still be running.
Done-callbacks run after the future's lock is released, as in the standard
executor.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import math
import reprlib
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from typing import Any, ParamSpec, TypeVar

from hardstop._deadline import deadline
from hardstop._errors import DeadlineExceeded, non_negative_seconds
from hardstop._hardstop import Deadline, current_frame, shield

P = ParamSpec("P")
T = TypeVar("T")


class Future(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also stops a running task."""

    _task: _Task

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
        if threading.current_thread() is not self._task.thread:
            self._task.stop()
        with self._condition:
            if self._state != RUNNING:
                return self.cancelled()
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # private, in every version 3.10-3.15
        return True


class _Task:
    """Runs ``fn`` in a worker, inside a deadline scope another thread can expire."""

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
        context: contextvars.Context | None = None,
    ) -> None:
        self.future = future
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.context = context  # to_thread's copy of the caller's context variables
        self.timeout = timeout
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._scope: Deadline | None = None
        self._stop_requested = False
        self.on_exit: Callable[[], object] | None = None  # called in the worker once fn is left
        self.started = False

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        self.started = True
        try:
            with deadline(self.timeout) as scope:
                scope.label = f"the task {self.fn!r}"
                # Shielded: an expiry landing between the lock's acquire and the body
                # (3.14's `with lock:`) would leave it held and hang the finally below.
                with shield(), self._lock:
                    self._scope, self.thread = scope, threading.current_thread()
                    stop_now = self._stop_requested
                if stop_now:
                    scope.expire()
                if self.context is not None:
                    result = self.context.run(self.fn, *self.args, **self.kwargs)
                else:
                    result = self.fn(*self.args, **self.kwargs)
        except DeadlineExceeded as error:
            if error.scope is not self._scope or not self._stop_requested:
                self._finish(exception=error)  # its timeout, or its own deadline's
        except BaseException as error:  # noqa: BLE001 - handed to the future, as the standard executor does
            self._finish(exception=error)
        else:
            self._finish(result=result)
        finally:
            with self._lock:
                self._scope = self.thread = None
            if self.on_exit is not None:
                self.on_exit()

    def _finish(self, result: Any = None, exception: BaseException | None = None) -> None:
        # Not under the future's lock: set_result() runs the done-callbacks after
        # releasing it, and a callback may wait for a thread that needs it.
        try:
            if exception is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(exception)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled while it ran: the result is dropped

    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            scope = self._scope
        if scope is not None:
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
        if frame is None or frame.f_code is _Task.run.__code__:
            return self.call()  # not started or left, or inside a C function: no frame of the user's
        return f"{self.call()} at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


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
        self._tasks: set[_Task] = set()  # submitted and not yet left their worker
        self._tasks_lock = threading.Lock()

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
        future: Future[T] = Future()
        task = _Task(future, fn, args, kwargs, timeout)
        future._task = task
        with self._tasks_lock:
            self._tasks.add(task)
        try:
            inner = super().submit(task.run)
        except BaseException:  # BrokenThreadPool, or shut down: nothing was queued
            self._forget(task)
            raise
        inner.add_done_callback(lambda inner: self._left(task, inner))
        return future

    def _left(self, task: _Task, inner: concurrent.futures.Future[None]) -> None:
        """The wrapper is done: it ran, or the pool dropped it (a failed initializer)."""
        self._forget(task)
        error = None if inner.cancelled() else inner.exception()
        if error is not None:
            with task.future._condition:
                pending = task.future._state == PENDING
            if pending:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    task.future.set_exception(error)

    def _forget(self, task: _Task) -> None:
        with self._tasks_lock:
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
        with self._tasks_lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.future.cancel()
            task.stop()  # also one whose future was cancelled earlier without stopping it (its own cancel())
        super().shutdown(wait=False, cancel_futures=True)
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
