"""What ``import hardstop`` costs the importer: no asyncio until ``to_thread`` is used."""

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
