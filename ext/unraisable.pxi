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
        if _swallowed(getattr(unraisable, "exc_value", None)):
            return None
        # The hook reports the error (it formats a traceback, pytest records it):
        # a request that lands in it would break the report. Held until it returns.
        with shield():
            return self.wrapped(unraisable)

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
