# Thread states, and the one record hardstop keeps per thread.
#
# A request names an ident; CPython arms the first thread state that carries it,
# which may be an idle twin. So every step acts only when exactly one of this
# interpreter's thread states carries the ident: _count_states walks them all,
# and _states_of (for a thread with a record) walks them only when a thread
# state was added since its last walk (with 1,000 threads a walk cost more than
# the rest of a request).
#
# Everything hardstop knows about one thread is in its _ThreadRecord: what is
# armed in its slot, what is queued behind it, what it is handling, its scopes
# and shields, whether its profile function watches for it leaving lock
# handling, and (weakly) the receipt it raised last. _records maps each ident to
# its record; the thread's own state dict holds a _ThreadWatch that holds the
# record, so the thread finds its record without a lookup by ident, and CPython
# drops the watch as the thread ends (with the GIL, before the ident can be
# reused): _thread_ended then drops the record and settles what it still held.
# A fork drops every record but the forking thread's (fork.pxi). Nothing else is
# kept per thread. (Free-threaded builds, issue 17: the record is where a
# per-thread lock goes.)

cdef Py_ssize_t _armed_count = 0   # records with something armed: 3.10-3.12 re-signal them
# The records with something queued (the pump's work), so that it does not look
# at every thread. (The armed ones are not kept apart: a dict kept up to date on
# every request cost 15% of one; _resignal_armed looks only while any is armed.)
cdef dict _queued_records = {}
cdef dict _active = threading._active   # threading's own registry: ident -> Thread
cdef str _WATCH_KEY = "hardstop._hardstop.watch"


cdef class _ThreadRecord:
    """hardstop's state for one thread ident."""
    cdef readonly unsigned long ident
    cdef object key           # the ident as an int: the key in _records, made once
    cdef Receipt armed        # the request whose carrier is in the slot, or None
    cdef list queued          # requests waiting for the slot, oldest first; None when none
    # Address of the exception of ours it raised last, while it may be handling it
    # (0: none). An address, not the object: holding it would keep its traceback's
    # frames (and their locals) alive. A reused address can only delay the next
    # request until that handler ends.
    cdef Py_ssize_t handling
    # A weak reference to the receipt raised there last, until the next: how an
    # exception that CPython swallows in a finalizer is recognised (unraisable.pxi).
    # Weak, so that a receipt the program dropped (and its exception, traceback
    # and frames) is freed.
    cdef object last_delivered
    cdef long long entered    # scopes this thread has entered: the last one's position (scopes.pxi)
    cdef long long shield_top  # position of its innermost open shield; 0 when it is in none
    cdef list shields         # positions of its open shields, in the order entered; None before the first
    cdef bint watching_leave  # its profile function is _leave_watch (stdlib_locks.pxi)
    cdef int reporting        # it is inside the sys.unraisablehook wrapper (unraisable.pxi)
    cdef bint delivering      # it is inside a carrier's __new__ (receipt.pxi's deliver)
    cdef bint starting_pump   # it starts the pump as it leaves a shield: nothing is armed for it meanwhile (scopes.pxi)
    cdef double put_off_at    # when its armed request was put off in a callback (unraisable.pxi); 0 once armed again
    # Its thread state, as the last walk found it alone with the ident, and the
    # interpreter's newest state (address and id) then: see _states_of.
    cdef PyThreadState *state
    cdef PyThreadState *newest
    cdef unsigned long long newest_id


cdef dict _records = {}   # ident -> _ThreadRecord

# The object whose critical section guards hardstop's state (see above).
cdef object _CORE = _records
if hardstop_keep_core(<PyObject *>_CORE) != 0:
    raise OSError("hardstop could not register its fork handler (pthread_atfork failed).")
# How deeply the calling thread has stopped the world: only the thread that
# stopped it runs until it starts it again, so only that thread sees it non-zero.
cdef int _world_stops = 0
cdef bint _collector_was_on = False   # 3.11: as the world stopped


cdef inline void _stop_world() noexcept:
    """Before reading other threads' frames or states: free-threaded builds
    suspend every other thread (reentrant); 3.11 turns the garbage collector off
    (version_quirks.pxi: _COLLECTS_IN_ALLOCATION); else nothing."""
    global _world_stops, _collector_was_on
    if HARDSTOP_FREE_THREADED:
        if _world_stops == 0:
            hardstop_stop_world()
        _world_stops += 1
    elif _COLLECTS_IN_ALLOCATION:
        if _world_stops == 0:
            _collector_was_on = PyGC_Disable()
        _world_stops += 1


cdef inline void _start_world() noexcept:
    global _world_stops
    if HARDSTOP_FREE_THREADED:
        _world_stops -= 1
        if _world_stops == 0:
            hardstop_start_world()
    elif _COLLECTS_IN_ALLOCATION:
        _world_stops -= 1
        if _world_stops == 0 and _collector_was_on:
            PyGC_Enable()


@cython.no_gc
cdef class _ThreadWatch:
    """Kept in a target's thread-state dict; CPython drops it as the thread ends.

    ``PyThreadState_Clear`` clears that dict in the ending thread, with the GIL,
    before the ident can be reused: requests still pending then never were raised.
    """
    cdef _ThreadRecord record

    def __dealloc__(self):
        if self.record is not None and _records is not None:
            with cython.critical_section(_CORE):
                _thread_ended(self.record)


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


cdef int _states_of(_ThreadRecord record, PyThreadState **found) noexcept:
    """``_count_states`` for a thread with a record, without the walk when no
    thread state was added since the last one found it alone.

    New thread states go to the head of the list, so an unchanged head (same
    address, same unique id: not a new state where a freed one was) means none
    was added: no twin can have appeared. The state kept is the one whose dict
    holds the record's watch, alive while the record is in _records: the record
    leaves _records when the watch is freed, and the watch (referenced only by
    the state's dict, and untracked by the collector, so nothing else can hold
    it) is freed as CPython clears that dict, before it frees the state. Not while the interpreter shuts down (it frees
    other threads' states without clearing them), nor on free-threaded builds
    (a watch may be freed later, by the thread that made it)."""
    cdef PyThreadState *head = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    cdef int n
    # (An ended record's state is NULL: _thread_ended, fork.pxi.)
    if (record.state != NULL and head == record.newest and head.id == record.newest_id
            and not hardstop_is_finalizing()):
        found[0] = record.state
        return 1
    n = _count_states(record.ident, found)
    record.state = NULL
    if (not HARDSTOP_FREE_THREADED and n == 1 and _records.get(record.key) is record
            and _holds_watch_of(found[0], record)):
        record.state, record.newest, record.newest_id = found[0], head, head.id
    return n


cdef _ThreadRecord _last_record = None   # the last looked up: most requests go where the last one went


cdef inline _ThreadRecord _record_of(object key, unsigned long ident):
    """The record of the thread with ident ``key`` (``ident`` as a C number), or None."""
    global _last_record
    cdef _ThreadRecord record = _last_record
    if record is not None and record.ident == ident and record.state != NULL:
        return record   # (not ended: an ended record's state is NULL)
    record = _records.get(key)
    if record is not None:
        _last_record = record
    return record


cdef inline bint _holds_watch_of(PyThreadState *ts, _ThreadRecord record) noexcept:
    """Is ``ts`` the state whose dict holds the record's watch? (The one state a
    record may stand for: another with the ident, in another interpreter that
    shares this module, ends without telling the record.)"""
    cdef PyObject *watch
    if ts.dict == NULL:
        return False
    watch = PyDict_GetItem(<object>ts.dict, _WATCH_KEY)   # borrowed; never raises
    return watch != NULL and (<_ThreadWatch>watch).record is record


def thread_idents():
    """The ident of every thread state of this interpreter, newest first.

    Unlike ``sys._current_frames()``, this includes threads with no Python frame.
    """
    cdef PyThreadState *ts
    cdef list idents = []
    with cython.critical_section(_CORE):
        _stop_world()
        try:
            ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
            while ts != NULL:
                idents.append(ts.thread_id)
                ts = PyThreadState_Next(ts)
        finally:
            _start_world()
    return idents


cdef bint _disarm(unsigned long ident, object carrier) noexcept:
    """Empty the slot of the thread ``ident`` if it still holds ``carrier``
    (free-threaded builds: with the world stopped, as for any other thread)."""
    cdef PyThreadState *ts
    cdef bint emptied = False
    _stop_world()
    ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    while ts != NULL:
        if ts.thread_id == ident and hardstop_empty_slot_if(ts, <PyObject *>carrier):
            emptied = True
            break
        ts = PyThreadState_Next(ts)
    _start_world()
    if emptied:
        Py_DECREF(carrier)   # the slot's reference (a class: nothing runs)
    return emptied


cdef bint _disarm_record(_ThreadRecord record, object carrier) noexcept:
    """``_disarm`` for a thread with a record: its one state, without a walk
    when _states_of can tell."""
    cdef PyThreadState *ts = NULL
    if HARDSTOP_FREE_THREADED or _states_of(record, &ts) != 1:
        return _disarm(record.ident, carrier)
    if not hardstop_empty_slot_if(ts, <PyObject *>carrier):
        return False
    Py_DECREF(carrier)   # the slot's reference (a class: nothing runs)
    return True


cdef bint _disarm_here(object carrier) noexcept:
    """Empty the calling thread's own slot if it still holds ``carrier``."""
    if not hardstop_empty_slot_if(PyThreadState_Get(), <PyObject *>carrier):
        return False
    Py_DECREF(carrier)
    return True


cdef inline void _set_armed(_ThreadRecord record, Receipt receipt) noexcept:
    global _armed_count
    if record.armed is None:
        _armed_count += 1
    record.armed = receipt


cdef inline Receipt _take_armed(_ThreadRecord record):
    """Forget what is armed for the thread (the slot is someone else's business)."""
    global _armed_count
    cdef Receipt receipt = record.armed
    if receipt is not None:
        _armed_count -= 1
        record.armed = None
    record.put_off_at = 0.0   # nothing of ours to arm again
    return receipt


cdef inline void _enqueue(_ThreadRecord record, Receipt receipt, bint first=False):
    if record.queued is None:
        record.queued = [receipt]
        _queued_records[record.key] = record
    elif first:
        record.queued.insert(0, receipt)
    else:
        record.queued.append(receipt)


cdef inline void _unqueue(_ThreadRecord record):
    """Its queue is empty (or dropped)."""
    if record.queued is not None:
        record.queued = None
        _queued_records.pop(record.key, None)


cdef list _drop_pending(_ThreadRecord record):
    """Take every request the record holds (armed first, then queued)."""
    cdef Receipt armed = _take_armed(record)
    pending = record.queued if record.queued is not None else []
    _unqueue(record)
    if armed is not None:
        pending.insert(0, armed)
    return pending


cdef str _why_ended():
    """The reason given to a request whose thread is gone before it raised it."""
    if hardstop_is_finalizing():
        return ("the interpreter shut down before the thread raised this exception "
                "(daemon threads run no more Python code)")
    return "the thread ended before it raised this exception"


cdef void _thread_ended(_ThreadRecord record):
    cdef Receipt receipt
    if _records.get(record.key) is record:
        del _records[record.key]
    record.state = NULL
    pending = _drop_pending(record)
    record.handling = 0
    record.last_delivered = None
    record.watching_leave = False
    if not pending:
        return
    why = _why_ended()
    for receipt in pending:
        _finish(receipt, UNDELIVERED, why)


cdef _ThreadRecord _record_for(PyThreadState *ts, object key):
    """The record of the thread running on ``ts``, whose ident is ``key``; made
    (and its watch put in the thread's state dict) on first use."""
    cdef _ThreadRecord record = _records.get(key)
    cdef _ThreadWatch watch
    cdef PyObject *held
    if record is not None and HARDSTOP_FREE_THREADED:
        # Free-threaded builds free an object where it was made: the watch of a
        # thread that ended (made by the thread that first interrupted it) may
        # still be waiting there to be freed while its ident runs a new thread.
        # Such a record is the ended thread's.
        held = PyDict_GetItem(<object>ts.dict, _WATCH_KEY) if ts.dict != NULL else NULL
        if held == NULL or (<_ThreadWatch>held).record is not record:
            _thread_ended(record)
            record = None
    if record is not None:
        return record
    if ts.dict == NULL:
        ts.dict = PyDict_New()   # what PyThreadState_GetDict does for its own thread
        if ts.dict == NULL:
            raise MemoryError()
    states = <dict>ts.dict
    old = states.get(_WATCH_KEY)
    if old is not None and (<_ThreadWatch>old).record is not None:
        # The state changed ident: what was recorded for the old one never lands.
        _thread_ended((<_ThreadWatch>old).record)
        (<_ThreadWatch>old).record = None
    record = _ThreadRecord.__new__(_ThreadRecord)
    record.ident = key
    record.key = key
    watch = _ThreadWatch.__new__(_ThreadWatch)
    watch.record = record
    states[_WATCH_KEY] = watch
    _records[key] = record
    return record


cdef _ThreadRecord _record_here():
    """The calling thread's record, found through its thread-state dict; or None."""
    cdef PyThreadState *ts = PyThreadState_Get()
    cdef PyObject *watch
    if ts.dict == NULL:
        return None
    watch = PyDict_GetItem(<object>ts.dict, _WATCH_KEY)   # borrowed; never raises
    if watch == NULL:
        return None
    return (<_ThreadWatch>watch).record


cdef _ThreadRecord _own_record():
    """The calling thread's record, made on first use."""
    cdef _ThreadRecord record = _record_here()
    if record is None:
        record = _record_for(PyThreadState_Get(), PyThread_get_thread_ident())
    return record


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


cdef int _states_of_key(object key, unsigned long ident, PyThreadState **found) except -1:
    """``_states_of`` for the thread with ident ``key`` (``ident`` as a C number),
    or ``_count_states`` when it has no record."""
    cdef _ThreadRecord record = _record_of(key, ident)
    return _states_of(record, found) if record is not None else _count_states(ident, found)


cdef object _live_frame(object key):
    """The frame the thread with ident ``key`` (an int) runs, or None; the caller
    has stopped the world (PyThreadState_GetFrame may make the frame object:
    never while it runs)."""
    cdef PyThreadState *ts = NULL
    cdef unsigned long ident = key
    if _states_of_key(key, ident, &ts) != 1:
        return None
    return _frame_of(ts)


cdef object _frame_of(PyThreadState *ts):
    """The frame thread state ``ts`` runs, or None (the world stopped, as above)."""
    cdef PyFrameObject *frame = PyThreadState_GetFrame(ts)
    if frame == NULL:
        return None
    result = <object><PyObject *>frame
    Py_DECREF(result)   # drop the reference PyThreadState_GetFrame gave us
    return result


cdef class FrameView:
    """What one frame of another thread showed while the world was stopped
    (free-threaded builds): the attributes of a frame that hardstop's Python
    code and ``traceback`` read, copied, since the live frame changes as its
    thread runs. ``f_locals`` is copied for ``Condition.wait`` frames only (the
    wake reads its condition and waiter); ``frame_id`` is the frame's ``id()``."""
    cdef readonly object f_code
    cdef readonly object f_globals
    cdef readonly object f_locals
    cdef readonly FrameView f_back
    cdef readonly int f_lineno
    cdef readonly int f_lasti
    cdef readonly Py_ssize_t frame_id

    def __repr__(self):
        return f"<hardstop.FrameView of {self.f_code.co_name}, {self.f_code.co_filename}:{self.f_lineno}>"


cdef FrameView _view_of(object frame):
    """Views of ``frame`` and its callers; the caller has stopped the world."""
    cdef FrameView first = None
    cdef FrameView last = None
    cdef FrameView view
    while frame is not None:
        view = FrameView.__new__(FrameView)
        view.f_code = frame.f_code
        view.f_globals = frame.f_globals
        view.f_locals = dict(frame.f_locals) if view.f_code is _condition_wait_code else {}
        view.f_lineno = PyFrame_GetLineNumber(<PyFrameObject *>frame)
        view.f_lasti = frame.f_lasti
        view.frame_id = id(frame)
        if last is None:
            first = view
        else:
            last.f_back = view
        last = view
        frame = frame.f_back
    return first


cpdef current_frame(unsigned long ident):
    """The frame the thread ``ident`` is running (or blocked in), or None.

    None as well when no single thread state carries ``ident``. On
    free-threaded builds, a FrameView of it: reading a running thread's frame
    without the GIL races that thread. On 3.11 the objects of all its callers
    are made too, so that walking ``f_back`` from it makes none (which could
    crash: version_quirks.pxi, _COLLECTS_IN_ALLOCATION).
    """
    with cython.critical_section(_CORE):
        _stop_world()
        try:
            frame = _live_frame(ident)
            if HARDSTOP_FREE_THREADED and frame is not None:
                return _view_of(frame)
            if _COLLECTS_IN_ALLOCATION:
                caller = frame
                while caller is not None:   # each caller's object made now, not by a later f_back
                    caller = caller.f_back
            return frame
        finally:
            _start_world()


def slot_is_empty(unsigned long ident):
    """True when no thread state carrying ``ident`` has anything in its slot."""
    cdef PyThreadState *ts
    cdef bint empty = True
    with cython.critical_section(_CORE):
        _stop_world()
        ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
        while ts != NULL:
            if ts.thread_id == ident and hardstop_slot(ts) != NULL:
                empty = False
                break
            ts = PyThreadState_Next(ts)
        _start_world()
    return empty


def last_delivered(ident):
    """The receipt raised last in the thread ``ident``, while hardstop still
    recognises it if CPython swallows it in a finalizer (and the program keeps it)."""
    cdef _ThreadRecord record
    with cython.critical_section(_CORE):
        record = _records.get(ident)
        if record is None or record.last_delivered is None:
            return None
        return record.last_delivered()
