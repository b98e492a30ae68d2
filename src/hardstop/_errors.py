"""The exceptions hardstop raises, in the caller and in the target."""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing is slow to import, and only type checkers need what it guards

if TYPE_CHECKING:
    from hardstop._hardstop import Deadline


class Interrupted(BaseException):
    """Raised in a thread by ``hardstop.interrupt()`` when no other exception is given.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception:``
    in the interrupted code does not swallow it.
    """


class HardstopError(Exception):
    """Base class of the errors hardstop raises in the caller."""


class ThreadNotFound(HardstopError, LookupError):
    """The target is not a live thread of this interpreter (never started,
    finished, unknown, or its ident now belongs to another thread)."""


class AmbiguousThread(HardstopError):
    """More than one thread state of this interpreter carries the ident, so
    CPython could arm an idle one instead of the running thread."""


class DeadlineExceeded(TimeoutError):
    """A ``hardstop.deadline()`` block ran out of time (raised as the block is left).

    ``scope`` is the deadline it belongs to. Made by hand (``DeadlineExceeded()``,
    ``DeadlineExceeded("message")``, as a test's stand-in for a real timeout), or
    unpickled, it has none: ``scope`` is None.
    """

    scope: Deadline | None

    def __init__(self, *args: object) -> None:
        from hardstop._hardstop import Deadline  # the extension imports this module first

        if len(args) == 1 and isinstance(args[0], Deadline):
            scope = args[0]
            super().__init__(f"{scope.description[0].upper()}{scope.description[1:]} has passed.")
            self.scope = scope
        else:
            super().__init__(*args)
            self.scope = None

    def __reduce__(self) -> tuple[object, ...]:
        # A scope lives in one process: the copy keeps the message only.
        return type(self), self.args


class Expired(BaseException):
    """Raised inside a deadline's block when the deadline passes, or is made to
    pass early (``Deadline.expire()``, a cancelled ``hardstop.futures`` task or
    ``to_thread`` await). A ``BaseException``, as trio's ``Cancelled``, so that
    ``except Exception:`` in the guarded code does not swallow it: catch it only
    to clean up, and re-raise it. The block's exit turns it into
    ``DeadlineExceeded``; ``scope`` is the deadline."""

    scope: Deadline

    def __init__(self, scope: Deadline) -> None:
        super().__init__(f"{scope.description} has passed (raised inside its block)")
        self.scope = scope

    def __reduce__(self) -> tuple[object, ...]:
        # It travels as DeadlineExceeded's __cause__ when a pickler (tblib's, which
        # Dask installs) keeps causes: by its message, as its scope cannot travel.
        return _unpickled_deadline_passed, (str(self),)


_DeadlinePassed = Expired  # its name inside hardstop, from before it was public


def _unpickled_deadline_passed(message: str) -> Expired:
    error = Expired.__new__(Expired)
    BaseException.__init__(error, message)
    return error


def non_negative_seconds(value: object, what: str, non_negative: str) -> float:
    """``value`` as a float of seconds, or a refusal naming it: ``f"{what}, not ..."``
    for a non-number (bools too), ``f"{non_negative}, not ..."`` for NaN, a
    negative value or an int no float can hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}, not {type(value).__name__} {value!r}.")
    try:
        seconds = float(value)
    except OverflowError:  # an int no float can hold
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{non_negative}, not {value!r}.")
    return seconds


for _public in (Interrupted, HardstopError, ThreadNotFound, AmbiguousThread, DeadlineExceeded):
    _public.__module__ = "hardstop"  # how users name them, in tracebacks too
