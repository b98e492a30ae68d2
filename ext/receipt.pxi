# Receipts, and the request path: what happens when a thread is interrupted.
#
# A Receipt's status moves once from "pending" to a final state, plus one late
# correction; _finish is its only writer:
#
#     pending --deliver()--------------> delivered --swallowed in a finalizer--> undelivered
#     pending --cancel()---------------> cancelled
#     pending --thread ended / refused--> undelivered
#
# ("deferred" is pending while a shield holds it back: read, never stored.)
# A pending request is either armed (its carrier in the thread's slot,
# record.armed) or queued behind the armed one (record.queued); deliver() runs
# in the target as CPython raises it. Once hardstop has ended the target's
# Condition wait for an armed request (_woken), cancel() no longer withdraws it.

PENDING = "pending"
DEFERRED = "deferred"   # never stored: pending while a shield holds it back
DELIVERED = "delivered"
CANCELLED = "cancelled"
UNDELIVERED = "undelivered"


cdef class Receipt:
    """What became of one request made by ``hardstop.interrupt()``.

    ``status`` is ``"pending"`` (armed or queued, not yet raised), then exactly one
    of ``"delivered"`` (raised in the target), ``"cancelled"`` (withdrawn by
    ``cancel()``: nothing is ever raised for it) or ``"undelivered"`` (the target
    ended first, or could no longer be armed; ``reason`` says which).
    ``wake`` says how hardstop ended the target's wait, or why it did not.
    """
    cdef readonly object thread
    cdef readonly unsigned long ident
    cdef readonly object exception
    cdef readonly str reason
    cdef str _wake         # how the target's wait was ended, or why it was not
    cdef int _wake_note    # or what to build that text from when read (interrupt.pxi)
    cdef object _wake_code  # the code the unwoken target was in, or None
    cdef int _wake_lasti   # and its instruction offset there
    cdef object _carrier
    cdef str _status
    cdef object _done   # a lock held until the receipt is final; made by wait()
    cdef double _taken_at    # when it was first seen out of the slot, not raised (lost.pxi)
    cdef long long _level   # shields at positions above this hold it back (0: every shield)
    cdef object _scope  # the Deadline whose expiry this is, or None
    cdef _ThreadRecord _record   # its thread's record
    cdef object __weakref__      # the record refers to the last delivered one weakly
    # Its wake has begun (the target's Condition waiter was released, or its
    # notification handed on): withdrawn now, that wait would return as if
    # notified (Event.wait -> True, flag unset), so cancel() refuses.
    cdef bint _woken

    def __init__(self):
        raise TypeError("Receipt objects are made by hardstop.interrupt(), not directly.")

    @property
    def status(self):
        """``"pending"``, ``"deferred"`` (pending, held back by a shield the
        target is in), ``"delivered"``, ``"cancelled"`` or ``"undelivered"``."""
        with cython.critical_section(_CORE):
            if self._status is PENDING and _held(self):
                return DEFERRED
            return self._status

    @property
    def wake(self):
        """How hardstop ended the target's wait, or why it did not."""
        with cython.critical_section(_CORE):
            if self._wake is None and self._wake_note:
                self._wake = _wake_text(self)
            return self._wake

    @wake.setter
    def wake(self, str text):
        with cython.critical_section(_CORE):
            self._wake = text
            self._wake_note = 0

    @property
    def delivered(self):
        """True once the exception has been raised in the target."""
        with cython.critical_section(_CORE):
            return self._status is DELIVERED

    def __repr__(self):
        return f"<hardstop.Receipt {self.status} {self.exception!r} -> thread {self.ident}>"

    def cancel(self):
        """Withdraw the request if it has not been raised yet.

        Returns True when withdrawn: nothing is ever raised for it afterwards.
        Returns False when it was already raised, is being raised right now, or
        had ended otherwise, and when hardstop has already ended the target's
        ``Condition`` wait for it (the exception then lands).
        """
        with cython.critical_section(_CORE):
            return self._cancel()

    cdef bint _cancel(self) except -1:
        cdef _ThreadRecord record = self._record
        if self._status is not PENDING:
            return False
        queue = record.queued
        if queue is not None and self in queue:
            queue.remove(self)
            if not queue:
                _unqueue(record)
            _finish(self, CANCELLED, None)
            return True
        if self._woken:
            return False   # its wait was ended for it: only the exception may end it honestly
        if record.armed is not self or not _disarm_record(record, self._carrier):
            return False   # the target has taken it from the slot: it is being raised
        _take_armed(record)
        _finish(self, CANCELLED, None)
        if record.queued is not None:
            _arm_next(record)
        if _SHARED_FLAG:
            _reset_shared_flag()
        return True

    def wait(self, timeout=None):
        """Block until the exception has been raised in the target.

        Returns True once delivered; False when ``timeout`` seconds passed first or
        the receipt ended otherwise (cancelled, undelivered). ``None`` waits for as
        long as it takes; a negative timeout only looks.
        """
        cdef double seconds = _timeout_seconds(timeout)
        cdef double lost
        with cython.critical_section(_CORE):
            if self._status is not PENDING or seconds == 0:
                return self._status is DELIVERED
            if self._done is None:
                self._done = allocate_lock()
                self._done.acquire()
            done = self._done
        # Waited for in slices: between them, a request that left the slot without
        # being raised is noticed and ended (lost.pxi), and the wait with it.
        end = _monotonic() + seconds
        look = _FIRST_LOOK
        while not done.acquire(True, min(look, seconds)):
            with cython.critical_section(_CORE):
                lost = _settle_lost(self)
            if lost < 0:
                continue   # ended undelivered: _finish released the lock, taken again at once
            seconds = end - _monotonic()
            if seconds <= 0:
                return False
            look = min(2 * look, _LAST_LOOK)
        done.release()   # hand the wake-up on to any other waiter
        with cython.critical_section(_CORE):
            return self._status is DELIVERED


# How often Receipt.wait() and a fired deadline look for a lost request: soon at
# first, then less and less often (a thread blocked in C for long is looked at
# once a second).
cdef double _FIRST_LOOK = 0.01
cdef double _LAST_LOOK = 1.0


cdef double _timeout_seconds(object timeout) except? -1.0:
    cdef double value
    if timeout is None:
        return float("inf")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    try:
        value = timeout
    except OverflowError:   # an int no double can hold
        value = float("nan")
    if value != value:
        raise ValueError(f"timeout must be a number of seconds or None, not {timeout!r}")
    return value if value > 0 else 0.0


cdef void _finish(Receipt receipt, str status, str reason):
    """The one writer of a receipt's status: pending to final, or delivered to
    undelivered when CPython swallowed it (see the diagram above)."""
    cdef bint was_pending = receipt._status is PENDING
    receipt._status = status
    receipt.reason = reason
    if was_pending and receipt._done is not None:
        receipt._done.release()


cdef int _arm(Receipt receipt, _ThreadRecord record) except -1:
    cdef int armed
    _set_armed(record, receipt)   # first: free-threaded, the target may raise it at once
    _stop_world()   # free-threaded: CPython's call writes the slot after letting go of the thread list
    armed = PyThreadState_SetAsyncExc(record.ident, <PyObject *>receipt._carrier)
    _start_world()
    if armed != 1:
        _take_armed(record)
        _disarm(record.ident, receipt._carrier)
        raise ThreadNotFound(f"Thread {record.ident} vanished while it was being armed.")
    return 0


cdef bint _is_handling(PyThreadState *ts, Py_ssize_t address) noexcept:
    """Is that exception on the thread's stack of exceptions being handled (except/finally)?"""
    cdef _PyErr_StackItem *item = ts.exc_info
    while item != NULL:
        if <Py_ssize_t>item.exc_value == address:
            return True
        item = item.previous_item
    return False


cdef bint _still_handling(_ThreadRecord record, PyThreadState *ts) noexcept:
    """Is the thread still in a handler of the last exception of ours it raised?"""
    if record.handling == 0:
        return False
    if _is_handling(ts, record.handling):
        return True
    record.handling = 0
    return False


cdef object _first_free(list queue):
    """The oldest request in ``queue`` that no shield holds back, or None."""
    for receipt in queue:
        if not _held(receipt):
            return receipt
    return None


cdef object _arm_next(_ThreadRecord record):
    """Arm the oldest queued request of the thread that no shield holds back,
    unless one of ours is armed there or the thread is still handling the last
    one it raised; return what was armed."""
    if record.armed is not None or not record.queued:
        return None
    _stop_world()
    try:
        return _arm_next_stopped(record)
    finally:
        _start_world()


cdef object _arm_next_stopped(_ThreadRecord record):
    cdef Receipt receipt
    cdef PyThreadState *ts = NULL
    queue = record.queued
    if record.starting_pump:
        return None   # it arms what is free once the pump has started (scopes.pxi's _release_held)
    while queue:
        n = _states_of(record, &ts)
        if n > 1:
            return None   # a twin is present (3.10/3.11: a thread being started); the pump retries
        if n == 1 and _still_handling(record, ts):
            return None   # the pump retries once the handler is done
        if n == 1 and hardstop_slot(ts) != NULL:
            return None   # another caller's exception waits in the slot: never replaced; the pump retries
        if n == 1 and _in_protected_code(ts):
            _watch_leave(ts, record)
            return None   # armed as it leaves the lock handling (or by the pump)
        receipt = queue[0] if n == 0 else _first_free(queue)
        if receipt is None:
            return None   # all held back: the shield's exit arms the next
        queue.remove(receipt)
        if not queue:
            _unqueue(record)
        if n == 0:
            _finish(receipt, UNDELIVERED, _why_ended())
            continue
        try:
            _arm(receipt, record)
            return receipt
        except Exception as error:
            _finish(receipt, UNDELIVERED, str(error))
    return None


def arm(object thread, object ident, object exc, object carrier):
    """Check the target and arm (or queue) ``exc`` for it, in one step under the GIL
    (free-threaded: inside hardstop's critical section, with the world stopped).

    ``thread`` is the ``threading.Thread`` the caller named, or None for a bare
    ident. ``carrier`` is the carrier class of ``type(exc)``. Returns a Receipt.
    """
    with cython.critical_section(_CORE):
        return _arm_request(thread, ident, exc, carrier, 0, None)


cdef Receipt _arm_request(object thread, object key, object exc, object carrier,
                          long long level, object scope):
    cdef unsigned long ident = key
    cdef PyThreadState *ts
    cdef Receipt receipt
    cdef _ThreadRecord record
    if thread is not None:
        owner = _active.get(key)
        if owner is not thread:
            if owner is None:
                raise ThreadNotFound(f"{thread!r} is not running: it has finished.")
            raise ThreadNotFound(f"{thread!r} has finished: its ident {ident} now belongs to {owner!r}.")
    if thread is None:
        thread = _active.get(key)
    _stop_world()   # no Python code runs from here to the end (the messages below are plain)
    try:
        return _arm_request_stopped(thread, key, exc, carrier, level, scope)
    finally:
        _start_world()


cdef Receipt _arm_request_stopped(object thread, object key, object exc, object carrier,
                                  long long level, object scope):
    cdef unsigned long ident = key
    cdef PyThreadState *ts = NULL
    cdef Receipt receipt
    cdef _ThreadRecord record = _record_of(key, ident)
    if record is None or _states_of(record, &ts) != 1:
        ts = _only_state(ident)   # (raises unless exactly one state carries the ident)
    record = _record_for(ts, key)
    receipt = Receipt.__new__(Receipt)
    receipt.thread = thread
    receipt.ident = ident
    receipt.exception = exc
    receipt._carrier = carrier
    receipt._status = PENDING
    receipt._level = level
    receipt._scope = scope
    receipt._record = record
    queue = record.queued
    if record.armed is not None:
        _settle_lost(record.armed)   # one that left the slot unraised must not hold this one back
    if (record.armed is not None or _held(receipt) or (queue and _first_free(queue) is not None)
            or _still_handling(record, ts) or hardstop_slot(ts) != NULL):
        _enqueue(record, receipt)   # (a non-empty slot: another caller's exception, raised first)
    elif _in_protected_code(ts):
        _enqueue(record, receipt)
        _watch_leave(ts, record)
    else:
        _arm(receipt, record)
    return receipt


def deliver(cls, *args):
    """``__new__`` of every carrier class: runs in the target as it raises."""
    cdef _ThreadRecord record = _record_here()
    if record is None:
        return _not_ours(cls, args)
    # Free-threaded: the interpreter has emptied the slot already; until this
    # thread is in the critical section, a stopped world must not take that for a loss.
    record.delivering = True
    try:
        with cython.critical_section(_CORE):
            return _deliver(record, cls, args)
    finally:
        record.delivering = False


cdef object _not_ours(object cls, tuple args):
    """What a carrier's call that is no delivery makes: the exception itself."""
    base = cls.__base__
    if len(args) == 1 and isinstance(args[0], base):
        return args[0]
    return base(*args)


cdef object _deliver(_ThreadRecord record, object cls, tuple args):
    cdef Receipt receipt = record.armed
    # Ours only if the slot was just emptied by the interpreter. Otherwise the
    # carrier is being called by 3.10, which records it as the exception's type:
    # re-raising normalizes (carrier, instance) by calling carrier(instance),
    # and that must give back the same instance, not wrap it in a new one.
    # A delivery calls the carrier without arguments (the slot holds a class).
    cdef PyThreadState *ts = PyThreadState_Get()
    if not args and receipt is not None and receipt._carrier is cls and hardstop_slot(ts) == <PyObject *>cls:
        # The same carrier was armed again between the interpreter taking the slot and
        # creating the exception: 3.10/3.11 create it late, after it was given up as
        # lost (lost.pxi) and a deadline fired again; on 3.14t another thread armed
        # meanwhile (a deadline's level-triggered re-fire: Expired() without its
        # scope failed with a TypeError). The raise is the armed request's: take it.
        _disarm_here(cls)
    if args or receipt is None or receipt._carrier is not cls or hardstop_slot(ts) != NULL:
        return _not_ours(cls, args)
    if _in_bookkeeping_callback():
        _watch_unraisable()   # so that the stand-in raised now is recognised, dropped and the request armed again
        record.put_off_at = _monotonic()
        return _PutOff()   # the request stays ours (record.armed), out of the slot until then
    _take_armed(record)
    _delivered(receipt, record)
    if _SHARED_FLAG and _armed_count:
        _resignal_armed()   # CPython has just reset the flag other armed threads need
    if not _LAZY_EXCEPTIONS:
        _finish_interrupted_exit()
    if _ENTER_UNPROTECTED:
        _finish_interrupted_enter(receipt.exception)
    return receipt.exception


cdef void _delivered(Receipt receipt, _ThreadRecord record) except *:
    _finish(receipt, DELIVERED, None)
    if receipt._scope is None or (<Deadline>receipt._scope)._raises is None:
        record.handling = <Py_ssize_t><PyObject *>receipt.exception   # the next waits until it is handled
    # (Not a deadline's chosen exception: the block handles that one as its own, and
    # an outer deadline may end the handler, as a hard time limit ends a soft one's clean-up.)
    record.last_delivered = PyWeakref_NewRef(receipt, None)
    _watch_unraisable()
    if receipt._scope is not None:
        _expiry_delivered(<Deadline>receipt._scope)


cdef Receipt _take_armed_here():
    """Empty the calling thread's slot of the request of ours armed there; return
    it (the caller raises it), or None when nothing of ours is armed."""
    cdef _ThreadRecord record = _record_here()
    cdef Receipt receipt = record.armed if record is not None else None
    if receipt is None or not _disarm_here(receipt._carrier):
        return None
    _take_armed(record)
    if _SHARED_FLAG:
        _reset_shared_flag()   # the slot was emptied by us, not by CPython
    return receipt


cdef void _raise_armed_now() except *:
    """Raise here, in the calling thread, the request of ours armed in its slot."""
    cdef Receipt receipt = _take_armed_here()
    if receipt is None:
        return
    _delivered(receipt, receipt._record)
    raise receipt.exception


cdef class RaiseArmedFirst:
    """The wake signal's handler: raises the request armed for the calling thread
    before any Python code runs, after ``handler(signum, frame, raising)`` (the
    Python bookkeeping, told which request this run raises, or None).

    Compiled, so that CPython calls it with no Python frame: the first check of
    a Python handler would first run what CPython queued for the thread (on
    free-threaded builds the objects other threads dropped are freed there, with
    their weakref callbacks, such as threading's), and the request landed in
    such a callback, where CPython swallows it, and the wait it was to end went on.
    """
    cdef readonly object handler

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, signum, frame):
        cdef Receipt receipt
        with cython.critical_section(_CORE):
            receipt = _take_armed_here()
        try:
            self.handler(signum, frame, receipt)
        finally:
            if receipt is not None:
                with cython.critical_section(_CORE):
                    _delivered(receipt, receipt._record)
                    if not _LAZY_EXCEPTIONS:
                        _finish_interrupted_exit()
                raise receipt.exception


def is_armed(Receipt receipt):
    """True while ``receipt`` is the request in its thread's slot, not yet raised."""
    with cython.critical_section(_CORE):
        return receipt._record.armed is receipt


def still_handling(unsigned long ident):
    """True while the thread runs an except/finally block handling the last
    exception of ours that it raised."""
    cdef PyThreadState *ts = NULL
    cdef _ThreadRecord record
    with cython.critical_section(_CORE):
        record = _records.get(ident)
        if record is None:
            return False
        _stop_world()
        try:
            return _states_of(record, &ts) == 1 and _still_handling(record, ts)
        finally:
            _start_world()


def pending_count(ident):
    """How many requests of hardstop's are pending for ``ident`` (armed or queued)."""
    cdef _ThreadRecord record
    with cython.critical_section(_CORE):
        record = _records.get(ident)
        if record is None:
            return 0
        return (record.armed is not None) + (len(record.queued) if record.queued is not None else 0)
