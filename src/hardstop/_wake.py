"""Waking a blocked thread so that its armed interrupt is raised at once.

CPython raises a pending exception only when the target runs bytecode; a thread
blocked in C sleeps on. hardstop ends two kinds of waits, in any thread:

* **Whatever the thread said would end it.** ``with hardstop.unblocking(cb):``
  registers, for the calling thread and only inside the block, a function that
  ends its wait (``sock.shutdown``, ``event.set``, ``proc.kill``), as Ruby's
  "unblocking functions" do. After arming, the innermost one is called once,
  from the interrupting thread, under a per-block lock that the block's exit
  also takes, so it is never called once its block was left. An exception it
  raises goes to ``sys.unraisablehook`` (printed by default), never swallowed.
  ``hardstop.sleep()`` is a sleep built that way.
* **``threading.Condition.wait``**, and so ``Event.wait``, ``Queue.get/put``,
  ``Semaphore.acquire`` and ``Barrier.wait``. The waiter is a private lock of
  ``Condition.wait`` that can be released from outside. Holding the condition's
  lock (so that no notifier moves in between), hardstop arms the exception and
  then: if the waiter is still listed, removes it and releases it; if it is not
  (it was notified, and will now raise instead of acting on it), it hands the
  notification on with ``notify(1)``, as Java guarantees for ``Object.wait``.
  Arming first matters: released before arming, the waiter could return
  normally (a spurious ``True``). The condition's lock belongs to the
  application (``Queue.mutex``...), so the interrupter waits for it only
  briefly; if it stays busy, a helper thread finishes the wake once it gets it,
  and the exception is then armed before the lock is held (a notification that
  reaches the target in that window is still handed on if the target is still
  inside the wait). This wake is compiled (``ext/condition_wake.pxi``).

* **The main thread, in any wait that retries on EINTR** (POSIX): ``time.sleep``,
  ``Lock.acquire``, ``Thread.join``, ``select``, socket and pipe I/O,
  ``subprocess`` waits. After arming, hardstop sends the main thread a signal;
  CPython runs its Python handler there (PEP 475), the handler's first
  instruction raises the armed exception, and the wait ends with it. The signal
  is SIGURG by default (ignored by default, rarely used: Go's runtime picked it
  for the same job), installed when hardstop is imported in the main thread,
  chained to any handler already installed, and changed or turned off with
  ``hardstop.set_wake_signal()``.
* **On CPython 3.15+, a worker thread in a system call** that retries on
  EINTR (``time.sleep``, ``select``, socket and pipe I/O, ``subprocess``
  waits): the same signal, sent to that thread with ``pthread_kill``, ends the
  call, and CPython raises the pending exception there (gh-144748). It is sent
  only when the call in progress in the worker's innermost Python frame is one
  listed in ``hardstop._wake_calls`` (or cannot be read): a worker running
  Python, or in a lock wait (``Lock.acquire``, which no signal ends), is not
  signalled. Before 3.15 a signal only reaches the main thread's handlers.

Requests armed later by the pump (queued behind another) are woken the same way.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType

from hardstop import _join, _own_threads  # noqa: F401 - _join mends Thread.join on import
from hardstop._errors import non_negative_seconds
from hardstop._hardstop import (
    FrameView,
    RaiseArmedFirst,
    Receipt,
    arm_waking_condition,
    current_frame,
    end_armed_condition_wait,
    end_condition_wait,
    in_protected_code,
    is_armed,
    shield,
    shielded_exit,
    signal_may_end_call,
    write_unraisable,
)

# typing and signal (whose enums import enum) are slow to import: _signal is signal's
# C half, and the annotations are strings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import Any
else:
    import _signal

# What signal.Signals(number).name says: of two names for one number, the first in order.
_SIGNAL_NAMES = {
    number: name
    for name, number in sorted(vars(_signal).items(), reverse=True)
    if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(number, int)
}


_wake_signal: int | None = None  # the signal our handler is installed on, if any
_chained: object = None  # the handler that was installed before ours
# Receipts whose wake signal no run of our handler has used up yet. A request
# armed when the handler starts is raised at its first instruction, so its body
# never runs for it; the body runs for a signal of ours only when the request was
# raised elsewhere first, or withdrawn (a cancel, a deadline's block left), or on
# 3.15+ (gh-144748: the interrupted wait raises it before handlers run). Those
# runs are ours, not the chained handler's. Pending signals merge into one run,
# so a request raised as the handler started used up every signal sent before it.
_signalled: list[Receipt] = []
# 3.15+ also let a signal end a worker's system call with its pending exception.
# The handler is installed without SA_RESTART (signal.signal never sets it). A
# worker is signalled only in a call listed by _wake_calls (see signal_may_end_call).
_SIGNAL_WORKERS = sys.version_info >= (3, 15)
if _SIGNAL_WORKERS:
    from hardstop import _wake_calls

    _wake_calls.bind()
_THREADS: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined] # threading's ident -> Thread


class _Unblocker:
    __slots__ = ("active", "callback", "frame", "lock", "offset")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.lock = threading.Lock()
        self.active = True
        self.frame: FrameType | None = None  # of the with statement, while its block is open
        self.offset = -1  # and the instruction there that entered it


class _Stack:
    """One thread's open ``unblocking`` blocks, innermost last. It lives in a
    ``threading.local``, so it goes with its thread, never to the next thread
    that CPython gives the same ident."""

    __slots__ = ("__weakref__", "entries")

    def __init__(self) -> None:
        self.entries: list[_Unblocker] = []


_local = threading.local()
_stacks: weakref.WeakValueDictionary[int, _Stack] = weakref.WeakValueDictionary()  # ident -> that thread's


def _own_stack() -> _Stack:
    stack: _Stack | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = _Stack()
        _stacks[threading.get_ident()] = stack
    return stack


def _running(sought: set[int], frame: FrameType | None) -> set[int]:
    """Which of the frame ids ``sought`` are ``frame`` or its callers (for a
    FrameView, free-threaded builds: the frames it shows). The walk stops once
    all are found: a block's frame is near the top, and a deep stack (100 nested
    calls) made every wake walk and materialise all of it."""
    found: set[int] = set()
    while frame is not None and len(found) < len(sought):
        frame_id = frame.frame_id if isinstance(frame, FrameView) else id(frame)
        if frame_id in sought:
            found.add(frame_id)
        frame = frame.f_back
    return found


class unblocking:
    """``with hardstop.unblocking(callback):`` how an interrupt can end this thread's wait.

    An interrupt that lands while the block is being entered or left must not
    leave the entry behind (later interrupts would call its callback instead of
    waking the wait they find): both run inside a shield, and an entry whose
    block was left without ``__exit__`` (an exception at its very first
    instruction) is ignored once its frame is gone, and dropped when the same
    ``with`` statement is entered again. ``__exit__`` is compiled, so it has no
    first instruction to be interrupted at.
    """

    def __init__(self, callback: Callable[[], object]) -> None:
        if not callable(callback):
            raise TypeError(f"The unblocker must be callable, not {type(callback).__name__} {callback!r}.")
        self._entry = _Unblocker(callback)

    def __enter__(self) -> None:
        entry = self._entry
        try:
            with shield():
                stack = _own_stack()
                if stack.entries:
                    _drop_stale(stack, sys._getframe(1))
                entry.frame = sys._getframe(1)
                entry.offset = entry.frame.f_lasti
                stack.entries.append(entry)
        except BaseException:
            # A request held back meanwhile was raised as the shield ended: the block is not entered.
            _remove(entry)
            raise

    # Compiled: an interrupt at the first instruction of a Python __exit__ left the entry behind.
    __exit__ = shielded_exit

    def _leave(self) -> None:
        _remove(self._entry)  # first: no interrupter can find it from here on

    def __repr__(self) -> str:
        return f"hardstop.unblocking({self._entry.callback!r})"


def _remove(entry: _Unblocker) -> None:
    stack = _own_stack()
    if entry in stack.entries:
        stack.entries.remove(entry)
    with entry.lock:  # and one that already found it has finished with it
        entry.active = False
        entry.frame = None


def _drop_stale(stack: _Stack, caller: FrameType) -> None:
    """Drop the entries of blocks left without ``__exit__``: the same ``with``
    statement entered again, or a frame no longer running."""
    running = _running({id(entry.frame) for entry in stack.entries if entry.frame is not None}, caller)
    for entry in list(stack.entries):
        frame = entry.frame
        if frame is None or id(frame) not in running or (frame is caller and entry.offset == caller.f_lasti):
            stack.entries.remove(entry)
            entry.active = False
            entry.frame = None


def _innermost_unblocker(ident: int) -> _Unblocker | None:
    """The target's innermost open ``unblocking`` block, if any: one whose frame
    is on its stack now."""
    stack = _stacks.get(ident)
    if stack is None or not stack.entries:
        return None
    sought = {id(entry.frame) for entry in stack.entries if entry.active and entry.frame is not None}
    running = _running(sought, current_frame(ident))
    for entry in reversed(stack.entries):
        if entry.active and id(entry.frame) in running:
            return entry
    return None


def _call_unblocker(receipt: Receipt) -> bool:
    """Call the target's innermost unblocker if ``receipt`` is armed; True if called."""
    entry = _innermost_unblocker(receipt.ident)
    if entry is None:
        return False
    with entry.lock:
        if not entry.active or not is_armed(receipt):
            return False
        try:
            entry.callback()
            receipt.wake = f"unblocker {entry.callback!r} called"
        except Exception as error:  # noqa: BLE001 - reported, never swallowed
            receipt.wake = f"unblocker {entry.callback!r} called, and raised {error!r}"
            write_unraisable(error, f"in the hardstop unblocker {entry.callback!r}")
    return True


def _wake_condition_later(condition: Any, waiter: Any, receipt: Receipt) -> None:
    with condition:
        end_condition_wait(condition, waiter, receipt)


def wake_armed(receipt: Receipt) -> None:
    """End the wait of a target whose exception was armed without its lock held."""
    if _call_unblocker(receipt) or end_armed_condition_wait(receipt):
        return
    frame = current_frame(receipt.ident)
    if is_armed(receipt):
        _wake_without_condition(receipt, frame)


def _wake_condition_in_helper(condition: Any, waiter: Any, receipt: Receipt) -> None:
    receipt.wake = "Condition.wait: its lock is busy; a helper thread ends the wait once it gets it"
    _own_threads.start(
        _wake_condition_later,
        "hardstop-wake",
        "helper that ends a Condition wait for an interrupt",
        (condition, waiter, receipt),
    )


def _wake_without_condition(receipt: Receipt, frame: FrameType | None) -> None:
    """For an armed target in no Condition wait: signal it, or say why not."""
    if not _signal_thread(receipt):
        receipt.wake = _not_woken(receipt.ident, frame)


def _signal_thread(receipt: Receipt) -> bool:
    """Send the wake signal to the target: the main thread on any version, a
    worker on 3.15+ (where a system call interrupted by a signal raises the
    pending exception in the thread it ran in, gh-144748)."""
    main = receipt.ident == threading.main_thread().ident
    if (
        (main or (_SIGNAL_WORKERS and signal_may_end_call(receipt.ident)))
        and _wake_signal is not None
        and is_armed(receipt)
        and _signal.getsignal(_wake_signal) is _HANDLER
        and not _blocks_signal(receipt.ident, _wake_signal)
    ):
        _drop_used_up()
        _signalled.append(receipt)
        _signal.pthread_kill(receipt.ident, _wake_signal)
        name = _SIGNAL_NAMES[_wake_signal]
        receipt.wake = (
            f"{name} sent to the main thread"
            if main
            else f"{name} sent to the worker thread: on CPython 3.15+ this ends a time.sleep, select, socket, "
            "pipe or subprocess wait with the exception; a Lock.acquire goes on until it returns"
        )
        return True
    return False


def _blocks_signal(ident: int, signum: int) -> bool:
    """Whether thread ``ident`` blocks ``signum`` (``signal.pthread_sigmask``), where
    the mask can be read: Linux shows every thread's in /proc. Elsewhere False."""
    thread = _THREADS.get(ident)
    native_id = getattr(thread, "native_id", None)
    if native_id is None:
        return False
    try:
        with open(f"/proc/self/task/{native_id}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("SigBlk:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except (OSError, ValueError):
        pass
    return False


_NOT_WOKEN_TAIL = "; if it is blocked in C (time.sleep, Lock.acquire, I/O), it raises only when that call returns"
# 3.15+, a worker with the wake signal installed (the extension's text, too).
_NOT_SIGNAL_ENDED_TAIL = (
    "; it is in no call that hardstop knows the wake signal ends (time.sleep, select, socket, pipe or "
    "subprocess waits): if it is blocked in C (Lock.acquire, Thread.join, a C extension), it raises only "
    "when that call returns"
)


def _not_woken(ident: int, frame: FrameType | None) -> str:
    """Why nothing was done, and where the target stands."""
    main = ident == threading.main_thread().ident
    signum = wake_signal()
    tail = _NOT_WOKEN_TAIL
    if signum is not None and (main or _SIGNAL_WORKERS) and _blocks_signal(ident, signum):
        name = _SIGNAL_NAMES[signum]
        why = f"not woken: the thread blocks {name}, the wake signal, with signal.pthread_sigmask"
    elif main:
        why = "not woken: no wake signal is installed for the main thread"
    else:
        why = "not woken: no wait hardstop can end was found in this worker thread"
        if _SIGNAL_WORKERS and signum is not None:
            tail = _NOT_SIGNAL_ENDED_TAIL
    if frame is None:
        return why + " (it runs no Python code)" + tail
    code = frame.f_code
    return f"{why} (it is in {code.co_name}, {code.co_filename}:{frame.f_lineno}){tail}"


def _on_wake_signal(signum: int, frame: FrameType | None, raising: Receipt | None = None) -> None:
    """Called by _HANDLER, which then raises ``raising`` (taken from the slot)."""
    _drop_used_up()
    if _signalled:
        _signalled.clear()  # this run is the one our signals caused
        return
    if callable(_chained):
        _chained(signum, frame)


# What is installed for the wake signal (see RaiseArmedFirst in the extension).
_HANDLER = RaiseArmedFirst(_on_wake_signal)


def _drop_used_up() -> None:
    """Forget the signals used up by a request raised as the handler started.

    Other threads (the pump's, another interrupter's) append and drop meanwhile:
    it works on a copy and drops by identity, never by a position that may have
    moved (the handler then saw an IndexError, 3.15, CI)."""
    seen = list(_signalled)
    for index in range(len(seen) - 1, -1, -1):
        if _raised_by_handler(seen[index]):
            used_up = {id(receipt) for receipt in seen[: index + 1]}
            _signalled[:] = [receipt for receipt in _signalled if id(receipt) not in used_up]
            return


def _raised_by_handler(receipt: Receipt) -> bool:
    if receipt.status != "delivered":
        return False
    traceback = receipt.exception.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code is _on_wake_signal.__code__


_UNCATCHABLE = {getattr(_signal, name) for name in ("SIGKILL", "SIGSTOP") if hasattr(_signal, name)}


def set_wake_signal(signum: int | None) -> None:
    """Choose the signal that wakes the main thread (``None``: do not wake it).

    Call it from the main thread. The handler installed before hardstop's is
    restored, or chained to by the new one.
    """
    global _wake_signal, _chained
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"hardstop.set_wake_signal({signum!r}) must be called from the main thread: "
            "CPython only lets the main thread install signal handlers."
        )
    if signum is not None and (isinstance(signum, bool) or not isinstance(signum, int)):
        raise TypeError(
            f"hardstop.set_wake_signal() takes a signal number or None, not {type(signum).__name__} {signum!r}."
        )
    if signum is not None and (signum not in _signal.valid_signals() or signum in _UNCATCHABLE):
        raise ValueError(f"hardstop.set_wake_signal() takes a signal that can be caught, not {signum!r}.")
    if signum is not None and not hasattr(_signal, "pthread_kill"):
        raise RuntimeError(f"hardstop.set_wake_signal({signum!r}): this platform cannot signal a thread.")
    current = wake_signal()
    if signum is not None and signum == current:
        return
    previous = None
    if signum is not None:
        previous = _signal.signal(signum, _HANDLER)  # refuses a bad number, as _signal.signal does
    if current is not None:
        _signal.signal(current, _chained if _chained is not None else _signal.SIG_DFL)  # type: ignore[arg-type]
    _wake_signal, _chained = signum, previous


def wake_signal() -> int | None:
    """The signal that wakes the main thread, or None when it is not woken."""
    if _wake_signal is not None and _signal.getsignal(_wake_signal) is _HANDLER:
        return _wake_signal
    return None


def _install_default() -> None:
    if (
        hasattr(_signal, "pthread_kill")
        and hasattr(_signal, "SIGURG")
        and threading.current_thread() is threading.main_thread()
    ):
        set_wake_signal(_signal.SIGURG)


def arm_and_wake(ident: int, arm: Callable[[], Receipt]) -> Receipt:
    """Arm with ``arm()`` and end the target's wait, holding a condition's lock
    across both when the target waits on one."""
    if _innermost_unblocker(ident) is not None:
        receipt = arm()
        if is_armed(receipt):
            wake_armed(receipt)
        _note_queued(receipt)
        return receipt
    woken = arm_waking_condition(ident, arm)
    if woken is not None:
        return woken
    frame = current_frame(ident)
    receipt = arm()
    if is_armed(receipt):
        _wake_without_condition(receipt, frame)
    _note_queued(receipt)
    return receipt


def _note_queued(receipt: Receipt) -> None:
    if receipt.wake is not None or is_armed(receipt):
        return
    if receipt.status == "deferred":
        receipt.wake = "not woken: the thread is inside a hardstop.shield(); it raises this as it leaves"
    elif receipt.status == "pending" and in_protected_code(receipt.ident):
        receipt.wake = (
            "not yet: the thread is inside the standard library's own lock handling, where an exception would "
            "leave a lock held; it is armed (and woken) as soon as the thread is out"
        )
    elif receipt.status == "pending":
        receipt.wake = "not yet: queued behind an earlier request, and woken when it is armed"


def _after_fork_in_child() -> None:
    """Only the forking thread survives: forget the others' blocks and signals,
    and renew the locks of its own (an interrupter may have held one)."""
    mine = _stacks.get(threading.get_ident())
    _stacks.clear()
    if mine is not None:
        _stacks[threading.get_ident()] = mine
        for entry in mine.entries:
            entry.lock = threading.Lock()
    _signalled.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def sleep(seconds: float) -> None:
    """Sleep like ``time.sleep``, in any thread, but end at once when interrupted."""
    seconds = non_negative_seconds(
        seconds, "hardstop.sleep() takes a number of seconds", "hardstop.sleep() takes a non-negative number of seconds"
    )
    wake = _thread.allocate_lock()
    wake.acquire()

    def release() -> None:
        if wake.locked():
            wake.release()

    end = time.monotonic() + seconds
    with unblocking(release):
        while (remaining := end - time.monotonic()) > 0:
            # Released by an interrupter: the exception is raised right here. If that
            # request was withdrawn meanwhile, sleep on for what is left.
            wake.acquire(True, -1 if remaining > _thread.TIMEOUT_MAX else remaining)


_install_default()
