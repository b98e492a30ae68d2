"""``await hardstop.anyio.run_sync(func, *args)``: anyio's ``to_thread.run_sync``
whose cancellation stops the thread, on the asyncio and the trio backend.

``anyio.to_thread.run_sync`` cannot stop ``func`` when the calling task is
cancelled (a cancel scope, ``move_on_after``, a sibling failing in a task
group, Starlette cancelling a response whose client went away): by default it
waits until ``func`` returns; with ``abandon_on_cancel=True`` it leaves the
thread running unobserved. Here ``func`` runs inside a deadline scope of its
own (``hardstop.futures``' task); the cancellation makes that scope pass, so the
thread raises inside ``func`` (woken from waits hardstop can end), and the
await ends with the cancellation once the thread has left ``func``, or after
``STOP_TIMEOUT`` seconds with a ``RuntimeWarning`` saying where it is.

The capacity limiter (anyio's default one unless given) is held until the
thread has left ``func``, as anyio does. The thread is anyio's own worker
thread, so ``anyio.from_thread`` works in ``func`` as usual.

For Starlette and FastAPI, which run sync endpoints, dependencies and sync
response iterators through ``anyio.to_thread.run_sync``, one line at start-up::

    anyio.to_thread.run_sync = hardstop.anyio.run_sync

(calls that ask for ``abandon_on_cancel=True`` get anyio's own behaviour).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

try:
    import anyio
    import anyio.to_thread
except ImportError as error:
    raise ImportError(
        "hardstop.anyio needs anyio, which is not installed: install it with pip install 'hardstop-threads[anyio]'."
    ) from error

from hardstop.futures import Future, _Task

if TYPE_CHECKING:  # typing has them from 3.11 only
    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

T = TypeVar("T")

STOP_TIMEOUT = 5.0  # seconds a cancelled call waits for the thread to leave func

_anyio_run_sync = anyio.to_thread.run_sync  # anyio's own, kept before anyone replaces it


async def run_sync(
    func: Callable[[Unpack[Ts]], T],
    *args: Unpack[Ts],
    abandon_on_cancel: bool = False,
    cancellable: bool | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> T:
    """Run ``func(*args)`` in a worker thread, as ``anyio.to_thread.run_sync``;
    cancelling the call stops ``func`` in its thread."""
    if abandon_on_cancel or cancellable is not None:  # asked for anyio's own behaviour
        return await _anyio_run_sync(
            func, *args, abandon_on_cancel=abandon_on_cancel, cancellable=cancellable, limiter=limiter
        )
    future: Future[T] = Future()
    task = _Task(future, func, args, {}, math.inf)
    # Whether the thread got to func, settled under a lock against the cancellation:
    # a thread still on its way must not start func, one inside is waited for.
    handshake = threading.Lock()
    entered = cancelled = False
    left = threading.Event()

    def run_in_thread() -> None:
        nonlocal entered
        with handshake:
            if cancelled:
                return
            entered = True
        try:
            task.run()
        finally:
            left.set()

    unlimited = anyio.CapacityLimiter(math.inf)  # the caller's limiter is held below, until the thread left func
    async with limiter or anyio.to_thread.current_default_thread_limiter():
        try:
            await _anyio_run_sync(run_in_thread, abandon_on_cancel=True, limiter=unlimited)
        except anyio.get_cancelled_exc_class():
            with handshake:
                cancelled = True
                must_wait = entered
            future.cancel()  # stops func if it runs
            if must_wait:
                with anyio.CancelScope(shield=True):
                    await _anyio_run_sync(left.wait, STOP_TIMEOUT, limiter=unlimited)
                if not left.is_set():
                    warnings.warn(
                        f"hardstop.anyio.run_sync(): the thread is still running {task.where()} {STOP_TIMEOUT} s "
                        "after the call was cancelled (blocked where it cannot be woken); it stops when that call "
                        "returns",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            raise
    return future.result()


__all__ = ["STOP_TIMEOUT", "run_sync"]
