"""hardstop: raise an exception in another Python thread, safely."""

from hardstop import (
    _gil,  # noqa: F401 - before the extension: notes whether the GIL was on then
    _main_interpreter,  # noqa: F401 - first: refuses a sub-interpreter before the extension loads
)

# isort: split
from typing import TYPE_CHECKING, Any

from hardstop._deadline import Deadline, deadline, deadline_at, timeout
from hardstop._errors import AmbiguousThread, DeadlineExceeded, Expired, HardstopError, Interrupted, ThreadNotFound
from hardstop._hardstop import Receipt, shield
from hardstop._interrupt import interrupt
from hardstop._kill import KillResult, kill
from hardstop._shield import shielded
from hardstop._wake import set_wake_signal, sleep, unblocking, wake_signal

if TYPE_CHECKING:
    from hardstop._asyncio import to_thread

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


def __getattr__(name: str) -> Any:
    # to_thread needs asyncio, whose import costs more than all of hardstop: load it on first use.
    if name == "to_thread":
        from hardstop._asyncio import to_thread

        globals()["to_thread"] = to_thread
        return to_thread
    raise AttributeError(f"module 'hardstop' has no attribute {name!r}")
