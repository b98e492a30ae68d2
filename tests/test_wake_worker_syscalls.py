"""Worker threads in system calls: woken by the wake signal on 3.15+, reported not woken before."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import hardstop
from conftest import WAIT

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="no pthread_kill: POSIX only")

WOKEN = sys.version_info >= (3, 15)


class Blocked:
    """A worker blocked in one kind of system call, and how to let it go."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.outcome: list[str] = []
        self.inside = threading.Event()
        self._reader, self._writer = socket.socketpair()
        self._pipe = os.pipe()
        self._child: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._run)

    def _block(self) -> None:
        if self.kind == "time.sleep":
            time.sleep(1.5)
        elif self.kind == "select":
            import select

            select.select([self._reader], [], [], WAIT)
        elif self.kind == "socket.recv":
            self._reader.recv(1)
        elif self.kind == "os.read":
            os.read(self._pipe[0], 1)
        elif self.kind == "subprocess.wait":
            self._child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            self._child.wait()  # no timeout: one blocking waitpid (with one, it polls in Python)

    def _run(self) -> None:
        try:
            self.inside.set()
            self._block()
            self.outcome.append("returned")
        except hardstop.Interrupted:
            self.outcome.append("interrupted")

    def release(self) -> None:
        self._writer.send(b"x")
        os.write(self._pipe[1], b"x")
        if self._child is not None:
            self._child.kill()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if self._child is not None:
            self._child.wait(WAIT)
        for sock in (self._reader, self._writer):
            sock.close()
        for fd in self._pipe:
            os.close(fd)


@pytest.mark.parametrize("kind", ["time.sleep", "select", "socket.recv", "os.read", "subprocess.wait"])
def test_a_worker_in_a_system_call(kind: str) -> None:
    blocked = Blocked(kind)
    blocked.thread.start()
    assert blocked.inside.wait(WAIT)
    time.sleep(0.1)  # into the call
    receipt = hardstop.interrupt(blocked.thread)
    try:
        if WOKEN:
            assert receipt.wake.startswith(f"{signal.Signals(hardstop.wake_signal()).name} sent to the worker thread")
            assert receipt.wait(WAIT) is True
            blocked.thread.join(WAIT)
            assert blocked.outcome == ["interrupted"]
        else:
            assert receipt.wake.startswith("not woken: no wait hardstop can end was found in this worker thread")
            assert receipt.wait(0.3) is False  # still in the call
            assert receipt.cancel() is True
    finally:
        blocked.release()
    if not WOKEN:
        assert blocked.outcome == ["returned"]


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
def test_a_worker_in_lock_acquire_is_not_woken_and_says_so() -> None:
    lock = threading.Lock()
    lock.acquire()
    outcome: list[str] = []

    def body() -> None:
        try:
            if lock.acquire(timeout=1.0):
                lock.release()
            outcome.append("returned")
        except hardstop.Interrupted:
            outcome.append("interrupted")

    thread = threading.Thread(target=body)
    thread.start()
    time.sleep(0.1)
    receipt = hardstop.interrupt(thread)
    assert receipt.wake.endswith("a Lock.acquire goes on until it returns")
    assert receipt.wait(0.3) is False
    lock.release()
    thread.join(WAIT)
    assert outcome[-1] == "interrupted"  # raised once the acquire returned
    assert receipt.delivered
