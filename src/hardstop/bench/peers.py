"""7: the peers from PyPI (``pip install 'hardstop-threads[bench]'``), used as their documentation shows.

Each is optional: one that cannot be imported is reported with the reason, and
its cells say "not installed". All four arm the exception with the ctypes call
(``c_long`` idents, which fit on 64-bit Linux and macOS), so a thread blocked
in C is not stopped; none has a way to take the request back, so after the
bound the slot is cleared with NULL, as for the bare recipe.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import threading
import warnings
from types import ModuleType
from typing import Any

from hardstop.bench.methods import Method, Target, clear_async_exc

_loaded: dict[str, tuple[ModuleType | None, str]] = {}


def load(module: str) -> tuple[ModuleType | None, str]:
    """The peer's module, or None and why not."""
    if module not in _loaded:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # stopit: pkg_resources is deprecated
                _loaded[module] = importlib.import_module(module), ""
        except ModuleNotFoundError as error:
            _loaded[module] = None, f"not installed ({error}): pip install 'hardstop-threads[bench]'"
        except Exception as error:  # noqa: BLE001 - whatever breaks its import is reported, not fatal
            _loaded[module] = None, f"cannot be imported: {type(error).__name__}: {error}"
    return _loaded[module]


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module(method: Method) -> Any:
    module, why = load(method.module)
    assert module is not None, why
    return module


class Stopit(Method):
    key = "stopit"
    label = "stopit.ThreadingTimeout"
    module = distribution = "stopit"
    timeout_style = True

    def guard(self, body: Target) -> None:
        with _module(self).ThreadingTimeout(self.limit):  # swallows its TimeoutException
            body()

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return clear_async_exc(thread.ident or 0)


class FuncTimeout(Method):
    key = "func-timeout"
    label = "func_timeout.func_timeout"
    module, distribution = "func_timeout", "func-timeout"
    threads = ("worker",)
    not_main = "it runs the function in a thread of its own"
    timeout_style = True

    def guard(self, body: Target) -> None:
        func_timeout = _module(self)
        with contextlib.suppress(func_timeout.FunctionTimedOut):
            func_timeout.func_timeout(self.limit, body)

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return clear_async_exc(thread.ident or 0) + " (its helper raises again every 2 s)"


class KthreadPeer(Method):
    key = "kthread"
    label = "kthread.KThread"
    module = distribution = "kthread"
    threads = ("worker",)
    not_main = "a Thread subclass"

    def thread(self, target: Target) -> threading.Thread:
        thread: threading.Thread = _module(self).KThread(target=target, daemon=True)
        return thread

    def request(self, thread: threading.Thread) -> object:
        thread.kill()  # type: ignore[attr-defined]
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return clear_async_exc(thread.ident or 0)


class PyThreadKillerPeer(Method):
    key = "pythreadkiller"
    label = "PyThreadKiller"
    module, distribution = "PyThreadKiller", "pythreadkiller"
    threads = ("worker",)
    not_main = "a Thread subclass"

    def thread(self, target: Target) -> threading.Thread:
        thread: threading.Thread = _module(self).PyThreadKiller(target=target, daemon=True)
        return thread

    def request(self, thread: threading.Thread) -> object:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Thread killed successfully"
            thread.kill()  # type: ignore[attr-defined]
        return None

    def withdraw(self, thread: threading.Thread, token: object) -> str:
        return clear_async_exc(thread.ident or 0)


PEERS: list[type[Method]] = [Stopit, FuncTimeout, KthreadPeer, PyThreadKillerPeer]
