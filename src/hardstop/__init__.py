"""hardstop: raise an exception in another Python thread, safely."""

from __future__ import annotations

from hardstop import (
    _gil,  # noqa: F401 - before the extension: notes whether the GIL was on then
    _main_interpreter,  # noqa: F401 - first: refuses a sub-interpreter before the extension loads
)

# isort: split
import atexit

from hardstop._deadline import Deadline, deadline, deadline_at, timeout
from hardstop._errors import AmbiguousThread, DeadlineExceeded, Expired, HardstopError, Interrupted, ThreadNotFound
from hardstop._hardstop import Receipt, shield
from hardstop._interrupt import interrupt
from hardstop._shield import shielded
from hardstop._wake import set_wake_signal, sleep, unblocking, wake_signal

# Loaded on first use (see __getattr__); typing is slow to import, so no `from typing`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hardstop._asyncio import to_thread
    from hardstop._kill import KillResult, kill

__version__ = "0.1.0"

__all__ = [
    "AmbiguousThread",
    "Deadline",
    "DeadlineExceeded",
    "Expired",
    "HardstopError",
    "Interrupted",
    "KillResult",
    "Receipt",
    "ThreadNotFound",
    "deadline",
    "deadline_at",
    "get_include",
    "interrupt",
    "kill",
    "set_wake_signal",
    "shield",
    "shielded",
    "sleep",
    "timeout",
    "to_thread",
    "unblocking",
    "wake_signal",
]


def get_include() -> str:
    """The folder holding ``hardstop.h``, for building C extensions that use hardstop."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")


# Names whose modules are imported on first use: to_thread needs asyncio, whose
# import costs more than all of hardstop; kill() needs dataclasses and traceback.
_LAZY = {"to_thread": "hardstop._asyncio", "kill": "hardstop._kill", "KillResult": "hardstop._kill"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hardstop' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# kill() must still work in finalizers run as the interpreter shuts down, when
# nothing can be imported any more: load it at exit if nobody has.
atexit.register(__getattr__, "kill")
