"""Deadlines whose with statement is in a generator or a coroutine (issue 18, items 1, 2, 4):
the expiry reaches only the code the with statement guards, wherever that runs, or the
use is refused at once with an error that says what to do."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import hardstop
from conftest import WAIT, assert_nothing_pending, spin

REFUSAL = (
    "hardstop.deadline() cannot guard a block in the coroutine {name}(): while it awaits, the event loop "
    "runs other tasks, and the expiry would land in them. Use asyncio.timeout() (or anyio.fail_after()) in "
    "async code, and hardstop.to_thread() to run blocking code under a limit."
)


def test_a_deadline_in_a_coroutine_is_refused_with_what_to_use_instead() -> None:
    bystander_ran = []

    async def bystander() -> None:
        await asyncio.sleep(0.2)
        bystander_ran.append(True)

    async def guarded() -> None:
        with hardstop.deadline(0.05):
            await asyncio.sleep(0.5)

    async def main() -> None:
        task = asyncio.create_task(bystander())
        with pytest.raises(RuntimeError) as refused:
            await guarded()
        assert str(refused.value) == REFUSAL.format(name="guarded")
        await task

    asyncio.run(main())
    assert bystander_ran == [True]  # not cancelled, and nothing of hardstop's escaped the loop
    assert_nothing_pending(threading.get_ident())


def test_a_deadline_in_an_async_generator_is_refused_too() -> None:
    async def stream() -> AsyncIterator[int]:
        with hardstop.deadline(0.05):
            yield 1

    async def main() -> None:
        with pytest.raises(RuntimeError) as refused:
            await stream().__anext__()
        assert str(refused.value) == REFUSAL.format(name="stream")

    asyncio.run(main())


def slow_batches() -> Iterator[str]:
    """Each batch within 50 ms; the second one takes far longer."""
    with hardstop.deadline(0.05):
        yield "first"
        spin(threading.Event(), WAIT)
        yield "second, late"


def test_a_generator_suspended_inside_a_deadline_gets_the_expiry_only_when_it_runs_again() -> None:
    batches = slow_batches()
    assert next(batches) == "first"
    spin(threading.Event(), 0.3)  # the consumer's own code, well past the deadline: nothing lands here
    began = time.monotonic()
    with pytest.raises(hardstop.DeadlineExceeded):
        next(batches)  # resumed inside the block: stopped there, and the block converts it
    assert time.monotonic() - began < WAIT
    assert_nothing_pending(threading.get_ident())


def test_a_generator_resumed_in_another_thread_is_stopped_in_that_thread() -> None:
    batches = slow_batches()
    assert next(batches) == "first"  # entered in this thread
    outcome: list[str] = []

    def resume_here() -> None:
        try:
            outcome.append(next(batches))
        except hardstop.DeadlineExceeded:
            outcome.append("stopped in the resuming thread")

    other = threading.Thread(target=resume_here)
    other.start()
    other.join(WAIT)  # nothing lands in this thread meanwhile
    assert not other.is_alive()
    assert outcome == ["stopped in the resuming thread"]
    spin(threading.Event(), 0.1)
    assert_nothing_pending(threading.get_ident())


def test_a_deadline_in_a_generator_around_work_between_yields_fires_as_usual() -> None:
    def bounded_steps() -> Iterator[int]:
        for step in range(2):
            with hardstop.deadline(0.05):
                spin(threading.Event(), WAIT if step else 0)
            yield step

    steps = bounded_steps()
    assert next(steps) == 0
    with pytest.raises(hardstop.DeadlineExceeded):
        next(steps)


def test_a_context_manager_generator_still_guards_the_with_body() -> None:
    @contextlib.contextmanager
    def limited(seconds: float) -> Iterator[None]:
        with hardstop.deadline(seconds):
            yield

    began = time.monotonic()
    with pytest.raises(hardstop.DeadlineExceeded):
        with limited(0.05):
            threading.Event().wait(WAIT)
    assert time.monotonic() - began < WAIT
