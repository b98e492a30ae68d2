# Never arm a request while the target runs the standard library's own lock
# handling: hardstop._protected binds the code objects, and a request aimed there
# is armed by the thread itself as it returns to other code (_leave_watch).

# Standard-library lock handling (threading, queue, ...) that an exception must
# not land in: a Condition's __exit__ interrupted at its first line leaves the
# lock held, and Queue's bookkeeping half done. Filled by hardstop._protected.
cdef set _protected_codes = set()   # id() of each code object (kept alive there)
cdef object _wait_code = None       # Condition.wait: protected but at its waits
# The instruction offsets of Condition.wait's wait lines, as (start, end) pairs:
# tested against the frame's last instruction, with no line number computed.
cdef list _wait_offsets = []
# And of its finally's line that takes the lock back (version_quirks.pxi).
cdef list _restore_offsets = []


def _bind_protected(codes, wait_code, wait_lines, restore_lines, condition_exit, semaphore_exit):
    global _protected_codes, _wait_code, _wait_offsets, _restore_offsets, _condition_exit, _semaphore_exit
    _protected_codes = {id(code) for code in codes}
    _wait_code = wait_code
    _wait_offsets = _offsets_of(wait_code, wait_lines)
    _restore_offsets = _offsets_of(wait_code, restore_lines)
    _condition_exit, _semaphore_exit = condition_exit, semaphore_exit


cdef list _offsets_of(object code, object lines):
    lines = frozenset(lines)
    return [(start, end) for start, end, line in code.co_lines() if line in lines]


cdef bint _at(object frame, list offsets) except -1:
    cdef Py_ssize_t lasti = frame.f_lasti
    for start, end in offsets:
        if <Py_ssize_t>start <= lasti < <Py_ssize_t>end:
            return True
    return False


cdef bint _at_a_wait(object frame) except -1:
    return _at(frame, _wait_offsets)


cdef bint _leaving = False          # _leave_watch is arming: the frame being left does not count
# Armed by their own thread in _leave_watch, which cannot wake a wait that thread
# is about to begin (a time.sleep right after a `with condition:`): the pump
# wakes them on its next round, and again at each of _REWAKE_AFTER (seconds
# after arming) while they stay armed. One wake is not enough: the pump runs as
# the thread gives the GIL up to begin its wait, and a signal that arrives
# before the system call starts is lost (an ASan CI run slept 60 s so).
cdef dict _armed_unwoken = {}   # receipt -> (when armed, wakes sent)
cdef tuple _REWAKE_AFTER = (0.0, 0.02, 0.1, 0.5)


cdef bint _protected_frame(PyFrameObject *frame) except -1:
    if frame == NULL:
        return False
    current = <object><PyObject *>frame
    code = current.f_code
    if id(code) not in _protected_codes:
        return False
    return code is not _wait_code or not _at_a_wait(current)


cdef bint _in_protected_code(PyThreadState *ts) except -1:
    """Is the thread's innermost frame standard-library lock handling? Arming
    there is put off until it returns to other code (see _leave_watch); the next
    check after a thread stopped in other code is at a function's start, before
    it has done anything. While a Python trace or profile function runs, what
    counts is the frame it was called for."""
    cdef PyFrameObject *frame
    if _leaving or not _protected_codes:
        return False
    frame = PyThreadState_GetFrame(ts)
    if frame == NULL:
        return False
    innermost = <object><PyObject *>frame
    Py_DECREF(innermost)   # the reference PyThreadState_GetFrame gave us (``innermost`` holds its own)
    if ts.tracing > 0:
        innermost = _traced_frame(ts, innermost)
    return _protected_frame(<PyFrameObject *>innermost)


cdef object _traced_frame(PyThreadState *ts, object innermost):
    """The frame that the running trace or profile function was called for: the
    caller of the innermost frame of that function's own code (the function given
    to sys.settrace or sys.setprofile, or the frame's local trace function). An
    exception raised inside the tracer goes on from that frame, at the point it
    was traced: after a lock was taken in Condition.__enter__, it left the lock
    held (debuggers, coverage tools and profilers run such functions)."""
    entries = []
    for tracer in ((<object>ts.c_traceobj) if ts.c_traceobj != NULL else None,
                   (<object>ts.c_profileobj) if ts.c_profileobj != NULL else None):
        if tracer is not None:
            entries.append(_code_of(tracer))
    current = innermost
    caller = current.f_back
    while caller is not None:
        code = current.f_code
        if code in entries or (caller.f_trace is not None and code is _code_of(caller.f_trace)):
            return caller
        current, caller = caller, caller.f_back
    return innermost   # no tracer of Python code found: a C tracer's callback, judged as it is


cdef object _code_of(object function):
    """The code a Python callable runs first, or None."""
    function = getattr(function, "__func__", function)   # a bound method
    code = getattr(function, "__code__", None)
    if code is None:
        code = getattr(getattr(type(function), "__call__", None), "__code__", None)
    return code


cdef void _watch_leave(PyThreadState *ts, _ThreadRecord record) noexcept:
    """Have the thread itself arm its request as it returns to other code: polling
    from outside sees a thread busy with a Queue almost only inside it (it gives
    the GIL up at checks, and nearly all of its checks are there). A thread that
    has a profile function of its own is left to the pump, and so is every thread
    on 3.11, where a profile function can freeze it (_PROFILED_FREEZE), and on
    free-threaded builds, where setting another running thread's profile function
    changes its code's instrumentation under it (and stops the world itself)."""
    if _PROFILED_FREEZE or HARDSTOP_FREE_THREADED or record.watching_leave or ts.c_profilefunc != NULL:
        return
    if _PyEval_SetProfile(ts, _leave_watch, NULL) < 0:
        PyErr_Clear()   # an audit hook refused: the pump still polls
        return
    record.watching_leave = True


cdef void _watch_own_leave(_ThreadRecord record) noexcept:
    """``_watch_leave`` for the calling thread, on any build (free-threaded ones
    set no other thread's profile function); the world must not be stopped."""
    cdef PyThreadState *ts = PyThreadState_Get()
    if _PROFILED_FREEZE or record.watching_leave or ts.c_profilefunc != NULL:
        return
    if _PyEval_SetProfile(ts, _leave_watch, NULL) < 0:
        PyErr_Clear()
        return
    record.watching_leave = True


cdef int _leave_watch(PyObject *unused, PyFrameObject *frame, int what, PyObject *result) noexcept:
    """Profile function of a thread with a request put off: on a normal return
    to a frame outside the lock handling, arm it (raised at the caller's next check)."""
    global _leaving
    cdef PyFrameObject *caller
    cdef _ThreadRecord record
    if what != PyTrace_RETURN or result == NULL or frame == NULL:   # NULL result: an exception unwinds
        return 0
    caller = PyFrame_GetBack(frame)
    try:
        if _protected_frame(caller):
            return 0
    except BaseException:
        PyErr_Clear()
        return 0
    finally:
        if caller != NULL:
            Py_DECREF(<object><PyObject *>caller)
    _PyEval_SetProfile(PyThreadState_Get(), NULL, NULL)
    record = _record_here()
    if record is None:
        return 0
    with cython.critical_section(_CORE):
        record.watching_leave = False
        _leaving = True
        try:
            receipt = _arm_next(record)
            if receipt is not None:
                _armed_unwoken[receipt] = (_monotonic(), 0)
        except BaseException:
            PyErr_Clear()
        finally:
            _leaving = False
    return 0


def in_protected_code(unsigned long ident):
    """True when the thread ``ident`` is inside standard-library lock handling."""
    cdef PyThreadState *ts = NULL
    with cython.critical_section(_CORE):
        _stop_world()
        try:
            return _count_states(ident, &ts) == 1 and _in_protected_code(ts)
        finally:
            _start_world()
