"""hardstop.to_thread: cancelling the await stops the thread before it returns."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time

import pytest

import hardstop
from conftest import WAIT, spin

# 3.10 has no asyncio.timeout(), and its asyncio.TimeoutError is not TimeoutError.
TIMEOUTS = (TimeoutError, asyncio.TimeoutError)


async def within(seconds: float, awaitable):
    """``async with asyncio.timeout(seconds)`` around one await, on every version."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def test_it_returns_like_asyncio_to_thread() -> None:
    async def main() -> tuple[int, int]:
        return await hardstop.to_thread(lambda a, b=0: (a, b), 1, b=2)

    assert asyncio.run(main()) == (1, 2)


def test_a_timeout_around_it_stops_the_work_before_the_await_ends() -> None:
    progress = {"iterations": 0, "left": False}

    def work() -> None:
        try:
            stop = threading.Event()
            while not stop.is_set():
                progress["iterations"] += 1
                spin(stop, 0.001)
        finally:
            progress["left"] = True

    async def main() -> None:
        await within(0.1, hardstop.to_thread(work))

    with pytest.raises(TIMEOUTS):
        asyncio.run(main())
    assert progress["left"] is True  # the thread had left work() when the await ended
    seen = progress["iterations"]
    time.sleep(0.1)
    assert progress["iterations"] == seen  # and nothing goes on behind the caller's back


def test_cancelling_the_task_wakes_a_thread_in_an_event_wait() -> None:
    left = threading.Event()

    def work() -> None:
        try:
            threading.Event().wait(3 * WAIT)
        finally:
            left.set()

    async def main() -> float:
        task = asyncio.ensure_future(hardstop.to_thread(work))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(main()) < WAIT
    assert left.is_set()


def test_a_thread_that_cannot_be_woken_is_reported_after_its_stop_timeout() -> None:
    async def main() -> None:
        held = threading.Lock()
        held.acquire()
        # No version wakes a lock wait; the warning names the call as it was made.
        task = asyncio.ensure_future(hardstop.to_thread(held.acquire, True, 1.0, stop_timeout=0.2))
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.warns(RuntimeWarning) as caught:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main())
    message = str(caught[0].message)
    assert message == (
        "hardstop.to_thread(): the thread is still running lock.acquire(True, 1.0) 0.2 s after the await was "
        "cancelled (blocked where it cannot be woken); it stops when that call returns"
    )
    time.sleep(1.0)  # let the sleep end, and the worker raise and leave


def test_the_stop_timeout_is_checked_before_the_thread_starts() -> None:
    ran = threading.Event()

    async def call(stop_timeout: object) -> None:
        await hardstop.to_thread(ran.set, stop_timeout=stop_timeout)  # type: ignore[arg-type]

    with pytest.raises(
        ValueError, match=r"^hardstop.to_thread\(\)'s stop_timeout takes a non-negative number of seconds, not -1.$"
    ):
        asyncio.run(call(-1))
    with pytest.raises(
        TypeError, match=r"^hardstop.to_thread\(\)'s stop_timeout takes a number of seconds, not str '1'.$"
    ):
        asyncio.run(call("1"))
    assert not ran.is_set()


def test_context_variables_reach_the_thread() -> None:
    name = contextvars.ContextVar("name", default="unset")

    async def main() -> str:
        name.set("the caller's")
        return await hardstop.to_thread(name.get)

    assert asyncio.run(main()) == "the caller's"


def test_the_asyncio_version_only_abandons_the_thread() -> None:
    """What hardstop.to_thread is for: asyncio's own keeps running after the timeout."""
    stop = threading.Event()
    progress = [0]

    def work() -> None:
        while not stop.is_set():
            progress[0] += 1
            time.sleep(0.001)

    async def main() -> bool:
        try:
            with pytest.raises(TIMEOUTS):
                await within(0.05, asyncio.to_thread(work))
            seen = progress[0]
            await asyncio.sleep(0.1)
            return progress[0] > seen
        finally:
            stop.set()  # asyncio.run waits for its executor's threads as it ends

    assert asyncio.run(main()) is True
