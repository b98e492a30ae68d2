"""Turning what the caller names as a target into an ident, with clear refusals.

A ``threading.Thread`` is the safe handle: whether it still owns its ident is
checked again by the extension at the moment of arming. A bare ``int`` ident is
for frameworks that only have idents; it is weaker, since an ident is reused as
soon as its thread ends: an int names whichever live thread has it *now*.
"""

from __future__ import annotations

import ctypes
import threading

from hardstop._errors import ThreadNotFound

# Idents are C `unsigned long` values (pthread_t on POSIX, the thread id on Windows).
_MAX_IDENT = 2 ** (8 * ctypes.sizeof(ctypes.c_ulong)) - 1


def resolve(thread: object) -> tuple[threading.Thread | None, int]:
    """Return ``(Thread or None, ident)`` for an interrupt target, or raise."""
    if isinstance(thread, threading.Thread):
        ident = thread.ident
        if ident is None:
            raise ThreadNotFound(f"{thread!r} cannot be interrupted: it has not been started.")
        return thread, ident
    if isinstance(thread, int) and not isinstance(thread, bool):
        if not 0 < thread <= _MAX_IDENT:
            raise ThreadNotFound(f"No thread can have ident {thread}: idents are between 1 and {_MAX_IDENT}.")
        return None, thread
    raise TypeError(
        f"The target must be a threading.Thread or an int thread ident, not {type(thread).__name__} {thread!r}."
    )
