"""A pytest plugin: ``@pytest.mark.hardstop_timeout(seconds)``, off unless asked for.

Registered through the ``pytest11`` entry point named ``hardstop``, so installing
hardstop is enough (with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set: ``-p hardstop``).
A test whose setup and call together run longer than its timeout (or whose
teardown alone does) fails once, with the stack where it was stuck, and the
session goes on with the next test: the test is stopped by a
``hardstop.deadline`` in the thread that runs it, main or not, and its fixtures
are torn down as usual.

Timeouts, the first found wins: the marker, ``--hardstop-timeout=SECONDS``, the
``hardstop_timeout`` ini option. None of them: the plugin does nothing.

The deadline's expiry is a ``BaseException``, but unittest and subtests catch
every exception but ``KeyboardInterrupt``, and a deadline fires again every
10 ms while its block runs: left alone, a ``TestCase`` would report the raw
expiry, and a subtest loop would fail every later subtest in turn. So the
expiry is carried out of a subtest (a unittest ``subTest``, or the ``subtests``
fixture) to end the test; a ``TestCase`` gets the plugin's failure where
unittest catches the expiry (``setUp``, the test method, ``tearDown``, a
cleanup), and the parts after it run with a budget of their own.

Compared with pytest-timeout: its "thread" method ends the whole process at the
first timeout, and its "signal" method only serves the main thread on POSIX.
What hardstop cannot stop (a C call that no signal or wake reaches) still hangs
the test: such a call raises only when it returns.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import time
import traceback
import unittest
from collections.abc import Callable, Generator, Iterator
from typing import Any, NoReturn

import pluggy
import pytest

import hardstop
from hardstop._errors import _DeadlinePassed

_STARTED = pytest.StashKey[float]()
_SECONDS = pytest.StashKey["float | None"]()
_SCOPE = pytest.StashKey[hardstop.Deadline]()  # the running phase's deadline
_STUCK_AT = pytest.StashKey[traceback.StackSummary]()  # where a subtest caught the expiry

_PHASES = {"setup": "the test's setup", "call": "the test", "teardown": "the test's teardown"}
# Frames of these packages are not the test's: the stack shown starts below them.
_HARDSTOP = os.path.dirname(hardstop.__file__) + os.sep
_MACHINERY = (
    *(os.path.dirname(inspect.getfile(module)) + os.sep for module in (pytest.Item, pluggy, unittest)),
    os.path.join(os.path.dirname(os.__file__), "asyncio", ""),  # an async TestCase's runner (not imported here)
    _HARDSTOP,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hardstop-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a test that runs longer than this, stopping it with hardstop (default: no timeout)",
    )
    parser.addini("hardstop_timeout", "default timeout of each test, in seconds, stopped with hardstop", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hardstop_timeout(seconds): fail the test if it runs longer, stopping it with hardstop"
    )
    # The session-wide settings are checked once, here: a bad one stops the session.
    for value, where in _session_settings(config):
        problem = _refusal(value, where)
        if problem is not None:
            raise pytest.UsageError(problem)


def _session_settings(config: pytest.Config) -> list[tuple[object, str]]:
    settings: list[tuple[object, str]] = []
    if config.getoption("hardstop_timeout") is not None:
        settings.append((config.getoption("hardstop_timeout"), "--hardstop-timeout"))
    if config.getini("hardstop_timeout"):
        settings.append((config.getini("hardstop_timeout"), "the hardstop_timeout ini option"))
    return settings


def _refusal(value: object, where: str) -> str | None:
    """The sentence refusing ``value``, or None when it is a positive number of seconds."""
    try:
        seconds = float(value)  # type: ignore[arg-type]  # refused below if it is not a number
    except (TypeError, ValueError):
        return f"{where} takes a number of seconds, not {value!r}."
    if not seconds > 0:
        return f"{where} takes a positive number of seconds, not {value!r}."
    return None


def _timeout(item: pytest.Item) -> float | None:
    """The item's timeout; a bad marker fails this test alone, when it runs."""
    marker = item.get_closest_marker("hardstop_timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("seconds")
        where = f"@pytest.mark.hardstop_timeout on {item.nodeid}"
    else:
        settings = _session_settings(item.config)
        if not settings:
            return None
        value, where = settings[0]
    problem = _refusal(value, where)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return float(value)  # type: ignore[arg-type]  # a number: checked just above


def _guarded(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    seconds = item.stash.get(_SECONDS, None)
    if seconds is None:
        return (yield)
    # Setup and call share one budget; teardown gets its own, so that fixtures
    # are still torn down after a test ran out of time.
    started = time.monotonic() if phase == "teardown" else item.stash.setdefault(_STARTED, time.monotonic())
    if _STUCK_AT in item.stash:
        del item.stash[_STUCK_AT]
    try:
        with hardstop.deadline_at(started + seconds) as scope:
            item.stash[_SCOPE] = scope
            with _unittest_guarded(item, scope, seconds) if phase == "call" else contextlib.nullcontext():
                return (yield)
    except hardstop.DeadlineExceeded as error:
        stack = item.stash.get(_STUCK_AT, None) or _frames(error.__cause__)
    finally:
        if _SCOPE in item.stash:  # not yet set when the expiry came at once
            del item.stash[_SCOPE]
    # Failed outside the except block, so that pytest shows this report alone,
    # not chained to the exceptions that pluggy's frames carried.
    pytest.fail(_message(phase, seconds, stack), pytrace=False)


def _frames(expiry: BaseException | None) -> traceback.StackSummary:
    return traceback.extract_tb(expiry.__traceback__) if expiry is not None else traceback.StackSummary()


def _is_hardstops(frame: traceback.FrameSummary) -> bool:
    """A frame of hardstop's Python modules, or of its extension (whose frames
    carry the source's relative name, ext/receipt.pxi, and a qualified name)."""
    return frame.filename.startswith(_HARDSTOP) or frame.name.startswith("hardstop._hardstop.")


def _message(phase: str, seconds: float, frames: traceback.StackSummary) -> str:
    # From the test down: without pytest's, pluggy's and unittest's frames above
    # it, nor hardstop's own below it (the handler that woke a main-thread sleep).
    first = next((i for i, frame in enumerate(frames) if not frame.filename.startswith(_MACHINERY)), 0)
    last = len(frames)
    while last > first + 1 and _is_hardstops(frames[last - 1]):
        last -= 1
    stack = "".join(traceback.format_list(frames[first:last]))
    return f"hardstop_timeout: {_PHASES[phase]} ran longer than {seconds:g} s and was stopped. It was here:\n{stack}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    # Made while the phase still runs only for a subtest (the subtests fixture),
    # which caught the expiry: raise it again, out of the subtest, so that the
    # test ends here instead of failing every later subtest. From the outermost
    # wrapper, once the others are done: an old-style wrapper that saw it would
    # warn, and so would one that the deadline's next firing (10 ms on) landed
    # in, which a shield holds back until the others are done.
    scope = item.stash.get(_SCOPE, None)
    if scope is None or call.excinfo is None or not _is_expiry(call.excinfo.value, scope):
        return (yield)
    item.stash[_STUCK_AT] = _frames(call.excinfo.value)
    with hardstop.shield():
        yield
    raise call.excinfo.value


def _is_expiry(error: BaseException | None, scope: hardstop.Deadline) -> bool:
    return isinstance(error, _DeadlinePassed) and error.scope is scope


class _LeavingSubtest(KeyboardInterrupt):
    """Carries the expiry out of a unittest ``subTest``, which lets only
    ``KeyboardInterrupt`` through."""


@contextlib.contextmanager
def _unittest_guarded(item: pytest.Item, scope: hardstop.Deadline, seconds: float) -> Iterator[None]:
    case = getattr(item, "instance", None)
    if not isinstance(case, unittest.TestCase):
        yield
        return
    timed_out: list[bool] = []

    def stop_here(expiry: BaseException) -> NoReturn:
        # unittest catches this as it would the expiry: the plugin's failure, reported once.
        scope.cancel()  # no re-fire: the parts after it run, with a budget of their own
        timed_out.append(True)
        pytest.fail(_message("call", seconds, _frames(expiry)), pytrace=False)

    def guarded(part: Callable[..., Any]) -> Callable[..., Any]:
        """setUp, the test method, tearDown, doCleanups."""

        @functools.wraps(part)
        def run(*args: Any, **kwargs: Any) -> Any:
            if timed_out:  # a part after the timeout
                with hardstop.deadline(seconds):
                    return part(*args, **kwargs)
            try:
                return part(*args, **kwargs)
            except _DeadlinePassed as error:
                if error.scope is not scope:
                    raise
                expiry = error
            stop_here(expiry)  # outside the except block: reported alone

        return run

    def guarded_async(part: Callable[..., Any]) -> Callable[..., Any]:
        """An async test method of an IsolatedAsyncioTestCase: stopped in its own
        code, it fails here, before its event loop and unittest see the expiry."""

        @functools.wraps(part)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await part(*args, **kwargs)
            except _DeadlinePassed as error:
                if error.scope is not scope:
                    raise
                expiry = error
            stop_here(expiry)

        return run

    def add_error(test: unittest.TestCase, exc_info: Any) -> None:
        # What unittest caught in its own code, or in a cleanup: reported the same way.
        if _is_expiry(exc_info[1], scope):
            try:
                stop_here(exc_info[1])
            except pytest.fail.Exception as failure:
                failure.__suppress_context__ = True  # reported alone, not as raised while handling the expiry
                exc_info = sys.exc_info()
        type(item).addError(item, test, exc_info)  # type: ignore[attr-defined]  # item is unittest's result

    @contextlib.contextmanager
    def sub_test(*args: Any, **kwargs: Any) -> Iterator[None]:
        expiry = None
        try:
            with type(case).subTest(case, *args, **kwargs):
                try:
                    yield
                except _DeadlinePassed as error:
                    if error.scope is not scope:
                        raise
                    expiry = error
                    raise _LeavingSubtest from None
        except _LeavingSubtest:
            pass
        if expiry is not None:
            raise expiry  # out of the subtest: the test ends here

    method = item.obj  # type: ignore[attr-defined]  # a TestCaseFunction's bound test method
    # (Stopped while it awaits, an async test's expiry lands in its event loop, which
    # hands it to unittest: it reaches add_error, at once from 3.11.)
    wrap = guarded_async if inspect.iscoroutinefunction(method) else guarded
    item.obj = wrap(method)  # type: ignore[attr-defined]  # runtest() sets it on the case
    item.addError = add_error  # type: ignore[attr-defined]
    patched = {name: guarded(getattr(case, name)) for name in ("setUp", "tearDown", "doCleanups")}
    patched["subTest"] = sub_test
    for name, value in patched.items():
        setattr(case, name, value)
    try:
        yield
    finally:
        item.obj = method  # type: ignore[attr-defined]
        del item.addError  # type: ignore[attr-defined]
        for name in patched:
            with contextlib.suppress(AttributeError):
                delattr(case, name)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    # trylast: the deadline is the innermost wrapper, around the test's own code
    # only, so that a stop never lands in pytest's capture or logging code.
    item.stash[_SECONDS] = _timeout(item)
    return (yield from _guarded(item, "setup"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item, "call"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item, "teardown"))
