"""The workloads: what the thread to be stopped is doing.

Each is a fresh object per trial. ``step()`` does one unit of the work and says
whether there is more: the CPU loop's unit is one small pure-Python function
call (it goes on until ``limit`` seconds have passed); a blocking workload's
unit is its one wait, which lasts until ``release()`` (``time.sleep`` and the
CPU loop end by themselves, after ``limit``). The methods decide how the units
are looped over (a stop flag polled between them, a trace function, ...).

Nothing here imports hardstop: the child processes of the daemon-thread and
multiprocessing cells run these too.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

CRUNCH = 20  # additions per unit of the CPU loop (about half a microsecond)


def crunch() -> int:
    """One unit of pure-Python work."""
    total = 0
    for i in range(CRUNCH):
        total += i
    return total


class Workload:
    key = ""
    label = ""
    woken_anywhere = False  # hardstop ends it in any thread (else: in the main thread, by its signal)
    system_call = False  # a system call retried on EINTR: CPython 3.15+ ends it in a worker with the signal too

    def __init__(self, limit: float) -> None:
        self.end = time.monotonic() + limit

    def step(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        """End the wait from another thread (the CPU loop and time.sleep end by themselves)."""

    def close(self) -> None:
        """Free what it holds, once no thread uses it."""


class CpuLoop(Workload):
    key = "cpu"
    label = "pure-Python loop"
    woken_anywhere = True  # not a wait: the exception is raised at the next check

    def step(self) -> bool:
        crunch()
        return time.monotonic() < self.end


class CountedLoop(Workload):
    """The CPU loop for ``iterations`` units (how the slowdown is measured)."""

    key = "cpu"
    label = "pure-Python loop"

    def __init__(self, iterations: int) -> None:
        super().__init__(0.0)
        self.left = iter(range(iterations))

    def step(self) -> bool:
        crunch()
        return next(self.left, None) is not None


class Sleep(Workload):
    key = "sleep"
    label = "time.sleep"
    system_call = True

    def step(self) -> bool:
        time.sleep(max(0.0, self.end - time.monotonic()))
        return False


class EventWait(Workload):
    key = "event"
    label = "Event.wait"
    woken_anywhere = True

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.event = threading.Event()

    def step(self) -> bool:
        self.event.wait()
        return False

    def release(self) -> None:
        self.event.set()


class QueueGet(Workload):
    key = "queue"
    label = "Queue.get"
    woken_anywhere = True

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.queue: queue.Queue[None] = queue.Queue()

    def step(self) -> bool:
        self.queue.get()
        return False

    def release(self) -> None:
        self.queue.put(None)


class SocketRecv(Workload):
    key = "recv"
    label = "socket recv"
    system_call = True

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.reader, self.writer = socket.socketpair()

    def step(self) -> bool:
        self.reader.recv(1)
        return False

    def release(self) -> None:
        self.writer.send(b"x")

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class LockAcquire(Workload):
    key = "lock"
    label = "Lock.acquire"

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.lock = threading.Lock()
        self.lock.acquire()  # held: step() blocks until release()

    def step(self) -> bool:
        self.lock.acquire()
        return False

    def release(self) -> None:
        self.lock.release()


WORKLOADS: list[type[Workload]] = [CpuLoop, Sleep, EventWait, QueueGet, SocketRecv, LockAcquire]


def make(key: str, limit: float) -> Workload:
    for kind in WORKLOADS:
        if kind.key == key:
            return kind(limit)
    raise KeyError(key)


def run_plain(work: Workload) -> None:
    """The loop with nothing added: how the daemon-thread and process cells run it."""
    while work.step():
        pass
