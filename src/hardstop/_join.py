"""A ``Thread.join()`` ended by an exception leaves the joined thread's
bookkeeping intact (CPython 3.10-3.12).

There ``Thread._wait_for_tstate_lock``, behind ``join()`` and ``is_alive()``,
catches any exception raised while it waits, and if the thread's lock is held
then, releases it and marks the thread stopped (bpo-45274: meant for an
exception that lands just after the acquire succeeded). When the exception
ended the wait itself, the lock is held by the thread, which still runs: it then
reads ``is_alive() == False``, the next ``join()`` returns at once, and at exit
the interpreter does not wait for it, so its ``finally:`` never runs. hardstop
ends a main-thread ``join()`` with its wake signal, and a deadline or interrupt
may land in any thread's ``join()``: on these versions it replaces that method
with one that releases the lock only when it can be the caller's. The thread
leaves ``threading``'s registry (``_delete()``) before its C code releases the
lock, so while it is listed there the lock is its own. 3.13+ join through a
thread handle and are not affected.
"""

from __future__ import annotations

import sys
import threading

_ACTIVE: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]


def _wait_for_tstate_lock(self: threading.Thread, block: bool = True, timeout: float = -1) -> None:
    lock = self._tstate_lock  # type: ignore[attr-defined]
    if lock is None:  # already determined that the C code is done
        return
    try:
        if lock.acquire(block, timeout):
            lock.release()
            self._stop()  # type: ignore[attr-defined]
    except BaseException:
        # Held while the thread is still listed: it is the thread's own, and the
        # exception ended the wait. Otherwise the acquire succeeded first.
        if lock.locked() and _ACTIVE.get(self.ident or 0) is not self:
            lock.release()
            self._stop()  # type: ignore[attr-defined]
        raise


if sys.version_info < (3, 13) and getattr(threading.Thread._wait_for_tstate_lock, "__module__", None) == "threading":  # type: ignore[attr-defined]
    threading.Thread._wait_for_tstate_lock = _wait_for_tstate_lock  # type: ignore[attr-defined]
