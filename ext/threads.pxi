# Thread states and the tables kept per thread ident.
#
# A request names an ident; CPython arms the first thread state that carries it,
# which may be an idle twin. So every step walks this interpreter's thread states
# (_count_states) and acts only when exactly one carries the ident. A _ThreadWatch
# kept in the target's thread-state dict is dropped by CPython as the thread ends,
# with the GIL, before the ident can be reused: _thread_ended then settles every
# request still pending for it.

cdef dict _armed = {}    # ident -> the Receipt whose carrier is in that thread's slot
cdef dict _queued = {}   # ident -> list of Receipts waiting for the slot, oldest first
# ident -> address of the exception of ours it raised last. An address, not the
# object: holding it would keep its traceback's frames (and their locals) alive.
# A reused address can only delay the next request until that handler ends.
cdef dict _handling = {}


# ident -> the Receipt raised there last, until the next or the thread's end: how
# an exception that CPython swallows in a finalizer is recognised (_SwallowWatch).
cdef dict _last_delivered = {}
cdef dict _active = threading._active   # threading's own registry: ident -> Thread
cdef str _WATCH_KEY = "hardstop._hardstop.watch"


cdef int _count_states(unsigned long ident, PyThreadState **found) noexcept:
    """How many thread states of this interpreter carry ``ident``; the last in ``found``."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    cdef int n = 0
    while ts != NULL:
        if ts.thread_id == ident:
            n += 1
            found[0] = ts
        ts = PyThreadState_Next(ts)
    return n


def thread_idents():
    """The ident of every thread state of this interpreter, newest first.

    Unlike ``sys._current_frames()``, this includes threads with no Python frame.
    """
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    idents = []
    while ts != NULL:
        idents.append(ts.thread_id)
        ts = PyThreadState_Next(ts)
    return idents


cdef bint _disarm(unsigned long ident, object carrier) noexcept:
    """Empty the slot of the thread ``ident`` if it still holds ``carrier``."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    cdef PyObject *held
    while ts != NULL:
        if ts.thread_id == ident and ts.async_exc == <PyObject *>carrier:
            held = ts.async_exc
            ts.async_exc = NULL
            Py_DECREF(<object>held)
            return True
        ts = PyThreadState_Next(ts)
    return False


cdef class _ThreadWatch:
    """Kept in a target's thread-state dict; CPython drops it as the thread ends.

    ``PyThreadState_Clear`` clears that dict in the ending thread, with the GIL,
    before the ident can be reused: requests still pending then never were raised.
    """
    cdef unsigned long ident

    def __dealloc__(self):
        if self.ident and _armed is not None:
            _thread_ended(self.ident)


cdef str _why_ended():
    """The reason given to a request whose thread is gone before it raised it."""
    if hardstop_is_finalizing():
        return ("the interpreter shut down before the thread raised this exception "
                "(daemon threads run no more Python code)")
    return "the thread ended before it raised this exception"


cdef void _thread_ended(unsigned long ident):
    cdef Receipt receipt
    pending = _queued.pop(ident, [])
    armed = _armed.pop(ident, None)
    _handling.pop(ident, None)
    _scopes.pop(ident, None)
    _last_delivered.pop(ident, None)
    _watching_leave.discard(ident)
    if armed is not None:
        pending.insert(0, armed)
    why = _why_ended()
    for receipt in pending:
        _finish(receipt, UNDELIVERED, why)


cdef int _watch(PyThreadState *ts, unsigned long ident) except -1:
    cdef _ThreadWatch watch
    if ts.dict == NULL:
        ts.dict = PyDict_New()   # what PyThreadState_GetDict does for its own thread
        if ts.dict == NULL:
            return -1
    states = <dict>ts.dict
    old = states.get(_WATCH_KEY)
    if old is not None and (<_ThreadWatch>old).ident == ident:
        return 0
    if old is not None:
        (<_ThreadWatch>old).ident = 0   # the state changed ident: the old watch means nothing
    watch = _ThreadWatch.__new__(_ThreadWatch)
    watch.ident = ident
    states[_WATCH_KEY] = watch
    return 0


cdef PyThreadState *_only_state(unsigned long ident) except NULL:
    cdef PyThreadState *ts = NULL
    cdef int n = _count_states(ident, &ts)
    if n == 1:
        return ts
    if n == 0 and hardstop_is_finalizing():
        raise ThreadNotFound(
            f"The interpreter is shutting down: thread {ident} runs no more Python code, so nothing was armed."
        )
    if n == 0:
        raise ThreadNotFound(f"No live thread of this interpreter has ident {ident}.")
    raise AmbiguousThread(
        f"{n} thread states of this interpreter carry ident {ident}, so CPython could arm an idle one: "
        "refused (on 3.10/3.11 this happens while that thread is starting another one)."
    )


def current_frame(unsigned long ident):
    """The frame the thread ``ident`` is running (or blocked in), or None.

    None as well when no single thread state carries ``ident``.
    """
    cdef PyThreadState *ts = NULL
    cdef PyFrameObject *frame
    if _count_states(ident, &ts) != 1:
        return None
    frame = PyThreadState_GetFrame(ts)
    if frame == NULL:
        return None
    result = <object><PyObject *>frame
    Py_DECREF(result)   # drop the reference PyThreadState_GetFrame gave us
    return result


def slot_is_empty(unsigned long ident):
    """True when no thread state carrying ``ident`` has anything in its slot."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    while ts != NULL:
        if ts.thread_id == ident and ts.async_exc != NULL:
            return False
        ts = PyThreadState_Next(ts)
    return True
