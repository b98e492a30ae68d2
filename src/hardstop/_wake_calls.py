"""CPython 3.15+: the calls whose wait the wake signal ends in a worker thread.

From 3.15 a signal that interrupts a system call retried on EINTR makes CPython
raise the pending exception in the thread that made it (gh-144748). A worker
is sent hardstop's wake signal only when the call in progress in its innermost
Python frame is one of the functions below (the extension reads it:
ext/call_in_progress.c); one running Python, or blocked in ``Lock.acquire``,
would get a signal that ends nothing. Each function here is tested with a real
blocked worker (tests/test_wake_worker_syscalls.py; on Linux, so not
``devpoll`` and ``kqueue``). A wrong entry costs a needless signal, a missing
one a wait that is not ended. A blocking call reached
through other C code (iterating over a file, a C extension's own I/O) is not
seen, and not signalled: unblocking() ends any wait.

The extension is handed a table of what each opcode is, built here from the
``opcode`` module: specialised opcode numbers differ between versions.
"""

from __future__ import annotations

import _io
import _socket
import opcode
import os
import select
import time

from hardstop import _hardstop

# What each opcode is (call_in_progress.h's HARDSTOP_OP_*): where its callable lies on the stack.
_OTHER, _CALL, _CALL_KW, _CALL_EX, _UNKNOWN, _EXTENDED_ARG = range(6)
_FAMILIES = {"CALL": _CALL, "CALL_KW": _CALL_KW, "CALL_FUNCTION_EX": _CALL_EX}

# name -> attributes of it that are listed (a module's functions, a type's methods).
_SOCKET_CALLS = (
    "recv recv_into recvfrom recvfrom_into recvmsg recvmsg_into send sendall sendmsg _accept connect connect_ex"
)
_LISTED = {
    time: "sleep",
    select: "select",
    os: "read readv write writev waitpid wait4 waitid",
    _socket.socket: _SOCKET_CALLS,
    _io.FileIO: "read readall readinto write",
    _io.BufferedReader: "read read1 readinto readinto1 readline peek",
    _io.BufferedWriter: "write flush",
    _io.TextIOWrapper: "read readline",
    getattr(select, "epoll", None): "poll",
    getattr(select, "kqueue", None): "control",
}


def _poll_types() -> list[type]:
    # select.poll() and select.devpoll() return objects of types select does not name.
    made = []
    for name in ("poll", "devpoll"):
        factory = getattr(select, name, None)
        if factory is not None:
            poller = factory()
            made.append(type(poller))
            getattr(poller, "close", lambda: None)()
    return made


def signal_ended_functions() -> list[object]:
    """The listed functions this platform has: builtin functions and method descriptors."""
    listed = dict(_LISTED)
    for poll_type in _poll_types():
        listed[poll_type] = "poll"
    found = []
    for owner, names in listed.items():
        if owner is None:
            continue
        found += [getattr(owner, name) for name in names.split() if hasattr(owner, name)]
    return found


def call_kinds() -> bytes:
    """The 256-byte opcode table: CALL, CALL_KW, CALL_FUNCTION_EX, their
    specialised and instrumented forms; EXTENDED_ARG; and what stands for
    another instruction (an instrumented line or instruction), which makes the
    call unreadable."""
    kinds = bytearray(256)
    specialised: dict[str, list[str]] = getattr(opcode, "_specializations", {})
    numbers = {**opcode.opmap, **getattr(opcode, "_specialized_opmap", {})}
    for family, kind in _FAMILIES.items():
        for name in (family, f"INSTRUMENTED_{family}", *specialised.get(family, ())):
            if name in numbers:
                kinds[numbers[name]] = kind
    for name in ("INSTRUMENTED_LINE", "INSTRUMENTED_INSTRUCTION"):
        if name in numbers:
            kinds[numbers[name]] = _UNKNOWN
    kinds[opcode.EXTENDED_ARG] = _EXTENDED_ARG
    return bytes(kinds)


def bind() -> bool:
    """Hand the table and the functions to the extension; True if it reads calls
    (else every worker is signalled, as before 3.15's list)."""
    return _hardstop._set_signal_ended_calls(call_kinds(), signal_ended_functions())
