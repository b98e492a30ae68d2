"""hardstop: raise an exception in another Python thread, safely."""

from hardstop._errors import AmbiguousThread, HardstopError, Interrupted, ThreadNotFound
from hardstop._hardstop import Receipt
from hardstop._interrupt import interrupt
from hardstop._wake import set_wake_signal, sleep, unblocking, wake_signal

__version__ = "0.1.0"

__all__ = [
    "AmbiguousThread",
    "HardstopError",
    "Interrupted",
    "Receipt",
    "ThreadNotFound",
    "get_include",
    "interrupt",
    "set_wake_signal",
    "sleep",
    "unblocking",
    "wake_signal",
]


def get_include() -> str:
    """The folder holding ``hardstop.h``, for building C extensions that use hardstop."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")
