"""What ``import hardstop`` costs the importer: no asyncio until ``to_thread`` is used, no
typing, dataclasses, logging or concurrent.futures either (benchmarks/import_time.py measures
the time); the lock handling of logging and concurrent.futures is still protected once they
are imported, later."""

from __future__ import annotations

import subprocess
import sys

from conftest import WAIT


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * WAIT)


def test_importing_hardstop_does_not_import_asyncio() -> None:
    result = run("import sys, hardstop; print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio'))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


SLOW_TO_IMPORT = ("asyncio", "typing", "dataclasses", "logging", "concurrent", "inspect", "traceback")


def test_importing_hardstop_imports_none_of_the_slow_modules() -> None:
    result = run(
        f"import sys; before = set(sys.modules); import hardstop\n"
        f"print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {SLOW_TO_IMPORT!r}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_kill_and_its_result_are_loaded_on_first_use_and_listed() -> None:
    result = run(
        "import sys, hardstop\n"
        "assert 'hardstop._kill' not in sys.modules and {'kill', 'KillResult'} <= set(dir(hardstop))\n"
        "from hardstop import kill\n"
        "from hardstop._kill import KillResult, kill as real\n"
        "assert kill is real and hardstop.KillResult is KillResult\n"
        "print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


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


def test_logging_imported_after_hardstop_has_its_lock_handling_protected() -> None:
    # A worker blocked on a logging handler's lock: its innermost Python frame is logging's.
    code = LOCK_HELD.format(
        module="logging",
        hold="handler = logging.Handler(); handler.acquire()",
        blocked="lambda: handler.handle(logging.makeLogRecord({}))",
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_concurrent_futures_imported_after_hardstop_has_its_lock_handling_protected() -> None:
    # A worker blocked on a Future's lock in concurrent.futures' own code (wait()'s
    # _AcquireFutures.__enter__ calls the lock's C acquire directly).
    code = LOCK_HELD.format(
        module="concurrent.futures",
        hold="future = concurrent.futures.Future(); future._condition.acquire()",
        blocked="lambda: concurrent.futures.wait([future], timeout=60)",
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_to_thread_is_loaded_on_first_use_by_attribute_and_by_from_import() -> None:
    result = run(
        "import sys, hardstop\n"
        "from hardstop._asyncio import to_thread as real\n"
        "assert hardstop.to_thread is real\n"
        "from hardstop import to_thread\n"
        "assert to_thread is real and 'asyncio' in sys.modules\n"
        "print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_an_unknown_attribute_is_an_attribute_error_naming_it() -> None:
    import hardstop

    try:
        hardstop.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert str(error) == "module 'hardstop' has no attribute 'no_such_name'"
    else:
        raise AssertionError("hardstop.no_such_name did not raise")
