"""CPython 3.14: an exception raised as a with statement enters its body.

3.14 calls a with statement's ``__enter__`` with an ordinary ``CALL`` whose
check for pending exceptions comes after ``__enter__`` returned and before the
body is protected. An exception raised there (an interrupt, a deadline's expiry)
leaves the statement with ``__exit__`` never called: after ``with lock:`` the
lock stays held, and the next ``with lock:`` in any thread waits forever. Seen
in a waitress server whose handler was stopped at the ``with lock:`` of its
``finally:`` block: every later request that took that lock hung. 3.15 checks
inside the protected range (and calls ``__exit__``); 3.10-3.13 check before the
call.

When one of hardstop's exceptions is raised at that instruction, the extension
(``_finish_interrupted_enter``) calls ``finish_enter``, which finds the context
manager and calls its ``__exit__`` with that exception, as 3.15's with statement
would (what ``__exit__`` returns is ignored: the exception cannot be suppressed
there, it is already being raised).
The manager itself is on the interpreter's value stack, which Python code cannot
read, so it is found again from the bytecode: the with statement's expression,
when it is a name (local, global, closure) followed by attribute loads, as in
``with lock:``, ``with self._lock:``, ``with module.state.lock:``. Reading those
again gives the same object (nothing ran in between but ``__enter__``). Any other
expression (``with make_lock():``, ``with locks[n]:``) is not evaluated a second
time: that is logged (logger ``hardstop``) with where it was.
"""

from __future__ import annotations

import dis
import functools
import types

from hardstop import _hardstop

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

_ENTER, _EXIT = 0, 1  # LOAD_SPECIAL's argument for __enter__ and __exit__ (3.14)
_NAME_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME"})


class NotFound(LookupError):
    """The with statement's expression is not a name and attributes."""


def _entry_sequence() -> list[tuple[str, int]]:
    # What 3.14 compiles between a with statement's expression and the call of __enter__.
    return [("COPY", 1), ("LOAD_SPECIAL", _EXIT), ("SWAP", 2), ("SWAP", 3), ("LOAD_SPECIAL", _ENTER)]


@functools.lru_cache(maxsize=256)
def _expression_at(code: types.CodeType, offset: int) -> tuple[tuple[str, str], ...] | None:
    """The loads of the with statement whose ``__enter__`` call is at ``offset``:
    ``(opname, name)`` pairs, a name load first; None when the expression is anything else.

    Control must run straight from the name load to the call (no jump lands after
    it), so that the value entered is the one these loads give."""
    instructions = list(dis.get_instructions(code))
    at = next(n for n, instruction in enumerate(instructions) if instruction.offset == offset)
    entry = instructions[at - 5 : at + 1]
    if [(i.opname, i.arg) for i in entry[:-1]] != _entry_sequence() or any(i.is_jump_target for i in entry):
        return None
    attributes: list[tuple[str, str]] = []
    for instruction in reversed(instructions[: at - 5]):
        if instruction.opname in _NAME_LOADS:
            return ((instruction.opname, instruction.argval), *reversed(attributes))
        # An attribute (the argument's low bit marks a method load), not a jump target.
        if instruction.opname != "LOAD_ATTR" or instruction.arg & 1 or instruction.is_jump_target:
            return None
        attributes.append((instruction.opname, instruction.argval))
    return None


def entered_manager(frame: types.FrameType) -> object:
    """The context manager whose ``__enter__`` the frame has just called (its
    current instruction is that ``CALL``). Raises NotFound for an expression
    that cannot be read again without running it."""
    loads = _expression_at(frame.f_code, frame.f_lasti)
    if loads is None:
        raise NotFound
    (kind, name), *attributes = loads
    if kind == "LOAD_GLOBAL":
        namespaces = [frame.f_globals, frame.f_builtins]
    elif kind == "LOAD_NAME":
        namespaces = [frame.f_locals, frame.f_globals, frame.f_builtins]
    else:
        namespaces = [frame.f_locals]
    found = [namespace[name] for namespace in namespaces if name in namespace]
    if not found:
        raise NotFound
    value = found[0]
    try:
        for _, attribute in attributes:
            value = getattr(value, attribute)
    except AttributeError:
        raise NotFound from None
    return value


def finish_enter(frame: types.FrameType, exception: BaseException) -> None:
    """Call the ``__exit__`` that 3.14 skips for ``exception``, raised in ``frame``
    as its with statement's ``__enter__`` returned."""
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    try:
        manager = entered_manager(frame)
    except NotFound:
        _log().error(
            "%r was raised as the with statement at %s entered its body, where CPython 3.14 never calls "
            "__exit__; hardstop could not find its context manager again (the expression is not a name and "
            "attributes), so whatever its __enter__ took (a lock?) may be left held",
            exception,
            where,
        )
        return
    try:
        type(manager).__exit__(manager, type(exception), exception, exception.__traceback__)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - logged: the exception being raised goes on, as it must
        _log().exception(
            "%r was raised as the with statement at %s entered its body; the __exit__ of %r, which hardstop "
            "called in CPython 3.14's stead, raised",
            exception,
            where,
            manager,
        )


def _log() -> logging.Logger:
    import logging  # on first use: logging is slow to import, and only a failure here logs

    return logging.getLogger("hardstop")


_hardstop._bind_with_entry(finish_enter)
