"""hardstop.dramatiq on a real ``dramatiq`` worker process (one process, one thread:
an actor that is not stopped keeps the follow-up message from running), started
from its command line against a real Redis server, messages sent by a real client."""

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

dramatiq = pytest.importorskip(
    "dramatiq",
    reason=f"dramatiq is not installed for CPython {sys.version_info.major}.{sys.version_info.minor} "
    "(pip install 'hardstop-threads[test]' installs it where it installs)",
)
from dramatiq.results import ResultFailure  # noqa: E402

APPS = Path(__file__).parent / "apps"
WOKEN_SLEEP = sys.version_info >= (3, 15)  # a worker thread's time.sleep ends at a signal from 3.15


@pytest.fixture(scope="module")
def app(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    os.environ["HARDSTOP_TEST_REDIS"] = redis_url
    sys.path.insert(0, str(APPS))
    try:
        import hardstop_dramatiq_app
    finally:
        sys.path.remove(str(APPS))
    log = tmp_path_factory.mktemp("dramatiq") / "worker.log"
    script = Path(sys.executable).parent / "dramatiq"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dramatiq"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "hardstop_dramatiq_app", "--processes", "1", "--threads", "1", "--queues", "hardstop"],
            env=dict(os.environ, PYTHONPATH=str(APPS)),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        # Up once it runs a message (the first start imports dramatiq: allow a busy machine).
        end = time.monotonic() + 60.0
        while True:
            assert process.poll() is None, log.read_text()
            try:
                assert hardstop_dramatiq_app.add.send(0, 0).get_result(block=True, timeout=1000) == 0
                break
            except dramatiq.results.ResultTimeout:
                assert time.monotonic() < end, log.read_text()
        yield hardstop_dramatiq_app
    finally:
        stop_process(process)


def outcome(message) -> object:
    try:
        return message.get_result(block=True, timeout=int(WAIT * 1000))
    except ResultFailure as failure:
        return failure.orig_exc_type


def assert_worker_free(app) -> None:
    assert app.add.send(1, 2).get_result(block=True, timeout=int(WAIT * 1000)) == 3


@pytest.mark.parametrize("actor", ["loop_actor", "event_wait_actor"])
def test_a_message_time_limit_raises_time_limit_exceeded_in_the_actor(app, tmp_path, actor):
    message = getattr(app, actor).send_with_options(args=(str(tmp_path),), time_limit=500)
    assert outcome(message) == "TimeLimitExceeded"
    assert_worker_free(app)
    assert (tmp_path / "started").exists()
    assert not (tmp_path / "completed").exists()


def test_a_sleeping_actor_is_woken_on_315_and_stopped_as_its_sleep_returns_before(app, tmp_path):
    """From CPython 3.15 hardstop's signal ends a worker thread's ``time.sleep``: the limit
    stops the actor long before its sleep would end. Before 3.15 nothing can end that sleep:
    the limit passes during it and ``TimeLimitExceeded`` is raised as it returns, in the actor
    (which never reaches its end), never in the next message."""
    seconds = WAIT * 3 if WOKEN_SLEEP else 2.0
    sent = time.monotonic()
    message = app.sleep_actor.send_with_options(args=(str(tmp_path), seconds), time_limit=500)
    assert outcome(message) == "TimeLimitExceeded"  # within WAIT, a third of the 3.15 sleep
    took = time.monotonic() - sent
    assert_worker_free(app)
    assert (tmp_path / "started").exists()
    assert not (tmp_path / "completed").exists()
    if WOKEN_SLEEP:
        assert took < seconds, took  # woken: the 30 s sleep did not run out
    else:
        assert took >= seconds, took  # not woken: raised once the whole sleep had run


def test_an_actors_own_time_limit_is_raised_once_and_can_be_caught(app):
    assert outcome(app.limited_actor.send()) == "cleaned up"
    assert_worker_free(app)


def test_a_time_limit_never_lands_in_the_next_message(app):
    """Messages that end about when their limit passes (either outcome is right),
    each followed by a short one with a long limit of its own, which must finish:
    a limit that fired as its message ended and landed in the next would fail it."""
    rng = random.Random(19)
    sent = []
    for i in range(0, 40, 2):
        # The first one runs well past its limit, so that one limit surely fires
        # however late a loaded machine runs the watchdog; the rest end about then.
        seconds = 0.5 if i == 0 else rng.uniform(0.09, 0.11)
        boundary = app.short_actor.send_with_options(args=(i, seconds), time_limit=100)
        short = app.short_actor.send_with_options(args=(i + 1, rng.uniform(0.0, 0.005)), time_limit=int(WAIT * 1000))
        sent.append((boundary, short, i))
    outcomes = set()
    for boundary, short, i in sent:
        outcomes.add(outcome(boundary))
        assert outcome(short) == i + 1
    assert "TimeLimitExceeded" in outcomes
