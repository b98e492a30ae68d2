# Requests that left the thread's slot without being raised ("lost").
#
# A request of ours is armed (record.armed) while its carrier sits in the
# thread's slot, until deliver() runs in the target. Two things take it out of
# the slot without deliver() running, and nothing tells us:
#
# * 3.10/3.11 create the exception object lazily, when a handler first sees it.
#   C code that clears an error raised in a Python callback (sqlite3's progress
#   handler; CPython's fallback printer when sys.unraisablehook fails) drops
#   ours before it is created. While it is still on its way to a handler, it is
#   the thread's current error (hardstop_raising), except for the moments a
#   finalizer runs during the unwinding with the error set aside: so from
#   another thread, an empty slot counts as a loss only when it has stayed so
#   for _GIVE_UP_AFTER. The thread itself knows at once.
# * Another library's own PyThreadState_SetAsyncExc call (every version):
#   CPython's slot holds one exception, and the last writer wins.
#
# A lost request ends undelivered with the reason, so that its receipt, the
# requests queued behind it, a deadline (which fires again: level-triggered)
# and kill() (which interrupts again) all carry on. Looked for wherever hardstop
# would otherwise wait on the request: a new request to the thread, the pump, a
# deadline's next look, a deadline's exit, kill(), Receipt.wait().

cdef str _REPLACED = ("replaced or cleared in the thread's slot by another caller of PyThreadState_SetAsyncExc "
                      "before the thread raised it")
cdef str _DISCARDED = ("raised, then discarded by C code before any handler saw it, or cleared by another caller "
                       "of PyThreadState_SetAsyncExc (CPython 3.10/3.11 cannot tell these apart)")
# An exception on its way to a handler reaches one within microseconds; a
# finalizer run during the unwinding may take longer. Far beyond both:
cdef double _GIVE_UP_AFTER = 0.1


cdef double _settle_lost(Receipt receipt) except? -2.0:
    """End ``receipt`` undelivered if it is armed but left the slot without being
    raised: returns -1 then. Otherwise 0, or, while 3.10/3.11 cannot tell yet, the
    seconds after which to look again. (Free-threaded: looked at with the world
    stopped, where a target that has taken it from its slot is waiting to enter
    deliver(), and says so.)"""
    cdef double look_again
    if receipt._status is not PENDING or receipt._record.armed is not receipt:
        return 0.0
    _stop_world()
    try:
        look_again = _settle_lost_stopped(receipt)
    finally:
        _start_world()
    if receipt._status is PENDING and receipt._record.armed is not receipt:
        # A put-off request, queued again and not armed (the thread is in lock
        # handling): the pump polls for it where no profile function watches the
        # thread leave (free-threaded builds, 3.11), and none may be running. (Not
        # started with the world stopped: the new thread could never run.)
        _start_pump_if_needed()
    return look_again


cdef double _settle_lost_stopped(Receipt receipt) except? -2.0:
    cdef _ThreadRecord record = receipt._record
    cdef PyThreadState *ts = NULL
    cdef PyObject *carrier = <PyObject *>receipt._carrier
    cdef double now
    if receipt._status is not PENDING or record.armed is not receipt or _states_of(record, &ts) != 1:
        return 0.0   # queued, done, or its thread is ending (or being started): others settle it
    if hardstop_slot(ts) == carrier or record.delivering:
        receipt._taken_at = 0.0
        return 0.0
    if record.put_off_at != 0.0:
        # Put off in a callback, and armed again once CPython has reported the stand-in;
        # one the callback caught never is: arm it again after a while.
        now = _monotonic()
        if now - record.put_off_at < _GIVE_UP_AFTER:
            return record.put_off_at + _GIVE_UP_AFTER - now
        _arm_put_off(record, False)
        return 0.0
    if hardstop_slot(ts) != NULL or not _LAZY_EXCEPTIONS:
        why = _REPLACED   # (from 3.12 the slot is emptied and deliver() runs in one step)
    elif hardstop_raising(ts) == carrier:
        receipt._taken_at = 0.0
        return _GIVE_UP_AFTER   # on its way to a handler
    elif ts == PyThreadState_Get():
        why = _DISCARDED
    else:
        now = _monotonic()
        if receipt._taken_at == 0.0:
            receipt._taken_at = now
        if now - receipt._taken_at < _GIVE_UP_AFTER:
            return receipt._taken_at + _GIVE_UP_AFTER - now
        why = _DISCARDED
    _take_armed(record)
    _finish(receipt, UNDELIVERED, why)
    return -1.0


def settle_lost(Receipt receipt):
    """True if ``receipt`` was armed but left its thread's slot without being
    raised (it ends undelivered now, with the reason)."""
    with cython.critical_section(_CORE):
        return _settle_lost(receipt) < 0
