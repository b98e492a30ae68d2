# The watchdog's heap of open deadlines, and firing one: arming its expiry in its
# thread, or again soon after (level-triggered) while the block still runs.

from cpython.mem cimport PyMem_Realloc


# An indexed binary min-heap in C. Each scheduled Deadline knows its slot
# (``_slot``, -1 when it is not scheduled), so a block that is left removes its
# entry at once, in O(log n): no stale entries, no sweeps, and no Python tuples
# or floats for the garbage collector to walk (with 100,000 open deadlines those
# made collections take 185 ms). The heap owns a reference to each scope in it.
ctypedef struct _Entry:
    double when
    unsigned long long order   # scheduling order: equal times fire first-scheduled first
    PyObject *scope

cdef _Entry *_heap = NULL
cdef Py_ssize_t _heap_size = 0
cdef Py_ssize_t _heap_capacity = 0
cdef unsigned long long _scheduled_count = 0
cdef bint _watchdog_running = False
cdef object _expiry_carrier = None
cdef object _start_watchdog = None
cdef object _fire_now = None
cdef object _chosen_exception = None   # raises= -> (instance, carrier), bound by hardstop._deadline


_wakeup = allocate_lock()     # held; released to wake the watchdog early
_wakeup.acquire()


cdef inline bint _earlier(_Entry *a, _Entry *b) noexcept:
    return a.when < b.when or (a.when == b.when and a.order < b.order)


cdef inline void _place(Py_ssize_t slot, _Entry entry) noexcept:
    _heap[slot] = entry
    (<Deadline>entry.scope)._slot = slot


cdef void _sift_up(Py_ssize_t slot) noexcept:
    cdef _Entry entry = _heap[slot]
    cdef Py_ssize_t parent
    while slot > 0:
        parent = (slot - 1) >> 1
        if not _earlier(&entry, &_heap[parent]):
            break
        _place(slot, _heap[parent])
        slot = parent
    _place(slot, entry)


cdef void _sift_down(Py_ssize_t slot) noexcept:
    cdef _Entry entry = _heap[slot]
    cdef Py_ssize_t child
    while True:
        child = 2 * slot + 1
        if child >= _heap_size:
            break
        if child + 1 < _heap_size and _earlier(&_heap[child + 1], &_heap[child]):
            child += 1
        if not _earlier(&_heap[child], &entry):
            break
        _place(slot, _heap[child])
        slot = child
    _place(slot, entry)


cdef int _schedule(Deadline scope, double when) except -1:
    """Put ``scope`` in the heap to fire at ``when`` (it must not be in it)."""
    global _heap, _heap_size, _heap_capacity, _scheduled_count
    cdef Py_ssize_t capacity
    cdef _Entry *grown
    if _heap_size == _heap_capacity:
        capacity = _heap_capacity * 2 if _heap_capacity else 64
        grown = <_Entry *>PyMem_Realloc(_heap, capacity * sizeof(_Entry))
        if grown == NULL:
            raise MemoryError("hardstop could not grow its deadline heap.")
        _heap, _heap_capacity = grown, capacity
    _scheduled_count += 1
    Py_INCREF(scope)
    _heap[_heap_size].when = when
    _heap[_heap_size].order = _scheduled_count
    _heap[_heap_size].scope = <PyObject *>scope
    _heap_size += 1
    _sift_up(_heap_size - 1)
    if scope._slot == 0 and _wakeup.locked():
        _wakeup.release()   # the watchdog sleeps until a later time: wake it
    return 0


cdef PyObject *_take(Py_ssize_t slot) noexcept:
    """Remove the entry at ``slot``; return its scope, whose reference passes to the caller."""
    global _heap_size
    cdef PyObject *scope = _heap[slot].scope
    (<Deadline>scope)._slot = -1
    _heap_size -= 1
    if slot < _heap_size:
        _place(slot, _heap[_heap_size])
        if slot > 0 and _earlier(&_heap[slot], &_heap[(slot - 1) >> 1]):
            _sift_up(slot)
        else:
            _sift_down(slot)
    return scope


cdef void _unschedule(Deadline scope) noexcept:
    """Take ``scope`` out of the heap, if it is in it."""
    if scope._slot >= 0:
        # Dropped once the heap is whole again: the last reference going can run
        # arbitrary code (finalizers of the frame's locals), even another deadline.
        Py_DECREF(<object>_take(scope._slot))


cdef void _expiry_delivered(Deadline scope) except *:
    """Its expiry was raised in the block; if the block goes on, fire again soon
    (not an exception chosen with raises=: the block may catch that one)."""
    if scope._raises is None:
        _refire_soon(scope)


cdef void _refire_soon(Deadline scope) except *:
    if scope._open and not scope._withdrawn:
        _unschedule(scope)   # a later look at the expiry just raised (see fire())
        _schedule(scope, _monotonic() + _REFIRE_AFTER)


def due_deadlines(double now):
    """For the watchdog: take the deadlines due by ``now`` out of the heap.

    Returns ``(scopes to fire, seconds until the next one or None)``.
    """
    cdef Deadline scope
    due = []
    with cython.critical_section(_CORE):
        return _take_due(now, due)


cdef tuple _take_due(double now, list due):
    cdef Deadline scope
    while _heap_size and _heap[0].when <= now:
        scope = <Deadline>_take(0)
        Py_DECREF(scope)   # the heap's reference; ``scope`` holds its own
        if scope._open and not scope._withdrawn:
            due.append(scope)
    return due, (_heap[0].when - now if _heap_size else None)


cdef void _keep_only_thread(unsigned long ident) except *:
    """After fork: drop every scheduled deadline but those of thread ``ident``."""
    global _heap_size
    cdef Py_ssize_t slot, kept = 0
    dropped = []
    for slot in range(_heap_size):
        if (<Deadline>_heap[slot].scope)._ident == ident:
            _heap[kept] = _heap[slot]
            kept += 1
        else:
            (<Deadline>_heap[slot].scope)._slot = -1
            dropped.append(<object>_heap[slot].scope)
            Py_DECREF(<object>_heap[slot].scope)   # ``dropped`` holds it until the heap is whole
    _heap_size = kept
    for slot in range(kept):
        _place(slot, _heap[slot])
    for slot in range(kept // 2 - 1, -1, -1):
        _sift_down(slot)


class NotFired(Exception):
    """``fire()`` did nothing: the scope was left or withdrawn."""


def fire(Deadline scope):
    """Arm (or queue) the expiry of ``scope`` in the thread that runs its block; return the Receipt."""
    expiry = _DeadlinePassed(scope) if scope._raises is None else None   # Python code: made first
    with cython.critical_section(_CORE):
        return _fire(scope, expiry)


cdef Receipt _fire(Deadline scope, object expiry):
    cdef unsigned long target = scope._ident
    cdef long long level = scope._level
    if not scope._open or scope._withdrawn:
        raise NotFired("left")
    if scope._receipts:
        _look_at_last_expiry(scope)
    if scope._frame is not None and scope._frame.f_code.co_flags & _SUSPENDABLE and not scope._wrapper:
        # A plain generator's block: only while the generator runs, wherever (see deadline.pxi).
        if not _on_stack(scope._frame, target):
            target = _thread_running(scope._frame)
            if target == 0:
                retry_later(scope, _REFIRE_AFTER)   # suspended: try again once it may run
                raise NotFired("suspended")
            level = 0   # resumed in another thread: held by that thread's shields
    elif (scope._frame is not None and not scope._frame.f_code.co_flags & _SUSPENDABLE
            and not _on_stack(scope._frame, target)):
        # Its function returned or raised without the with statement calling
        # __exit__: an exception escaped the block (CPython's back-edge bug on
        # 3.11-3.14, or a signal handler's exception right after __enter__ on
        # 3.14+). The block is gone: never raise for it anywhere else.
        # (A generator run as a context manager is off the stack while its
        # with statement's body runs: that is when it must fire.)
        scope._close()
        raise NotFired("abandoned")
    if scope._raises is not None:
        receipt = _arm_request(None, target, scope._raises, scope._raises_carrier, level, scope)
    else:
        receipt = _arm_request(None, target, expiry, _expiry_carrier, level, scope)
    scope._expired = True
    if scope._receipts is None:
        scope._receipts = []
    scope._receipts.append(receipt)
    # Level-triggered: look again soon, in case the expiry leaves the slot
    # without being raised (lost.pxi). Raised, it fires again from deliver().
    scope._look = _FIRST_LOOK
    retry_later(scope, _FIRST_LOOK)
    return receipt


cdef void _look_at_last_expiry(Deadline scope) except *:
    """Before firing again: raise NotFired while the last expiry is pending (and
    look again later), or was a chosen exception that was raised (it fires once)."""
    cdef Receipt last = scope._receipts[-1]
    cdef double wait
    if last._status is PENDING:
        wait = _settle_lost(last)
        if wait >= 0:   # still armed, queued or held back by a shield
            scope._look = min(2 * scope._look, _LAST_LOOK)
            retry_later(scope, wait if 0 < wait < scope._look else scope._look)
            raise NotFired("pending")
    elif last._status is DELIVERED and scope._raises is not None:
        raise NotFired("raised")


cdef unsigned long _thread_running(object frame) except? 0:
    """The ident of the thread whose stack holds ``frame`` (0: none does)."""
    _stop_world()
    try:
        for ident in thread_idents():
            if _on_stack(frame, ident):
                return ident
        return 0
    finally:
        _start_world()


cdef bint _on_stack(object frame, unsigned long ident) except -1:
    _stop_world()   # free-threaded: the target's frames, read while it cannot change them
    try:
        current = _live_frame(ident)
        while current is not None:
            if current is frame:
                return True
            current = current.f_back
        return False
    finally:
        _start_world()


def retry_later(Deadline scope, double delay):
    """Fire ``scope`` again after ``delay`` seconds (its thread could not be armed)."""
    with cython.critical_section(_CORE):
        if scope._open and not scope._withdrawn and scope._slot < 0:
            _schedule(scope, _monotonic() + delay)


def claim_watchdog(bint needed=False):
    """True if the caller must start the watchdog (deadlines wait, or the caller
    says one is ``needed``, and none runs)."""
    global _watchdog_running
    with cython.critical_section(_CORE):
        if _watchdog_running or not (_heap_size or needed):
            return False
        _watchdog_running = True
        return True


def release_watchdog():
    """Undo ``claim_watchdog()`` (or the claim of a scope's entry) after a failed start."""
    global _watchdog_running
    with cython.critical_section(_CORE):
        _watchdog_running = False


def _bind_deadlines(carrier, start_watchdog, fire_now, chosen_exception):
    global _expiry_carrier, _start_watchdog, _fire_now, _chosen_exception
    _expiry_carrier = carrier
    _chosen_exception = chosen_exception
    _start_watchdog = start_watchdog
    _fire_now = fire_now
