"""The exceptions hardstop raises, in the caller and in the target."""


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


for _public in (Interrupted, HardstopError, ThreadNotFound, AmbiguousThread):
    _public.__module__ = "hardstop"  # how users name them, in tracebacks too
