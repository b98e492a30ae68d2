# The watchdog's heap of open deadlines, and firing one: arming its expiry in its
# thread, or again soon after (level-triggered) while the block still runs.

from heapq import heappush as _heappush, heappop as _heappop, heapify as _heapify

cdef list _heap = []          # (when, entry number, Deadline): the watchdog's queue
cdef Py_ssize_t _entries = 0  # numbers the entries, so that equal times never compare scopes
cdef Py_ssize_t _stale = 0    # entries in _heap whose scope left or was withdrawn
cdef bint _watchdog_running = False
cdef object _expiry_carrier = None
cdef object _start_watchdog = None
cdef object _fire_now = None
cdef object _chosen_exception = None   # raises= -> (instance, carrier), bound by hardstop._deadline


_wakeup = allocate_lock()     # held; released to wake the watchdog early
_wakeup.acquire()


cdef void _schedule(Deadline scope, double when) except *:
    global _entries
    _entries += 1
    scope._entry = _entries
    scope._in_heap = True
    entry = (when, _entries, scope)
    _heappush(_heap, entry)
    if _heap[0] is entry and _wakeup.locked():
        _wakeup.release()   # the watchdog sleeps until a later time: wake it


cdef void _compact() except *:
    """Drop the entries of scopes that left, so a loop of long deadlines stays O(live)."""
    global _stale
    _heap[:] = [entry for entry in _heap if _live(entry)]
    _heapify(_heap)
    _stale = 0


cdef inline bint _live(tuple entry):
    cdef Deadline scope = entry[2]
    return scope._in_heap and scope._entry == <Py_ssize_t>entry[1]


cdef void _expiry_delivered(Deadline scope) except *:
    """Its expiry was raised in the block; if the block goes on, fire again soon
    (not an exception chosen with raises=: the block may catch that one)."""
    if scope._raises is None:
        _refire_soon(scope)


cdef void _refire_soon(Deadline scope) except *:
    if scope._open and not scope._withdrawn and not scope._in_heap:
        _schedule(scope, _monotonic() + _REFIRE_AFTER)


def due_deadlines(double now):
    """For the watchdog: pop the deadlines due by ``now``.

    Returns ``(scopes to fire, seconds until the next one or None)``.
    """
    global _stale
    cdef Deadline scope
    due = []
    while _heap and <double>(<tuple>_heap[0])[0] <= now:
        entry = _heappop(_heap)
        if not _live(entry):
            _stale -= 1
            continue
        scope = entry[2]
        scope._in_heap = False
        if scope._open and not scope._withdrawn:
            due.append(scope)
    return due, ((<tuple>_heap[0])[0] - now if _heap else None)


class NotFired(Exception):
    """``fire()`` did nothing: the scope was left or withdrawn."""


def fire(Deadline scope):
    """Arm (or queue) the expiry of ``scope`` in its thread; return the Receipt."""
    if not scope._open or scope._withdrawn:
        raise NotFired("left")
    if (scope._frame is not None and not scope._frame.f_code.co_flags & _SUSPENDABLE
            and not _on_stack(scope._frame, scope._ident)):
        # Its function returned or raised without the with statement calling
        # __exit__: an exception escaped the block (CPython's back-edge bug on
        # 3.11-3.14, or a signal handler's exception right after __enter__ on
        # 3.14+). The block is gone: never raise for it anywhere else.
        # (A generator's frame is off the stack while it is suspended, and in a
        # @contextmanager that is exactly when the guarded body runs: fire.)
        scope._close(False)
        raise NotFired("abandoned")
    if scope._raises is not None:
        receipt = _arm_request(None, scope._ident, scope._raises, scope._raises_carrier, scope._level, scope)
    else:
        receipt = _arm_request(None, scope._ident, _DeadlinePassed(scope), _expiry_carrier, scope._level, scope)
    scope._expired = True
    scope._receipts.append(receipt)
    return receipt


cdef bint _on_stack(object frame, unsigned long ident) except -1:
    current = current_frame(ident)
    while current is not None:
        if current is frame:
            return True
        current = current.f_back
    return False


def retry_later(Deadline scope, double delay):
    """Fire ``scope`` again after ``delay`` seconds (its thread could not be armed)."""
    if scope._open and not scope._withdrawn and not scope._in_heap:
        _schedule(scope, _monotonic() + delay)


def claim_watchdog(bint needed=False):
    """True if the caller must start the watchdog (deadlines wait, or the caller
    says one is ``needed``, and none runs)."""
    global _watchdog_running
    if _watchdog_running or not (_heap or needed):
        return False
    _watchdog_running = True
    return True


def release_watchdog():
    """Undo ``claim_watchdog()`` (or the claim of a scope's entry) after a failed start."""
    global _watchdog_running
    _watchdog_running = False


def _bind_deadlines(carrier, start_watchdog, fire_now, chosen_exception):
    global _expiry_carrier, _start_watchdog, _fire_now, _chosen_exception
    _expiry_carrier = carrier
    _chosen_exception = chosen_exception
    _start_watchdog = start_watchdog
    _fire_now = fire_now
