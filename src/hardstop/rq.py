"""``hardstop.rq``: rq's job timeouts enforced by a deadline, in any thread; stop-job for ``SimpleWorker``.

rq runs each job inside ``with worker.death_penalty_class(timeout, JobTimeoutException,
job_id=...)``. Its default, ``UnixSignalDeathPenalty``, works only in the main thread
(``SIGALRM``, whole seconds); ``TimerDeathPenalty``, its answer elsewhere, patches
the exception class's ``__init__`` for every user of the class and fires through the
bare ``ctypes`` call, which can land after the job's block has ended. ``DeathPenalty``
enters a ``hardstop.deadline`` on behalf of that ``with`` block instead: rq's own
``JobTimeoutException`` is raised inside the job (a wait hardstop can end is woken),
once, and never after the block. The workers here use it::

    rq worker -w hardstop.rq.SimpleWorker     # jobs in the worker's own process
    rq worker -w hardstop.rq.Worker           # a forked work horse per job

``SimpleWorker`` also honours ``rq.command.send_stop_job_command()``, which rq's own
``SimpleWorker`` ignores (it has no horse to kill): the job raises ``JobStopped`` and
rq records it as STOPPED.
"""

from __future__ import annotations

import math
import sys
import threading
import types
from typing import Any

try:
    # Not installed where CI runs mypy: no types to check against there.
    import rq  # type: ignore[import-not-found, unused-ignore]
    from rq.timeouts import BaseDeathPenalty, JobTimeoutException  # type: ignore[import-not-found, unused-ignore]
except ImportError as error:
    raise ImportError(
        "hardstop.rq needs rq, which is not installed: install it with pip install 'hardstop-threads[rq]'."
    ) from error

from hardstop._deadline import deadline
from hardstop._hardstop import Deadline


class JobStopped(BaseException):
    """Raised inside a job that ``send_stop_job_command()`` stopped (a ``BaseException``,
    so that ``except Exception:`` in the job does not swallow it)."""


_penalties: dict[str, DeathPenalty] = {}  # by job id, while its block runs
_penalties_lock = threading.Lock()


class DeathPenalty(BaseDeathPenalty):  # type: ignore[misc, unused-ignore]
    """rq's ``death_penalty_class``: the job's block raises ``exception`` once
    ``timeout`` seconds have passed (none when ``timeout`` is 0 or less)."""

    def __init__(self, timeout: float, exception: type[BaseException] = JobTimeoutException, **kwargs: Any) -> None:
        super().__init__(timeout, exception, **kwargs)
        self._job_id: str | None = kwargs.get("job_id")
        self._scopes: list[Deadline] = []

    def __enter__(self) -> DeathPenalty:
        seconds = self._timeout if self._timeout > 0 else math.inf
        timeout = deadline(
            seconds, raises=self._exception(f"Task exceeded maximum timeout value ({self._timeout} seconds)")
        )
        stop = deadline(math.inf, raises=JobStopped(f"The job {self._job_id} was stopped by a stop-job command."))
        caller = sys._getframe(1)  # the with statement's frame: the block these scopes guard
        for scope in (stop, timeout):
            scope.label = f"the rq job {self._job_id}"
            scope.enter_for(caller)
            self._scopes.append(scope)
        if self._job_id is not None:
            with _penalties_lock:
                _penalties[self._job_id] = self
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        if self._job_id is not None:
            with _penalties_lock:
                if _penalties.get(self._job_id) is self:
                    del _penalties[self._job_id]
        while self._scopes:
            self._scopes.pop().__exit__(kind, value, traceback)

    def stop(self) -> bool:
        """Raise ``JobStopped`` in the job's block now; False once it was left."""
        scopes = self._scopes
        return bool(scopes) and scopes[0].expire()

    # rq's BaseDeathPenalty names these; the scopes above do their work.
    def setup_death_penalty(self) -> None:
        """Not used: ``__enter__`` enters the deadline for the caller's with block."""

    def cancel_death_penalty(self) -> None:
        """Not used: ``__exit__`` leaves the deadline."""


def stop_job(job_id: str) -> bool:
    """Stop the job ``job_id`` if its block runs in this process; True if it was stopped."""
    with _penalties_lock:
        penalty = _penalties.get(job_id)
    return penalty is not None and penalty.stop()


class SimpleWorker(rq.SimpleWorker):  # type: ignore[misc, unused-ignore]
    """``rq.SimpleWorker`` with ``DeathPenalty``, whose stop-job command stops the running job."""

    death_penalty_class = DeathPenalty

    def kill_horse(self, sig: Any = None) -> None:
        # rq calls this for a stop-job command, after setting _stopped_job_id: with no
        # horse to kill, stop the job's block in this process instead.
        job_id = getattr(self, "_stopped_job_id", None)
        if job_id is not None:
            stop_job(job_id)


class Worker(rq.Worker):  # type: ignore[misc, unused-ignore]
    """``rq.Worker`` (a forked work horse per job) with ``DeathPenalty``."""

    death_penalty_class = DeathPenalty


__all__ = ["DeathPenalty", "JobStopped", "SimpleWorker", "Worker", "stop_job"]
