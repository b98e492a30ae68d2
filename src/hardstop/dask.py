"""``hardstop.dask``: a cancelled Dask task stops running on its worker; tasks can have time limits.

Dask's distributed scheduler cannot stop a task that is already running: a
cancelled or released future keeps its worker thread busy until the function
returns. Installed on the workers (one line, on the client)::

    client.register_plugin(hardstop.dask.HardstopPlugin())

each task a worker runs in a thread runs inside its own ``hardstop.deadline``
scope (infinite unless the task has a ``hardstop_timeout`` annotation, see
``time_limit()``). When the worker's state machine moves that task to
``cancelled`` (the client cancelled or released it), the plugin expires the
scope: the task raises where it is (woken from waits hardstop can end), leaves
with ``TaskCancelled``, which Dask records as the end of a cancelled task (no
error, no log), and the thread takes the next task. As in
``hardstop.futures``, the scope's exit withdraws whatever is still pending in
the same step under the GIL, so nothing reaches the next task.

How it hooks in (read from distributed 2024.12.1 and 2026.8.0): the plugin's
``transition()`` is called by the worker's state machine (``WorkerState``) right
after each transition, on the worker's event loop. On ``ready``/``constrained``
-> ``executing``, before ``Worker.execute`` reads the task, it replaces
``TaskState.run_spec``, the callable that ``_run_task_simple`` calls in the
executor thread as ``run_spec(data)``, with a stand-in that calls it inside the
scope. Everything else Dask reads from a run spec is passed through.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

try:
    # Not installed where CI runs mypy: no types to check against there.
    import dask.base  # type: ignore[import-not-found, unused-ignore]
    import distributed  # type: ignore[import-not-found, unused-ignore]
except ImportError as error:
    raise ImportError(
        "hardstop.dask needs Dask's distributed scheduler, which is not installed: "
        "install it with pip install 'hardstop-threads[dask]'."
    ) from error

from hardstop._deadline import deadline
from hardstop._errors import DeadlineExceeded
from hardstop._hardstop import Deadline, current_frame, shield, still_handling
from hardstop._kill import _blocked_why, _where

#: The task annotation holding a time limit in seconds (``time_limit()`` sets it).
TIMEOUT_ANNOTATION = "hardstop_timeout"

# A child of the worker's logger: the worker's own log handler keeps these
# records, so client.get_worker_logs() shows them with Dask's.
logger = logging.getLogger("distributed.worker.hardstop")

# While Dask runs a task in a thread, its state is one of these; a task leaves
# them only once its thread has returned (WorkerState._execute_done_common).
_RUNNING_STATES = ("executing", "long-running", "cancelled", "resumed")


class TaskCancelled(distributed.Reschedule):  # type: ignore[misc, unused-ignore]
    """Raised out of a running task on its worker once the client cancelled or released it.

    A ``distributed.Reschedule``: for a cancelled task Dask discards it without
    logging an error; if the scheduler asked this worker for the task again in
    the meantime, Dask runs the task afresh instead of reporting an error.
    """


def time_limit(seconds: float) -> AbstractContextManager[None]:
    """Tasks submitted inside ``with time_limit(seconds):`` are stopped on the worker
    after running ``seconds``, and their futures fail with ``hardstop.DeadlineExceeded``.

    The same as ``dask.annotate(hardstop_timeout=seconds)``, with the value checked
    here rather than on the worker. Needs the ``HardstopPlugin`` on the workers: with
    a (synchronous) client whose scheduler has none registered, it warns.
    """
    deadline(seconds)  # refuse a bad value here, not in the worker
    _warn_unless_registered()
    annotate: Callable[..., AbstractContextManager[None]] = dask.base.annotate  # re-exported as dask.annotate
    return annotate(**{TIMEOUT_ANNOTATION: seconds})


_registered_at: set[str] = set()  # schedulers seen with the plugin: asked once each


def _warn_unless_registered() -> None:
    """Warn if the current client's scheduler has no HardstopPlugin for its workers:
    they would ignore the annotation. Without a client, or with an asynchronous one
    (no blocking call here), there is nothing to ask."""
    try:
        client = distributed.default_client()  # type: ignore[no-untyped-call, unused-ignore]
    except ValueError:
        return
    if client.asynchronous or client.scheduler.address in _registered_at:
        return
    # A lambda, with nothing of hardstop's in it: cloudpickle sends it by value, so the
    # scheduler need not have hardstop installed.
    if client.run_on_scheduler(lambda dask_scheduler, name=HardstopPlugin.name: name in dask_scheduler.worker_plugins):
        _registered_at.add(client.scheduler.address)
        return
    warnings.warn(
        f"hardstop.dask.time_limit(): the workers of {client.scheduler.address} have no HardstopPlugin, so "
        "they ignore the time limit. Register it first: client.register_plugin(hardstop.dask.HardstopPlugin()).",
        stacklevel=3,
    )


class _StoppableTask:
    """Stands in for a task's ``run_spec`` on the worker: Dask calls it in the executor
    thread, and it calls the task inside a deadline scope that ``stop()`` expires."""

    def __init__(self, run_spec: Any, key: Any, seconds: float) -> None:
        self.run_spec = run_spec
        self.key = key
        self.seconds = seconds
        self.thread: threading.Thread | None = None  # while it runs the task
        self.stopped_at: float | None = None  # time.monotonic() of stop()
        self.report: str | None = None  # why it is still running, once the plugin said so
        self._lock = threading.Lock()
        self._scope: Deadline | None = None

    def __call__(self, data: Any) -> Any:
        scope = None
        try:
            with deadline(self.seconds) as scope:
                scope.label = f"the Dask task {self.key!r}"
                # Shielded: an expiry landing between the lock's acquire and the body
                # (3.14's `with lock:`) would leave it held.
                with shield(), self._lock:
                    self._scope, self.thread = scope, threading.current_thread()
                    stop_now = self.stopped_at is not None
                if stop_now:
                    scope.expire()
                return self.run_spec(data)
        except DeadlineExceeded as error:
            if error.scope is scope and self.stopped_at is not None:
                raise TaskCancelled(f"The Dask task {self.key!r} was cancelled while it ran, and stopped.") from error
            raise  # its time limit, or a deadline of the task's own
        finally:
            # Our scope is left: nothing of ours can be raised here any more.
            with self._lock:
                self._scope = self.thread = None
                report = self.report
            if report is not None:
                logger.info(
                    "hardstop: the Dask task %r stopped %.1f s after it was cancelled; its thread is free again.",
                    self.key,
                    time.monotonic() - (self.stopped_at or 0.0),
                )

    def stop(self) -> bool:
        """Stop the task where it is (or as it starts); True the first time."""
        with self._lock:
            if self.stopped_at is not None:
                return False
            self.stopped_at = time.monotonic()
            scope = self._scope
        if scope is not None:
            scope.expire()
        return True

    def still_running(self) -> str | None:
        """If the task has not left since ``stop()``, say where it is and why, and keep it as ``report``."""
        with self._lock:
            thread = self.thread
            if thread is None or self.stopped_at is None:
                return None
            ident = thread.ident or 0
            where = _where(current_frame(ident))
            age = time.monotonic() - self.stopped_at
            start = f"hardstop: the Dask task {self.key!r} was cancelled {age:.1f} s ago and is still running"
            if still_handling(ident):
                why = f"It raised the interrupt and is still handling it, in an except or finally block ({where})."
            else:
                why = (
                    f"It is {where}. {_blocked_why(thread)} If it is inside a hardstop.shield() instead, "
                    "it is stopped as it leaves the shield."
                )
            self.report = f"{start} in {thread.name}, which stays busy until it stops. {why}"
            return self.report

    # What else Dask reads from a run spec (is_coro, key, dependencies, ...) is the task's own.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.run_spec, name)

    def __repr__(self) -> str:
        return repr(self.run_spec)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to another process (an executor of processes): the task alone, out of the plugin's reach.
        return _same, (self.run_spec,)


def _same(run_spec: Any) -> Any:
    return run_spec


class HardstopPlugin(distributed.WorkerPlugin):  # type: ignore[misc, unused-ignore]
    """Worker plugin: a running task that is cancelled or released is stopped in its
    thread, and the ``hardstop_timeout`` annotation limits how long a task runs.

    ``report_after``: a task still running this many seconds after it was stopped
    (blocked where hardstop cannot wake it, or inside a ``hardstop.shield()``) is
    reported with a warning in the worker's log and a ``"hardstop"`` event
    (``client.get_events("hardstop")``), naming the task and where it is.
    """

    name = "hardstop"
    idempotent = True  # registering it again (another client, a reconnect) changes nothing

    def __init__(self, report_after: float = 1.0) -> None:
        if isinstance(report_after, bool) or not isinstance(report_after, (int, float)):
            raise TypeError(
                f"HardstopPlugin takes report_after in seconds, not {type(report_after).__name__} {report_after!r}."
            )
        if not report_after >= 0:  # NaN too
            raise ValueError(f"HardstopPlugin takes report_after in seconds (0 or more), not {report_after!r}.")
        self.report_after = float(report_after)

    def setup(self, worker: Any) -> None:
        self._worker = worker
        self._tasks: dict[Any, _StoppableTask] = {}  # by key; touched on the worker's event loop only

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        ts = self._worker.state.tasks.get(key)
        state = ts.state if ts is not None else "forgotten"
        if state == "executing" and start in ("ready", "constrained"):
            self._wrap(ts)
        elif state in ("cancelled", "resumed"):  # resumed: cancelled, and to be fetched from elsewhere
            task = self._tasks.get(key)
            if task is not None and task.stop():
                self._worker.loop.call_later(self.report_after, self._report_if_running, task)
        elif state not in _RUNNING_STATES:
            self._tasks.pop(key, None)  # its thread has returned (or never ran it)

    def _wrap(self, ts: Any) -> None:
        if getattr(ts.run_spec, "is_coro", False):
            return  # a coroutine runs on the worker's event loop, not in a thread
        # An executor of other processes gets the task unwrapped (_StoppableTask.__reduce__).
        seconds = (ts.annotations or {}).get(TIMEOUT_ANNOTATION, math.inf)
        task = _StoppableTask(ts.run_spec, ts.key, seconds)
        ts.run_spec = task
        self._tasks[ts.key] = task

    def _report_if_running(self, task: _StoppableTask) -> None:
        report = task.still_running()
        if report is None:
            return
        logger.warning(report)
        self._worker.log_event("hardstop", {"key": str(task.key), "status": "still running", "report": report})

    def still_running(self) -> dict[Any, str]:
        """The tasks stopped more than ``report_after`` seconds ago that have not
        left yet, by key, each with its report."""
        return {
            key: task.report
            for key, task in list(self._tasks.items())
            if task.report is not None and task.thread is not None
        }


__all__ = ["TIMEOUT_ANNOTATION", "HardstopPlugin", "TaskCancelled", "time_limit"]
