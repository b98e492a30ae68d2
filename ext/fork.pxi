# os.fork(): the child starts with nothing of its parent's pending.

def after_fork_in_child():
    """In a child process: nothing armed or queued in the parent is ever raised
    here; the deadlines of the thread that forked fire here from a new watchdog."""
    global _pump_running, _watchdog_running, _wakeup, _armed_count, _last_record
    cdef unsigned long me = PyThread_get_thread_ident()
    cdef _ThreadRecord own = _record_here()
    cdef _ThreadRecord record
    cdef Receipt receipt
    if own is not None and own.armed is not None:
        _disarm(me, own.armed._carrier)
    pending = _drop_pending(own) if own is not None else []
    for record in _records.values():
        pending.extend(_drop_pending(record))   # every other thread is gone here
        record.state = NULL
    _records.clear()
    _armed_count = 0
    _last_record = None
    _queued_records.clear()
    if own is not None:   # the forking thread goes on: its scopes and shields stay
        if own.watching_leave:
            _PyEval_SetProfile(PyThreadState_Get(), NULL, NULL)
        own.watching_leave = False
        own.handling = 0
        own.last_delivered = None   # a parent's receipt, never corrected here
        own.ident = me
        own.state = NULL   # (its state stays; the list around it changed)
        own.key = me
        _records[me] = own
    _armed_unwoken.clear()
    for receipt in pending:
        _finish(receipt, UNDELIVERED,
                "the process forked before it was raised; a child never raises its parent's requests")
        if receipt._scope is not None and receipt.ident == me:
            _unschedule(<Deadline>receipt._scope)   # scheduled again below, to fire at once
    _keep_only_thread(me)
    for receipt in pending:
        if receipt._scope is not None and receipt.ident == me:
            retry_later(receipt._scope, 0.0)   # fired in the parent: fire again here
    _pump_running = False
    _watchdog_running = False
    _wakeup = allocate_lock()
    _wakeup.acquire()
    if _SHARED_FLAG:
        _reset_shared_flag()
