# The pump: a helper thread, run only while something is queued that can be
# armed (or a self-armed request waits for its wake), polls here.

cdef bint _pump_running = False


cdef object _start_pump = None


def pump():
    """Arm what can be armed now; return ``(receipts armed, keep going)``.

    Called by the pump thread; once "keep going" is False that thread must end,
    and ``claim_pump()`` lets the next queued request start a new one.
    """
    with cython.critical_section(_CORE):
        return _pump_round()


cdef tuple _pump_round():
    global _pump_running
    cdef _ThreadRecord record
    armed = _due_rewakes(_monotonic())
    for record in list(_queued_records.values()):
        if record.armed is not None:
            _settle_lost(record.armed)
        receipt = _arm_next(record)
        if receipt is not None:
            armed.append(receipt)
    # Going on while needed, whatever the claim says: the thread that started
    # this pump gives the claim up if an exception ends its Thread.start() (a
    # KeyboardInterrupt while it waits for the pump to run), and a second pump
    # started then only polls alongside.
    if not _pump_needed():
        _pump_running = False
        return armed, False
    return armed, True


cdef list _due_rewakes(double now):
    """The self-armed receipts to wake (again) now; forget those raised or done."""
    due = []
    for receipt, (since, sent) in list(_armed_unwoken.items()):
        if (<Receipt>receipt)._record.armed is not receipt or sent == len(_REWAKE_AFTER):
            del _armed_unwoken[receipt]
        elif now - since >= _REWAKE_AFTER[sent]:
            _armed_unwoken[receipt] = (since, sent + 1)
            due.append(receipt)
    return due


cdef bint _pump_needed():
    """Is anything queued that the pump could arm, or armed by its thread and not
    woken yet? (What shields hold back is armed by the shield's exit, not polled
    for; but a thread reporting to sys.unraisablehook starts no pump as it leaves,
    so the pump waits for it.)"""
    cdef _ThreadRecord record
    if _armed_unwoken:
        return True
    for record in _queued_records.values():
        if (record.reporting or _first_free(record.queued) is not None):
            return True
    return False


cdef void _start_pump_if_needed() except *:
    """Start a pump thread if something queued needs one and none runs. Not from
    sys.unraisablehook, nor with the world stopped."""
    if not _pump_running and _start_pump is not None and claim_pump():
        _start_pump()


def claim_pump():
    """True if the caller must start a pump thread (something is queued, none runs)."""
    global _pump_running
    with cython.critical_section(_CORE):
        if _pump_running or not _pump_needed():
            return False
        _pump_running = True
        return True


def release_pump():
    """Undo ``claim_pump()`` when the pump thread could not be started."""
    global _pump_running
    with cython.critical_section(_CORE):
        _pump_running = False
