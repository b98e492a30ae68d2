"""hardstop.dask on a real LocalCluster, with its workers as threads of this
process and as separate processes: one worker, one thread, so a task that is
not stopped keeps the follow-up task from running.

The tasks signal through files in ``tmp_path`` (seen by worker processes too):
``started`` once they run, ``completed`` if they reach their natural end, which
a stopped task never does. A stuck task gives up on its own after ``STUCK``
seconds, so that a failing test does not hang the cluster for the next ones.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hardstop

try:
    import cloudpickle
    import dask
    import distributed

    import hardstop.dask
    from hardstop.dask import HardstopPlugin
except ImportError:
    distributed = None

WAIT = 30.0  # generous bound for anything that should happen "at once"
STUCK = 60.0  # how long a task that is not stopped stays stuck
REPORT_AFTER = 0.5  # the plugin reports a task still running this long after it was stopped

needs_dask = pytest.mark.skipif(
    distributed is None,
    reason=f"distributed is not installed for CPython {sys.version_info.major}.{sys.version_info.minor} "
    "(pip install 'hardstop-threads[test]' installs it)",
)


if distributed is not None:
    # Ship this module's task functions by value: worker processes cannot import a test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


# Tasks (they run on the workers) ---------------------------------------------


def spin_until(limit: float) -> None:
    """Run pure-Python bytecode for ``limit`` seconds (a loop in a function of its
    own: on 3.11-3.14 an exception raised at a loop's back-edge can escape a
    handler in the loop's frame)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pass


def loop_task(folder: Path) -> str:
    (folder / "started").touch()
    spin_until(STUCK)
    (folder / "completed").touch()
    return "completed"


def event_wait_task(folder: Path) -> str:
    (folder / "started").touch()
    threading.Event().wait(STUCK)  # nothing sets it: only an interrupt ends this wait early
    (folder / "completed").touch()
    return "completed"


def lock_wait_task(folder: Path) -> str:
    """Blocked in Lock.acquire, which hardstop cannot wake in a worker thread on any
    version, until the test releases the lock (through client.run)."""
    hold = threading.Lock()
    hold.acquire()
    distributed.get_worker()._hardstop_test_hold = hold  # where release_hold() finds it
    (folder / "started").touch()
    hold.acquire(timeout=STUCK)  # the interrupt is raised as this returns
    spin_until(STUCK)
    (folder / "completed").touch()
    return "completed"


def release_hold(dask_worker: Any) -> None:
    dask_worker._hardstop_test_hold.release()


def shielded_task(folder: Path) -> str:
    with hardstop.shield():
        (folder / "started").touch()
        end = time.monotonic() + STUCK
        while not (folder / "leave").exists() and time.monotonic() < end:
            time.sleep(0.01)
        (folder / "left").touch()
    spin_until(STUCK)
    (folder / "completed").touch()
    return "completed"


def shielded_the_first_time(folder: Path) -> str:
    if (folder / "started").exists():
        return "second run"
    return shielded_task(folder)


def short_task(i: int, kind: int) -> int:
    if kind == 0:
        spin_until(0.005)
    elif kind == 1:
        threading.Event().wait(0.005)
    return i


def task_state(key: str, dask_worker: Any) -> str | None:
    ts = dask_worker.state.tasks.get(key)
    return ts.state if ts is not None else None


def pool_threads(dask_worker: Any) -> tuple[int, int]:
    """Threads of the worker's executor, as the executor counts them and as alive."""
    executor = dask_worker.executors["default"]
    alive = [thread for thread in threading.enumerate() if thread.name.startswith(executor._thread_name_prefix)]
    return len(executor._threads), len(alive)


def stopped_while_running(dask_worker: Any) -> int:
    """Tasks that ended with TaskCancelled while cancelled (the worker state machine's log)."""
    return sum(1 for entry in dask_worker.state.log if entry[1:3] == ("cancelled", "rescheduled"))


def plugin_tasks(dask_worker: Any) -> tuple[int, dict[Any, str]]:
    plugin = dask_worker.plugins["hardstop"]
    return len(plugin._tasks), plugin.still_running()


# Helpers in the test ------------------------------------------------------------


def wait_for(condition: Callable[[], object], what: str) -> None:
    end = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < end, f"{what}: not within {WAIT} s"
        time.sleep(0.02)


def on_worker(client: Any, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args, dask_worker=the worker)`` on the one worker; its result."""
    (result,) = client.run(function, *args).values()
    return result


def worker_logs(client: Any) -> list[tuple[str, str]]:
    (logs,) = client.get_worker_logs().values()
    return list(logs)


def assert_worker_fine(client: Any, pids: dict[str, int], key: str) -> None:
    """The worker is the same process as before, and logged no error about ``key``."""
    assert client.run(os.getpid) == pids, "the worker died and was replaced"
    errors = [text for level, text in worker_logs(client) if level in ("ERROR", "CRITICAL") and key in text]
    assert errors == []


@pytest.fixture(scope="module", params=["threads", "processes"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if distributed is None:
        pytest.skip(needs_dask.kwargs["reason"])
    processes = request.param == "processes"
    # The worker state machine's log (stopped_while_running() reads it) keeps 1,000 entries by default.
    with dask.config.set({"distributed.admin.low-level-log-length": 100_000}):
        cluster = distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=processes,
            scheduler_port=0,  # any free port: CI runs two versions' suites at once
            dashboard_address=":0",  # None still takes 8787
            silence_logs=False,
        )
    client = distributed.Client(cluster)
    client.register_plugin(HardstopPlugin(report_after=REPORT_AFTER))
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def pids(client: Any) -> dict[str, int]:
    return client.run(os.getpid)


# Tests --------------------------------------------------------------------------


def test_importing_without_dask_says_what_to_install() -> None:
    code = "import sys; sys.modules['distributed'] = None; import hardstop.dask"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1
    assert (
        "ImportError: hardstop.dask needs Dask's distributed scheduler, which is not installed: "
        "install it with pip install 'hardstop-threads[dask]'." in result.stderr
    )


@needs_dask
@pytest.mark.parametrize(
    ("task", "how"),
    [
        (loop_task, "Future.cancel"),
        (event_wait_task, "Future.cancel"),
        (loop_task, "client.cancel"),
        (event_wait_task, "release"),
    ],
    ids=["loop-cancel", "event-cancel", "loop-client.cancel", "event-release"],
)
def test_a_cancelled_running_task_is_stopped_and_its_worker_freed(
    client: Any, pids: dict[str, int], tmp_path: Path, task: Callable[[Path], str], how: str
) -> None:
    future = client.submit(task, tmp_path, pure=False)
    key = future.key
    wait_for((tmp_path / "started").exists, "the task started")
    if how == "Future.cancel":
        future.cancel()
    elif how == "client.cancel":
        client.cancel([future])
    else:
        del future  # the client releases the key: the scheduler tells the worker to forget it
    assert client.submit(lambda: "next", pure=False).result(timeout=WAIT) == "next"
    assert not (tmp_path / "completed").exists()
    if how != "release":
        assert future.status == "cancelled"
    assert_worker_fine(client, pids, key)


@needs_dask
def test_a_task_in_a_wait_hardstop_cannot_end_is_reported_until_it_stops(
    client: Any, pids: dict[str, int], tmp_path: Path
) -> None:
    future = client.submit(lock_wait_task, tmp_path, pure=False)
    wait_for((tmp_path / "started").exists, "the task started")
    future.cancel()

    def report() -> str | None:
        warnings = [text for level, text in worker_logs(client) if level == "WARNING" and future.key in text]
        return warnings[0] if warnings else None

    wait_for(report, "the plugin reported the task as still running")
    assert f"the Dask task {future.key!r} was cancelled" in report()
    assert "and is still running" in report()
    assert "hold.acquire(timeout=STUCK)" in report()  # where it is blocked
    assert "blocked in a call into C" in report()
    (recorded,) = on_worker(client, plugin_tasks)[1].items()
    assert recorded[0] == future.key
    assert report().endswith(recorded[1])  # the log line is the record, after the log format's prefix
    assert on_worker(client, task_state, future.key) == "cancelled"  # Dask agrees: its thread is still busy

    def events() -> list[Any]:
        return [msg for _, msg in client.get_events("hardstop") if msg["key"] == future.key]

    wait_for(events, "the plugin's report reached the scheduler as an event")
    (event,) = events()
    assert (event["status"], event["report"]) == ("still running", recorded[1])

    on_worker(client, release_hold)
    assert client.submit(lambda: "next", pure=False).result(timeout=WAIT) == "next"
    assert not (tmp_path / "completed").exists()  # stopped as soon as the wait returned
    assert on_worker(client, plugin_tasks) == (0, {})
    assert_worker_fine(client, pids, future.key)


@needs_dask
def test_a_task_cancelled_and_asked_for_again_while_it_stops_runs_afresh(
    client: Any, pids: dict[str, int], tmp_path: Path
) -> None:
    """Another client asks for the key while its cancelled run is still being
    stopped (held by a shield here): the worker takes that run back (cancelled ->
    executing), so how it ends must not be an error. TaskCancelled is a
    Reschedule: the task runs again."""
    key = f"shielded-{uuid.uuid4()}"
    future = client.submit(shielded_the_first_time, tmp_path, key=key)
    wait_for((tmp_path / "started").exists, "the task started")
    future.cancel()
    wait_for(lambda: on_worker(client, task_state, key) == "cancelled", "the worker saw the cancel")
    with distributed.Client(client.scheduler.address, set_as_default=False) as other:
        again = other.submit(shielded_the_first_time, tmp_path, key=key)
        wait_for(lambda: on_worker(client, task_state, key) == "executing", "the worker took the run back")
        (tmp_path / "leave").touch()
        assert again.result(timeout=WAIT) == "second run"
    assert not (tmp_path / "completed").exists()
    assert_worker_fine(client, pids, key)


@needs_dask
def test_a_task_inside_a_shield_is_stopped_as_it_leaves(client: Any, pids: dict[str, int], tmp_path: Path) -> None:
    future = client.submit(shielded_task, tmp_path, pure=False)
    wait_for((tmp_path / "started").exists, "the task started")
    future.cancel()
    wait_for(lambda: on_worker(client, task_state, future.key) == "cancelled", "the worker saw the cancel")
    (tmp_path / "leave").touch()
    assert client.submit(lambda: "next", pure=False).result(timeout=WAIT) == "next"
    assert (tmp_path / "left").exists()  # the shielded block ran to its end
    assert not (tmp_path / "completed").exists()
    assert_worker_fine(client, pids, future.key)


@needs_dask
@pytest.mark.parametrize("task", [loop_task, event_wait_task], ids=["loop", "event"])
def test_a_time_limit_fails_the_future_with_deadline_exceeded(
    client: Any, pids: dict[str, int], tmp_path: Path, task: Callable[[Path], str]
) -> None:
    with hardstop.dask.time_limit(0.2):
        future = client.submit(task, tmp_path, pure=False)
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        future.result(timeout=WAIT)
    assert str(caught.value) == f"The deadline of 0.2 s set for the Dask task {future.key!r} has passed."
    assert future.status == "error"
    assert not (tmp_path / "completed").exists()
    assert client.run(os.getpid) == pids


@needs_dask
def test_the_annotation_alone_sets_a_time_limit(client: Any, tmp_path: Path) -> None:
    with dask.annotate(hardstop_timeout=0.2):
        future = client.submit(loop_task, tmp_path, pure=False)
    with pytest.raises(hardstop.DeadlineExceeded):
        future.result(timeout=WAIT)


@needs_dask
def test_a_bad_time_limit_is_refused_on_the_client() -> None:
    with pytest.raises(TypeError, match=r"^hardstop\.deadline\(\) takes a number of seconds, not str '5'\.$"):
        hardstop.dask.time_limit("5")  # type: ignore[arg-type]


@needs_dask
@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, ValueError, "HardstopPlugin takes report_after in seconds (0 or more), not -1."),
        (float("nan"), ValueError, "HardstopPlugin takes report_after in seconds (0 or more), not nan."),
        ("1", TypeError, "HardstopPlugin takes report_after in seconds, not str '1'."),
        (True, TypeError, "HardstopPlugin takes report_after in seconds, not bool True."),
    ],
)
def test_a_bad_report_after_is_refused(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        HardstopPlugin(report_after=value)  # type: ignore[arg-type]


@needs_dask
def test_hundreds_of_submit_and_cancel_cycles_leave_the_cluster_healthy(client: Any, pids: dict[str, int]) -> None:
    rng = random.Random(10)
    stopped_before = on_worker(client, stopped_while_running)
    futures, cancelled = [], set()
    for i in range(300):
        futures.append(client.submit(short_task, i, i % 3, pure=False))
        time.sleep(rng.random() * 0.006)
        if rng.random() < 0.5:
            victim = rng.choice(futures[-4:])
            victim.cancel()
            cancelled.add(victim.key)
    wait_for(lambda: all(future.done() for future in futures), "every future ended")

    assert {future.status for future in futures} <= {"finished", "cancelled"}
    for i, future in enumerate(futures):
        if future.status == "finished":  # nothing meant for another task reached it
            assert future.result() == i
        else:
            assert future.key in cancelled
    assert client.submit(lambda: "next", pure=False).result(timeout=WAIT) == "next"
    assert on_worker(client, stopped_while_running) > stopped_before  # the cycles did stop running tasks
    assert on_worker(client, pool_threads) == (1, 1)
    assert on_worker(client, plugin_tasks) == (0, {})
    assert_worker_fine(client, pids, "short_task")


@needs_dask
def test_deadline_exceeded_pickles_with_its_cause_where_tblib_keeps_causes() -> None:
    """Importing distributed installs tblib's reducers, which pickle ``__cause__``
    too: DeadlineExceeded's cause (the expiry raised inside the block) must travel."""
    from tblib import pickling_support

    pickling_support.install()
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with hardstop.deadline(0.01):
            hardstop.sleep(WAIT)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert str(copy.__cause__) == str(caught.value.__cause__)
    assert type(copy.__cause__) is type(caught.value.__cause__)


@needs_dask
def test_a_time_limit_without_the_plugin_on_the_cluster_warns(client: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with hardstop.dask.time_limit(5):  # the fixture's cluster has the plugin: no warning
            pass
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, scheduler_port=0, dashboard_address="127.0.0.1:0"
    )
    with cluster, distributed.Client(cluster) as bare:
        message = (
            f"hardstop.dask.time_limit(): the workers of {bare.scheduler.address} have no HardstopPlugin, so they "
            "ignore the time limit. Register it first: client.register_plugin(hardstop.dask.HardstopPlugin())."
        )
        with pytest.warns(UserWarning) as caught:
            with hardstop.dask.time_limit(5):
                pass
        assert [str(warning.message) for warning in caught] == [message]
        assert caught[0].filename == __file__  # the user's line, not hardstop's
        bare.register_plugin(HardstopPlugin())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with hardstop.dask.time_limit(5):
                pass


SILENCE_LOGS_SCRIPT = """
import threading, time
import distributed
import hardstop.dask

def blocked():
    lock = threading.Lock()
    lock.acquire()
    lock.acquire(timeout=1.0)  # nothing can wake this in a worker thread

def main():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster:
        with distributed.Client(cluster) as client:
            client.register_plugin(hardstop.dask.HardstopPlugin(report_after=0.2))
            future = client.submit(blocked, pure=False)
            time.sleep(0.3)
            future.cancel()
            end = time.monotonic() + 60
            while time.monotonic() < end:
                (logs,) = client.get_worker_logs().values()
                levels = sorted({level for level, text in logs if "distributed.worker.hardstop" in text})
                if "INFO" in levels:
                    break
                time.sleep(0.1)
            print(" ".join(levels))

if __name__ == "__main__":
    main()
"""


@needs_dask
def test_a_default_local_cluster_prints_the_warning_and_keeps_both_lines_as_docs_dask_says(tmp_path: Path) -> None:
    """docs/dask.md: both lines are in get_worker_logs(); the terminal shows the warning only."""
    script = tmp_path / "silence_logs.py"
    script.write_text(SILENCE_LOGS_SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "INFO WARNING\n", result.stdout + result.stderr
    assert "distributed.worker.hardstop - WARNING - hardstop: the Dask task 'blocked-" in result.stderr
    assert "distributed.worker.hardstop - INFO" not in result.stderr
