# deadline() and deadline_at(): the scope, its entry, exit, cancel and expire.

from contextlib import _GeneratorContextManager
from types import FrameType as _FrameType

from hardstop._errors import DeadlineExceeded, _DeadlinePassed

cdef double _INF = float("inf")
# A deadline is level-triggered: when its expiry was raised and the block still
# runs (the exception was swallowed, maybe by CPython itself in a finalizer),
# it fires again this long after.
cdef double _REFIRE_AFTER = 0.01
cdef int _SUSPENDABLE = 0x20 | 0x80 | 0x200   # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR
cdef int _CO_GENERATOR = 0x20
cdef int _CO_ASYNC = 0x80 | 0x200   # CO_COROUTINE, CO_ASYNC_GENERATOR
cdef object _CONTEXTMANAGER_ENTER = _GeneratorContextManager.__enter__.__code__

# Scopes whose with statement is in a generator or a coroutine (issue 18). A
# deadline guards the code of its with statement, wherever that runs, and
# nothing else:
#
# * in a coroutine, refused: while it awaits, the event loop runs other tasks,
#   and an expiry would land in them (asyncio.timeout() is the tool there);
# * in a generator run as a context manager (contextlib's @contextmanager,
#   pluggy's hook wrappers, and generators delegating to them with yield from),
#   it guards what runs while the generator is suspended at its yield: the
#   with statement's body, the wrapped hook. It fires as always;
# * in any other generator, it fires only while the generator runs, in the
#   thread that runs it: while the generator is suspended (its consumer runs
#   unrelated code), the expiry waits and is tried again every _REFIRE_AFTER,
#   until the generator runs again inside the block or leaves it.


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


def deadline(seconds, *, raises=None):
    """``with hardstop.deadline(seconds) as scope:`` raise in this block once
    ``seconds`` have passed; it leaves the block as ``hardstop.DeadlineExceeded``.
    ``None``: no limit (``math.inf``).

    With ``raises`` (an exception class or instance), that exception is raised
    in the block instead, once (the block may catch it), and leaves it as itself."""
    if seconds is None:
        seconds = _INF
    cdef Deadline scope = _deadline_after(_number(seconds, "hardstop.deadline()"), seconds)
    if raises is not None:
        scope._raises, scope._raises_carrier = _chosen_exception(raises, "hardstop.deadline()")
    return scope


cdef inline Deadline _deadline_after(double span, object seconds):
    """A scope due ``span`` seconds from now; ``seconds`` is how it was given."""
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _monotonic() + span if span != _INF else _INF   # no clock read for no limit
    scope.seconds = seconds
    return scope


def deadline_at(when, *, raises=None):
    """Like ``deadline()``, at an absolute ``time.monotonic()`` value."""
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _number(when, "hardstop.deadline_at()")
    if raises is not None:
        scope._raises, scope._raises_carrier = _chosen_exception(raises, "hardstop.deadline_at()")
    return scope


cdef class Deadline:
    """A scope made by ``hardstop.deadline()`` or ``hardstop.deadline_at()``."""
    cdef readonly double when       # the time.monotonic() value it expires at
    cdef readonly object seconds    # as given to deadline(); None for deadline_at()
    cdef unsigned long _ident
    cdef long long _level   # its position among the thread's scopes
    cdef bint _entered
    cdef bint _open
    cdef bint _expired
    cdef bint _withdrawn
    cdef bint _forced       # expire() was called
    cdef Py_ssize_t _slot   # in the watchdog's heap; -1 when not scheduled
    cdef double _look       # seconds until the next look at its pending expiry (deadline_heap.pxi)
    cdef list _receipts     # of its expiry, once fired
    cdef object _frame      # of the with statement, while the block is open
    cdef object _code       # and its code and line, for messages
    cdef public str label   # what it guards, named instead of where it was set (e.g. by hardstop.futures)
    cdef int _line
    cdef bint _wrapper      # entered in a generator run as a context manager (see above)
    cdef object _raises           # the exception chosen with raises=, or None for the private expiry
    cdef object _raises_carrier   # and its carrier class

    def __cinit__(self):
        self._slot = -1

    def __init__(self):
        raise TypeError("Deadline objects are made by hardstop.deadline() or hardstop.deadline_at().")

    def __enter__(self):
        cdef PyFrameObject *frame = PyEval_GetFrame()
        with cython.critical_section(_CORE):
            return self._enter(<object><PyObject *>frame if frame != NULL else None)

    def enter_for(self, frame):
        """Enter the scope on behalf of ``frame``, a frame running in the calling
        thread (``sys._getframe(1)`` in a context manager's ``__enter__``): its
        block is that frame's, and it fires while that frame runs. Leave it with
        ``__exit__()``, as a with statement would."""
        cdef PyFrameObject *current = PyEval_GetFrame()
        if not isinstance(frame, _FrameType):
            raise TypeError(f"Deadline.enter_for() takes a frame (e.g. sys._getframe(1)), "
                            f"not {type(frame).__name__} {frame!r}.")
        running = <object><PyObject *>current if current != NULL else None
        while running is not None and running is not frame:
            running = running.f_back
        if running is None:
            raise ValueError(f"{self!r} cannot be entered for {frame!r}: that frame is not running "
                             "in the calling thread.")
        with cython.critical_section(_CORE):
            return self._enter(frame)

    cdef object _enter(self, object frame):
        """Enter for ``frame`` (None: no Python frame calls), whose block it guards."""
        global _watchdog_running
        cdef unsigned long ident = PyThread_get_thread_ident()
        cdef _ThreadRecord record
        if self._entered:
            raise RuntimeError(f"{self!r} was entered already: use one per with statement.")
        cdef object code = hardstop_frame_code(<PyFrameObject *>frame) if frame is not None else None
        cdef int flags = (<PyCodeObject *>code).co_flags if code is not None else 0
        if flags & _CO_ASYNC:
            raise RuntimeError(
                f"hardstop.deadline() cannot guard a block in the coroutine "
                f"{frame.f_code.co_name}(): "
                "while it awaits, the event loop runs other tasks, and the expiry would land in them. "
                "Use asyncio.timeout() (or anyio.fail_after()) in async code, and hardstop.to_thread() "
                "to run blocking code under a limit."
            )
        if self.when != _INF and self.when <= _monotonic():
            # Passed already: raised here, before the body. Armed, it would wait for the
            # body's first check, and a body without one (C calls, no loop) would run to its end.
            _raise_armed_now()
            self._entered = self._expired = True
            self._ident = ident
            if frame is not None:
                self._line = PyFrame_GetLineNumber(<PyFrameObject *>frame)
                self._code = code
            if self._raises is not None:
                raise self._raises
            raise DeadlineExceeded(self)
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
        record = _own_record()
        if record.armed is not None:
            _raise_armed_now()
        self._entered = self._open = True
        self._ident = ident
        record.entered += 1
        self._level = record.entered
        if frame is not None:
            self._frame = frame
            self._line = PyFrame_GetLineNumber(<PyFrameObject *>frame)
            self._code = code
            if flags & _CO_GENERATOR:
                self._wrapper = _run_as_context_manager(self._frame)
        if self.when < _INF:
            _schedule(self, self.when)
        return self

    def __exit__(self, kind, value, traceback):
        self._leave(value)
        return False

    cdef void _leave(self, object value) except *:
        """Close the block, which ``value`` (or None) leaves: its own expiry leaves it
        as ``DeadlineExceeded``."""
        with cython.critical_section(_CORE):
            if not self._open:
                return
            self._close()
        if isinstance(value, _DeadlinePassed) and (<object>value).scope is self:
            raise DeadlineExceeded(self) from value

    cdef void _close(self) except *:
        self._open = False
        _unschedule(self)
        receipts, self._receipts = self._receipts, None
        for receipt in receipts or ():
            if (<Receipt>receipt)._status is PENDING and not receipt.cancel():
                _settle_lost(<Receipt>receipt)   # no request outlives its block
        self._frame = None   # its locals may hold this scope: no cycle left behind

    @property
    def ident(self):
        """The ident of the thread that entered it (0 before that)."""
        return self._ident

    @property
    def expired(self):
        """True once the deadline has fired (its expiry was raised or armed in the block)."""
        with cython.critical_section(_CORE):
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
        with cython.critical_section(_CORE):
            return self._cancel()

    cdef bint _cancel(self) except -1:
        cdef bint pending = False
        if not self._open or self._withdrawn:
            return False
        self._withdrawn = True
        _unschedule(self)
        for receipt in self._receipts or ():
            if (<Receipt>receipt)._status is PENDING and receipt.cancel():
                pending = True
        return pending or not self._expired

    def expire(self):
        """Make the deadline pass now, from any thread (trio's ``cancel()``).

        Its expiry is raised in the block at once, as when the time comes; a
        wait is woken. Before the block is entered, it is entered passed: the
        expiry is raised at the entry. Returns False when the block was left or
        the deadline withdrawn, or it had fired (or been made to pass) already.
        """
        with cython.critical_section(_CORE):
            if not self._entered and not self._forced:
                self.when = _monotonic()   # passed before its block is entered: raised at the entry (trio's rule)
                self._forced = True
                return True
            if not self._open or self._withdrawn or self._expired:
                return False
            self.when = _monotonic()
            self._forced = True
            _unschedule(self)
            _fire_now(self)   # in this thread: no wait for the watchdog to get the GIL
        return True

    def __bool__(self):
        raise TypeError(
            "A hardstop.Deadline has no truth value: `if scope:` (stopit's idiom) cannot say whether it "
            "fired; test `scope.expired`, or `scope is not None` for whether there is one."
        )

    def __repr__(self):
        state = ("expired" if self._expired else "withdrawn" if self._withdrawn
                 else "open" if self._open else "left" if self._entered else "not entered")
        return f"<hardstop.Deadline {state}, {self.remaining:.3f} s left>"


cdef object _call_in_scope(Deadline scope, object fn, tuple args, dict kwargs):
    """``with scope: return fn(*args, **kwargs)``, compiled (hardstop.futures' tasks
    run so, task.pxi): no with statement around the call, so nothing runs between entering
    the scope and the call or between the return and leaving it, and no frame
    object is made for the caller. The scope guards whatever ``fn`` runs."""
    with cython.critical_section(_CORE):
        scope._enter(None)
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:
        scope._leave(error)
        raise
    scope._leave(None)
    return result


cdef bint _run_as_context_manager(object frame):
    """Is the generator of ``frame`` run by a context-manager protocol, which runs
    the guarded code while the generator is suspended and throws what that code
    raised back into it? contextlib's @contextmanager, and pluggy's hook wrappers
    (pytest's plugins among them); generators that delegate to one with yield
    from are seen through."""
    resumer = frame.f_back
    while resumer is not None and resumer.f_code.co_flags & _CO_GENERATOR:
        resumer = resumer.f_back
    if resumer is None:
        return False
    if resumer.f_code is _CONTEXTMANAGER_ENTER:
        return True
    module = resumer.f_globals.get("__name__")
    return isinstance(module, str) and module.startswith("pluggy.")
