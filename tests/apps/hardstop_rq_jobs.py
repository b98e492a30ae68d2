"""The jobs of tests/test_rq.py: rq workers import them from their PYTHONPATH.

``started`` and ``completed`` files in the folder a test gives them mark their
progress; a job that is not stopped gives up after ``STUCK`` seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rq.timeouts import JobTimeoutException

STUCK = 30.0


def spin_until(limit: float) -> None:
    """Pure-Python bytecode for ``limit`` seconds (a loop in a function of its own)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pass


def loop_job(folder: str, seconds: float = STUCK) -> str:
    (Path(folder) / "started").touch()
    spin_until(seconds)
    (Path(folder) / "completed").touch()
    return "completed"


def event_wait_job(folder: str) -> str:
    (Path(folder) / "started").touch()
    threading.Event().wait(STUCK)
    (Path(folder) / "completed").touch()
    return "completed"


def sleep_job(folder: str) -> str:
    (Path(folder) / "started").touch()
    time.sleep(STUCK)
    (Path(folder) / "completed").touch()
    return "completed"


def catching_job() -> str:
    try:
        spin_until(STUCK)
    except JobTimeoutException:
        spin_until(0.3)  # clean-up longer than the 10 ms after which a plain deadline would fire again
        return "cleaned up"
    return "completed"


def short_job(i: int, seconds: float) -> int:
    spin_until(seconds)
    return i


def add(a: int, b: int) -> int:
    return a + b
