"""``python -m hardstop`` says whether the GIL is on, and why (hardstop._gil)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import WAIT
from hardstop import _hardstop

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
HARDSTOP_TURNS_IT_ON = (
    "on: hardstop's extension does not declare free-threading support on this version, "
    "so importing it turned the GIL back on"
)


def gil_line(*options: str, **env: str) -> str:
    """What a fresh interpreter that imports hardstop says about its GIL."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHON_GIL"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, *options, "-c", "from hardstop import _gil; print(_gil.describe())"],
        capture_output=True,
        text=True,
        timeout=6 * WAIT,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(FREE_THREADED, reason="a free-threaded build can run without the GIL")
def test_a_build_with_the_gil_says_so() -> None:
    assert gil_line() == "on: this CPython is built with the GIL (free-threading needs a 't' build, 3.13t or later)"


@pytest.mark.skipif(not FREE_THREADED, reason="only a free-threaded build (3.13t+) can run without the GIL")
def test_a_free_threaded_build_says_whether_hardstop_left_it_off() -> None:
    expected = (
        "off: free-threaded build, and every extension module loaded so far declares free-threading support"
        if _hardstop.FREE_THREADING
        else HARDSTOP_TURNS_IT_ON
    )
    assert gil_line() == expected


@pytest.mark.skipif(not FREE_THREADED, reason="only a free-threaded build (3.13t+) can run without the GIL")
def test_a_gil_forced_on_says_by_what() -> None:
    assert gil_line(PYTHON_GIL="1") == "on: forced by PYTHON_GIL=1"
    assert gil_line("-X", "gil=1") == "on: forced by -X gil=1"
