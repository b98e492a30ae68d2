"""Imported first by ``hardstop/__init__.py``: refuse a sub-interpreter before
the extension is loaded there.

The extension keeps one state per process (armed slots, the deadline watchdog)
and installs the wake signal, which only the main interpreter may do. Cython's
single-interpreter check lets the first interpreter that loads it keep it: a
sub-interpreter that loaded it first (a shared-GIL one; isolated ones are
refused by CPython) would lock the main interpreter out for the rest of the
process, and failed besides with a ValueError from ``signal.signal``.
"""

from __future__ import annotations

import _thread


def _in_main_interpreter() -> bool:
    is_main = getattr(_thread, "_is_main_interpreter", None)  # 3.12+
    if is_main is not None:
        return bool(is_main())
    try:
        import _xxsubinterpreters as interpreters  # type: ignore[import-not-found]  # 3.10, 3.11 only
    except ImportError:
        return True  # built without it: nothing tells; Cython's own check remains
    return bool(interpreters.get_current() == interpreters.get_main())


if not _in_main_interpreter():
    raise ImportError(
        "hardstop cannot be imported in a sub-interpreter: its extension keeps one state per process "
        "and installs a signal handler, which only the main interpreter can do. Use it from the main "
        "interpreter (a thread running code in a sub-interpreter can be interrupted from there: the "
        "exception is raised once the thread is back in the main interpreter)."
    )
