"""What ``import hardstop`` costs the importer: no asyncio until ``to_thread`` is used, no
typing, dataclasses, logging or concurrent.futures either (benchmarks/import_time.py measures
the time); the lock handling of logging and concurrent.futures is still protected once they
are imported, later."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import WAIT

SLOW_TO_IMPORT = ("asyncio", "typing", "dataclasses", "logging", "concurrent", "inspect", "traceback")


def prints(code: str) -> str:
    """What ``code`` prints in a fresh interpreter, which must exit cleanly."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * WAIT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_hardstop_imports_none_of_the_slow_modules() -> None:
    added = prints(
        "import sys; before = set(sys.modules); import hardstop\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {SLOW_TO_IMPORT!r}))"
    )
    assert added == "[]"


@pytest.mark.parametrize(
    ("name", "module"),
    [("to_thread", "hardstop._asyncio"), ("kill", "hardstop._kill"), ("KillResult", "hardstop._kill")],
)
def test_a_name_loaded_on_first_use_is_listed_and_found_by_attribute_and_by_from_import(name, module) -> None:
    code = (
        f"import sys, hardstop\n"
        f"assert {module!r} not in sys.modules and {name!r} in dir(hardstop)\n"
        f"from {module} import {name} as real\n"
        f"assert hardstop.{name} is real\n"
        f"from hardstop import {name}\n"
        f"print({name} is real)"
    )
    assert prints(code) == "True"


LOCK_HELD = """
import sys, threading, time
import hardstop
from hardstop import _hardstop
assert 'logging' not in sys.modules
import {module}
{hold}
worker = threading.Thread(target={blocked}, daemon=True)
worker.start()
give_up = time.monotonic() + 30
while not _hardstop.in_protected_code(worker.ident) and time.monotonic() < give_up:
    time.sleep(0.01)
print(_hardstop.in_protected_code(worker.ident))
"""


@pytest.mark.parametrize(
    ("module", "hold", "blocked"),
    [
        # A worker blocked on a logging handler's lock: its innermost Python frame is logging's.
        (
            "logging",
            "handler = logging.Handler(); handler.acquire()",
            "lambda: handler.handle(logging.makeLogRecord({}))",
        ),
        # Blocked on a Future's lock in concurrent.futures' own code (wait()'s
        # _AcquireFutures.__enter__ calls the lock's C acquire directly).
        (
            "concurrent.futures",
            "future = concurrent.futures.Future(); future._condition.acquire()",
            "lambda: concurrent.futures.wait([future], timeout=60)",
        ),
    ],
)
def test_a_module_imported_after_hardstop_has_its_lock_handling_protected(module, hold, blocked) -> None:
    assert prints(LOCK_HELD.format(module=module, hold=hold, blocked=blocked)) == "True"


def test_an_unknown_attribute_is_an_attribute_error_naming_it() -> None:
    import hardstop

    try:
        hardstop.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert str(error) == "module 'hardstop' has no attribute 'no_such_name'"
    else:
        raise AssertionError("hardstop.no_such_name did not raise")
