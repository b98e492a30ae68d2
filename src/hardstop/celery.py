"""``hardstop.celery``: Celery time limits and ``revoke(terminate=True)`` in a pool of threads.

Celery's own ``threads`` pool ignores the time limits it is handed and cannot
terminate a running task. This pool runs each task in a thread, as that one
does, inside two ``hardstop.deadline`` scopes:

* the soft limit raises Celery's ``SoftTimeLimitExceeded`` in the task, once
  (the task may catch it and clean up), and the worker logs it as prefork does;
* the hard limit, ``revoke(task_id, terminate=True)`` (any ``signal=``) and a
  cold shutdown raise ``TaskStopped``, a ``BaseException``, so that
  ``except Exception`` in the task does not swallow it; ``finally`` blocks run.
  After a hard limit the pool calls Celery's ``timeout_callback``: the result is
  a FAILURE with ``TimeLimitExceeded`` and the worker logs what prefork logs.

Each scope's exit withdraws whatever of it is still pending, in one step under
the GIL, so a stop never lands in the next task the thread runs. Each task
reports its own number as its ``worker_pid``, which ``terminate_job()`` resolves
to that task alone (idents and the pid cannot tell tasks apart).

A task still running ``hardstop_report_after`` seconds (a setting of the app,
default 1.0) after it was stopped is blocked where CPython cannot raise (a
worker thread in ``Lock.acquire``, ``time.sleep`` before 3.15, a long C call):
the worker log says where it is and why, the pool starts a thread in its place
so that the worker keeps its concurrency, and the stuck thread leaves the pool,
logged again, once the task returns.

Use it as Celery documents for pools outside Celery::

    CELERY_CUSTOM_WORKER_POOL=hardstop.celery:TaskPool celery -A proj worker -P custom

or ``app.conf.worker_pool = "hardstop.celery:TaskPool"``.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    # Not installed where CI runs mypy: no types to check against there.
    from billiard.einfo import ExceptionInfo  # type: ignore[import-not-found, unused-ignore]
    from celery.concurrency.base import BasePool  # type: ignore[import-not-found, unused-ignore]
    from celery.exceptions import (  # type: ignore[import-not-found, unused-ignore]
        SoftTimeLimitExceeded,
        WorkerLostError,
    )
except ImportError as error:
    raise ImportError(
        "hardstop.celery needs Celery, which is not installed: install it with pip install 'hardstop-threads[celery]'."
    ) from error

from hardstop._deadline import deadline
from hardstop._hardstop import Deadline, current_frame, shield, still_handling
from hardstop._kill import _blocked_why, _where

logger = logging.getLogger("celery.pool.hardstop")

REPORT_AFTER_SETTING = "hardstop_report_after"
_DEFAULT_REPORT_AFTER = 1.0
_LOOK_EVERY = 0.05  # how often the supervisor looks at the running tasks


class TaskStopped(BaseException):
    """Raised inside a Celery task that ``TaskPool`` stops: its hard time limit
    passed, it was revoked with ``terminate=True``, or the worker shut down cold.

    A ``BaseException``, like the ``SIGKILL`` a prefork child gets, but one
    that runs the task's ``finally`` blocks; ``reason`` says which.
    """

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(task, reason)
        self.task = task
        self.reason = reason

    def __str__(self) -> str:
        return f"hardstop's Celery pool stopped the task {self.task}: {self.reason}."


class _Job:
    """One task handed to the pool; Celery's ``Request`` keeps it as the apply result."""

    def __init__(
        self,
        pool: TaskPool,
        number: int,
        target: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> None:
        self.pool = pool
        self.number = number  # the worker_pid Celery records, and terminate_job() is given
        self.target, self.args, self.kwargs = target, args, kwargs
        self.callback: Callable[..., Any] | None = options.get("callback")
        self.accept_callback: Callable[..., Any] | None = options.get("accept_callback")
        self.timeout_callback: Callable[..., Any] | None = options.get("timeout_callback")
        self.error_callback: Callable[..., Any] | None = options.get("error_callback")
        self.soft = _limit(options.get("soft_timeout"), pool.soft_timeout)
        self.hard = _limit(options.get("timeout"), pool.timeout)
        name = args[0] if args else "?"
        self.task = f"{name}[{options.get('correlation_id') or '?'}]"
        self.stopped = TaskStopped(self.task, f"its hard time limit of {self.hard} s passed")
        self.thread: threading.Thread | None = None
        self.started = 0.0
        self.stop_requested_at: float | None = None  # revoke or cold shutdown
        self.stuck_since: float | None = None  # when reported stuck; its thread left the pool then
        self._lock = threading.Lock()
        # Held while Celery accepts the task (in on_accepted it sets time_start, then acks):
        # a revoke waits for it in terminate_job(), or Celery's Request.terminate() would
        # ack the message a second time from the consumer's thread (an unrecoverable
        # MessageStateError, seen once on 3.14). Re-entrant: on_accepted may itself stop it.
        self._accepting = threading.RLock()
        self._stop_scope: Deadline | None = None
        self._soft_scope: Deadline | None = None
        self._soft_told = False
        self._done = threading.Event()
        self._ended = False  # Celery was told how it ended (by its thread, or for it when stuck)

    # What Celery's Request and the result of apply_async() are asked.
    def get(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def terminate(self, signal: object = None) -> None:
        # Celery's Request.terminate() (a revoke with terminate=True) and Request.cancel()
        # (a cold shutdown, a lost connection) both come here.
        self.stop(f"terminated by the worker (signal {signal}): revoked with terminate=True, or a cold shutdown")

    def run(self) -> None:
        """Run the task in the calling pool thread, inside its stop and soft-limit scopes."""
        self.thread = threading.current_thread()
        self.started = time.monotonic()
        try:
            with deadline(self.hard, raises=self.stopped) as stop_scope:
                stop_scope.label = f"the Celery task {self.task}"
                with shield():  # Celery's acceptance (ack, events) is never cut in half
                    with self._accepting:
                        if self.accept_callback is not None:
                            self.accept_callback(self.number, time.monotonic())
                    with self._lock:
                        self._stop_scope = stop_scope
                        stop_now = self.stop_requested_at is not None
                        if stop_now:  # stopped before it started: the stop takes from now
                            self.stop_requested_at = time.monotonic()
                if stop_now:
                    stop_scope.expire()
                with deadline(self.soft, raises=SoftTimeLimitExceeded) as soft_scope:
                    soft_scope.label = f"the Celery task {self.task}"
                    self._soft_scope = soft_scope
                    try:
                        result = self.target(*self.args, **self.kwargs)
                    finally:
                        if soft_scope.expired:
                            self._tell_soft_limit()  # unless the supervisor saw it first
        except BaseException as error:  # noqa: BLE001 - handed to Celery, as its own pools do
            if error is self.stopped:
                self._tell_stopped()
            elif self._claim_end():
                self._tell_failed(error)
        else:
            if self._claim_end() and self.callback is not None:
                self.callback(result)
        finally:
            with self._lock:
                self._stop_scope = self._soft_scope = None
            self._done.set()
            self.pool._finished(self)

    def stop(self, reason: str) -> bool:
        """Stop the task where it is (or as it starts); True the first time."""
        with self._accepting, self._lock:
            if self.stop_requested_at is not None or self._done.is_set():
                return False
            scope = self._stop_scope
            if scope is not None and scope.expired:
                return False  # its hard limit passed already
            self.stop_requested_at = time.monotonic()
            self.stopped.reason = reason
        if scope is not None:
            scope.expire()
        return True

    def look(self, now: float, report_after: float) -> None:
        """For the supervisor: tell Celery of a passed soft limit; report a stop that has not taken."""
        soft_scope = self._soft_scope
        if soft_scope is not None and soft_scope.expired:
            self._tell_soft_limit()
        stopped_at = self._stopped_at()
        if stopped_at is None or self.stuck_since is not None or now - stopped_at < report_after:
            return
        thread = self.thread
        if thread is None or self._done.is_set():
            return
        self.stuck_since = now
        logger.warning(
            "hardstop: the Celery task %s was stopped %.1f s ago (%s) and is still running in %s. %s "
            "A new thread takes its place in the pool; this one leaves the pool once the task returns.",
            self.task,
            now - stopped_at,
            self.stopped.reason,
            thread.name,
            _why_running(thread),
        )
        self.pool._replace(thread)
        if self.stop_requested_at is None and self._claim_end():
            self._tell_hard_limit()  # the result is final now, as prefork's is when it kills

    def _tell_soft_limit(self) -> None:
        with self._lock:
            if self._soft_told:
                return
            self._soft_told = True
        if self.timeout_callback is not None:
            self.timeout_callback(True, self.soft)

    def _stopped_at(self) -> float | None:
        if self.stop_requested_at is not None:
            return self.stop_requested_at
        scope = self._stop_scope
        if scope is not None and scope.expired:
            return self.started + self.hard
        return None

    def _claim_end(self) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def _tell_stopped(self) -> None:
        if self.stuck_since is not None:
            logger.warning(
                "hardstop: the Celery task %s stopped, %.1f s after it was reported stuck; its thread leaves the pool.",
                self.task,
                time.monotonic() - self.stuck_since,
            )
        if not self._claim_end():
            return
        if self.stop_requested_at is None:
            self._tell_hard_limit()
        elif self.pool._cold and self.error_callback is not None:
            self._tell_failed(WorkerLostError(f"The worker shut down cold while the task {self.task} ran."))
        # Revoked: Celery's Request.terminate() has announced it already, as with prefork.

    def _tell_hard_limit(self) -> None:
        if self.timeout_callback is not None:
            self.timeout_callback(False, self.hard)

    def _tell_failed(self, error: BaseException) -> None:
        if self.error_callback is None:
            logger.error("hardstop: the Celery task %s raised %r outside Celery's tracing.", self.task, error)
            return
        try:
            raise error
        except BaseException:  # noqa: BLE001 - captured for Celery's on_failure
            info = ExceptionInfo()
        self.error_callback(info)


def _limit(value: object, default: object) -> float:
    """A time limit in seconds, as given (infinite when neither the task nor the worker sets one)."""
    for seconds in (value, default):
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            return seconds
    return math.inf


def _why_running(thread: threading.Thread) -> str:
    ident = thread.ident or 0
    where = _where(current_frame(ident))
    if still_handling(ident):
        return f"It raised TaskStopped and is still handling it, in an except or finally block ({where})."
    return (
        f"It is {where}. {_blocked_why(thread)} If it is inside a hardstop.shield() instead, "
        "it is stopped as it leaves the shield."
    )


class TaskPool(BasePool):  # type: ignore[misc, unused-ignore]
    """Celery's threads pool, with time limits and ``revoke(terminate=True)``."""

    body_can_be_buffer = True
    signal_safe = False
    limit: int
    soft_timeout: float | None  # the worker's --soft-time-limit (task_soft_time_limit)
    timeout: float | None  # the worker's --time-limit (task_time_limit)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = int(self.limit or 1)
        self.soft_timeout = self.options.get("soft_timeout")
        self.timeout = self.options.get("timeout")
        conf = getattr(self.app, "conf", None)
        report_after = conf.get(REPORT_AFTER_SETTING, _DEFAULT_REPORT_AFTER) if conf is not None else None
        if isinstance(report_after, bool) or not isinstance(report_after, (int, float)) or not report_after >= 0:
            raise ValueError(f"The {REPORT_AFTER_SETTING} setting takes seconds (0 or more), not {report_after!r}.")
        self.report_after = float(report_after)
        self._numbers = itertools.count(1)  # of tasks: each one's worker_pid
        self._thread_numbers = itertools.count(1)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._jobs: dict[int, _Job] = {}  # queued or running, by number
        self._threads: set[threading.Thread] = set()  # taking tasks; a stuck one leaves this set
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._cold = False
        self._supervisor: threading.Thread | None = None

    def on_start(self) -> None:
        for _ in range(self.limit):
            self._start_thread()
        self._supervisor = threading.Thread(target=self._supervise, name="hardstop-celery-supervisor", daemon=True)
        self._supervisor.start()

    def on_apply(self, target: Callable[..., Any], args: Any = None, kwargs: Any = None, **options: Any) -> _Job:
        job = _Job(self, next(self._numbers), target, tuple(args or ()), dict(kwargs or {}), options)
        with self._lock:
            self._jobs[job.number] = job
        self._queue.put(job)
        return job

    def terminate_job(self, pid: int, signal: object = None) -> None:
        job = self._jobs.get(pid)
        if job is not None:
            job.terminate(signal)

    def on_stop(self) -> None:
        """Warm shutdown: tasks not started are dropped (their messages go back), running ones finish."""
        self._shut_down(stop_running=False)

    def on_terminate(self) -> None:
        """Cold shutdown: running tasks are stopped too."""
        self._cold = True
        self._shut_down(stop_running=True)

    def _shut_down(self, stop_running: bool) -> None:
        self._closing.set()
        self._drop_queued()
        with self._lock:
            threads = list(self._threads)
            running = list(self._jobs.values())
        if stop_running:
            for job in running:
                job.stop("the worker shut down cold")
        for _ in threads:
            self._queue.put(None)
        end = time.monotonic() + (self.report_after + 1.0 if stop_running else math.inf)
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()) if stop_running else None)
            if thread.is_alive():
                logger.warning(
                    "hardstop: %s did not stop at the worker's cold shutdown. %s", thread.name, _why_running(thread)
                )

    def _drop_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                with self._lock:
                    self._jobs.pop(job.number, None)

    def _start_thread(self, replacing: threading.Thread | None = None) -> None:
        thread = threading.Thread(target=self._work, name=f"hardstop-celery-{next(self._thread_numbers)}", daemon=True)
        with self._lock:  # one step: the pool never counts a thread short
            if replacing is not None:
                if replacing not in self._threads:
                    return
                self._threads.discard(replacing)
            self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job.run()
            except BaseException:
                logger.exception("hardstop: handing the end of the Celery task %s to Celery failed", job.task)
            with self._lock:
                if me not in self._threads:
                    return  # reported stuck: another thread took its place

    def _replace(self, thread: threading.Thread) -> None:
        if self._closing.is_set():
            with self._lock:
                self._threads.discard(thread)
        else:
            self._start_thread(replacing=thread)

    def _finished(self, job: _Job) -> None:
        with self._lock:
            self._jobs.pop(job.number, None)

    def _supervise(self) -> None:
        while not self._closing.wait(_LOOK_EVERY):
            now = time.monotonic()
            with self._lock:
                running = [job for job in self._jobs.values() if job.thread is not None]
            for job in running:
                try:
                    job.look(now, self.report_after)
                except Exception:
                    logger.exception("hardstop: the pool's supervisor failed to look at %s", job.task)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        with self._lock:
            taking = len(self._threads)
        info.update({"max-concurrency": self.limit, "threads": taking})
        return info

    @property
    def num_processes(self) -> int:
        return self.limit


__all__ = ["REPORT_AFTER_SETTING", "TaskPool", "TaskStopped"]
