"""hardstop.celery on real Celery workers: ``celery worker`` processes started from
their command line against a real Redis server, tasks submitted by a real client.

Three workers: ``solo`` (hardstop's pool by ``-P custom``, one thread: a task
that is not stopped keeps the follow-up task from running), ``four`` (hardstop's
pool by the app's ``worker_pool`` setting, four threads, global limits of 1 s
soft and 2 s hard) and ``stock`` (Celery's own ``threads`` pool, one thread: the
baseline, which ignores limits and ``terminate``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import WAIT, stop_process

celery = pytest.importorskip(
    "celery",
    reason=f"Celery is not installed for CPython {sys.version_info.major}.{sys.version_info.minor} "
    "(pip install 'hardstop-threads[test]' installs it where it installs)",
)

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
import hardstop_celery_app as tasks  # noqa: E402 - the workers' own module, from tests/apps

sys.path.remove(str(APPS))

WOKEN_SLEEP = sys.version_info >= (3, 15)  # a worker thread's time.sleep ends at a signal from 3.15


class Worker:
    """A ``celery worker`` process, its log, and how to stop it."""

    def __init__(self, name: str, pool: str, concurrency: int, redis_url: str, folder: Path, *extra: str) -> None:
        self.name = f"{name}@hardstop-test"
        self.queue = name
        self.log = folder / f"{name}.log"
        env = dict(os.environ, HARDSTOP_TEST_REDIS=redis_url, PYTHONPATH=str(APPS))
        env.pop("CELERY_CUSTOM_WORKER_POOL", None)
        if pool == "custom":
            env["CELERY_CUSTOM_WORKER_POOL"] = "hardstop.celery:TaskPool"
        pool_option = ["-P", pool] if pool != "setting" else []  # "setting": the app's worker_pool
        script = Path(sys.executable).parent / "celery"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "celery"]
        self.process = subprocess.Popen(
            [
                *command,
                "-A",
                "hardstop_celery_app",
                "worker",
                *pool_option,
                "-c",
                str(concurrency),
                "-Q",
                name,
                "-n",
                self.name,
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
                "--logfile",
                str(self.log),
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        end = time.monotonic() + 60.0  # the first start imports Celery, which takes a while on a busy machine
        while time.monotonic() < end:
            if self.process.poll() is not None:
                pytest.fail(f"the worker {self.name} exited with {self.process.returncode}:\n{self.text()}")
            if " ready." in self.text():
                return
            time.sleep(0.05)
        pytest.fail(f"the worker {self.name} did not start:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for_log(self, pattern: str) -> re.Match[str]:
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            found = re.search(pattern, self.text())
            if found:
                return found
            time.sleep(0.05)
        pytest.fail(f"{pattern!r} never appeared in the log of {self.name}:\n{self.text()}")

    def stop(self) -> None:
        stop_process(self.process)  # SIGTERM first: Celery's warm shutdown


@pytest.fixture(scope="module")
def workers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Worker]]:
    tasks.app.conf.broker_url = tasks.app.conf.result_backend = redis_url
    folder = tmp_path_factory.mktemp("celery")
    started = {
        "solo": Worker("solo", "custom", 1, redis_url, folder),
        "four": Worker("four", "setting", 4, redis_url, folder, "--soft-time-limit", "1", "--time-limit", "2"),
        "stock": Worker("stock", "threads", 1, redis_url, folder),
    }
    try:
        for worker in started.values():
            worker.wait_ready()
        yield started
    finally:
        for worker in started.values():
            worker.stop()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


def wait_for_file(path: Path) -> None:
    end = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < end, f"{path.name} was never written"
        time.sleep(0.01)


def final(result: celery.result.AsyncResult) -> str:
    result.get(timeout=WAIT, propagate=False)
    return str(result.state)


def revoke(result: celery.result.AsyncResult, queue: str, **options: str) -> None:
    """``revoke(terminate=True)`` sent to the worker of ``queue`` alone: Celery 5.7's other
    workers would mark a task they do not run REVOKED in the backend themselves."""
    tasks.app.control.revoke(result.id, destination=[f"{queue}@hardstop-test"], terminate=True, **options)


def assert_worker_free(worker: Worker) -> None:
    """The worker runs a follow-up task (with one thread, only if the last one let it go)."""
    assert tasks.add.apply_async((1, 2), queue=worker.queue).get(timeout=WAIT) == 3


# ---- hardstop's pool


def test_soft_limit_is_raised_inside_the_task_which_cleans_up(workers, folder):
    result = tasks.soft_catching_task.apply_async((str(folder),), queue="solo", soft_time_limit=0.5)
    assert result.get(timeout=WAIT) == "cleaned up"
    assert (folder / "cleaned").exists()
    assert not (folder / "completed").exists()
    workers["solo"].wait_for_log(
        rf"Soft time limit \(0\.5s\) exceeded for hardstop_celery_app\.soft_catching_task\[{result.id}\]"
    )
    assert_worker_free(workers["solo"])


def test_soft_limit_not_caught_fails_the_task(workers, folder):
    result = tasks.loop_task.apply_async((str(folder),), queue="solo", soft_time_limit=0.3)
    assert final(result) == "FAILURE"
    assert isinstance(result.result, celery.exceptions.SoftTimeLimitExceeded)
    assert not (folder / "completed").exists()
    assert_worker_free(workers["solo"])


@pytest.mark.parametrize("task", ["loop_task", "event_wait_task"])
def test_hard_limit_stops_the_task_as_a_failure(workers, folder, task):
    result = getattr(tasks, task).apply_async((str(folder),), queue="solo", time_limit=0.5)
    assert final(result) == "FAILURE"
    assert isinstance(result.result, celery.exceptions.TimeLimitExceeded)
    workers["solo"].wait_for_log(rf"Hard time limit \(0\.5s\) exceeded for hardstop_celery_app\.{task}\[{result.id}\]")
    assert_worker_free(workers["solo"])
    assert not (folder / "completed").exists()


def test_limits_set_on_the_task_decorator(workers, folder):
    result = tasks.decorated_limit_task.apply_async((str(folder),), queue="solo")
    assert result.get(timeout=WAIT) == "cleaned up"
    assert_worker_free(workers["solo"])


@pytest.mark.parametrize("go_on", [False, True], ids=["soft", "hard"])
def test_global_limits_of_the_worker(workers, folder, go_on):
    result = tasks.soft_catching_task.apply_async((str(folder), go_on), queue="four")
    if go_on:
        assert final(result) == "FAILURE"
        assert isinstance(result.result, celery.exceptions.TimeLimitExceeded)
        workers["four"].wait_for_log(rf"Hard time limit \(2(\.0)?s\) exceeded for .*\[{result.id}\]")
        assert f"{result.id}] was stopped" not in workers["four"].text()  # stopped in its soft limit's handler
    else:
        assert result.get(timeout=WAIT) == "cleaned up"
    assert (folder / "cleaned").exists()
    assert not (folder / "completed").exists()


@pytest.mark.parametrize("task", ["loop_task", "event_wait_task"])
def test_revoke_terminate_stops_the_running_task(workers, folder, task):
    result = getattr(tasks, task).apply_async((str(folder),), queue="solo")
    wait_for_file(folder / "started")
    revoke(result, "solo")
    assert final(result) == "REVOKED"
    assert_worker_free(workers["solo"])
    assert not (folder / "completed").exists()


def test_revoke_with_a_signal_stops_it_too(workers, folder):
    result = tasks.loop_task.apply_async((str(folder),), queue="solo")
    wait_for_file(folder / "started")
    revoke(result, "solo", signal="SIGKILL")
    assert final(result) == "REVOKED"
    assert_worker_free(workers["solo"])


def test_sleep_is_woken_on_315_and_reported_before(workers, folder):
    seconds = WAIT * 3 if WOKEN_SLEEP else 3.0
    result = tasks.sleep_task.apply_async((str(folder), seconds), queue="solo", time_limit=0.5)
    assert final(result) == "FAILURE"
    assert isinstance(result.result, celery.exceptions.TimeLimitExceeded)
    assert_worker_free(workers["solo"])  # on a new thread before 3.15, while the old one sleeps
    if WOKEN_SLEEP:
        assert f"{result.id}] was stopped" not in workers["solo"].text()
    else:
        report = workers["solo"].wait_for_log(rf"the Celery task .*\[{result.id}\] was stopped .*")
        assert "time.sleep(seconds)" in report.group(0), report.group(0)
        workers["solo"].wait_for_log(rf"the Celery task .*\[{result.id}\] stopped, .* after it was reported stuck")
    assert not (folder / "completed").exists()


def test_a_task_stuck_in_lock_acquire_is_reported_and_replaced(workers, folder):
    solo = workers["solo"]
    result = tasks.lock_task.apply_async((str(folder), 6.0), queue="solo")
    wait_for_file(folder / "started")
    revoke(result, "solo")
    assert final(result) == "REVOKED"
    report = solo.wait_for_log(rf"the Celery task .*\[{result.id}\] was stopped .* still running in (\S+)\. .*")
    assert "held.acquire(timeout=seconds)" in report.group(0), report.group(0)
    assert "A new thread takes its place" in report.group(0)
    assert_worker_free(solo)  # the new thread runs it while the stuck one waits
    assert f"{result.id}] stopped, " not in solo.text()
    solo.wait_for_log(rf"the Celery task .*\[{result.id}\] stopped, .* after it was reported stuck")
    assert not (folder / "completed").exists()
    assert thread_count("solo") == 1


def test_one_thread_runs_tasks_one_at_a_time_as_solo_does(workers, folder):
    """``-c 1`` (the ``solo`` worker) is hardstop's answer to Celery's solo pool: tasks run
    one at a time, in one thread that is not the worker's main thread, and a time limit in
    between still stops its task and lets the next one run (each task holds a file while it
    runs: one started while another ran would return "overlapped")."""
    results = [
        tasks.one_at_a_time.apply_async((str(folder), 0, 0.1), queue="solo"),
        tasks.one_at_a_time.apply_async((str(folder), 1, 0.1), queue="solo"),
        tasks.one_at_a_time.apply_async((str(folder), 1, WAIT * 3), queue="solo", time_limit=0.5),
        tasks.one_at_a_time.apply_async((str(folder), 0, 0.1), queue="solo"),
        tasks.one_at_a_time.apply_async((str(folder), 1, 0.1), queue="solo"),
    ]
    stopped = results.pop(2)
    assert final(stopped) == "FAILURE"
    assert isinstance(stopped.result, celery.exceptions.TimeLimitExceeded)
    names = [result.get(timeout=WAIT) for result in results]
    assert "overlapped" not in names, names
    # Not the MainThread that runs Celery's consumer. (One name for all, unless the
    # stopped task took longer than hardstop_report_after to stop on a loaded machine
    # and its thread was replaced: one task at a time still.)
    assert all(name.startswith("hardstop-celery-") for name in names), names
    assert not (folder / "running").exists()


def thread_count(queue: str) -> int:
    stats = tasks.app.control.inspect(destination=[f"{queue}@hardstop-test"], timeout=WAIT).stats()
    return int(stats[f"{queue}@hardstop-test"]["pool"]["threads"])


def os_threads(pid: int) -> int:
    """The OS threads of the process ``pid`` right now (Linux's /proc)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def cycle_results(cycle: int) -> list[tuple[celery.result.AsyncResult, int | None]]:
    """One cycle on the four threads: two tasks that run until they are revoked (a loop and
    an Event.wait, so that their threads take the next cycle's tasks just after the stop)
    and two that end on their own after 0-20 ms, each given as (result, its own number)
    or (result, None) for the revoked ones."""
    rng = random.Random(cycle)
    sent = []
    for n in range(4):
        if n % 2:
            sent.append((tasks.until_stopped.apply_async((n // 2,), queue="four"), None))
        else:
            i = cycle * 4 + n
            sent.append((tasks.short_task.apply_async((i, n // 2, rng.uniform(0.0, 0.02)), queue="four"), i))
    return sent


def test_submit_and_revoke_cycles_on_four_threads(workers):
    """100 cycles of four tasks: 200 revokes, each of a task seen running, beside 200 short
    tasks that end on their own on the other threads, and each revoked task's thread takes
    the next cycle's tasks. Every result ends final: the revoked ones REVOKED, the others
    SUCCESS with their own value (a revoke that landed in another task would fail it); the
    worker process has the OS threads it had before (one leaked per cycle would show)."""
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        pytest.skip(f"the worker's OS threads are counted in /proc/PID/task, which {sys.platform} does not have")
    worker = workers["four"]
    pid = tasks.pid.apply_async(queue="four").get(timeout=WAIT)
    assert pid == worker.process.pid
    for result, _ in cycle_results(-1):  # a first cycle: any thread Celery starts lazily is up
        if _ is None:
            wait_for_state(result, "STARTED")
            revoke(result, "four")
        result.get(timeout=WAIT, propagate=False)
    threads_before = os_threads(pid)
    revoked = kept = 0
    for cycle in range(100):
        sent = cycle_results(cycle)
        for result, i in sent:
            if i is None:
                wait_for_state(result, "STARTED")  # running: the revoke must stop it
                revoke(result, "four")
        for result, i in sent:
            state = final(result)
            if i is None:
                assert state == "REVOKED", (cycle, state, result.result, worker.text()[-5000:])
                revoked += 1
            else:
                assert (state, result.result) == ("SUCCESS", i), (cycle, worker.text()[-5000:])
                kept += 1
    assert (revoked, kept) == (200, 200)
    log = worker.text()
    assert "Traceback" not in log, log[-5000:]
    assert thread_count("four") == 4, log[-5000:]
    # A thread reported stuck (on a loaded machine, a stop can take longer than the app's
    # hardstop_report_after of 0.5 s) leaves once its task returns: allow it that time.
    end = time.monotonic() + WAIT
    while os_threads(pid) > threads_before and time.monotonic() < end:
        time.sleep(0.05)
    assert os_threads(pid) == threads_before, log[-5000:]
    stats = tasks.app.control.inspect(destination=["four@hardstop-test"], timeout=WAIT).stats()
    assert stats["four@hardstop-test"]["pool"]["implementation"] == "hardstop.celery:TaskPool"


def wait_for_state(result: celery.result.AsyncResult, state: str) -> None:
    end = time.monotonic() + WAIT
    while result.state != state:
        assert time.monotonic() < end, f"{result.id} is {result.state}, never {state}"
        time.sleep(0.005)


def test_cold_shutdown_stops_the_running_task(redis_url, tmp_path, workers):
    """SIGQUIT: Celery 5.7 cancels the running task itself first (``cancel_active_requests``,
    the same for every pool), which records it RETRY (a ``Retry``, "cancelled by Celery": its
    message was acknowledged as it started, so it does not run again), and the pool stops it
    in its thread. Not WorkerLostError: the pool reports that only for a task still running
    when the pool is terminated without Celery's cancel."""
    cold = Worker("cold", "custom", 1, redis_url, tmp_path)
    try:
        cold.wait_ready()
        result = tasks.loop_task.apply_async((str(tmp_path),), queue="cold")
        wait_for_file(tmp_path / "started")
        cold.process.send_signal(signal.SIGQUIT)  # Celery's cold shutdown
        assert cold.process.wait(WAIT) == 0, cold.text()  # a loop of 30 s would hold a warm one
        assert "was stopped" not in cold.text()  # stopped at once, never reported stuck
        assert not (tmp_path / "completed").exists()
        assert result.state == "RETRY", (result.state, result.result)
        assert isinstance(result.result, celery.exceptions.Retry), result.result
    finally:
        cold.stop()


# ---- the baseline: Celery's own threads pool


def test_stock_threads_pool_ignores_time_limits(workers, folder):
    result = tasks.loop_task.apply_async((str(folder), 2.0), queue="stock", soft_time_limit=0.3, time_limit=0.5)
    assert result.get(timeout=WAIT) == "completed"
    assert (folder / "completed").exists()


def test_stock_threads_pool_cannot_terminate(workers, folder):
    result = tasks.loop_task.apply_async((str(folder), 2.0), queue="stock")
    wait_for_file(folder / "started")
    revoke(result, "stock")
    assert result.get(timeout=WAIT) == "completed"
    assert (folder / "completed").exists()
