"""Time from a stop to the follow-up task running: hardstop's Celery pool against
Celery's own threads pool.

Run: python benchmarks/celery_stop.py [--runs 20] [--stock-task-seconds 1.0]

Needs Celery (pip install 'hardstop-threads[celery]') and Debian's redis-server. Starts a
Redis server on a free 127.0.0.1 port and two ``celery worker`` processes with one
thread each, ``-P custom`` with ``hardstop.celery:TaskPool`` and ``-P threads``.
For each stop (``revoke(terminate=True)`` sent to the worker, and a hard time
limit of 0.3 s) and each task shape (a pure-Python loop, an ``Event.wait``), a
run submits the task and a follow-up behind it, then stops the task; it measures
from the stop (the revoke's sending, or the task's start plus its limit) to the
follow-up's start, as the tasks read ``time.time()`` on this machine. The stock
pool never stops a task: there the follow-up waits for the task's own end, so
its task ends on its own after ``--stock-task-seconds``. Reported: the median of
``--runs`` runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

APP = textwrap.dedent(
    """
    import os, threading, time
    from pathlib import Path
    from celery import Celery

    app = Celery("celery_stop_app", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])
    app.conf.update(task_track_started=True, worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True)

    def spin_until(end):
        while time.monotonic() < end:
            pass

    @app.task
    def stopped_task(marker, shape, seconds):
        Path(marker).write_text(repr(time.time()))
        if shape == "loop":
            spin_until(time.monotonic() + seconds)
        else:
            threading.Event().wait(seconds)

    @app.task
    def follow_up():
        return time.time()
    """
)
HARD_LIMIT = 0.3
WAIT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready, what: str) -> None:
    end = time.monotonic() + WAIT
    while not ready():
        if time.monotonic() > end:
            raise SystemExit(f"{what} did not happen in {WAIT} s")
        time.sleep(0.01)


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(answers, "redis-server answering")
    return process, f"redis://127.0.0.1:{port}"


def start_worker(name: str, pool: str, url: str, folder: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BENCH_REDIS=url, PYTHONPATH=str(folder))
    if pool == "custom":
        env["CELERY_CUSTOM_WORKER_POOL"] = "hardstop.celery:TaskPool"
    log = folder / f"{name}.log"
    script = Path(sys.executable).parent / "celery"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "celery"]
    process = subprocess.Popen(
        [
            *command,
            "-A",
            "celery_stop_app",
            "worker",
            "-P",
            pool,
            "-c",
            "1",
            "-Q",
            name,
            "-n",
            f"{name}@bench",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
            "--logfile",
            str(log),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    return process


def one_run(app, tasks, queue: str, stop: str, shape: str, seconds: float, folder: Path) -> float:
    marker = folder / f"started-{time.monotonic_ns()}"
    options = {"queue": queue}
    if stop == "hard limit":
        options["time_limit"] = HARD_LIMIT
    task = tasks.stopped_task.apply_async((str(marker), shape, seconds), **options)
    follow = tasks.follow_up.apply_async(queue=queue)
    wait_until(lambda: marker.exists() and marker.read_text(), "the task's start")
    if stop == "revoke":
        stopped_at = time.time()
        app.control.revoke(task.id, destination=[f"{queue}@bench"], terminate=True)
    else:
        stopped_at = float(marker.read_text()) + HARD_LIMIT
    started = follow.get(timeout=WAIT)
    task.get(timeout=WAIT, propagate=False)
    return (started - stopped_at) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stock-task-seconds", type=float, default=1.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="celery-bench-"))
    (folder / "celery_stop_app.py").write_text(APP)
    redis, url = start_redis(folder)
    os.environ["BENCH_REDIS"] = url
    sys.path.insert(0, str(folder))
    import celery_stop_app as tasks

    workers = [start_worker("hardstop", "custom", url, folder), start_worker("stock", "threads", url, folder)]
    try:
        for queue in ("hardstop", "stock"):
            wait_until(lambda q=queue: tasks.app.control.ping(destination=[f"{q}@bench"], timeout=0.5), f"{queue} up")
        print(
            f"CPython {platform.python_version()}, {args.runs} runs each, medians in ms "
            f"(the stock pool's tasks end on their own after {args.stock_task_seconds} s)"
        )
        print(f"{'stop':<11} {'task':<11} {'hardstop pool':>14} {'stock threads':>14} {'ratio':>7}")
        for stop in ("revoke", "hard limit"):
            for shape in ("loop", "Event.wait"):
                medians = {}
                for queue, seconds in (("hardstop", WAIT), ("stock", args.stock_task_seconds)):
                    runs = [one_run(tasks.app, tasks, queue, stop, shape, seconds, folder) for _ in range(args.runs)]
                    medians[queue] = statistics.median(runs)
                ratio = medians["stock"] / medians["hardstop"]
                print(f"{stop:<11} {shape:<11} {medians['hardstop']:>14.1f} {medians['stock']:>14.1f} {ratio:>6.0f}x")
    finally:
        for process in [*workers, redis]:
            process.terminate()
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(WAIT)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
