# Waking a target blocked in threading.Condition.wait (and so Event.wait,
# Queue.get/put, Semaphore.acquire, Barrier.wait), compiled: the request path of
# interrupt() and a deadline's expiry. hardstop._wake's opening comment says why
# it goes this way; its Python code still does the rare branch (the condition's
# lock stayed busy: a helper thread finishes the wake) and the other wakes.
#
# Holding the condition's lock (no notifier moves in between), the exception is
# armed, then the wait is ended: the waiter, if still listed, is unlisted and
# released; if not (it was notified, and will raise instead of acting on it),
# the notification is handed on with notify(1). Its locals are read where the
# frame keeps them (3.12+: no f_locals dict), and "not listed" is a return
# value, not a caught ValueError.

cdef double _LOCK_PATIENCE = 0.05   # seconds the interrupter waits for a busy condition lock
cdef str _SELF = "self"
cdef str _WAITER = "waiter"


cdef tuple _condition_wait_of(object frame, object code):
    """``(condition, waiter)`` if ``frame`` (running ``code``) is inside
    Condition.wait, else None; the caller has stopped the world."""
    if not _in_condition_wait(frame, code):
        return None
    if code is not _condition_wait_code:
        frame = frame.f_back   # a Lock-based condition's _acquire_restore, called by the wait
    try:
        return (hardstop_frame_var(<PyFrameObject *>frame, _SELF),
                hardstop_frame_var(<PyFrameObject *>frame, _WAITER))
    except NameError:
        return None   # at its first instructions: no waiter yet, nothing to end


cdef tuple _condition_wait_now(object key):
    """What ``_condition_wait_of`` says of the thread with ident ``key`` now."""
    _stop_world()
    try:
        frame = _live_frame(key)
        if frame is None:
            return None
        return _condition_wait_of(frame, hardstop_frame_code(<PyFrameObject *>frame))
    finally:
        _start_world()


cdef Receipt _arm_waking_condition(object condition, object waiter, object arm,
                                   object target, object key, object instance, object carrier):
    """Arm (with ``arm()``, or ``_arm_patiently`` when it is None) and end the
    target's wait on ``condition``, holding that condition's lock across both."""
    cdef Receipt receipt
    lock = condition._lock
    if lock.acquire(True, _LOCK_PATIENCE):   # the application's lock: waited for only briefly
        try:
            receipt = arm() if arm is not None else _arm_patiently(target, key, instance, carrier)
            if receipt._record.armed is receipt:
                _end_condition_wait(condition, waiter, receipt)
        finally:
            lock.release()
    else:
        receipt = arm() if arm is not None else _arm_patiently(target, key, instance, carrier)
        if receipt._record.armed is receipt:
            _wake._wake_condition_in_helper(condition, waiter, receipt)   # it finishes once it gets the lock
    if receipt._record.armed is not receipt and receipt._wake is None and not receipt._wake_note:
        _note_queued(receipt)
    return receipt


cdef void _end_condition_wait(object condition, object waiter, Receipt receipt) except *:
    """With the condition's lock held and ``receipt`` armed: end the wait."""
    if unlist_waiter(condition._waiters, waiter):
        receipt._woken = True   # withdrawn, the released wait would return as if notified
        waiter.release()
        receipt._wake_note = _NOTE_WAITER_RELEASED
    elif _condition_wait_now(receipt._record.key) == (condition, waiter):
        # Not listed: notified already, and still inside that wait, where it will
        # raise instead of acting on the notification: hand it on.
        receipt._woken = True   # withdrawn, it would act on a notification given away
        condition.notify(1)
        receipt._wake_note = _NOTE_HANDED_ON
    else:
        receipt._wake_note = _NOTE_LEFT_WAIT


def end_condition_wait(condition, waiter, Receipt receipt):
    """For hardstop._wake's helper thread, which holds the condition's lock: end
    the wait if ``receipt`` is still armed."""
    with cython.critical_section(_CORE):
        if receipt._record.armed is receipt:
            _end_condition_wait(condition, waiter, receipt)


def end_armed_condition_wait(Receipt receipt):
    """For hardstop._wake: ``receipt`` was armed without a condition's lock held
    (by the pump, a shield's exit): end the target's Condition wait if it is in
    one (False if not), taking that lock first."""
    with cython.critical_section(_CORE):
        found = _condition_wait_now(receipt._record.key)
        if found is None:
            return False
        condition, waiter = found
        if receipt._record.armed is not receipt:
            return True
        lock = condition._lock
        if lock.acquire(True, _LOCK_PATIENCE):
            try:
                if receipt._record.armed is receipt:
                    _end_condition_wait(condition, waiter, receipt)
            finally:
                lock.release()
        else:
            _wake._wake_condition_in_helper(condition, waiter, receipt)
        return True


def arm_waking_condition(ident, arm):
    """For hardstop._wake: if the thread ``ident`` waits on a Condition, arm
    with ``arm()`` and end that wait; the receipt, or None (nothing armed) when
    it is in no Condition wait."""
    with cython.critical_section(_CORE):
        found = _condition_wait_now(ident)
        if found is None:
            return None
        return _arm_waking_condition(found[0], found[1], arm, None, None, None, None)
