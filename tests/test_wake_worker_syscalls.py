"""Worker threads in system calls: woken by the wake signal on 3.15+, reported not woken before."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import hardstop
from conftest import WAIT
from hardstop import _hardstop

if sys.version_info >= (3, 15):
    from hardstop import _wake_calls

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


NOT_SIGNAL_ENDED_TAIL = (
    "; it is in no call that hardstop knows the wake signal ends (time.sleep, select, socket, pipe or "
    "subprocess waits): if it is blocked in C (Lock.acquire, Thread.join, a C extension), it raises only "
    "when that call returns"
)


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The idents hardstop sends the wake signal to (it still sends it)."""
    sent: list[int] = []
    send = hardstop._wake._signal.pthread_kill

    def counting(ident: int, signum: int) -> None:
        sent.append(ident)
        send(ident, signum)

    monkeypatch.setattr(hardstop._wake._signal, "pthread_kill", counting)
    return sent


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
def test_a_worker_in_lock_acquire_is_not_signalled_and_says_so(sends: list[int]) -> None:
    lock = threading.Lock()
    lock.acquire()
    outcome: list[str] = []
    inside = threading.Event()

    def body() -> None:
        try:
            inside.set()
            if lock.acquire(timeout=1.0):
                lock.release()
            outcome.append("returned")
        except hardstop.Interrupted:
            outcome.append("interrupted")

    thread = threading.Thread(target=body)
    thread.start()
    assert inside.wait(WAIT)
    time.sleep(0.1)  # into the call
    receipt = hardstop.interrupt(thread)
    assert receipt.wake.startswith(
        "not woken: no wait hardstop can end was found in this worker thread (it is in body, "
    )
    assert receipt.wake.endswith(NOT_SIGNAL_ENDED_TAIL)
    assert sends == []  # a signal ends no lock wait: none is sent
    assert receipt.wait(0.3) is False
    lock.release()
    thread.join(WAIT)
    assert outcome[-1] == "interrupted"  # raised once the acquire returned
    assert receipt.delivered


def spin_until(stop: list[bool], outcome: list[str]) -> None:
    try:
        spin(stop)
        outcome.append("returned")
    except hardstop.Interrupted:
        outcome.append("interrupted")


def spin(stop: list[bool]) -> None:
    while not stop[0]:  # no call: the stop is a plain flag
        pass


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
def test_a_worker_running_python_is_not_signalled(sends: list[int]) -> None:
    stop = [False]
    outcome: list[str] = []
    thread = threading.Thread(target=spin_until, args=(stop, outcome))
    thread.start()
    try:
        receipt = hardstop.interrupt(thread)
        assert receipt.wake.startswith("not woken: no wait hardstop can end was found in this worker thread")
        assert receipt.wait(WAIT)
    finally:
        stop[0] = True
        thread.join(WAIT)
    assert outcome == ["interrupted"]
    assert sends == []  # it ran Python: raised at its next check, with no signal


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
def test_the_call_is_found_whichever_way_it_was_made(sends: list[int]) -> None:
    """A function called from Python, as a bound method kept in a variable, and
    as a thread's target (CALL_FUNCTION_EX in Thread.run)."""
    reader, writer = socket.socketpair()
    recv = reader.recv
    ways: dict[str, Callable[[], object]] = {
        "method": lambda: reader.recv(1),  # the method descriptor on the stack
        "bound method": lambda: recv(1),  # a builtin method bound to the socket
        "function": lambda: select.select([reader], [], [], WAIT),
    }
    if hasattr(select, "epoll"):
        poller = select.epoll()
        poller.register(reader.fileno(), select.EPOLLIN)
        ways["keywords"] = lambda: poller.poll(timeout=WAIT)  # CALL_KW
    try:
        for way, call in ways.items():
            worker = Worker(call)
            worker.start()
            receipt = hardstop.interrupt(worker.thread)
            assert receipt.wait(WAIT), (way, receipt.wake)
            worker.thread.join(WAIT)
            assert worker.outcome == ["interrupted"], way
        sends.clear()
        thread = Catching(target=time.sleep, args=(WAIT,), daemon=True)  # CALL_FUNCTION_EX in Thread.run
        thread.start()
        assert in_call(thread, "sleep")
        receipt = hardstop.interrupt(thread)
        assert receipt.wait(WAIT), receipt.wake
        thread.join(WAIT)
        assert thread.outcome == ["interrupted"]
        assert sends == [thread.ident]
    finally:
        reader.close()
        writer.close()
        if hasattr(select, "epoll"):
            poller.close()


class Catching(threading.Thread):
    """A thread whose target is called by Thread.run itself, catching the interrupt."""

    outcome: list[str]

    def run(self) -> None:
        self.outcome = []
        try:
            super().run()
            self.outcome.append("returned")
        except hardstop.Interrupted:
            self.outcome.append("interrupted")


def in_call(thread: threading.Thread, name: str) -> bool:
    """Until ``thread``'s call in progress is to a function called ``name`` (and a
    moment more, for it to enter the system call); False after WAIT."""
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        found, callable_ = _hardstop._call_in_progress(thread.ident or 0)
        if found == "found" and getattr(callable_, "__name__", None) == name:
            time.sleep(0.05)
            return True
        time.sleep(0.005)
    return False


class Worker:
    """A thread making one call, recording whether it returned or was interrupted."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call
        self.outcome: list[str] = []
        self.inside = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.inside.set()
            self.call()
            self.outcome.append("returned")
        except hardstop.Interrupted:
            self.outcome.append("interrupted")
        except OSError as error:  # the release of a failed test (a closed descriptor)
            self.outcome.append(f"failed: {error!r}")

    def start(self) -> None:
        self.thread.start()
        assert self.inside.wait(WAIT)
        time.sleep(0.1)  # into the call


def listed_name(function: object) -> str:
    """``time.sleep``, ``posix.read``, ``socket.recv``: a listed function's owner and name."""
    owner = getattr(function, "__objclass__", None) or function.__self__  # type: ignore[attr-defined]
    return f"{owner.__name__}.{function.__name__}"  # type: ignore[attr-defined]


class Rig:
    """The descriptors, a child and a listener one listed call blocks on; ``close``
    ends any of those waits (writers see their reader closed, readers an EOF)."""

    def __init__(self) -> None:
        self.a, self.b = socket.socketpair()
        self.r, self.w = os.pipe()
        self.child: subprocess.Popen[bytes] | None = None
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.files: list[object] = []

    def full_socket(self) -> socket.socket:
        """``b``, with nothing more fitting in its buffer."""
        self.b.setblocking(False)
        try:
            while True:
                self.b.send(b"x" * 65536)
        except BlockingIOError:
            pass
        self.b.setblocking(True)
        return self.b

    def full_pipe(self) -> int:
        os.set_blocking(self.w, False)
        try:
            while True:
                os.write(self.w, b"x" * 65536)
        except BlockingIOError:
            pass
        os.set_blocking(self.w, True)
        return self.w

    def child_pid(self) -> int:
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        return self.child.pid

    def listening(self) -> socket.socket:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        return self.listener

    def unanswered(self) -> tuple[socket.socket, tuple[str, int]]:
        """A socket, and a loopback address whose full accept queue leaves its
        connection requests unanswered (Linux drops them), so connect() waits."""
        address = self.listening().getsockname()
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            self.sockets.append(filler)
        self.sockets.append(socket.socket())
        return self.sockets[-1], address

    def opened(self, fd: int, mode: str, **options: object) -> Any:
        file = open(fd, mode, closefd=False, **options)  # closed by close()
        self.files.append(file)
        return file

    def close(self, thread: threading.Thread) -> None:
        """End ``thread``'s wait if it is still in one, then close everything."""
        if thread.is_alive():
            self._release(thread)
        if thread.is_alive():
            return  # still blocked: its descriptors stay open rather than reach another file
        os.set_blocking(self.w, False)  # a buffered writer's last flush must not block
        for file in self.files:
            try:
                file.close()  # type: ignore[attr-defined]
            except OSError:
                pass  # its buffer had nowhere to go
        for sock in (self.a, self.b, *self.sockets):
            sock.close()
        for fd in (self.r, self.w):
            os.close(fd)
        if self.child is not None:
            self.child.kill()
            self.child.wait(WAIT)
        if self.listener is not None:
            self.listener.close()

    def _release(self, thread: threading.Thread) -> None:
        for sock in (self.a, self.b, self.listener, *self.sockets):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # ends a recv, send, select or accept on it
                except OSError:
                    pass
        if self.child is not None:
            self.child.kill()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        end = time.monotonic() + WAIT
        while thread.is_alive() and time.monotonic() < end:  # a pipe's reader gets a line, its writer room
            for step in (lambda: os.write(self.w, b"x\n"), lambda: os.read(self.r, 1 << 20)):
                try:
                    step()
                except BlockingIOError:
                    pass
            thread.join(0.01)


def _block_in(rig: Rig) -> dict[str, Callable[[], object]]:
    """How each listed call blocks, by listed_name()."""
    big = b"x" * (1 << 20)
    calls: dict[str, Callable[[], object]] = {
        "time.sleep": lambda: time.sleep(WAIT),
        "select.select": lambda: select.select([rig.a], [], [], WAIT),
        "posix.read": lambda: os.read(rig.r, 1),
        "posix.readv": lambda: os.readv(rig.r, [bytearray(1)]),
        "posix.write": lambda: os.write(rig.full_pipe(), big),
        "posix.writev": lambda: os.writev(rig.full_pipe(), [big]),
        "posix.waitpid": lambda: os.waitpid(rig.child_pid(), 0),
        "posix.wait4": lambda: os.wait4(rig.child_pid(), 0),
        "posix.waitid": lambda: os.waitid(os.P_PID, rig.child_pid(), os.WEXITED),
        "socket.recv": lambda: rig.a.recv(1),
        "socket.recv_into": lambda: rig.a.recv_into(bytearray(1)),
        "socket.recvfrom": lambda: rig.a.recvfrom(1),
        "socket.recvfrom_into": lambda: rig.a.recvfrom_into(bytearray(1)),
        "socket.recvmsg": lambda: rig.a.recvmsg(1),
        "socket.recvmsg_into": lambda: rig.a.recvmsg_into([bytearray(1)]),
        "socket.send": lambda: rig.full_socket().send(big),
        "socket.sendall": lambda: rig.full_socket().sendall(big),
        "socket.sendmsg": lambda: rig.full_socket().sendmsg([big]),
        "socket._accept": lambda: rig.listening().accept(),
        "socket.connect": lambda: connect(*rig.unanswered()),
        "socket.connect_ex": lambda: connect_ex(*rig.unanswered()),
        "FileIO.read": lambda: rig.opened(rig.r, "rb", buffering=0).read(1),
        "FileIO.readall": lambda: rig.opened(rig.r, "rb", buffering=0).readall(),
        "FileIO.readinto": lambda: rig.opened(rig.r, "rb", buffering=0).readinto(bytearray(1)),
        "FileIO.write": lambda: rig.opened(rig.full_pipe(), "wb", buffering=0).write(big),
        "BufferedReader.read": lambda: rig.opened(rig.r, "rb").read(1),
        "BufferedReader.read1": lambda: rig.opened(rig.r, "rb").read1(1),
        "BufferedReader.readinto": lambda: rig.opened(rig.r, "rb").readinto(bytearray(1)),
        "BufferedReader.readinto1": lambda: rig.opened(rig.r, "rb").readinto1(bytearray(1)),
        "BufferedReader.readline": lambda: rig.opened(rig.r, "rb").readline(),
        "BufferedReader.peek": lambda: rig.opened(rig.r, "rb").peek(1),
        "BufferedWriter.write": lambda: rig.opened(rig.full_pipe(), "wb").write(big),
        "BufferedWriter.flush": lambda: flushed(rig.opened(rig.full_pipe(), "wb", buffering=1 << 16)),
        "TextIOWrapper.read": lambda: rig.opened(rig.r, "r").read(1),
        "TextIOWrapper.readline": lambda: rig.opened(rig.r, "r").readline(),
    }
    if hasattr(select, "poll"):
        calls["poll.poll"] = lambda: registered(select.poll(), rig.a, select.POLLIN).poll()
    if hasattr(select, "epoll"):
        calls["epoll.poll"] = lambda: registered(select.epoll(), rig.a, select.EPOLLIN).poll()
    if hasattr(select, "devpoll"):  # Solaris (not run here)
        calls["devpoll.poll"] = lambda: registered(select.devpoll(), rig.a, select.POLLIN).poll()
    if hasattr(select, "kqueue"):  # BSD, macOS (not run here)
        calls["kqueue.control"] = lambda: select.kqueue().control(
            [select.kevent(rig.a.fileno(), select.KQ_FILTER_READ, select.KQ_EV_ADD)], 1, WAIT
        )
    return calls


def connect(sock: socket.socket, address: tuple[str, int]) -> None:
    sock.connect(address)


def connect_ex(sock: socket.socket, address: tuple[str, int]) -> None:
    sock.connect_ex(address)


def registered(poller: Any, sock: socket.socket, events: int) -> Any:
    poller.register(sock.fileno(), events)
    return poller


def flushed(file: Any) -> None:
    file.write(b"x" * 1000)  # fits the buffer
    file.flush()


LISTED = sorted(listed_name(function) for function in _wake_calls.signal_ended_functions()) if WOKEN else []


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
def test_every_listed_call_is_tested_below() -> None:
    assert sorted(_block_in(Rig.__new__(Rig))) == LISTED


@pytest.mark.skipif(not WOKEN, reason="the signal reaches worker threads' system calls from CPython 3.15 only")
@pytest.mark.parametrize("name", LISTED)
def test_the_wake_signal_ends_each_listed_call(name: str, sends: list[int]) -> None:
    rig = Rig()
    worker = Worker(_block_in(rig)[name])
    try:
        worker.start()
        assert in_call(worker.thread, name.rsplit(".", 1)[1])
        receipt = hardstop.interrupt(worker.thread)
        assert receipt.wake.startswith(f"{signal.Signals(hardstop.wake_signal()).name} sent to the worker thread")
        assert receipt.wait(WAIT), receipt.wake
        worker.thread.join(WAIT)
    finally:
        rig.close(worker.thread)
    assert worker.outcome == ["interrupted"]
    assert sends == [worker.thread.ident]
