"""A pytest plugin: ``@pytest.mark.hardstop_timeout(seconds)``, off unless asked for.

Registered through the ``pytest11`` entry point, so installing hardstop is
enough. A test whose setup and call together run longer than its timeout (or
whose teardown alone does) fails with the stack where it was stuck, and the session goes on
with the next test: the test is stopped by a ``hardstop.deadline`` in the thread
that runs it, main or not, and its fixtures are torn down as usual.

Timeouts, the first found wins: the marker, ``--hardstop-timeout=SECONDS``, the
``hardstop_timeout`` ini option. None of them: the plugin does nothing.

Compared with pytest-timeout: its "thread" method ends the whole process at the
first timeout, and its "signal" method only serves the main thread on POSIX.
What hardstop cannot stop (a C call that no signal or wake reaches) still hangs
the test: such a call raises only when it returns.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Generator
from typing import Any

import pytest

import hardstop

_STARTED = pytest.StashKey[float]()
_SECONDS = pytest.StashKey["float | None"]()


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


def _timeout(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("hardstop_timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("seconds")
        where = f"@pytest.mark.hardstop_timeout on {item.nodeid}"
    elif item.config.getoption("hardstop_timeout") is not None:
        value, where = item.config.getoption("hardstop_timeout"), "--hardstop-timeout"
    elif item.config.getini("hardstop_timeout"):
        value, where = item.config.getini("hardstop_timeout"), "the hardstop_timeout ini option"
    else:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]  # refused below if it is not a number
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{where} takes a number of seconds, not {value!r}.") from None
    if not seconds > 0:
        raise pytest.UsageError(f"{where} takes a positive number of seconds, not {value!r}.")
    return seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # a bad value stops the session here, with its name
        item.stash[_SECONDS] = _timeout(item)


def _guarded(item: pytest.Item, phase: str) -> Generator[None, Any, Any]:
    seconds = item.stash.get(_SECONDS, None)
    if seconds is None:
        return (yield)
    # Setup and call share one budget; teardown gets its own, so that fixtures
    # are still torn down after a test ran out of time.
    started = time.monotonic() if phase == "teardown" else item.stash.setdefault(_STARTED, time.monotonic())
    try:
        with hardstop.deadline_at(started + seconds):
            return (yield)
    except hardstop.DeadlineExceeded as error:
        inside = error.__cause__
        frames = traceback.extract_tb(inside.__traceback__) if inside is not None else []
    # Failed outside the except block, so that pytest shows this report alone,
    # not chained to the exceptions that pluggy's frames carried.
    # From the test's own file down, without pytest's and pluggy's frames above it.
    mine = [i for i, frame in enumerate(frames) if frame.filename == str(item.path)]
    stack = "".join(traceback.format_list(frames[mine[0] :] if mine else frames))
    pytest.fail(
        f"hardstop_timeout: the test ran longer than {seconds:g} s and was stopped. It was here:\n{stack}",
        pytrace=False,
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item, "setup"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item, "call"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item, "teardown"))
