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

import dis
import queue
import sys
import threading
import types
from collections.abc import Iterator, Sequence

from hardstop import _hardstop

TYPE_CHECKING = False  # typing is slow to import
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

# logging and concurrent.futures are bound when they are imported (_BindOnImport),
# not imported here: together they cost more than the rest of `import hardstop`.
_MODULES = (threading, queue)
_LATE = {"logging", "concurrent.futures._base"}

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


def _lines(code: types.CodeType) -> Iterator[tuple[int, dis.Instruction]]:
    """Each instruction of ``code`` with its line."""
    line = code.co_firstlineno
    for instruction in dis.get_instructions(code):
        # 3.13+ give each instruction its line; before, only the first of a line has it.
        starts = instruction.starts_line
        line = getattr(instruction, "line_number", None) or (starts if type(starts) is int else line)
        yield line, instruction


def _wait_lines(wait: types.CodeType) -> set[int]:
    """Lines of ``Condition.wait`` that block on its waiter inside the ``try``:
    each ``waiter.acquire`` but the first (which takes the fresh waiter)."""
    lines: list[int] = []
    previous: dis.Instruction | None = None
    for line, instruction in _lines(wait):
        if instruction.argval == "acquire" and previous is not None and previous.argval == "waiter":
            lines.append(line)
        previous = instruction
    if len(lines) < 2:
        raise RuntimeError(f"hardstop does not know this threading.Condition.wait (waits at lines {lines}).")
    return set(lines[1:])


def _restore_lines(wait: types.CodeType) -> set[int]:
    """Lines of ``Condition.wait`` that take the lock back (in its ``finally``)."""
    lines = {line for line, instruction in _lines(wait) if instruction.argval == "_acquire_restore"}
    if not lines:
        raise RuntimeError("hardstop does not know this threading.Condition.wait (it has no _acquire_restore).")
    return lines


def protected_codes(modules: tuple[types.ModuleType, ...] = _MODULES) -> list[types.CodeType]:
    return [code for module in modules for name, code in _code_objects(module) if name not in _EXEMPT]


# Kept here: the extension keeps only their id()s.
_CODES = protected_codes()
_WAIT = threading.Condition.wait.__code__
_WAIT_LINES = _wait_lines(_WAIT)
_RESTORE_LINES = _restore_lines(_WAIT)


def _bind() -> None:
    # The __exit__ methods a with statement in any frame calls unprotected (see the docstring).
    _hardstop._bind_protected(
        _CODES,
        _WAIT,
        _WAIT_LINES,
        _RESTORE_LINES,
        threading.Condition.__exit__.__code__,
        threading.Semaphore.__exit__.__code__,
    )


def _bind_late(module: types.ModuleType) -> None:
    _CODES.extend(protected_codes((module,)))
    _bind()
    _LATE.discard(module.__name__)
    if not _LATE and _BIND_ON_IMPORT in sys.meta_path:
        sys.meta_path.remove(_BIND_ON_IMPORT)


class _BindOnImport:
    """An import finder that finds nothing itself: it lets the other finders find
    a late module, and has the loader bind the module's code objects the moment
    they exist, before the import returns to anyone."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in _LATE:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec: ModuleSpec | None = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if loader is None or run is None:
            return None  # not a loader we can follow: the others find it again, unbound

        def exec_module(module: types.ModuleType) -> None:
            run(module)
            _bind_late(module)

        loader.exec_module = exec_module  # type: ignore[method-assign, unused-ignore]  # this loader serves this import only
        return spec


_BIND_ON_IMPORT = _BindOnImport()
_bind()
for _name in sorted(_LATE):
    if _name in sys.modules:
        _bind_late(sys.modules[_name])
if _LATE:
    sys.meta_path.insert(0, _BIND_ON_IMPORT)
