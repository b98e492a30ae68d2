"""hardstop.rq on real rq workers: ``rq worker -w hardstop.rq.SimpleWorker`` (and the
forking ``hardstop.rq.Worker``) started from their command line against a real Redis
server, jobs enqueued by a real client. One worker per queue, one job at a time: a
job that is not stopped keeps the follow-up job from running."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import WAIT, stop_process

rq = pytest.importorskip(
    "rq",
    reason=f"rq is not installed for CPython {sys.version_info.major}.{sys.version_info.minor} "
    "(pip install 'hardstop-threads[test]' installs it where it installs)",
)
import redis  # noqa: E402 - rq's own dependency
from rq.command import send_stop_job_command  # noqa: E402

APPS = Path(__file__).parent / "apps"
FINAL = {"finished", "failed", "stopped", "canceled"}


class RqWorker:
    def __init__(self, worker_class: str, queue: str, redis_url: str, folder: Path) -> None:
        self.queue = queue
        self.log = folder / f"{queue}.log"
        script = Path(sys.executable).parent / "rq"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "rq.cli"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "worker", "-w", worker_class, "--url", redis_url, "--name", f"hardstop-{queue}", queue],
                env=dict(os.environ, PYTHONPATH=str(APPS)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def connection(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    folder = tmp_path_factory.mktemp("rq")
    workers = [
        RqWorker("hardstop.rq.SimpleWorker", "simple", redis_url, folder),
        RqWorker("hardstop.rq.Worker", "forking", redis_url, folder),
    ]
    client = redis.Redis.from_url(redis_url)
    try:
        for worker in workers:  # up once the worker has registered itself
            end = time.monotonic() + 60.0
            while not rq.Worker.find_by_key(f"rq:worker:hardstop-{worker.queue}", connection=client):
                assert worker.process.poll() is None, worker.log.read_text()
                assert time.monotonic() < end, worker.log.read_text()
                time.sleep(0.05)
        yield client
    finally:
        for worker in workers:
            worker.stop()
        client.close()


def enqueue(connection: redis.Redis, queue: str, func: str, *args: object, **options: object) -> rq.job.Job:
    return rq.Queue(queue, connection=connection).enqueue(f"hardstop_rq_jobs.{func}", *args, **options)


def final(job: rq.job.Job) -> str:
    end = time.monotonic() + WAIT
    while (status := str(job.get_status(refresh=True).value)) not in FINAL:
        assert time.monotonic() < end, f"{job.id} is still {status}"
        time.sleep(0.02)
    return status


def exception_text(job: rq.job.Job) -> str:
    result = job.latest_result()
    return str(result.exc_string) if result is not None else ""


def assert_worker_free(connection: redis.Redis, queue: str) -> None:
    follow_up = enqueue(connection, queue, "add", 1, 2)
    assert final(follow_up) == "finished"
    assert follow_up.return_value() == 3


def wait_for_file(path: Path) -> None:
    end = time.monotonic() + WAIT
    while not path.exists():
        assert time.monotonic() < end, f"{path.name} was never written"
        time.sleep(0.01)


@pytest.mark.parametrize("queue", ["simple", "forking"])
@pytest.mark.parametrize("func", ["loop_job", "event_wait_job", "sleep_job"])
def test_job_timeout_raises_rqs_exception_inside_the_job(connection, tmp_path, queue, func):
    job = enqueue(connection, queue, func, str(tmp_path), job_timeout=1)  # rq counts whole seconds
    assert final(job) == "failed"
    assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in exception_text(job)
    assert_worker_free(connection, queue)
    assert (tmp_path / "started").exists()
    assert not (tmp_path / "completed").exists()


def test_the_job_may_catch_its_timeout_once_and_clean_up(connection):
    job = enqueue(connection, "simple", "catching_job", job_timeout=1)
    assert final(job) == "finished"
    assert job.return_value() == "cleaned up"


def test_stop_job_command_stops_the_running_job(connection, tmp_path):
    job = enqueue(connection, "simple", "loop_job", str(tmp_path), job_timeout=WAIT * 3)
    wait_for_file(tmp_path / "started")
    send_stop_job_command(connection, job.id)
    assert final(job) == "stopped"
    assert "JobStopped" in exception_text(job)
    assert_worker_free(connection, "simple")
    assert not (tmp_path / "completed").exists()


def test_a_timeout_never_lands_after_its_jobs_block(connection):
    """Jobs that end about when their timeout passes (either outcome is right),
    each followed by a short job, which must finish: a timeout that fired as its
    job ended and landed after the block would fail rq's bookkeeping or that job."""
    rng = random.Random(19)
    pairs = []
    for i in range(0, 12, 2):
        boundary = enqueue(connection, "simple", "short_job", i, rng.uniform(0.97, 1.03), job_timeout=1)
        short = enqueue(connection, "simple", "short_job", i + 1, rng.uniform(0.0, 0.01), job_timeout=int(WAIT))
        pairs.append((boundary, short, i))
    for boundary, short, i in pairs:
        status = final(boundary)
        assert status == "finished" or (status == "failed" and "JobTimeoutException" in exception_text(boundary))
        assert final(short) == "finished"
        assert short.return_value() == i + 1
