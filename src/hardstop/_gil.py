"""Whether the GIL is on, and why: what ``python -m hardstop`` says about it.

On a free-threaded CPython (3.13t+) the GIL is off unless something turned it
on: ``PYTHON_GIL=1`` or ``-X gil=1``, or importing an extension module that does
not declare free-threading support (CPython then warns, naming the module).
hardstop's ``__init__`` imports this module just before its extension, so
whether the GIL was on then tells hardstop's own import apart from others.
"""

from __future__ import annotations

import os
import sys


def gil_enabled() -> bool:
    """True when the GIL is on now (always, on a build that has one)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return True if is_enabled is None else bool(is_enabled())


def free_threaded_build() -> bool:
    """True on a free-threaded CPython build (one that can run without the GIL)."""
    import sysconfig  # only when asked: its import costs more than the rest of this module

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


_ON_BEFORE_HARDSTOP = gil_enabled()  # imported right before the extension loads


def describe(*, on_before_hardstop: bool | None = None) -> str:
    """``"on: ..."`` or ``"off: ..."``, with the reason."""
    before = _ON_BEFORE_HARDSTOP if on_before_hardstop is None else on_before_hardstop
    if not free_threaded_build():
        return "on: this CPython is built with the GIL (free-threading needs a 't' build, 3.13t or later)"
    if not gil_enabled():
        return "off: free-threaded build, and every extension module loaded so far declares free-threading support"
    if os.environ.get("PYTHON_GIL") == "1":
        return "on: forced by PYTHON_GIL=1"
    if sys._xoptions.get("gil") == "1":
        return "on: forced by -X gil=1"
    if before:
        return (
            "on: a module imported before hardstop does not declare free-threading support, "
            "so CPython turned the GIL back on (its RuntimeWarning names the module)"
        )
    from hardstop import _hardstop

    if not _hardstop.FREE_THREADING:
        return (
            "on: hardstop's extension does not declare free-threading support on this version, "
            "so importing it turned the GIL back on"
        )
    return (
        "on: a module imported after hardstop does not declare free-threading support, "
        "so CPython turned the GIL back on (its RuntimeWarning names the module)"
    )
