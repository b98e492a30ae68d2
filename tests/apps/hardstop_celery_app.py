"""The Celery app of tests/test_celery.py: its workers import it from their PYTHONPATH.

Tasks mark their progress with files in a folder the test gives them:
``started`` once they run, ``completed`` if they reach their natural end (which a
stopped task never does), ``cleaned`` once they handled a soft time limit. A task
that is not stopped gives up on its own after ``STUCK`` seconds, so that a failing
test does not hold the worker for the next ones.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

STUCK = 30.0

app = Celery("hardstop_celery_app")
app.conf.update(
    broker_url=os.environ.get("HARDSTOP_TEST_REDIS"),
    result_backend=os.environ.get("HARDSTOP_TEST_REDIS"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,  # STARTED while it runs
    worker_pool="hardstop.celery:TaskPool",  # for a worker started without -P
    hardstop_report_after=0.5,
)


def spin_until(limit: float) -> None:
    """Pure-Python bytecode for ``limit`` seconds (in a function of its own: on 3.11-3.14
    an exception raised at a loop's back-edge can escape a handler in the loop's frame)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pass


@app.task
def loop_task(folder: str, seconds: float = STUCK) -> str:
    (Path(folder) / "started").touch()
    spin_until(seconds)
    (Path(folder) / "completed").touch()
    return "completed"


@app.task
def event_wait_task(folder: str) -> str:
    (Path(folder) / "started").touch()
    threading.Event().wait(STUCK)  # nothing sets it: only an interrupt ends this wait early
    (Path(folder) / "completed").touch()
    return "completed"


@app.task
def sleep_task(folder: str, seconds: float) -> str:
    (Path(folder) / "started").touch()
    time.sleep(seconds)  # a worker thread's sleep: woken on 3.15+, not before
    (Path(folder) / "completed").touch()
    return "completed"


@app.task
def lock_task(folder: str, seconds: float) -> str:
    """Blocked in Lock.acquire, which no version lets hardstop end in a worker thread."""
    held = threading.Lock()
    held.acquire()
    (Path(folder) / "started").touch()
    held.acquire(timeout=seconds)
    (Path(folder) / "completed").touch()
    return "completed"


@app.task
def soft_catching_task(folder: str, go_on: bool = False) -> str:
    (Path(folder) / "started").touch()
    try:
        spin_until(STUCK)
    except SoftTimeLimitExceeded:
        (Path(folder) / "cleaned").touch()
        if go_on:
            spin_until(STUCK)  # past the soft limit: the hard one stops it
        return "cleaned up"
    (Path(folder) / "completed").touch()
    return "completed"


@app.task(soft_time_limit=0.5, time_limit=5)
def decorated_limit_task(folder: str) -> str:
    return soft_catching_task(folder)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def short_task(i: int, kind: int, seconds: float) -> int:
    """A task that ends on its own after ``seconds``, in a loop or a Condition wait."""
    if kind == 0:
        spin_until(seconds)
    else:
        threading.Event().wait(seconds)
    return i


@app.task
def until_stopped(kind: int) -> str:
    """Runs until it is stopped (or for ``STUCK`` seconds): a loop, or a Condition wait."""
    if kind == 0:
        spin_until(STUCK)
    else:
        threading.Event().wait(STUCK)
    return "completed"


@app.task
def one_at_a_time(folder: str, kind: int, seconds: float) -> str:
    """Holds a ``running`` file while it runs (a loop, or a Condition wait): "overlapped"
    if another task held it when this one started. Returns its thread's name."""
    marker = Path(folder) / "running"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return "overlapped"
    try:
        if kind == 0:
            spin_until(seconds)
        else:
            threading.Event().wait(seconds)
    finally:
        marker.unlink()
    return threading.current_thread().name


@app.task
def pid() -> int:
    return os.getpid()
