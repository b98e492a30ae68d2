# 3.15+: a worker thread is sent the wake signal only when the call in progress in
# its innermost Python frame is one whose wait the signal ends (gh-144748), such
# as time.sleep or a socket's recv: signalling a thread that runs Python or waits
# in Lock.acquire ends nothing and cost each request 6-40 µs. The call is read by
# call_in_progress.c; hardstop._wake_calls lists the functions and builds the
# opcode table. Earlier versions never signal a worker: nothing here is used.

cdef extern from "call_in_progress.h":
    int HARDSTOP_CALL_UNKNOWN
    int HARDSTOP_CALL_FOUND
    void hardstop_set_call_kinds(const unsigned char *kinds) noexcept
    int hardstop_call_in_progress(PyThreadState *ts, PyObject **callable) noexcept
    bint hardstop_reads_own_call(PyObject *expected) noexcept
    void *hardstop_method_def(PyObject *callable) noexcept

# The C functions (PyMethodDef addresses) of the listed calls: one def serves a
# builtin function, its method descriptor and every bound method made from it.
cdef Py_ssize_t _SIGNAL_ENDED_MAX = 128
cdef void *_signal_ended[128]
cdef Py_ssize_t _signal_ended_count = 0
# Calls are read only once the table is set and the self-check passed; until
# then every worker is signalled, as before (a needless signal, never a missed one).
cdef bint _reads_calls = False


def _set_signal_ended_calls(bytes kinds, functions):
    """Set what each opcode is (256 bytes, call_in_progress.h's HARDSTOP_OP_*)
    and the functions whose wait the wake signal ends; True if the calling
    thread's own call reads right, so that other threads' calls are read."""
    global _signal_ended_count, _reads_calls
    functions = list(functions)
    if len(kinds) != 256:
        raise ValueError(f"The opcode table must have 256 entries, not {len(kinds)}.")
    if len(functions) > _SIGNAL_ENDED_MAX:
        raise ValueError(f"At most {_SIGNAL_ENDED_MAX} functions can be listed, not {len(functions)}.")
    for function in functions:
        if hardstop_method_def(<PyObject *>function) == NULL:
            raise TypeError(f"{function!r} is not a builtin function or method descriptor.")
    with cython.critical_section(_CORE):
        _reads_calls = False
        hardstop_set_call_kinds(kinds)
        _signal_ended_count = 0
        for function in functions:
            _signal_ended[_signal_ended_count] = hardstop_method_def(<PyObject *>function)
            _signal_ended_count += 1
        _reads_calls = hardstop_reads_own_call(<PyObject *>_set_signal_ended_calls)
    return _reads_calls


cdef bint _signal_may_end_call(PyThreadState *ts) noexcept:
    """Might the wake signal end the call thread ``ts`` is in? True when it is
    a listed one, or when that cannot be told; the caller holds the GIL (the
    world stopped, free-threaded)."""
    cdef PyObject *callable = NULL
    cdef void *method
    cdef Py_ssize_t index
    if not _reads_calls:
        return True
    cdef int found = hardstop_call_in_progress(ts, &callable)
    if found == HARDSTOP_CALL_UNKNOWN:
        return True
    if found != HARDSTOP_CALL_FOUND:
        return False
    method = hardstop_method_def(callable)
    if method == NULL:
        return False
    for index in range(_signal_ended_count):
        if _signal_ended[index] == method:
            return True
    return False


def signal_may_end_call(unsigned long ident):
    """3.15+: might the wake signal end the call the thread ``ident`` is in (a
    listed call, or one that cannot be read)? False with no single thread
    state for ``ident``."""
    cdef PyThreadState *ts = NULL
    cdef bint may = False
    with cython.critical_section(_CORE):
        _stop_world()
        try:
            if _count_states(ident, &ts) == 1:
                may = _signal_may_end_call(ts)
        finally:
            _start_world()
    return may


def _call_in_progress(unsigned long ident):
    """For the tests: (what was read, the callable or None) for thread ``ident``:
    "found", "none" or "unknown"."""
    cdef PyThreadState *ts = NULL
    cdef PyObject *callable = NULL
    cdef int found = HARDSTOP_CALL_UNKNOWN
    with cython.critical_section(_CORE):
        _stop_world()
        try:
            if _count_states(ident, &ts) == 1:
                found = hardstop_call_in_progress(ts, &callable)
            result = None if callable == NULL else <object>callable
        finally:
            _start_world()
    return ("unknown", "none", "found")[found + 1], result
