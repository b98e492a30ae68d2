# CPython swallows an exception raised in __del__, a weakref callback or a GC
# callback: it hands it to sys.unraisablehook and goes on. One of ours raised
# there was not delivered to the code it was aimed at, so its receipt must not
# say so. hardstop wraps whatever hook is installed when it delivers (pytest,
# for one, installs its own once per session), and the wrapper, called in the
# thread that swallowed it, turns that receipt to "undelivered" before passing
# the exception on. Deadlines and kill() then raise again, as when any code
# swallows their exception. A deadline's expiry is not passed on: it is
# hardstop's own carrier, which the program never sees, and the deadline fires
# again (without that, Dask's GC diagnostics printed "Exception ignored" for it).
cdef str _SWALLOWED = ("raised inside a finalizer (__del__, a weakref or GC callback), where CPython "
                       "swallows exceptions: it went to sys.unraisablehook")


cdef class _SwallowWatch:
    cdef readonly object wrapped

    def __call__(self, unraisable):
        cdef _ThreadRecord record
        cdef shield held
        if _swallowed(getattr(unraisable, "exc_value", None)):
            return None
        # The hook reports the error (it formats a traceback, pytest records it):
        # a request that lands in it would break the report. Held until it returns.
        # No thread is started from in here (a finalizer runs wherever a decref or
        # the collector does, even inside threading's own lock handling, and a
        # request raised in Thread.start() would be lost there): while the thread
        # reports, the pump is started by whoever queues a request for it
        # (_pump_needed), so leaving only arms.
        record = _own_record()
        held = shield()
        held.__enter__()
        record.reporting += 1
        try:
            return self.wrapped(unraisable)
        finally:
            held._leave(False)
            record.reporting -= 1

    def __repr__(self):
        return f"<hardstop watching {self.wrapped!r}>"


cdef void _watch_unraisable() except *:
    cdef _SwallowWatch watch
    hook = _sys.unraisablehook
    if type(hook) is not _SwallowWatch:
        watch = _SwallowWatch.__new__(_SwallowWatch)
        watch.wrapped = hook
        _sys.unraisablehook = watch


cdef bint _swallowed(object error) except -1:
    """Turn the receipt of ``error``, just swallowed, to undelivered; True if it was a deadline's expiry."""
    cdef _ThreadRecord record = _record_here()
    cdef Receipt receipt = None
    if record is not None and record.last_delivered is not None:
        receipt = record.last_delivered()
    if receipt is None or error is None or receipt.exception is not error or receipt._status is not DELIVERED:
        return False
    record.last_delivered = None
    _finish(receipt, UNDELIVERED, _SWALLOWED)
    record.handling = 0   # nothing handles it: the next request may be armed
    if receipt._scope is not None and (<Deadline>receipt._scope)._raises is not None:
        _refire_soon(<Deadline>receipt._scope)   # it fires once, but its block never saw this one
    return receipt._scope is not None


cdef extern from *:
    """
    /* What CPython's own finalizer errors go through: the error is set, the
       installed sys.unraisablehook is called with a real UnraisableHookArgs (the
       default hook refuses any other object with a TypeError), and a hook that
       fails is reported on stderr, never raised. 3.13 made it public under a new
       name; before, the message's "Exception ignored " prefix is added for us. */
    #if PY_VERSION_HEX >= 0x030D0000
    #define hardstop_write_unraisable(text) PyErr_FormatUnraisable("Exception ignored %s", (text))
    #else
    #define hardstop_write_unraisable(text) _PyErr_WriteUnraisableMsg((text), NULL)
    #endif
    """
    void hardstop_write_unraisable(const char *text)


def write_unraisable(BaseException error, str where):
    """Hand ``error``, which hardstop's own code caught and cannot raise (in a
    helper thread, or an unblocker's), to ``sys.unraisablehook`` as CPython does
    its own: the hook gets ``err_msg`` "Exception ignored " + ``where``."""
    cdef bytes text = where.encode("utf-8", "backslashreplace")
    kind = type(error)
    traceback = error.__traceback__
    Py_INCREF(kind)   # PyErr_Restore takes over one reference of each
    Py_INCREF(error)
    if traceback is not None:
        Py_INCREF(traceback)
    PyErr_Restore(<PyObject *>kind, <PyObject *>error, <PyObject *>traceback if traceback is not None else NULL)
    hardstop_write_unraisable(text)
