# deadline() and deadline_at(): the scope, its entry, exit, cancel and expire.

from hardstop._errors import DeadlineExceeded, _DeadlinePassed

cdef double _INF = float("inf")
# A deadline is level-triggered: when its expiry was raised and the block still
# runs (the exception was swallowed, maybe by CPython itself in a finalizer),
# it fires again this long after.
cdef double _REFIRE_AFTER = 0.01
cdef int _SUSPENDABLE = 0x20 | 0x80 | 0x200   # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR


cdef inline double _number(object value, str what) except? -1.0:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} takes a number of seconds, not {type(value).__name__} {value!r}.")
    cdef double number
    try:
        number = value
    except OverflowError:   # an int no double can hold
        raise ValueError(f"{what} takes a number of seconds, not {value!r}.") from None
    if number != number:
        raise ValueError(f"{what} takes a number of seconds, not {value!r}.")
    return number


def deadline(seconds):
    """``with hardstop.deadline(seconds) as scope:`` raise in this block once
    ``seconds`` have passed; it leaves the block as ``hardstop.DeadlineExceeded``."""
    cdef double span = _number(seconds, "hardstop.deadline()")
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _monotonic() + span
    scope.seconds = seconds
    return scope


def deadline_at(when):
    """Like ``deadline()``, at an absolute ``time.monotonic()`` value."""
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _number(when, "hardstop.deadline_at()")
    return scope


cdef class Deadline:
    """A scope made by ``hardstop.deadline()`` or ``hardstop.deadline_at()``."""
    cdef readonly double when       # the time.monotonic() value it expires at
    cdef readonly object seconds    # as given to deadline(); None for deadline_at()
    cdef unsigned long _ident
    cdef int _level
    cdef bint _entered
    cdef bint _open
    cdef bint _expired
    cdef bint _withdrawn
    cdef bint _in_heap
    cdef bint _forced       # expire() was called
    cdef Py_ssize_t _entry
    cdef list _receipts
    cdef object _frame      # of the with statement, while the block is open
    cdef object _code       # and its code and line, for messages
    cdef public str label   # what it guards, named instead of where it was set (e.g. by hardstop.futures)
    cdef int _line

    def __init__(self):
        raise TypeError("Deadline objects are made by hardstop.deadline() or hardstop.deadline_at().")

    def __enter__(self):
        global _watchdog_running
        cdef unsigned long ident = PyThread_get_thread_ident()
        cdef _ThreadRecord record
        cdef PyFrameObject *frame
        if self._entered:
            raise RuntimeError(f"{self!r} was entered already: use one per with statement.")
        if self.when < _INF and hardstop_is_finalizing():
            # The watchdog is a daemon thread, and daemon threads are stopped for good.
            raise RuntimeError(
                f"{self!r} cannot be enforced: the interpreter is shutting down and no thread is left to fire it."
            )
        if not _watchdog_running and self.when < _INF:
            _watchdog_running = True
            try:
                _start_watchdog()
            except BaseException:
                _watchdog_running = False
                raise
        # 3.14+ call __enter__ with an ordinary CALL, and check for a pending
        # exception after it returns, before the with statement protects its
        # body: one armed before this call would be raised there, leaving this
        # scope open with nobody to close it. Raise it here instead, before
        # anything is entered. (One armed while the thread waits for the GIL at
        # that check is raised at the next check, inside the body: 3.13+ test a
        # snapshot of the eval breaker taken before they let the GIL go.)
        _raise_armed_now()
        record = _own_record()
        self._entered = self._open = True
        self._ident = ident
        record.depth += 1
        self._level = record.depth
        self._receipts = []
        frame = PyEval_GetFrame()
        if frame != NULL:
            self._frame = <object><PyObject *>frame
            self._line = PyFrame_GetLineNumber(frame)
            self._code = self._frame.f_code
        if self.when < _INF:
            _schedule(self, self.when)
        return self

    def __exit__(self, kind, value, traceback):
        if not self._open:
            return False
        self._close()
        if isinstance(value, _DeadlinePassed) and (<object>value).scope is self:
            raise DeadlineExceeded(self) from value
        return False

    cdef void _close(self, bint restore_depth=True) except *:
        cdef _ThreadRecord record
        self._open = False
        self._unschedule()
        for receipt in self._receipts:
            if (<Receipt>receipt)._status is PENDING:
                receipt.cancel()
        self._receipts = None
        self._frame = None   # its locals may hold this scope: no cycle left behind
        record = _records.get(self._ident)
        if record is not None and restore_depth:
            record.depth = self._level - 1

    cdef void _unschedule(self):
        global _stale
        if self._in_heap:
            self._in_heap = False
            _stale += 1
            if _stale > 1024 and _stale * 2 > len(_heap):
                _compact()

    @property
    def ident(self):
        """The ident of the thread that entered it (0 before that)."""
        return self._ident

    @property
    def expired(self):
        """True once the deadline has fired (its expiry was raised or armed in the block)."""
        return self._expired

    @property
    def remaining(self):
        """Seconds left until the deadline (0.0 once it has passed; inf for none)."""
        left = self.when - _monotonic()
        return left if left > 0 else 0.0

    @property
    def where(self):
        """``file:line`` of the with statement; None before it is entered."""
        if self._code is None:
            return None
        return f"{self._code.co_filename}:{self._line}"

    @property
    def description(self):
        """Names this deadline and where it was set, e.g. in ``DeadlineExceeded``."""
        what = (f"the deadline of {self.seconds} s" if self.seconds is not None
                else f"the deadline at monotonic time {self.when:.3f}")
        where = self.where
        if self.label is not None:
            what += f" set for {self.label}"
        elif where is not None:
            what += f" set at {where}"
        return what + (", made to pass early by expire()," if self._forced else "")

    def cancel(self):
        """Withdraw the deadline: the block goes on without a time limit.

        Returns True when that prevented the expiry from being raised, False when
        it had been raised already or the block was left.
        """
        cdef bint pending = False
        if not self._open or self._withdrawn:
            return False
        self._withdrawn = True
        self._unschedule()
        for receipt in self._receipts:
            if (<Receipt>receipt)._status is PENDING and receipt.cancel():
                pending = True
        return pending or not self._expired

    def expire(self):
        """Make the deadline pass now, from any thread (trio's ``cancel()``).

        Its expiry is raised in the block at once, as when the time comes; a
        wait is woken. Returns False when the block was left or the deadline
        withdrawn, or it had fired already.
        """
        if not self._open or self._withdrawn or self._expired:
            return False
        self.when = _monotonic()
        self._forced = True
        self._unschedule()
        _fire_now(self)   # in this thread: no wait for the watchdog to get the GIL
        return True

    def __repr__(self):
        state = ("expired" if self._expired else "withdrawn" if self._withdrawn
                 else "open" if self._open else "left" if self._entered else "not entered")
        return f"<hardstop.Deadline {state}, {self.remaining:.3f} s left>"
