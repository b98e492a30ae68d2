# The C API (hardstop.h): a versioned capsule of functions that take the GIL.

cdef extern from "hardstop.h":
    ctypedef struct Hardstop_CAPI:
        int version
        int (*interrupt_ident)(unsigned long, PyObject *, PyObject **) noexcept nogil
        int (*cancel)(PyObject *) noexcept nogil
        int (*wait)(PyObject *, double) noexcept nogil
    int HARDSTOP_CAPI_VERSION
    int HARDSTOP_ERROR
    int HARDSTOP_NOT_FOUND
    int HARDSTOP_AMBIGUOUS
    int HARDSTOP_INVALID
    const char *HARDSTOP_CAPSULE_NAME


def _bind_interrupt(start_pump, wake):
    global _start_pump, _wake, _unblocker_stacks, _signal_workers
    _start_pump = start_pump
    _wake = wake
    _unblocker_stacks = wake._stacks.data   # the same dict for good: _wake only clears it
    _signal_workers = wake._SIGNAL_WORKERS


cdef int _failure(BaseException error, bint caller_held_gil) noexcept:
    """Map an exception to a C API code; leave it set only if the caller holds the GIL."""
    cdef int code = HARDSTOP_ERROR
    if isinstance(error, ThreadNotFound):
        code = HARDSTOP_NOT_FOUND
    elif isinstance(error, AmbiguousThread):
        code = HARDSTOP_AMBIGUOUS
    elif isinstance(error, (TypeError, ValueError)):
        code = HARDSTOP_INVALID
    if caller_held_gil:
        PyErr_SetObject(type(error), error)
    return code


cdef int _capi_interrupt_gil(unsigned long ident, object exc, PyObject **out, bint held) noexcept:
    try:
        receipt = interrupt(ident, exc)
    except BaseException as error:
        return _failure(error, held)
    if out != NULL:
        Py_INCREF(receipt)
        out[0] = <PyObject *>receipt
    return 0


cdef int _capi_interrupt(unsigned long ident, PyObject *exc, PyObject **out) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_interrupt_gil(ident, <object>exc if exc != NULL else Interrupted, out, held)
    return code


cdef int _capi_cancel_gil(object receipt, bint held) noexcept:
    try:
        return 1 if (<Receipt?>receipt).cancel() else 0
    except BaseException as error:
        return _failure(error, held)


cdef int _capi_cancel(PyObject *receipt) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_cancel_gil(<object>receipt, held)
    return code


cdef int _capi_wait_gil(object receipt, double timeout, bint held) noexcept:
    try:
        return 1 if (<Receipt?>receipt).wait(None if timeout < 0 else timeout) else 0
    except BaseException as error:
        return _failure(error, held)


cdef int _capi_wait(PyObject *receipt, double timeout) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_wait_gil(<object>receipt, timeout, held)
    return code


cdef Hardstop_CAPI _capi
_capi.version = HARDSTOP_CAPI_VERSION
_capi.interrupt_ident = _capi_interrupt
_capi.cancel = _capi_cancel
_capi.wait = _capi_wait
_C_API = PyCapsule_New(<void *>&_capi, HARDSTOP_CAPSULE_NAME, NULL)
