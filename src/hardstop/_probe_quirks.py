"""CPython's asynchronous-exception quirks, probed now where that is quick and safe.

Shown with hardstop's own calls: a loop's back-edge escaping a ``try`` in its
frame, a new thread's state carrying its parent's ident, the ``with`` entry
window of a C-level ``__enter__``, the carrier type in ``sys.exc_info()``. The
others need timing, many trials or a dying interpreter; they are reported from
the version, and said to be.
"""

from __future__ import annotations

import _thread
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import hardstop
from hardstop import _hardstop
from hardstop._interrupt import _carrier_for
from hardstop._probe_waits import BOUND, SETTLE

OLDEST = (3, 10)  # the oldest version hardstop supports


@dataclass
class QuirkResult:
    """Whether one of CPython's quirks applies to this interpreter, and how that is known."""

    key: str
    quirk: str
    versions: str  # where CPython has it, as documented
    applies: bool
    probed: bool  # False: known from the version alone
    evidence: str


class _Probe(BaseException):
    """Raised by the quirk probes in their own threads only."""


def _version_in(first: tuple[int, int] | None, last: tuple[int, int] | None) -> bool:
    here = sys.version_info[:2]
    return (first is None or here >= first) and (last is None or here <= last)


# Loop shapes as the body of a try in their own frame. Compiled from source, as
# written: the one-line `while True: pass` compiles to a different loop than its
# two-line form, and the bug depends on the loop's exact bytecode. From the
# measurements (docs/known-issues.md) the first escapes on 3.11 and 3.12, the last
# on 3.13 and 3.14.
_LOOP_SHAPES = {
    "while True: pass": "while True: pass",
    "while cond: pass": "while flag[0]: pass",
    "while True: if ...: break": "while True:\n{i}    if not flag[0]: break",
    "for ...: x += 1; if ...: break": "x = 0\n{i}for _ in iter(int, 1):\n{i}    x += 1\n{i}    if not flag[0]: break",
}
_TRY_AROUND = "def shape(flag):\n    try:\n        {loop}\n    except BaseException:\n        return 'caught'\n"
_LOOP_FIRST_LINE = 3


def _compile_shape(loop: str) -> Callable[[list[bool]], str]:
    namespace: dict[str, Any] = {}
    exec(compile(_TRY_AROUND.format(loop=loop.format(i=" " * 8)), "<hardstop probe>", "exec"), namespace)
    shape: Callable[[list[bool]], str] = namespace["shape"]
    return shape


def _landed_in_loop(traceback: TracebackType | None, shape: Callable[[list[bool]], str]) -> bool:
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return (
        traceback is not None
        and traceback.tb_frame.f_code is shape.__code__
        and traceback.tb_lineno >= _LOOP_FIRST_LINE
    )


def _run_shape(shape: Callable[[list[bool]], str]) -> str:
    """Run one shape: "caught", "escaped", or "inconclusive" (it landed outside the loop)."""
    flag = [True]
    outcome: list[str] = []
    started = threading.Event()

    def body() -> None:
        started.set()
        try:
            outcome.append(shape(flag))
        except _Probe as error:
            outcome.append("escaped" if _landed_in_loop(error.__traceback__, shape) else "inconclusive")

    thread = threading.Thread(target=body, name="hardstop-probe: loop shape", daemon=True)
    thread.start()
    started.wait(BOUND)
    time.sleep(SETTLE / 5)
    receipt = hardstop.interrupt(thread, _Probe())
    if not receipt.wait(BOUND) and receipt.cancel():
        hardstop.kill(thread, BOUND, _Probe())  # `while True: pass` ends only by an exception
    flag[0] = False
    thread.join(BOUND)
    return outcome[0] if outcome else "inconclusive"


def _back_edge_escape() -> tuple[bool, str]:
    escaped: list[str] = []
    caught: list[str] = []
    for name, loop in _LOOP_SHAPES.items():
        shape = _compile_shape(loop)
        for _ in range(3):  # again only when it landed before the loop was entered
            outcome = _run_shape(shape)
            if outcome != "inconclusive":
                break
        (escaped if outcome == "escaped" else caught).append(name)
    if escaped:
        shapes = ", ".join(f"`{name}`" for name in escaped)
        return True, f"probed: escaped the try around {shapes} ({len(escaped)} of {len(_LOOP_SHAPES)} shapes)"
    return False, f"probed: caught in all {len(_LOOP_SHAPES)} loop shapes tried"


def _thread_start_twin() -> tuple[bool, str]:
    me = threading.get_ident()
    tries = 50
    seen = 0
    for attempt in range(1, tries + 1):
        ran = _thread.allocate_lock()
        ran.acquire()
        # The call that Thread.start() makes: on 3.10/3.11 it pre-allocates the
        # child's thread state with this thread's ident, until the child runs.
        _thread.start_new_thread(ran.release, ())
        twin = _hardstop.thread_idents().count(me) > 1
        ran.acquire(True, BOUND)  # the child has its own ident from here on, and ends
        if twin:
            seen = attempt
            break
    if seen:
        return True, f"probed: a new thread's state carried its parent's ident (thread start {seen})"
    return False, f"probed: not seen in {tries} thread starts"


def _with_entry_window() -> tuple[bool, str]:
    me = threading.current_thread()
    ident = threading.get_ident()
    exc = _Probe()
    exited: list[bool] = []

    class ArmsOnEntry:
        # A C-level __enter__ (as a lock's) that arms an interrupt of this thread:
        # the exception is pending as __enter__ returns.
        __enter__ = staticmethod(functools.partial(_hardstop.arm, me, ident, exc, _carrier_for(_Probe)))

        def __exit__(self, *args: object) -> None:
            exited.append(True)

    # This measures CPython itself: hardstop calls a skipped __exit__ when it can read the
    # with statement's manager again (hardstop._with_entry), and a manager made by a call,
    # as here, it cannot; it logs that, which is silenced for the probe.
    log = logging.getLogger("hardstop")
    was_disabled, log.disabled = log.disabled, True
    try:
        try:
            with ArmsOnEntry():
                _some_bytecode()
        finally:
            _some_bytecode()  # it must not land outside the try either
    except _Probe:
        pass
    finally:
        log.disabled = was_disabled
    if exited:
        return False, "probed: __exit__ ran for an exception pending as a C-level __enter__ returned"
    return True, "probed: __exit__ was skipped for an exception pending as a C-level __enter__ returned"


def _some_bytecode() -> None:
    for _ in (0, 1, 2):
        pass


def _exc_info_carrier() -> tuple[bool, str]:
    seen: list[type[BaseException] | None] = []
    try:
        hardstop.interrupt(threading.current_thread(), _Probe())
        _some_bytecode()
    except _Probe:
        seen.append(sys.exc_info()[0])
    if not seen:
        return False, "probed: inconclusive, the exception was not raised in the probe"
    if seen[0] is _Probe:
        return False, "probed: sys.exc_info()[0] was the real type"
    return True, f"probed: sys.exc_info()[0] was {seen[0]!r}, a subclass of the real type"


def _version_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class Quirk:
    key: str
    quirk: str
    first: tuple[int, int] | None  # the first and last versions with it (None: open-ended)
    last: tuple[int, int] | None
    probe: Callable[[], tuple[bool, str]] | None = None
    known_from: str = "from the version"

    @property
    def versions(self) -> str:
        """Where CPython has it, within the versions hardstop supports (3.10 on)."""
        first = _version_text(self.first or OLDEST)
        if self.last is None:
            return "all" if self.first is None else f"{first}+"
        last = _version_text(self.last)
        return first if first == last else f"{first}-{last}"


QUIRKS = [
    Quirk(
        "back_edge_escape",
        "an exception raised at a loop's back-edge can escape a `try`/`with` in the loop's own frame",
        (3, 11),
        (3, 14),
        _back_edge_escape,
    ),
    Quirk(
        "thread_start_twin",
        "`Thread.start()` gives the child's thread state its parent's ident until the child runs",
        None,
        (3, 11),
        _thread_start_twin,
    ),
    Quirk(
        "with_entry_window",
        "an exception pending as a C-level `__enter__` returns (`with lock:`) skips `__exit__`",
        (3, 14),
        (3, 14),
        _with_entry_window,
    ),
    Quirk(
        "exc_info_carrier",
        "`sys.exc_info()[0]` in a handler is hardstop's carrier, a subclass of the real type",
        None,
        (3, 10),
        _exc_info_carrier,
    ),
    Quirk(
        "unraisable_carrier",
        "the `exc_type` that `sys.unraisablehook` gets is hardstop's carrier, a subclass of the real type",
        None,
        (3, 11),
    ),
    Quirk(
        "lazy_exception",
        "the exception object is created when a handler first sees it; C code that discards it first loses it",
        None,
        (3, 11),
    ),
    Quirk(
        "shared_pending_flag",
        "one interpreter-wide 'async exception pending' flag: clearing a slot leaves every thread slower",
        None,
        (3, 12),
        known_from="from the version (a timing; see benchmarks/clear_slowdown.py)",
    ),
    Quirk(
        "daemon_threads_at_exit",
        "daemon threads never run Python again once finalization starts; arming them still succeeds",
        (3, 14),
        (3, 14),
    ),
    Quirk(
        "signal_ends_worker_syscalls",
        "a system call interrupted by a signal raises the pending exception, in any thread (gh-144748)",
        (3, 15),
        None,
        known_from="from the version (its effect: the worker waits above)",
    ),
    Quirk(
        "acquire_try_gap",
        "`lock.acquire(); try:` leaves the lock held when an exception lands between the two",
        None,
        None,
    ),
    Quirk(
        "finalizer_swallows",
        "an exception raised in `__del__`, a weakref or GC callback goes to `sys.unraisablehook`: lost",
        None,
        None,
    ),
]


def probe_quirk(quirk: Quirk) -> QuirkResult:
    if quirk.probe is None:
        return QuirkResult(
            quirk.key, quirk.quirk, quirk.versions, _version_in(quirk.first, quirk.last), False, quirk.known_from
        )
    applies, evidence = quirk.probe()
    return QuirkResult(quirk.key, quirk.quirk, quirk.versions, applies, True, evidence)
