"""hardstop.futures.ThreadPoolExecutor: cancel() stops running tasks too."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import math
import random
import threading
import time
import weakref
from concurrent.futures import BrokenExecutor, CancelledError, wait

import pytest

import hardstop
from conftest import WAIT, Gate, spin
from hardstop.futures import ThreadPoolExecutor


def test_cancel_stops_a_running_task_and_the_worker_takes_the_next() -> None:
    started = threading.Event()
    stopped: list[BaseException] = []

    def stuck() -> None:
        started.set()
        try:
            spin(threading.Event(), 3 * WAIT)
        except BaseException as error:
            stopped.append(error)
            raise

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(stuck)
        assert started.wait(WAIT)
        assert future.running()
        assert future.cancel() is True
        assert future.cancelled()
        with pytest.raises(CancelledError):
            future.result(WAIT)
        # the same (only) worker runs the next task
        assert pool.submit(threading.get_ident).result(WAIT) > 0
    assert len(stopped) == 1
    assert type(stopped[0]) is hardstop.Expired  # public and documented, catchable by name in the task
    assert stopped[0].scope is not None


def test_a_cancelled_task_can_clean_up_by_catching_the_public_type() -> None:
    started = threading.Event()
    cleaned: list[str] = []

    def task() -> None:
        started.set()
        try:
            threading.Event().wait(3 * WAIT)
        except hardstop.Expired:
            cleaned.append("cleaned up")
            raise

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(task)
        assert started.wait(WAIT)
        assert future.cancel()
        assert pool.submit(lambda: "next").result(WAIT) == "next"
    assert cleaned == ["cleaned up"]


def test_a_task_in_an_event_wait_is_woken_by_cancel() -> None:
    started = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(lambda: (started.set(), threading.Event().wait(3 * WAIT)))
        assert started.wait(WAIT)
        start = time.monotonic()
        assert future.cancel()
        assert pool.submit(lambda: "next").result(WAIT) == "next"
        assert time.monotonic() - start < WAIT


def test_cancel_of_a_finished_task_fails_and_of_a_pending_one_works() -> None:
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        done = pool.submit(lambda: 1)
        assert done.result(WAIT) == 1
        assert done.cancel() is False
        blocker = pool.submit(gate.wait, WAIT)
        pending = pool.submit(lambda: "never")
        assert pending.cancel() is True
        gate.set()
        assert blocker.result(WAIT) is True
        assert pending.cancelled()


def test_a_per_task_timeout_fails_the_future_with_deadline_exceeded() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit_with_timeout(hardstop.sleep, 0.05, WAIT)
        quick = pool.submit_with_timeout(lambda x: x * 2, WAIT, 21)
        with pytest.raises(hardstop.DeadlineExceeded) as caught:
            slow.result(WAIT)
        assert str(caught.value) == f"The deadline of 0.05 s set for the task {hardstop.sleep!r} has passed."
        assert quick.result(WAIT) == 42
    with pytest.raises(ValueError, match="not nan"):
        ThreadPoolExecutor().submit_with_timeout(print, float("nan"))


def test_the_tasks_own_timeout_error_is_kept() -> None:
    own = TimeoutError("mine")

    def raises() -> None:
        raise own

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit_with_timeout(raises, WAIT)
        assert future.exception(WAIT) is own


def test_shutdown_with_cancel_futures_stops_running_tasks_within_the_bound() -> None:
    started = threading.Barrier(3)
    pool = ThreadPoolExecutor(max_workers=2)
    running = [pool.submit(lambda: (started.wait(WAIT), spin(threading.Event(), 3 * WAIT))) for _ in range(2)]
    pending = [pool.submit(lambda: "never") for _ in range(3)]
    started.wait(WAIT)
    start = time.monotonic()
    pool.shutdown(wait=True, cancel_futures=True, stop_timeout=WAIT)
    assert time.monotonic() - start < WAIT
    assert all(f.cancelled() for f in running + pending)
    assert not any(thread.is_alive() for thread in pool._threads)


def test_shutdown_warns_about_a_task_it_cannot_stop() -> None:
    started = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    # A lock wait in a worker thread is not woken (on any version): it raises when the wait ends.
    held = threading.Lock()
    held.acquire()
    future = pool.submit(lambda: (started.set(), held.acquire(True, 1.0)))
    assert started.wait(WAIT)
    time.sleep(0.05)
    with pytest.warns(RuntimeWarning, match=r"1 task\(s\) still running after 0.2 s: .* in <lambda>"):
        pool.shutdown(wait=True, cancel_futures=True, stop_timeout=0.2)
    assert future.cancelled()
    for thread in pool._threads:
        thread.join(WAIT)
        assert not thread.is_alive()


@pytest.mark.parametrize("executor", [concurrent.futures.ThreadPoolExecutor, ThreadPoolExecutor])
def test_a_failing_initializer_breaks_the_pool_as_in_the_standard_executor(executor: type) -> None:
    def initializer() -> None:
        raise RuntimeError("no database")

    pool = executor(max_workers=1, initializer=initializer)
    pending = pool.submit(lambda: "never")
    message = "^A thread initializer failed, the thread pool is not usable anymore$"
    with pytest.raises(BrokenExecutor, match=message):
        pending.result(WAIT)
    with pytest.raises(BrokenExecutor, match=message):
        pool.submit(lambda: "later")
    pool.shutdown()
    if executor is ThreadPoolExecutor:
        assert not pool._tasks  # nothing left behind by the refused submission


def test_a_task_cancelled_while_queued_does_not_stop_the_broken_pool_failing_the_rest() -> None:
    """The standard drain stops (InvalidStateError) at a cancelled future; the rest would hang."""
    initializing, fail = threading.Event(), threading.Event()

    def initializer() -> None:
        initializing.set()
        assert fail.wait(WAIT)
        raise RuntimeError("no database")

    pool = ThreadPoolExecutor(max_workers=1, initializer=initializer)
    cancelled = pool.submit(lambda: "never")
    rest = pool.submit(lambda: "never either")
    assert initializing.wait(WAIT)
    assert cancelled.cancel()
    fail.set()
    with pytest.raises(BrokenExecutor, match=r"^A thread initializer failed, the thread pool is not usable anymore$"):
        rest.result(WAIT)
    pool.shutdown()
    assert cancelled.cancelled()
    assert not pool._tasks  # the dropped tasks are forgotten


def test_shutdown_warns_about_a_task_cancelled_earlier_and_still_running() -> None:
    """cancel() had made the future done; the task itself had not left its worker."""
    started, gate = threading.Event(), Gate()

    def blocked(gate: Gate) -> None:
        started.set()
        gate.wait()  # a lock wait: not woken by cancel()

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(blocked, gate)
    assert started.wait(WAIT)
    assert future.cancel()
    with pytest.warns(RuntimeWarning) as caught:
        pool.shutdown(wait=True, cancel_futures=True, stop_timeout=0.2)
    message = str(caught[0].message)
    assert message.startswith(
        "ThreadPoolExecutor.shutdown(): 1 task(s) still running after 0.2 s: "
        "test_futures.test_shutdown_warns_about_a_task_cancelled_earlier_and_still_running.<locals>.blocked("
        "<conftest.Gate object at 0x"
    )
    assert message.endswith(" in wait")  # the frame it is in, in conftest's Gate
    gate.open()
    for thread in pool._threads:
        thread.join(WAIT)
        assert not thread.is_alive()


@pytest.mark.parametrize("stop_timeout", [-1, float("nan"), "1"])
def test_a_bad_stop_timeout_is_refused_before_anything_stops(stop_timeout: object) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        gate = threading.Event()
        running = pool.submit(gate.wait, WAIT)
        kind = TypeError if isinstance(stop_timeout, str) else ValueError
        with pytest.raises(kind, match=r"^ThreadPoolExecutor.shutdown\(\)'s stop_timeout takes a .*, not "):
            pool.shutdown(cancel_futures=True, stop_timeout=stop_timeout)  # type: ignore[arg-type]
        gate.set()
        assert running.result(WAIT) is True


def test_an_infinite_stop_timeout_waits_for_the_workers() -> None:
    started = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    running = pool.submit(lambda: (started.set(), threading.Event().wait(3 * WAIT)))
    assert started.wait(WAIT)
    pool.shutdown(wait=True, cancel_futures=True, stop_timeout=math.inf)  # not an OverflowError from join()
    assert running.cancelled()
    assert not any(thread.is_alive() for thread in pool._threads)


def test_the_constructor_shows_its_real_parameters() -> None:
    parameters = inspect.signature(ThreadPoolExecutor).parameters
    assert list(parameters) == ["max_workers", "thread_name_prefix", "initializer", "initargs"]
    assert [p.default for p in parameters.values()] == [None, "", None, ()]
    with ThreadPoolExecutor(2, "named", None, ()) as pool:
        assert pool.submit(lambda: threading.current_thread().name).result(WAIT).startswith("named_")


def test_a_task_that_cancels_its_own_batch_ends_its_future_and_cancels_the_rest() -> None:
    batch: list[concurrent.futures.Future[object]] = []
    ready, left, finished = threading.Event(), threading.Event(), []

    def cancel_the_batch() -> None:
        assert ready.wait(WAIT)
        finished.append([future.cancel() for future in batch])  # its own future among them
        try:
            threading.Event().wait(3 * WAIT)  # it goes on: only shutdown() stops it
        finally:
            left.set()

    pool = ThreadPoolExecutor(max_workers=2)
    other = pool.submit(threading.Event().wait, 3 * WAIT)  # running: woken by cancel()
    canceller = pool.submit(cancel_the_batch)
    later = [pool.submit(lambda: "never") for _ in range(3)]
    batch.extend([other, canceller, *later])
    ready.set()
    assert not wait(batch, timeout=WAIT).not_done
    assert all(future.cancelled() for future in batch)
    assert finished == [[True] * 5]  # the task was not interrupted by its own cancel()
    assert not left.is_set()
    pool.shutdown(wait=True, cancel_futures=True, stop_timeout=WAIT)  # no warning: it was stopped
    assert left.is_set()


def test_done_callbacks_run_after_the_futures_lock_is_released() -> None:
    """A callback that waits for another thread reading the same future (as the
    standard executor allows)."""
    gate, callback_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def callback(future: concurrent.futures.Future[object]) -> None:
        read = threading.Event()
        reader = threading.Thread(target=lambda: (future.done(), read.set()))
        reader.start()
        seen.append(read.wait(WAIT))
        reader.join(WAIT)
        callback_done.set()

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(gate.wait, WAIT)
        future.add_done_callback(callback)
        gate.set()
        assert future.result(WAIT) is True
        assert callback_done.wait(3 * WAIT)
    assert seen == [True]


def test_map_with_a_timeout_frees_the_pool() -> None:
    """The standard map() cancels the rest on its timeout; here that stops the running ones too."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = pool.map(threading.Event().wait, [3 * WAIT] * 3, timeout=0.1)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(results)
        assert pool.submit(lambda: "free").result(WAIT) == "free"


def test_run_in_executor_under_wait_for_stops_the_thread() -> None:
    left = threading.Event()

    def work() -> None:
        try:
            threading.Event().wait(3 * WAIT)
        finally:
            left.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as pool:
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await asyncio.wait_for(loop.run_in_executor(pool, work), 0.1)
            assert left.wait(WAIT)  # the thread had left work(), not only the await

    asyncio.run(main())


def test_no_interrupt_leaks_into_the_next_task_under_random_cancels() -> None:
    """Thousands of short tasks; another thread cancels running ones at random
    moments. Every future ends final, cancelled exactly when cancel() said so,
    later tasks on the same workers are never hit, and no worker is lost."""
    rng = random.Random(7)

    def task(n: int) -> int:
        if n % 2:
            threading.Event().wait(rng.random() * 0.01)  # a wait, woken by cancel()
        else:
            spin(threading.Event(), rng.random() * 0.004)  # Python code
        return n

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(task, n) for n in range(2000)]
        said_cancelled: set[int] = set()
        first = 0  # the oldest future not done yet: the running ones are just after it
        while first < len(futures):
            for n in range(first, min(first + 8, len(futures))):
                if futures[n].running() and rng.random() < 0.5 and futures[n].cancel():
                    said_cancelled.add(n)
            time.sleep(rng.random() * 0.002)
            while first < len(futures) and futures[first].done():
                first += 1
        wait(futures, timeout=6 * WAIT)
        for n, future in enumerate(futures):
            assert future.done()
            assert future.cancelled() == (n in said_cancelled)
            if not future.cancelled():
                assert future.result() == n  # nothing of a cancelled task landed here
        assert pool.submit(lambda: "still serving").result(WAIT) == "still serving"
        alive = sum(thread.is_alive() for thread in pool._threads)
    print(f"{len(said_cancelled)} running tasks cancelled of {len(futures)}; {alive} workers alive")
    assert len(said_cancelled) >= 100
    assert alive == 4  # no worker lost


def test_a_finished_future_and_its_task_are_freed_without_the_garbage_collector() -> None:
    # The task holds its future and the future finds its task: a strong cycle there
    # left every finished pair to the collector, which then cost more than the tasks.
    gc.disable()
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(abs, -1)
            assert future.result(WAIT) == 1
            freed = weakref.ref(future)
            del future
            give_up = time.monotonic() + WAIT  # the worker drops its reference after run()
            while freed() is not None and time.monotonic() < give_up:
                time.sleep(0.01)
            assert freed() is None
    finally:
        gc.enable()
