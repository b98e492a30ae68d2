"""Shared helpers: threads that spin or block in known ways, with Event handshakes.

Loops live in called functions (``spin``), never in the frame whose ``try``
must catch the interrupt: on 3.11-3.14 an exception raised at a loop's back-edge
can escape a handler in the same frame (a CPython bug, see docs/known-issues).
"""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hardstop import _hardstop

pytest_plugins = ["pytester"]  # tests of hardstop's own pytest plugin

# A free-threaded build whose GIL is on here (an extension that does not declare
# free-threading support turned it back on, with a RuntimeWarning): the tests'
# subprocesses import the same modules, so they run with the GIL on from the
# start, as this process does, and that warning does not reach their output.
_GIL_ON = getattr(sys, "_is_gil_enabled", lambda: True)()
if _GIL_ON and sysconfig.get_config_var("Py_GIL_DISABLED") and "PYTHON_GIL" not in os.environ:
    os.environ["PYTHON_GIL"] = "1"

WAIT = 10.0  # generous bound for anything that should happen "at once"
# The receipt's reason when CPython swallowed the exception in a finalizer.
SWALLOWED_REASON = (
    "raised inside a finalizer (__del__, a weakref or GC callback), where CPython swallows exceptions: "
    "it went to sys.unraisablehook"
)
# The reason when C code discarded it before it was created (3.10/3.11).
DISCARDED_REASON = (
    "raised, then discarded by C code before any handler saw it, or cleared by another caller of "
    "PyThreadState_SetAsyncExc (CPython 3.10/3.11 cannot tell these apart)"
)
HERE = Path(__file__).parent


def _end_the_session(signum: int, frame: object) -> None:
    pytest.exit(f"stopped by signal {signum}", returncode=128 + signum)


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI time limit, `kill PID`) ends the run as Ctrl-C does, so that fixtures still
    # stop the servers and workers they started, by their pids. Its default action ends the
    # process at once, skipping them: a module's `python -m waitress` outlived the run so.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _end_the_session)


def spin(stop: threading.Event, limit: float = WAIT) -> int:
    """Run pure-Python bytecode until ``stop`` is set (or ``limit`` seconds pass)."""
    end = time.monotonic() + limit
    n = 0
    while not stop.is_set() and time.monotonic() < end:
        n += 1
    return n


class Gate:
    """Blocks threads in ``Lock.acquire``, a wait hardstop cannot end in a worker
    on any version (from 3.15 a signal ends sleeps and I/O there, not lock waits),
    until opened.

    Each waiter blocks on a lock of its own, so that an interrupt landing right
    after the wait leaves nothing shared held (as one acquire/release pair would).
    """

    def __init__(self) -> None:
        self._waiters: list[Any] = []
        self._opened = False
        _open_gates.append(self)

    def wait(self) -> None:
        mine = _thread.allocate_lock()
        mine.acquire()
        self._waiters.append(mine)
        if not self._opened:
            mine.acquire(True, WAIT)

    def until_blocked(self, thread: threading.Thread) -> None:
        """Until ``thread`` is blocked in this gate's acquire. (With the GIL off a
        started thread runs on while the test does: it may not be there yet.)"""
        end = time.monotonic() + WAIT
        while not self._holds(thread) and time.monotonic() < end:
            time.sleep(0.001)
        assert self._holds(thread), f"{thread!r} is not blocked in the gate"

    @staticmethod
    def _holds(thread: threading.Thread) -> bool:
        frame = _hardstop.current_frame(thread.ident or 0)
        return frame is not None and frame.f_code is _GATE_WAIT and frame.f_lineno == _GATE_BLOCKS_AT

    def open(self) -> None:
        self._opened = True
        for lock in list(self._waiters):
            if lock.locked():
                lock.release()

    def close(self) -> None:
        self.open()


_open_gates: list[Gate] = []
_GATE_WAIT = Gate.wait.__code__
_GATE_BLOCKS_AT = max(line for _, _, line in _GATE_WAIT.co_lines() if line is not None)  # its last line


@pytest.fixture(autouse=True)
def _close_gates():
    yield
    while _open_gates:
        _open_gates.pop().close()


class Target:
    """A thread that runs ``body`` repeatedly, recording every exception it raises.

    ``wanted`` is how many exceptions to collect before the thread ends on its
    own; ``stop`` ends it early.
    """

    def __init__(self, body=None, wanted: int = 1, name: str = "target") -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.caught: list[BaseException] = []
        self.finished_normally = False
        self._body = body or (lambda: spin(self.stop))
        self._wanted = wanted
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        self.ready.set()
        while not self._done():
            try:
                self._rounds()
            except BaseException as error:  # noqa: BLE001 - landed at the loop's own check, between rounds
                self.caught.append(error)
        self.finished_normally = True

    def _rounds(self) -> None:
        # A loop in a function of its own: a request armed as a handler below ends
        # may land at the loop's own check, outside its try (caught by _run's).
        while not self._done():
            try:
                self._body()
            except BaseException as error:  # noqa: BLE001 - recording is the point
                self.caught.append(error)

    def _done(self) -> bool:
        return len(self.caught) >= self._wanted or self.stop.is_set()

    def __enter__(self) -> Target:
        self.thread.start()
        assert self.ready.wait(WAIT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the target thread did not end"


def assert_nothing_pending(ident: int) -> None:
    """Nothing of hardstop's and nothing in CPython's slot is waiting for ``ident``."""
    assert _hardstop.pending_count(ident) == 0
    assert _hardstop.slot_is_empty(ident)


def assert_runs_on_untouched(target: Target, seconds: float = 0.3) -> None:
    """Let the target run Python code for a while: nothing may land in it."""
    before = len(target.caught)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    assert target.thread.is_alive()
    assert target.caught[before:] == []


@pytest.fixture(scope="session")
def native(tmp_path_factory):
    """Build the test-only extensions (a C consumer of hardstop.h, with twin
    thread states, and a Cython consumer of hardstop.pxd) against the installed
    package, in a subprocess, and import them."""
    out = tmp_path_factory.mktemp("native")
    sources = out / "src"
    shutil.copytree(HERE / "native", sources)  # Cython writes its .c beside the .pyx: not in the tree
    result = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(out), "--build-temp", str(out / "tmp")],
        cwd=sources,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        import hardstop_cyconsumer
        import hardstop_testext
    finally:
        sys.path.remove(str(out))
    return hardstop_testext, hardstop_cyconsumer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis server (Debian's ``redis-server``) on a free loopback port, with no
    persistence, for the task-queue tests; stopped by its pid at the end of the session."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (.ci/run installs it)")
    folder = tmp_path_factory.mktemp("redis")
    for _attempt in range(5):  # another process may take the port between the probe and the bind
        port = free_port()
        process = subprocess.Popen(
            [
                server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if _redis_answers(port, process):
            break
        process.kill()
        process.wait(WAIT)
    else:
        pytest.fail("redis-server did not start on a free port in 5 attempts")
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """Stop a server or worker the tests started, by its own pid: asked first (SIGTERM, a warm
    shutdown for Celery), killed if it has not exited within WAIT."""
    process.terminate()
    try:
        process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(WAIT)


def _redis_answers(port: int, process: subprocess.Popen) -> bool:
    end = time.monotonic() + WAIT
    while time.monotonic() < end and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
