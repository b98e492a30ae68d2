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
  the workers at most ``stop_timeout`` seconds (a ``RuntimeWarning`` names the
  tasks still running then).

The standard executor runs a wrapper (``_Task.run``) that drives the future the
caller holds; its own future for the wrapper is internal.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, RUNNING
from typing import Any, ParamSpec, TypeVar

from hardstop._deadline import deadline
from hardstop._errors import DeadlineExceeded
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
        when that call returns; the future reads cancelled at once.
        """
        if super().cancel():
            return True
        with self._condition:
            if self._state != RUNNING:
                return False
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
        self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float
    ) -> None:
        self.future = future
        self.fn, self.args, self.kwargs = fn, args, kwargs
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
        with self.future._condition:
            if self.future._state != RUNNING:
                return  # cancelled while it ran: the result is dropped
            if exception is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(exception)

    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            scope = self._scope
        if scope is not None:
            scope.expire()

    def where(self) -> str:
        thread = self.thread
        frame = current_frame(thread.ident or 0) if thread is not None else None
        if frame is None:
            return f"{self.fn!r}"
        return f"{self.fn!r} at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` whose futures can stop running tasks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[_Task] = set()
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
        future.add_done_callback(lambda _: self._forget(task))
        super().submit(task.run)
        return future

    def _forget(self, task: _Task) -> None:
        with self._tasks_lock:
            self._tasks.discard(task)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, stop_timeout: float = 5.0) -> None:
        """As the standard ``shutdown()``; with ``cancel_futures``, running tasks are
        stopped too, and ``wait`` waits at most ``stop_timeout`` seconds for them."""
        if not cancel_futures:
            super().shutdown(wait=wait)
            return
        with self._tasks_lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.future.cancel()
        super().shutdown(wait=False, cancel_futures=True)
        if not wait:
            return
        end = time.monotonic() + stop_timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))
        stuck = [task.where() for task in tasks if task.thread is not None]
        if stuck:
            warnings.warn(
                f"ThreadPoolExecutor.shutdown(): {len(stuck)} task(s) still running after {stop_timeout} s: "
                + "; ".join(stuck),
                RuntimeWarning,
                stacklevel=2,
            )


__all__ = ["Future", "ThreadPoolExecutor"]
