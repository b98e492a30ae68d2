"""What this interpreter lets hardstop do, measured now: the probes behind ``python -m hardstop``.

**Waits.** Each probe puts a thread in one wait (a worker thread, then the main
thread), interrupts it from another thread with ``hardstop.interrupt()``, and
gives it ``BOUND`` seconds to raise. A wait counts as stopped only if the
exception was raised inside the wait, within the bound; the thread said when it
entered the wait, and the request is sent only after that and a short settling
pause. A request that was not raised in time is withdrawn (``receipt.cancel()``)
and the thread released (event set, byte written, lock released, child killed),
then joined: nothing is left armed or running. The worker probes run side by
side, so that the waits nothing ends cost one bound in all, not one each.

**Quirks.** CPython's asynchronous-exception quirks that can be shown quickly
and safely are shown, with hardstop's own calls: a loop's back-edge escaping a
``try`` in its frame, a new thread's state carrying its parent's ident, the
``with`` entry window of a C-level ``__enter__``, the carrier type in
``sys.exc_info()``. The others need timing, many trials or a dying interpreter;
they are reported from the version, and said to be.
"""

from __future__ import annotations

import _thread
import functools
import os
import platform
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

import hardstop
from hardstop import _hardstop
from hardstop._interrupt import _carrier_for

BOUND = 1.0  # seconds a thread is given to raise once interrupted
SETTLE = 0.05  # pause between a thread saying it enters a wait and the request
# Waits that nothing but the interrupt can end early (sleeps) last this long, so
# that one not stopped ends by itself soon after its request was withdrawn.
UNRELEASABLE = BOUND + SETTLE + 0.5
_BRIEFLY = 0.05  # waited for each stop before the next request is made
BACKSTOP = BOUND * 3  # the timeout of every other wait: released long before

OLDEST = (3, 10)  # the oldest version hardstop supports
WORKER = "worker"
MAIN = "main"

# A probe's outcome.
STOPPED = "stopped"  # raised inside the wait, within the bound
NOT_STOPPED = "not stopped"  # still waiting after the bound: withdrawn, then released
LATE = "stopped late"  # raised after the bound, as it was being withdrawn
RETURNED_FIRST = "returned first"  # the wait ended by itself before the exception was raised
NOT_PROBED = "not probed"  # see the note


# ---------------------------------------------------------------------------- the waits


@dataclass
class _Setup:
    """One wait, ready to run: ``wait()`` blocks, ``release()`` ends it from outside."""

    wait: Callable[[], object]
    release: Callable[[], None]
    close: Callable[[], None] = lambda: None


def _pure_python_loop() -> _Setup:
    stop = [False]

    def spin() -> None:
        end = time.monotonic() + BACKSTOP
        while not stop[0] and time.monotonic() < end:
            pass

    return _Setup(spin, lambda: stop.__setitem__(0, True))


def _event_wait() -> _Setup:
    event = threading.Event()
    return _Setup(lambda: event.wait(BACKSTOP), event.set)


def _condition_wait() -> _Setup:
    condition = threading.Condition()

    def wait() -> None:
        with condition:
            condition.wait(BACKSTOP)

    def release() -> None:
        with condition:
            condition.notify_all()

    return _Setup(wait, release)


def _queue_get() -> _Setup:
    items: queue.Queue[None] = queue.Queue()
    return _Setup(lambda: items.get(timeout=BACKSTOP), lambda: items.put(None))


def _hardstop_sleep() -> _Setup:
    return _Setup(lambda: hardstop.sleep(UNRELEASABLE), lambda: None)


def _time_sleep() -> _Setup:
    return _Setup(lambda: time.sleep(UNRELEASABLE), lambda: None)


def _lock_acquire() -> _Setup:
    lock = threading.Lock()
    lock.acquire()

    def wait() -> None:
        if lock.acquire(True, BACKSTOP):
            lock.release()

    def release() -> None:
        if lock.locked():
            lock.release()

    return _Setup(wait, release)


def _socket_pair(wait: Callable[[socket.socket], object]) -> _Setup:
    reader, writer = socket.socketpair()
    reader.settimeout(BACKSTOP)

    def release() -> None:
        writer.send(b"x")

    def close() -> None:
        reader.close()
        writer.close()

    return _Setup(lambda: wait(reader), release, close)


def _select_select() -> _Setup:
    return _socket_pair(lambda reader: select.select([reader], [], [], BACKSTOP))


def _socket_recv() -> _Setup:
    return _socket_pair(lambda reader: reader.recv(1))


def _pipe_read() -> _Setup:
    reader, writer = os.pipe()

    def release() -> None:
        os.write(writer, b"x")

    def close() -> None:
        os.close(reader)
        os.close(writer)

    return _Setup(lambda: os.read(reader, 1), release, close)


def _subprocess_wait() -> _Setup:
    # Popen.wait() with a timeout polls in Python; without one it blocks in waitpid.
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", f"import time; time.sleep({BACKSTOP * 2})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def close() -> None:
        child.kill()
        child.wait()

    return _Setup(child.wait, child.kill, close)


@dataclass(frozen=True)
class Wait:
    """A kind of wait the probes put a thread in."""

    label: str
    # "python": bytecode; "hardstop": a wait hardstop ends itself (Condition, its
    # own sleep); "syscall": a system call that retries on EINTR; "lock": a lock
    # wait in C. The main thread's syscall and lock waits are ended by the wake
    # signal only.
    kind: str
    make: Callable[[], _Setup]


WAITS = [
    Wait("pure-Python loop", "python", _pure_python_loop),
    Wait("threading.Event.wait()", "hardstop", _event_wait),
    Wait("threading.Condition.wait()", "hardstop", _condition_wait),
    Wait("queue.Queue.get()", "hardstop", _queue_get),
    Wait("hardstop.sleep()", "hardstop", _hardstop_sleep),
    Wait("time.sleep()", "syscall", _time_sleep),
    Wait("select.select()", "syscall", _select_select),
    Wait("socket.recv()", "syscall", _socket_recv),
    Wait("os.read() on a pipe", "syscall", _pipe_read),
    Wait("subprocess.Popen.wait()", "syscall", _subprocess_wait),
    Wait("threading.Lock.acquire()", "lock", _lock_acquire),
]


@dataclass
class WaitResult:
    """What one wait probe found."""

    wait: str
    thread: str  # "worker" or "main"
    outcome: str  # STOPPED, NOT_STOPPED, LATE, RETURNED_FIRST or NOT_PROBED
    stopped: bool  # raised inside the wait within the bound: the only "yes"
    latency_ms: float | None  # from the interrupt() call to the exception caught there
    note: str  # why, for anything but a plain stop


@dataclass
class _Record:
    """Written by the thread in the wait."""

    entered: float | None = None
    raised_at: float | None = None  # when the exception was caught around the wait
    returned_at: float | None = None  # when the wait returned without it
    error: str | None = None


def _run_wait(setup: _Setup, record: _Record) -> None:
    """The body of a probed thread (or of the main thread, for its own probes)."""
    try:
        try:
            record.entered = time.perf_counter()
            setup.wait()
        except hardstop.Interrupted:
            record.raised_at = time.perf_counter()
            return
        except Exception as error:  # noqa: BLE001 - a wait's own timeout or error: it returned
            record.error = repr(error)
        record.returned_at = time.perf_counter()
    except hardstop.Interrupted:
        pass  # landed after the wait had returned: not a stop of the wait


@dataclass
class _Request:
    """The probe's side: what it sent, and what became of it."""

    sent: float = 0.0
    released: float | None = None  # when the probe released the wait, after withdrawing its request
    delivered: bool = False
    withdrawn: bool = False
    not_sent: str = ""


def _conclude(wait: Wait, thread: str, record: _Record, request: _Request) -> WaitResult:
    if request.not_sent:
        return WaitResult(wait.label, thread, NOT_PROBED, False, None, request.not_sent)
    if record.raised_at is not None and request.delivered:
        latency = round((record.raised_at - request.sent) * 1e3, 3)
        return WaitResult(wait.label, thread, STOPPED, True, latency, "")
    if record.raised_at is not None:
        note = f"raised after {BOUND:g} s, as its request was being withdrawn"
        return WaitResult(wait.label, thread, LATE, False, None, note)
    if record.returned_at is not None and (request.released is None or record.returned_at < request.released):
        note = "the wait ended by itself before the exception was raised"
        if record.error:
            note += f" ({record.error})"
        return WaitResult(wait.label, thread, RETURNED_FIRST, False, None, note)
    note = f"still waiting after {BOUND:g} s: its request was withdrawn"
    if thread == WORKER and wait.kind in ("syscall", "lock"):
        note += "; a worker blocked in C raises only when the call returns"
    return WaitResult(wait.label, thread, NOT_STOPPED, False, None, note)


def _wait_for(condition: Callable[[], bool], limit: float) -> bool:
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= end:
            return False
        time.sleep(0.001)
    return True


def _interrupt(thread: threading.Thread, request: _Request) -> hardstop.Receipt:
    request.sent = time.perf_counter()
    return hardstop.interrupt(thread)


def _settle_results(receipts: list[tuple[hardstop.Receipt, _Request]]) -> None:
    """Give each request the bound to be raised; withdraw those that were not."""
    end = time.monotonic() + BOUND
    for receipt, request in receipts:
        request.delivered = receipt.wait(max(0.0, end - time.monotonic()))
    for receipt, request in receipts:
        if not request.delivered:
            request.withdrawn = receipt.cancel()


def _interrupt_each(targets: list[tuple[threading.Thread, _Request]]) -> list[tuple[hardstop.Receipt, _Request]]:
    """Interrupt the targets one by one, waiting briefly for each: a thread woken
    while the next request is being made would wait for the GIL, and its time to
    stop would be the requests' time, not its own."""
    receipts = []
    for thread, request in targets:
        receipt = _interrupt(thread, request)
        receipt.wait(_BRIEFLY)
        receipts.append((receipt, request))
    return receipts


def probe_workers(waits: list[Wait]) -> list[WaitResult]:
    """Probe ``waits`` in worker threads, side by side."""
    runs = []
    for wait in waits:
        setup, record, request = wait.make(), _Record(), _Request()
        thread = threading.Thread(
            target=_run_wait, args=(setup, record), name=f"hardstop-probe: {wait.label}", daemon=True
        )
        runs.append((wait, setup, record, request, thread))
    try:
        for _, _, _, _, thread in runs:
            thread.start()
        _wait_for(lambda: all(record.entered is not None for _, _, record, _, _ in runs), BOUND)
        time.sleep(SETTLE)  # from "entering" to inside the wait
        targets = []
        for _, _, record, request, thread in runs:
            if record.entered is None:
                request.not_sent = f"the thread did not reach the wait within {BOUND:g} s"
            else:
                targets.append((thread, request))
        _settle_results(_interrupt_each(targets))
    finally:
        for _, setup, _, request, _ in runs:
            request.released = time.perf_counter()
            setup.release()
        for _, setup, _, _, thread in runs:
            thread.join(UNRELEASABLE + BOUND)
            setup.close()
    return [_conclude(wait, WORKER, record, request) for wait, _, record, request, _ in runs]


def probe_main_thread(wait: Wait) -> WaitResult:
    """Probe ``wait`` in this thread, which must be the main thread, interrupted by a helper."""
    if threading.current_thread() is not threading.main_thread():
        return WaitResult(wait.label, MAIN, NOT_PROBED, False, None, "the probes ran outside the main thread")
    if wait.kind in ("syscall", "lock") and hardstop.wake_signal() is None:
        note = "no wake signal is installed, and only it ends the main thread's system calls and lock waits"
        return WaitResult(wait.label, MAIN, NOT_PROBED, False, None, note)
    setup, record, request = wait.make(), _Record(), _Request()
    main = threading.current_thread()

    def interrupter() -> None:
        try:
            if not _wait_for(lambda: record.entered is not None, BOUND):
                request.not_sent = f"the main thread did not reach the wait within {BOUND:g} s"
                return
            time.sleep(SETTLE)
            _settle_results([(_interrupt(main, request), request)])
        finally:
            request.released = time.perf_counter()
            setup.release()

    helper = threading.Thread(target=interrupter, name=f"hardstop-probe: interrupt main ({wait.label})", daemon=True)
    helper.start()
    try:
        _run_wait(setup, record)
    finally:
        helper.join(BOUND * 3)
        setup.close()
    return _conclude(wait, MAIN, record, request)


def probe_waits() -> list[WaitResult]:
    """Every wait in a worker thread, then in the main thread."""
    # The loop alone first: spinning, it would slow every other probe's request.
    loop, others = WAITS[0], WAITS[1:]
    results = probe_workers([loop]) + probe_workers(others)
    results += [probe_main_thread(wait) for wait in WAITS]
    return results


# ---------------------------------------------------------------------------- the quirks


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

    try:
        try:
            with ArmsOnEntry():
                _some_bytecode()
        finally:
            _some_bytecode()  # it must not land outside the try either
    except _Probe:
        pass
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


# ---------------------------------------------------------------------------- the report


@dataclass
class Report:
    hardstop: str
    python: str
    implementation: str
    platform: str
    extension: str
    wake_signal: str | None
    bound_seconds: float
    waits: list[WaitResult] = field(default_factory=list)
    quirks: list[QuirkResult] = field(default_factory=list)
    leftover_threads: list[str] = field(default_factory=list)  # probe threads still alive at the end

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _signal_name(signum: int | None) -> str | None:
    return None if signum is None else signal.Signals(signum).name


def run() -> Report:
    """Run every probe (a few seconds) and say what they found."""
    report = Report(
        hardstop=hardstop.__version__,
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=f"{platform.system()} {platform.machine()}",
        extension=str(_hardstop.__file__),
        wake_signal=_signal_name(hardstop.wake_signal()),
        bound_seconds=BOUND,
    )
    report.waits = probe_waits()
    report.quirks = [probe_quirk(quirk) for quirk in QUIRKS]
    report.leftover_threads = [t.name for t in threading.enumerate() if t.name.startswith("hardstop-probe")]
    return report
