# os.fork(): the child starts with nothing of its parent's pending.

def after_fork_in_child():
    """In a child process: nothing armed or queued in the parent is ever raised
    here; the deadlines of the thread that forked fire here from a new watchdog."""
    global _pump_running, _watchdog_running, _wakeup
    cdef unsigned long me = PyThread_get_thread_ident()
    cdef Receipt receipt
    armed = _armed.pop(me, None)
    if armed is not None:
        _disarm(me, (<Receipt>armed)._carrier)
    pending = [armed] if armed is not None else []
    for queue in _queued.values():
        pending.extend(queue)
    pending.extend(_armed.values())
    _armed.clear()
    _queued.clear()
    _handling.clear()
    if me in _watching_leave:
        _PyEval_SetProfile(PyThreadState_Get(), NULL, NULL)
    _watching_leave.clear()
    _armed_unwoken.clear()
    for receipt in pending:
        _finish(receipt, UNDELIVERED,
                "the process forked before it was raised; a child never raises its parent's requests")
        if receipt._scope is not None and receipt.ident == me:
            _unschedule(<Deadline>receipt._scope)   # scheduled again below, to fire at once
    own = _scopes.get(me)
    _scopes.clear()
    if own is not None:
        _scopes[me] = own
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
