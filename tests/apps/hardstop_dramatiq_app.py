"""The broker and actors of tests/test_dramatiq.py: the ``dramatiq`` command imports
this module from its PYTHONPATH. ``started``/``completed`` files mark progress; an
actor that is not stopped gives up after ``STUCK`` seconds."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import TimeLimitExceeded, default_middleware
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

import hardstop.dramatiq

STUCK = 30.0
URL = os.environ.get("HARDSTOP_TEST_REDIS", "redis://127.0.0.1:6379")

middleware = [m() for m in default_middleware if m is not dramatiq.middleware.TimeLimit]
broker = RedisBroker(url=URL, middleware=[*middleware, hardstop.dramatiq.TimeLimit(time_limit=60000)])
broker.add_middleware(Results(backend=RedisBackend(url=URL), store_results=True), before=hardstop.dramatiq.TimeLimit)
dramatiq.set_broker(broker)


def spin_until(limit: float) -> None:
    """Pure-Python bytecode for ``limit`` seconds (a loop in a function of its own)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pass


@dramatiq.actor(max_retries=0, queue_name="hardstop")
def loop_actor(folder: str) -> str:
    (Path(folder) / "started").touch()
    spin_until(STUCK)
    (Path(folder) / "completed").touch()
    return "completed"


@dramatiq.actor(max_retries=0, queue_name="hardstop")
def event_wait_actor(folder: str) -> str:
    (Path(folder) / "started").touch()
    threading.Event().wait(STUCK)
    (Path(folder) / "completed").touch()
    return "completed"


@dramatiq.actor(max_retries=0, queue_name="hardstop")
def sleep_actor(folder: str, seconds: float) -> str:
    (Path(folder) / "started").touch()
    time.sleep(seconds)  # a worker thread's sleep: woken on 3.15+, not before
    (Path(folder) / "completed").touch()
    return "completed"


@dramatiq.actor(max_retries=0, queue_name="hardstop", time_limit=300)
def limited_actor() -> str:
    try:
        spin_until(STUCK)
    except TimeLimitExceeded:
        spin_until(0.3)  # clean-up longer than the 10 ms after which a plain deadline would fire again
        return "cleaned up"
    return "completed"


@dramatiq.actor(max_retries=0, queue_name="hardstop")
def short_actor(i: int, seconds: float) -> int:
    spin_until(seconds)
    return i


@dramatiq.actor(max_retries=0, queue_name="hardstop")
def add(a: int, b: int) -> int:
    return a + b
