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


# Bookkeeping callbacks, which run wherever CPython's own machinery runs them and
# are never the code a request was aimed at:
#
# * the weakref callbacks of the standard library's weak containers (WeakSet,
#   WeakValueDictionary, WeakKeyDictionary), run wherever an object in one is
#   freed. On free-threaded builds an object that another thread dropped last is
#   freed by the thread that made it, at that thread's next check, just before
#   CPython raises a pending request there: threading keeps every Thread in a
#   WeakSet, so a request aimed at the thread that started a finished worker
#   landed in that WeakSet's callback and was swallowed (5 of 5 on 3.14t);
# * the functions in gc.callbacks (hypothesis and Dask install one), run by the
#   collector at a check, before that check raises the pending request. A
#   Condition wait that hardstop woke for a request returns as if notified when
#   the request is swallowed there. (3.12, the full suite with hypothesis loaded:
#   requests landed in its callback while the target started threads, and the
#   target died of a RuntimeError, as when Thread.start() returns before the
#   thread has started.) The callback is still cut short where it landed.
#
# A request raised in one of these is put off instead: a stand-in (_PutOff) is
# raised in its place, and the request is armed again when CPython hands the
# stand-in to sys.unraisablehook, so that it is raised at the next check after
# the callback. Not at once: 3.15 also raises a pending request in C code, and
# CPython's report of the callback's error formats the callback's repr first,
# dropping any error raised there: a request armed again at once was raised in
# that formatting and lost, its receipt saying "delivered" (the shield rain and
# the thread-start tests, 3.15, the full suite). If the stand-in never reaches
# the hook (the callback caught it), the request is armed again once it has
# been out of the slot for _GIVE_UP_AFTER (lost.pxi). (3.12+: before, the
# exception is created later, away from that frame, and is swallowed there.)
import _weakrefset
import gc as _gc
import weakref as _weakref
from types import CodeType as _CodeType

# id() of each container callback's code object (kept alive by its class).
cdef frozenset _container_callbacks = frozenset(
    id(constant) for owner in (_weakrefset.WeakSet, _weakref.WeakValueDictionary, _weakref.WeakKeyDictionary)
    for constant in owner.__init__.__code__.co_consts if type(constant) is _CodeType
)


class _PutOff(BaseException):
    """Raised (and swallowed by CPython) in a bookkeeping callback in place of a
    request of ours, which is armed again once CPython has reported it (see above)."""


cdef void _arm_put_off(_ThreadRecord record, bint in_its_thread) except *:
    """Arm again the request that ``record``'s thread put off, if it still stands,
    as a queued one is armed: first in its queue, and not while the thread runs
    lock handling (a GC callback runs at any check, inside Condition.wait's
    finally too: armed there, it left an RLock held, 3.13) nor inside a shield;
    it is then armed as the thread leaves that code (_arm_next).

    Free-threaded builds leave such a thread to the pump, but no pump may be
    started from sys.unraisablehook, and there the callback is often one the
    pump's own end ran: the pump's Thread object, made by this thread, is freed
    in it, with the weak containers' callbacks (a request put off so, at the
    start of Event.is_set(), waited for ever: 1 run in 8 of a shield test,
    3.14t). Called in its own thread, it watches itself leave the lock
    handling, as every thread does on the other builds."""
    cdef Receipt receipt = record.armed
    if record.put_off_at == 0.0:
        return
    _take_armed(record)   # (ends the put-off)
    if receipt is not None and receipt._status is PENDING:
        _enqueue(record, receipt, True)
        _arm_next(record)
        if HARDSTOP_FREE_THREADED and in_its_thread and record.armed is None and record.queued:
            _watch_own_leave(record)


# How many frames up from the innermost one a callback is looked for: a callback
# that calls a function (threading.current_thread(), say) is still the callback.
cdef int _CALLBACK_DEPTH = 8


cdef bint _in_bookkeeping_callback() except -1:
    """Is the calling thread running one of the callbacks above (3.12+)?"""
    cdef PyFrameObject *frame = PyEval_GetFrame()
    cdef int depth
    if frame == NULL or _LAZY_EXCEPTIONS:
        return False
    gc_callback_codes = [_code_of(callback) for callback in _gc.callbacks]   # usually none or one
    current = <object><PyObject *>frame
    for depth in range(_CALLBACK_DEPTH):
        code = hardstop_frame_code(<PyFrameObject *>current)
        if id(code) in _container_callbacks:
            return True
        for callback_code in gc_callback_codes:
            if callback_code is code:
                return True
        current = current.f_back
        if current is None:
            return False
    return False


cdef class _SwallowWatch:
    cdef readonly object wrapped

    def __call__(self, unraisable):
        cdef _ThreadRecord record
        cdef shield held
        error = getattr(unraisable, "exc_value", None)
        with cython.critical_section(_CORE):
            if _swallowed(error):
                return None
        # The hook reports the error (it formats a traceback, pytest records it):
        # a request that lands in it would break the report. Held until it returns.
        # No thread is started from in here (a finalizer runs wherever a decref or
        # the collector does, even inside threading's own lock handling, and a
        # request raised in Thread.start() would be lost there): while the thread
        # reports, the pump is started by whoever queues a request for it
        # (_pump_needed), so leaving only arms.
        held = shield()
        with cython.critical_section(_CORE):
            record = _own_record()
            held._enter()
            record.reporting += 1
        try:
            return self.wrapped(unraisable)
        finally:
            with cython.critical_section(_CORE):
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
    if type(error) is _PutOff:
        if record is not None:
            _arm_put_off(record, True)   # reported: the next check raises the request
        return True   # ours: nothing to report
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
