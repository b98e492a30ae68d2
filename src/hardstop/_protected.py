"""Standard-library lock handling that interrupts are kept out of.

An exception raised at a random instant inside ``threading``'s own Python code
breaks it: ``Condition.__exit__`` interrupted at its first line never releases
the lock, ``Condition.wait`` interrupted between giving the lock up and its
``try`` releases it twice, and ``Queue.put`` can be left with its count raised
but nothing queued. A rain of plain ``PyThreadState_SetAsyncExc`` calls at a
thread doing ``Queue`` traffic left the queue's lock held within 2 to 14
interrupts on every CPython 3.10-3.15.

So hardstop does not arm a request while the target's innermost frame is code
of these modules (or, while a Python trace or profile function runs in the
target, the frame it was called for: an exception raised in a debugger's,
coverage tool's or profiler's callback goes on from the traced instruction):
the request waits (pending), and the thread arms it itself as
it returns from there to other code (the extension's ``_leave_watch``, a profile
function set on that thread alone for that moment; the pump polls a thread that
has a profiler of its own). Excepted
are the places where such code waits for something: a thread blocked in
``Condition.wait`` (and so in ``Event.wait``, ``Queue.get``, ``Semaphore``,
``Barrier``, ``Thread.start``) is armed and woken as before, where the wait's own
``try``/``finally`` restores the lock; ``Thread.join`` copes with exceptions
itself.

A thread stopped in other code raises at its next check, which is at most the
first instruction of a function of these modules: nothing has been done there
yet. That first instruction is the danger when the function is one the caller
counts on, as a ``with condition:`` or ``with semaphore:`` in *your* code counts
on the lock's ``__exit__`` (and where a request put off during ``__enter__`` is
raised when the body calls nothing). From 3.12 hardstop sees an exception raised
at the first instruction of ``Condition.__exit__`` or ``Semaphore.__exit__`` (it
is created at that point) and releases the lock first.
Not covered: 3.10/3.11 (the exception is created later, away from that frame),
and clean-up calls such as ``finally: sem.release()``; ``hardstop.shield()``
covers those.
"""

from __future__ import annotations

import concurrent.futures._base
import dis
import logging
import queue
import threading
import types
from collections.abc import Iterator

from hardstop import _hardstop

_MODULES = (threading, queue, concurrent.futures._base, logging)

# Where these modules wait and cope with an exception themselves, and
# Thread.run, which only calls the thread's target (often a C function that
# waits: time.sleep, Lock.acquire) and ends the thread with whatever it raises.
_EXEMPT = {"Thread.join", "Thread._wait_for_tstate_lock", "Thread.run"}


def _code_objects(module: types.ModuleType) -> Iterator[tuple[str, types.CodeType]]:
    """(qualified name, code) of every function, method and nested code object
    defined in ``module``."""
    seen: set[int] = set()

    def nested(code: types.CodeType) -> Iterator[types.CodeType]:
        yield code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from nested(const)

    def functions(namespace: dict[str, object]) -> Iterator[object]:
        for entry in namespace.values():
            value = entry.__func__ if isinstance(entry, (staticmethod, classmethod)) else entry
            if isinstance(value, property):
                yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
            elif isinstance(value, type) and value.__module__ == module.__name__ and id(value) not in seen:
                seen.add(id(value))
                yield from functions(dict(vars(value)))
            else:
                yield value

    for function in functions(dict(vars(module))):
        if isinstance(function, types.FunctionType) and function.__module__ == module.__name__:
            for code in nested(function.__code__):
                yield function.__qualname__, code


def _wait_lines(wait: types.CodeType) -> set[int]:
    """Lines of ``Condition.wait`` that block on its waiter inside the ``try``:
    each ``waiter.acquire`` but the first (which takes the fresh waiter)."""
    lines: list[int] = []
    previous: dis.Instruction | None = None
    line = wait.co_firstlineno
    for instruction in dis.get_instructions(wait):
        # 3.13+ give each instruction its line; before, only the first of a line has it.
        starts = instruction.starts_line
        line = getattr(instruction, "line_number", None) or (starts if type(starts) is int else line)
        if instruction.argval == "acquire" and previous is not None and previous.argval == "waiter":
            lines.append(line)
        previous = instruction
    if len(lines) < 2:
        raise RuntimeError(f"hardstop does not know this threading.Condition.wait (waits at lines {lines}).")
    return set(lines[1:])


def protected_codes() -> list[types.CodeType]:
    return [code for module in _MODULES for name, code in _code_objects(module) if name not in _EXEMPT]


# Kept here: the extension keeps only their id()s.
_CODES = protected_codes()
_WAIT = threading.Condition.wait.__code__


# The __exit__ methods a with statement in any frame calls unprotected (see the docstring).
_hardstop._bind_protected(
    _CODES, _WAIT, _wait_lines(_WAIT), threading.Condition.__exit__.__code__, threading.Semaphore.__exit__.__code__
)
