# CPython quirks, one block each, headed by the versions it serves: dropping a
# version deletes its blocks. (The finalizing check of 3.13 is in _cpython.pxd.)

# 3.9-3.12 keep one interpreter-wide "async exception pending" flag, set by every
# arming and reset only when some thread raises one: after a withdrawal it stays
# set and every thread takes the slow path at each check (11-37% slower loops),
# and after one delivery it is reset although another thread may still be armed.
# 3.13+ keep the flag per thread and reset it themselves.
cdef bint _SHARED_FLAG = PY_VERSION_HEX < 0x030D0000
# 3.10/3.11 create the exception object lazily, when a handler first sees it:
# ``deliver`` runs then, not as the exception is raised (see lost.pxi for one
# that C code discards before that).
cdef bint _LAZY_EXCEPTIONS = PY_VERSION_HEX < 0x030C0000

# 3.11: a thread with a trace or profile function re-checks the eval breaker at
# each function's entry without moving past it, so while the interpreter-wide
# flag is set for another thread's pending exception it makes no progress at all
# (0 calls a second), and withdrawing that exception with NULL leaves the flag,
# and the thread, stuck. hardstop's own profile function (_leave_watch) is
# therefore not used there: a request put off in lock handling is armed by the
# pump's polling (tests/test_stdlib_locks.py). A debugger's, profiler's or
# coverage tool's tracer is the user's: see docs/known-issues.md.
cdef bint _PROFILED_FREEZE = 0x030B0000 <= PY_VERSION_HEX < 0x030C0000

# 3.11 makes a frame's object only when something asks for it, and that
# allocation may start a garbage collection. Asked for another thread's frame
# (PyThreadState_GetFrame, f_back), the collection's callbacks and finalizers,
# Python code, can let the GIL go: that thread then returns from the frame, and
# CPython finishes by tying the new object to the frame's freed memory (a
# segfault, in CI and in tests/test_frames_of_other_threads.py; CPython's own
# sys._current_frames() crashes the same way). So on 3.11 no collection runs
# while hardstop reads another thread's frames (_stop_world), and
# current_frame() makes the objects of all the callers at once, so that code
# walking f_back later makes none. 3.10 has every frame's object already; from
# 3.12 a collection runs only at a check, never inside an allocation.
cdef bint _COLLECTS_IN_ALLOCATION = 0x030B0000 <= PY_VERSION_HEX < 0x030C0000


cdef void _resignal_armed():
    """3.10-3.12: raise the shared flag again for requests still armed elsewhere."""
    cdef _ThreadRecord record
    cdef Receipt receipt
    cdef PyThreadState *ts = NULL
    for record in _records.values():
        receipt = record.armed
        if receipt is None:
            continue
        if _states_of(record, &ts) == 1 and ts.async_exc == <PyObject *>receipt._carrier:
            PyThreadState_SetAsyncExc(receipt.ident, <PyObject *>receipt._carrier)
            return


cdef extern from "shared_flag.h":
    # 3.10-3.12 (shared_flag.c, which includes CPython's internal headers): does
    # the running interpreter have the layout of the headers we were built with;
    # reset the flag as CPython does when an exception is raised.
    bint hardstop_layout_matches()
    void hardstop_clear_shared_flag()


# Cleared in C when the layout is the build's (always, unless a wheel meets a
# patch release that moved CPython's fields); otherwise by raising.
cdef bint _CLEAR_IN_C = _SHARED_FLAG and hardstop_layout_matches()


cdef int _reset_shared_flag() except -1:
    """3.10-3.12: after a withdrawal, clear the interpreter-wide flag; skipped
    while any slot of this interpreter is armed, since that request needs it.

    In C: the scan and the clear run under the GIL with nothing in between, so
    no slot can be armed meanwhile. It keeps eval_breaker set for every other
    request (drop the GIL, a pending signal, pending calls): a scan and a few
    stores, against 0.3 µs for raising and catching an exception."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    while ts != NULL:
        if ts.async_exc != NULL:
            return 0
        ts = PyThreadState_Next(ts)
    if _CLEAR_IN_C:
        hardstop_clear_shared_flag()
    else:
        _reset_by_raising()
    return 0


class _ResetFlag(BaseException):
    """Raised in the calling thread only to make CPython reset its shared flag."""


cdef void _reset_by_raising() except *:
    """The portable reset: raise and catch a private exception in this thread,
    which CPython follows by clearing the flag.

    Armed right after the scan, with no bytecode in between: armed from a
    Python function, another thread could arm a request of ours on this thread
    first, and this one would replace it. A request armed here meanwhile (while
    the bytecode below gives the GIL up) replaces ours instead and is raised in
    its place, as a delivery: it propagates to the caller.

    The handlers of pending signals run first: with ours armed, a Python handler
    would raise it at its first line instead of running (Ctrl-C lost). Whatever
    else is raised in the bytecode (a signal arriving meanwhile) propagates,
    and ours is taken back first, so that it never reaches the caller."""
    cdef unsigned long me = PyThread_get_thread_ident()
    PyErr_CheckSignals()
    PyThreadState_SetAsyncExc(me, <PyObject *>_ResetFlag)
    try:
        _run_bytecode()
    except _ResetFlag:
        pass
    except BaseException:
        _disarm(me, _ResetFlag)
        raise
    if _armed_count:
        _resignal_armed()


# The flag is only checked by bytecode, so the reset needs a few instructions of it.
_namespace = {}
exec("def run_bytecode():\n    for _ in (0, 1, 2):\n        pass\n", _namespace)
_run_bytecode = _namespace.pop("run_bytecode")


def _shared_flag_cleared_in_c(on=None):
    """For the tests: True where the flag is reset in C (3.10-3.12, matching
    layout). ``on=False`` makes the portable reset run instead, ``on=True`` goes
    back; the answer is then the state before the call."""
    global _CLEAR_IN_C
    was = _CLEAR_IN_C
    if on is not None:
        _CLEAR_IN_C = bool(on) and _SHARED_FLAG and hardstop_layout_matches()
    return was


cdef object _condition_exit = None   # threading.Condition.__exit__'s code (bound by hardstop._protected)
cdef object _semaphore_exit = None   # threading.Semaphore.__exit__'s, BoundedSemaphore's too


cdef void _finish_interrupted_exit() except *:
    """Raised at the first instruction of ``Condition.__exit__`` or
    ``Semaphore.__exit__``, which a with statement in any frame calls with no
    protection around it: release what that ``__exit__`` was about to release,
    and let the exception go on from there.

    Likewise inside ``Condition.wait``'s ``finally``, which takes the lock back
    and takes the waiter off the condition's list (else a later notify() is
    spent on it): in a Lock-based condition's ``_acquire_restore``, take the
    lock if it is at its first instruction, and unlist the waiter; right after
    an RLock-based one's, unlist the waiter. A request lands there when it was
    armed while the thread was at a wait and had just returned from it, stopped
    at the check after it: that check tests the flags as they were before it
    stopped (3.13+), so the next check raises it (rare with a GIL; on a
    free-threaded build, whenever the world was stopped to arm it).
    (3.12+ only: before, the exception is created later, away from that frame.)"""
    cdef PyFrameObject *frame = PyEval_GetFrame()
    if frame == NULL:
        return
    current = <object><PyObject *>frame
    code = current.f_code
    if code is _wait_code and _at(current, _restore_offsets):
        _unlist_own_waiter(current)
        return
    if code is _acquire_restore_code:
        if current.f_lasti == 0:   # (after that, only the check after its acquire, which holds the lock)
            current.f_locals.get("self")._lock.acquire()   # C; blocks (critical section suspended) as it would
        waiting = current.f_back
        if waiting is not None and waiting.f_code is _wait_code:
            _unlist_own_waiter(waiting)
        return
    if current.f_lasti > 0 or (code is not _condition_exit and code is not _semaphore_exit):
        return
    lock = current.f_locals.get("self")
    try:
        if code is _condition_exit:
            lock._lock.release()   # C: nothing else can be raised in between
        else:
            lock.release()   # Semaphore.release, Python code, as its own __exit__ would run it
    except (RuntimeError, ValueError):
        pass   # not held, or a BoundedSemaphore released too often: that __exit__ would have failed too


cdef void _unlist_own_waiter(object wait_frame) except *:
    """What Condition.wait's finally does once the lock is back (the calling
    thread's own frame): its waiter off the condition's list, if still there."""
    names = wait_frame.f_locals
    condition, waiter = names.get("self"), names.get("waiter")
    if condition is not None and waiter is not None:
        unlist_waiter(condition._waiters, waiter)


# 3.14 (fixed in 3.15): a with statement calls __enter__ with an ordinary CALL,
# checked for pending exceptions after __enter__ returned and before the body is
# protected, so __exit__ is never called for an exception raised there: a
# `with lock:` leaves the lock held (see hardstop._with_entry).
cdef bint _ENTER_UNPROTECTED = 0x030E0000 <= PY_VERSION_HEX < 0x030F0000
cdef object _finish_enter = None   # hardstop._with_entry.finish_enter
cdef int _CALL = -1
cdef int _LOAD_SPECIAL = -1


def _bind_with_entry(finish_enter):
    global _finish_enter, _CALL, _LOAD_SPECIAL
    if _ENTER_UNPROTECTED:
        from dis import opmap
        _finish_enter, _CALL, _LOAD_SPECIAL = finish_enter, opmap["CALL"], opmap["LOAD_SPECIAL"]


cdef void _finish_interrupted_enter(object exception) except *:
    """Raised at the call of a with statement's ``__enter__`` (``LOAD_SPECIAL 0``
    then ``CALL 0``), so after it returned: have its ``__exit__`` called."""
    cdef PyFrameObject *frame
    cdef Py_ssize_t lasti
    if _finish_enter is None:
        return
    frame = PyEval_GetFrame()
    if frame == NULL:
        return
    current = <object><PyObject *>frame
    lasti = current.f_lasti
    code = current.f_code.co_code   # the unspecialized instructions (cached by CPython)
    if (lasti < 2 or lasti + 1 >= len(code) or code[lasti] != _CALL or code[lasti + 1] != 0
            or code[lasti - 2] != _LOAD_SPECIAL or code[lasti - 1] != 0):
        return
    _finish_enter(current, exception)
