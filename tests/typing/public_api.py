"""Checked by `mypy --strict` in CI (not run by pytest): every public name of
hardstop used as a user would, with the types the calls must return."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import assert_type

import anyio

import hardstop
import hardstop.anyio
import hardstop.wsgi
from hardstop.futures import Future, ThreadPoolExecutor


def use_everything(worker: threading.Thread) -> None:
    receipt = hardstop.interrupt(worker)
    assert_type(receipt, hardstop.Receipt)
    assert_type(hardstop.interrupt(worker.ident or 0, KeyError("stop"), wake=False), hardstop.Receipt)
    assert_type(receipt.wait(1.0), bool)
    assert_type(receipt.cancel(), bool)
    assert_type(receipt.status, str)
    assert_type(receipt.delivered, bool)
    assert_type(receipt.reason, str | None)
    assert_type(receipt.wake, str | None)
    assert_type(receipt.exception, BaseException)
    assert_type(receipt.thread, threading.Thread | None)
    assert_type(receipt.ident, int)

    with hardstop.deadline(2.0) as scope:
        assert_type(scope, hardstop.Deadline)
        assert_type(scope.expired, bool)
        assert_type(scope.remaining, float)
        assert_type(scope.cancel(), bool)
        assert_type(scope.when, float)
        assert_type(scope.where, str | None)
    with hardstop.deadline_at(scope.when + 1.0):
        pass
    with hardstop.deadline(None):  # no limit
        pass
    assert_type(hardstop.DeadlineExceeded("a test's stand-in").scope, hardstop.Deadline | None)
    with hardstop.deadline(1.0, raises=TimeoutError("slow")), hardstop.deadline_at(1.0, raises=KeyError):
        pass
    chosen = hardstop.deadline(1.0, raises=ValueError)
    assert_type(chosen.enter_for(sys._getframe()), hardstop.Deadline)
    assert_type(chosen.__exit__(None, None, None), None)
    try:
        with hardstop.shield():
            hardstop.sleep(0.1)
    except hardstop.DeadlineExceeded as error:
        assert_type(error.scope, hardstop.Deadline | None)

    result = hardstop.kill(worker, timeout=1.0, exc=SystemExit)
    assert_type(result, hardstop.KillResult)
    assert_type(result.stopped, bool)
    assert_type(result.reason, str)
    assert_type(result.stack, str | None)
    assert_type(result.receipts, tuple[hardstop.Receipt, ...])

    with hardstop.unblocking(lambda: None):
        pass
    assert_type(hardstop.wake_signal(), int | None)
    hardstop.set_wake_signal(None)
    assert_type(hardstop.get_include(), str)
    assert_type(hardstop.__version__, str)

    errors: tuple[type[BaseException], ...] = (
        hardstop.HardstopError,
        hardstop.ThreadNotFound,
        hardstop.AmbiguousThread,
        hardstop.Interrupted,
    )
    assert issubclass(hardstop.ThreadNotFound, LookupError) and errors


@hardstop.timeout(1.5)
def fetch(url: str, retries: int = 3) -> bytes:
    return url.encode() * retries


@hardstop.timeout(None)
def unbounded(rows: list[int]) -> int:
    return len(rows)


@hardstop.shielded
def commit(rows: list[int]) -> int:
    return len(rows)


assert_type(fetch("x"), bytes)
assert_type(commit([1, 2]), int)


async def run_in_threads() -> None:
    assert_type(await hardstop.to_thread(fetch, "x", retries=2), bytes)
    assert_type(await hardstop.to_thread(fetch, "x", stop_timeout=1.0), bytes)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fetch", initializer=print, initargs=()) as pool:
        assert_type(pool.submit(fetch, "x"), Future[bytes])
        assert_type(pool.submit_with_timeout(fetch, 2.0, "x"), Future[bytes])


def web(app: hardstop.wsgi.WSGIApp) -> None:
    limited = hardstop.wsgi.TimeLimit(app, 30, report_after=1.0)
    assert_type(limited.seconds, float | None)

    @hardstop.wsgi.time_limit(120)
    def report(environ: dict[str, object], start_response: hardstop.wsgi.StartResponse) -> list[bytes]:
        return [b""]

    @hardstop.wsgi.streaming
    def events(environ: dict[str, object], start_response: hardstop.wsgi.StartResponse) -> list[bytes]:
        return [b""]

    def start(status: str, headers: list[tuple[str, str]]) -> Callable[[bytes], object]:
        return print

    assert_type(report({}, start), list[bytes])  # the decorators keep the view's type
    assert_type(events({}, start), list[bytes])


async def in_a_thread(limiter: anyio.CapacityLimiter) -> None:
    assert_type(await hardstop.anyio.run_sync(commit, [1, 2], limiter=limiter), int)
