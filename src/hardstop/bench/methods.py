"""The ways to stop a thread, each written the way the well-known answers write it.

A method is instantiated per trial. The measuring code (``measure.py``) runs
the work as ``method.guard(body)`` in the thread ``method.thread(target)``
makes (or in the main thread), where ``body`` loops over the workload's units
with ``method.loop(step)``; it then calls ``method.request(thread)`` (not for
timeout-style methods, whose limit, ``limit`` seconds after the guard was
entered, is the request) and, if the thread did not stop within the bound,
``method.withdraw(thread, token)``, which takes back whatever is still armed so
that nothing lands once the work is released. The peers from PyPI are in
``peers.py``.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import hardstop

Target = Callable[[], None]
Step = Callable[[], bool]


class Method:
    key = "plain"
    label = "plain thread (reference)"
    threads: tuple[str, ...] = ("worker", "main")  # where the work can run: a worker thread, the main thread
    not_main = ""  # why not in the main thread, when it cannot
    where = "thread"  # or "daemon", "process": cells run in child processes (children.py)
    timeout_style = False  # the stop is a time limit set by the working thread itself
    request_waits = False  # the request call waits for the thread to end (its time is no request cost)
    module = ""  # a peer's module, imported by peers.load()
    distribution = ""  # and its name on PyPI

    def __init__(self, limit: float, bound: float) -> None:
        self.limit = limit  # seconds of a timeout-style method's limit
        self.bound = bound  # seconds a stop is given

    def thread(self, target: Target) -> threading.Thread:
        return threading.Thread(target=target, daemon=True)

    def guard(self, body: Target) -> None:
        body()

    def loop(self, step: Step) -> None:
        while step():
            pass

    def request(self, thread: threading.Thread) -> object:
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return ""


# --------------------------------------------------------------------------- 1, 2: polling

STOP = False  # 1. the global stop flag


class Flag(Method):
    key = "flag"
    label = "global stop flag, polled"

    def __init__(self, limit: float, bound: float) -> None:
        super().__init__(limit, bound)
        global STOP
        STOP = False

    def loop(self, step: Step) -> None:
        while not STOP:
            if not step():
                return

    def request(self, thread: threading.Thread) -> object:
        global STOP
        STOP = True
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return "the flag is seen only once the wait returns"


class EventPoll(Method):
    key = "event"
    label = "threading.Event, polled"

    def __init__(self, limit: float, bound: float) -> None:
        super().__init__(limit, bound)
        self.stop_event = threading.Event()

    def loop(self, step: Step) -> None:
        while not self.stop_event.is_set():
            if not step():
                return

    def request(self, thread: threading.Thread) -> object:
        self.stop_event.set()
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return "the event is seen only once the wait returns"


# --------------------------------------------------------------------------- 3: sys.settrace


class KThread(threading.Thread):
    """The recipe: a local trace function raises SystemExit once kill() was called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.killed = False

    def start(self) -> None:
        self.__run_backup = self.run
        self.run = self.__run  # type: ignore[method-assign]
        super().start()

    def __run(self) -> None:
        sys.settrace(self.globaltrace)
        self.__run_backup()
        self.run = self.__run_backup  # type: ignore[method-assign]

    def globaltrace(self, frame: FrameType, event: str, arg: object) -> Any:
        return self.localtrace if event == "call" else None

    def localtrace(self, frame: FrameType, event: str, arg: object) -> Any:
        if self.killed and event == "line":
            raise SystemExit()
        return self.localtrace

    def kill(self) -> None:
        self.killed = True


class Settrace(Method):
    key = "settrace"
    label = 'sys.settrace "KThread"'
    threads = ("worker",)
    not_main = "the recipe is a Thread subclass"

    def thread(self, target: Target) -> threading.Thread:
        return KThread(target=target, daemon=True)

    def request(self, thread: threading.Thread) -> object:
        assert isinstance(thread, KThread)
        thread.kill()
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return "no line runs while it waits in C"


# --------------------------------------------------------------------------- 4, 5: other processes


class Daemon(Method):
    key = "daemon"
    label = "daemon thread"
    threads = ("worker",)
    not_main = "only a thread started as a daemon is one"
    where = "daemon"


class Process(Method):
    key = "process"
    label = "multiprocessing + terminate()"
    threads = ("worker",)
    not_main = "the work runs in another process"
    where = "process"


# --------------------------------------------------------------------------- 6: the ctypes recipe

_set_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]  # a fresh function pointer, ours alone
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
_set_async_exc.restype = ctypes.c_int
_clear_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
_clear_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
_clear_async_exc.restype = ctypes.c_int


class _Reset(BaseException):
    pass


def _tick() -> None:
    pass


def clear_async_exc(ident: int) -> str:
    """Clear a thread's slot with NULL, what the recipe's users do to take an exception back.

    On 3.10-3.12 that leaves CPython's interpreter-wide "async exception pending"
    flag set, which slows every thread until one raises an async exception:
    this thread raises and catches one of its own to reset it, so later cells
    are not slowed.
    """
    _clear_async_exc(ident, None)
    if sys.version_info < (3, 13):
        try:
            _set_async_exc(threading.get_ident(), _Reset)
            _tick()  # raised at the call's check
            _tick()
        except _Reset:
            pass
    return "armed, not raised: slot cleared with NULL"


class CtypesRecipe(Method):
    key = "ctypes"
    label = "ctypes recipe, no argtypes"

    def request(self, thread: threading.Thread) -> object:
        return ctypes.pythonapi.PyThreadState_SetAsyncExc(thread.ident, ctypes.py_object(SystemExit))

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        if token == 0:
            return "PyThreadState_SetAsyncExc returned 0: the ident, passed as a C int, matched no thread"
        return clear_async_exc(thread.ident or 0)


class CtypesUlong(Method):
    key = "ctypes-ulong"
    label = "ctypes recipe, c_ulong"

    def request(self, thread: threading.Thread) -> object:
        return _set_async_exc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(SystemExit))

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return clear_async_exc(thread.ident or 0)


COMMON: list[type[Method]] = [Flag, EventPoll, Settrace, Daemon, Process, CtypesRecipe, CtypesUlong]


# --------------------------------------------------------------------------- 8: hardstop


def short(reason: str) -> str:
    """A reason of hardstop's without where the thread is (its file and line)."""
    return reason.split(" (")[0]


class Interrupt(Method):
    key = "hardstop.interrupt"
    label = "hardstop.interrupt"

    def request(self, thread: threading.Thread) -> object:
        return hardstop.interrupt(thread)

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        assert isinstance(token, hardstop.Receipt)
        wake = f" ({short(token.wake)})" if token.wake else ""
        return ("withdrawn: receipt.cancel()" if token.cancel() else "raised late") + wake


class Deadline(Method):
    key = "hardstop.deadline"
    label = "hardstop.deadline"
    timeout_style = True

    def guard(self, body: Target) -> None:
        with hardstop.deadline(self.limit) as self.scope:
            body()

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return "withdrawn: scope.cancel()" if self.scope.cancel() else "raised late"


class Kill(Method):
    key = "hardstop.kill"
    label = "hardstop.kill"
    threads = ("worker",)
    not_main = "kill() waits for the thread to end"
    request_waits = True

    def request(self, thread: threading.Thread) -> object:
        return hardstop.kill(thread, timeout=self.bound)

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        assert isinstance(token, hardstop.KillResult)
        withdrawn = bool(token.receipts) and token.receipts[-1].cancel()
        return ("withdrawn: result.receipts[-1].cancel()" if withdrawn else "raised late") + f" ({short(token.reason)})"


HARDSTOP: list[type[Method]] = [Interrupt, Deadline, Kill]
