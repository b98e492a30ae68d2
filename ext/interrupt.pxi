# interrupt(): the whole request in one compiled call, with every check of the
# Python API (the target, the exception, its carrier), then arming or queueing
# (receipt.pxi) and the wake. Waits that need Python to end (a Condition's, an
# unblocker's, the wake signal) are handed to hardstop._wake; a target that
# needs no wake is done here, and the receipt's wake text is built when read.

# Idents are C `unsigned long` values (pthread_t on POSIX, the thread id on Windows).
cdef object _MAX_IDENT = 2 ** (8 * sizeof(unsigned long)) - 1
# On 3.10/3.11 a thread that is starting another one shares its ident with the
# child's pre-allocated thread state until the child first runs; waiting that out
# beats a refusal. On a loaded machine the child can wait for a CPU well past
# 0.1 s (a CI run refused so), hence a full second.
cdef double _AMBIGUITY_PATIENCE = 1.0
# One carrier per exception type, kept for the life of the process (a class is
# small, and creating one per request would cost more than the whole request).
# Keyed by the type's id(), never by the type: a metaclass may make two classes
# compare equal, and one's carrier would then raise the other's instances (3.10
# records the carrier as the type, so `except TheType` missed them). The carrier
# subclasses the type, which so stays alive, and its id unique, as long as the entry.
cdef dict _carriers = {}
cdef object _last_kind = None      # the type of the last request, and its carrier (from _carriers)
cdef object _last_carrier = None
cdef object _Thread = threading.Thread
cdef object _threading = threading
cdef object _wake = None                 # hardstop._wake (it imports this module): bound by hardstop._interrupt
cdef dict _unblocker_stacks = None       # its _stacks' dict: ident -> weak reference to that thread's stack
cdef bint _signal_workers = False        # its _SIGNAL_WORKERS
cdef object _condition_wait_code = threading.Condition.wait.__code__
cdef object _acquire_restore_code = threading.Condition._acquire_restore.__code__

from time import sleep as _sleep


cpdef exception_instance(exc):
    """``exc`` itself if it is an exception, else an instance of the class ``exc``."""
    if isinstance(exc, BaseException):
        return exc
    if isinstance(exc, type) and issubclass(exc, BaseException):
        try:
            instance = exc()
        except Exception as error:
            raise TypeError(
                f"{exc.__qualname__} cannot be created without arguments ({error}): pass an instance instead."
            ) from error
        if not isinstance(instance, BaseException):
            # A __new__ may return anything; armed, it reached the target as an unrelated SystemError.
            raise TypeError(
                f"{exc.__qualname__}() returned {type(instance).__name__} {instance!r}, not an exception: "
                "its __new__ must return a BaseException instance."
            )
        return instance
    raise TypeError(f"The exception must be a BaseException subclass or instance, not {type(exc).__name__} {exc!r}.")


def carrier_for(kind):
    """The carrier class of the exception type ``kind`` (see the module's docstring)."""
    carrier = _carriers.get(id(kind))
    if carrier is None:
        namespace = {
            "__new__": staticmethod(deliver),
            "__module__": kind.__module__,
            "__qualname__": kind.__qualname__,
            "__slots__": (),
        }
        try:
            carrier = type(kind)(kind.__name__, (kind,), namespace)
        except TypeError as error:
            raise TypeError(f"{kind.__qualname__} cannot be raised in another thread: {error}.") from error
        carrier = _carriers.setdefault(id(kind), carrier)
    return carrier


cdef Receipt _arm_patiently(object thread, object key, object exc, object carrier):
    cdef double give_up = 0.0
    while True:
        try:
            return _arm_request(thread, key, exc, carrier, 0, None)
        except AmbiguousThread:
            now = _monotonic()
            if give_up == 0.0:
                give_up = now + _AMBIGUITY_PATIENCE
            if now >= give_up:
                raise
            _sleep(0.001)


cdef bint _in_condition_wait(object frame, object code):
    """Is that frame (running ``code``) Condition.wait, or a Lock-based condition's
    _acquire_restore called by it? (Its caller is only looked at in the second case.)"""
    if frame is None:
        return False
    if code is _condition_wait_code:
        return True
    if code is not _acquire_restore_code:
        return False
    frame = frame.f_back
    return frame is not None and frame.f_code is _condition_wait_code


def interrupt(thread, exc=Interrupted, *, bint wake=True):
    """Raise ``exc`` in ``thread`` as soon as it runs Python code; return a Receipt.

    ``thread`` is a ``threading.Thread`` (checked to be running and to still own
    its ident when the exception is armed) or an int ident (whichever live thread
    of this interpreter has that ident now). ``exc`` is an exception class
    (instantiated here, without arguments) or an instance, raised as that very
    object. With ``wake`` (the default), a target blocked in a wait that
    hardstop can end (``threading.Condition`` and what is built on it, or any
    wait inside ``hardstop.unblocking()``) is woken once the exception is armed;
    ``wake=False`` only arms. Raises ``ThreadNotFound``,
    ``AmbiguousThread`` or ``TypeError``; after a refusal nothing is pending.
    """
    global _last_kind, _last_carrier
    cdef Receipt receipt
    cdef unsigned long ident
    if isinstance(thread, _Thread):
        key = thread._ident
        if key is None:
            raise ThreadNotFound(f"{thread!r} cannot be interrupted: it has not been started.")
        target = thread
    elif isinstance(thread, int) and not isinstance(thread, bool):
        if not 0 < thread <= _MAX_IDENT:
            raise ThreadNotFound(f"No thread can have ident {thread}: idents are between 1 and {_MAX_IDENT}.")
        key = thread
        target = None
    else:
        raise TypeError(
            f"The target must be a threading.Thread or an int thread ident, not {type(thread).__name__} {thread!r}."
        )
    instance = exception_instance(exc)
    kind = type(instance)
    ident = key
    with cython.critical_section(_CORE):   # (free-threaded: the pair below changes together)
        if kind is _last_kind:
            carrier = _last_carrier   # most requests raise the type the last one raised
        else:
            carrier = _carriers.get(id(kind))
            if carrier is None:
                carrier = carrier_for(kind)
            _last_kind, _last_carrier = kind, carrier
        if ident == PyThread_get_thread_ident():
            receipt = _arm_patiently(target, key, instance, carrier)
            receipt._wake_note = _NOTE_SELF
        elif not wake:
            receipt = _arm_patiently(target, key, instance, carrier)
            receipt._wake_note = _NOTE_NO_WAKE
        else:
            receipt = _arm_and_wake(target, key, instance, carrier)
        # The pump is needed only if this request was queued (nothing else changed).
        if receipt._record.queued is not None or _armed_unwoken:
            _start_pump_if_needed()
    return receipt


cdef inline bint _has_unblockers(object key) except -1:
    """Has the thread ``key`` entered a ``hardstop.unblocking()`` block (kept per
    thread by hardstop._wake)? Then _wake decides which one is still open."""
    # The WeakValueDictionary's own dict of weak references: its get() is Python
    # code that raises and catches a KeyError for every thread without a block.
    ref = _unblocker_stacks.get(key)
    if ref is None:
        return False
    stack = ref()
    return stack is not None and bool(stack.entries)


cdef Receipt _arm_and_wake(object target, object key, object instance, object carrier):
    """Arm, and end the target's wait: here when it needs no waking, else in hardstop._wake."""
    cdef Receipt receipt
    cdef unsigned long ident = key
    cdef tuple condition_wait = None
    cdef bint signal_may_end = False
    cdef int lasti = 0
    cdef PyThreadState *ts = NULL
    code = None
    wake = _wake
    cdef bint main = key == _threading._main_thread._ident
    _stop_world()   # free-threaded: its frames are read while it cannot change them
    try:
        if _states_of_key(key, ident, &ts) == 1:
            frame = _frame_of(ts)
            if frame is not None:
                code = hardstop_frame_code(<PyFrameObject *>frame)
                condition_wait = _condition_wait_of(frame, code)
                lasti = hardstop_frame_lasti(<PyFrameObject *>frame)
            frame = None
            # 3.15+: a worker is signalled only in a call the signal ends (signal_ended_calls.pxi).
            signal_may_end = _signal_workers and not main and _signal_may_end_call(ts)
    finally:
        _start_world()
    if wake is not None and (signal_may_end or _has_unblockers(key) or main):
        return _woken_by_python(wake, target, key, instance, carrier)
    if wake is not None and condition_wait is not None:
        return _arm_waking_condition(condition_wait[0], condition_wait[1], None, target, key, instance, carrier)
    receipt = _arm_patiently(target, key, instance, carrier)
    if receipt._record.armed is receipt:
        receipt._wake_note = _NOTE_WORKER
        receipt._wake_code = code
        receipt._wake_lasti = lasti
    else:
        _note_queued(receipt)
    return receipt


cdef Receipt _woken_by_python(object wake, object target, object key, object instance, object carrier):
    """hardstop._wake arms and ends the wait. (A function of its own: the closure
    would otherwise be made on every request, woken or not.)"""
    return wake.arm_and_wake(key, lambda: _arm_patiently(target, key, instance, carrier))


cdef void _note_queued(Receipt receipt) except *:
    """Why a request made with the default wake was not armed (and so not woken) yet."""
    cdef PyThreadState *ts = NULL
    if receipt._status is not PENDING:
        return
    cdef bint protected
    if _held(receipt):
        receipt._wake_note = _NOTE_DEFERRED
        return
    _stop_world()
    try:
        protected = _states_of(receipt._record, &ts) == 1 and _in_protected_code(ts)
    finally:
        _start_world()
    receipt._wake_note = _NOTE_PROTECTED if protected else _NOTE_QUEUED


# What a receipt's wake text is built from, when read (Receipt.wake).
cdef enum:
    _NOTE_NONE = 0
    _NOTE_SELF
    _NOTE_NO_WAKE
    _NOTE_WORKER
    _NOTE_DEFERRED
    _NOTE_PROTECTED
    _NOTE_QUEUED
    _NOTE_WAITER_RELEASED
    _NOTE_HANDED_ON
    _NOTE_LEFT_WAIT

cdef str _NOT_WOKEN_TAIL = (
    "; if it is blocked in C (time.sleep, Lock.acquire, I/O), it raises only when that call returns"
)
# 3.15+ (hardstop._wake's, too): a worker not signalled is in no call the wake signal ends.
cdef str _NOT_SIGNAL_ENDED_TAIL = (
    "; it is in no call that hardstop knows the wake signal ends (time.sleep, select, socket, pipe or "
    "subprocess waits): if it is blocked in C (Lock.acquire, Thread.join, a C extension), it raises only "
    "when that call returns"
)


cdef str _wake_text(Receipt receipt):
    cdef int note = receipt._wake_note
    if note == _NOTE_SELF:
        return "not needed: the calling thread raises it as soon as this call returns"
    if note == _NOTE_NO_WAKE:
        return "not woken: wake=False"
    if note == _NOTE_DEFERRED:
        return "not woken: the thread is inside a hardstop.shield(); it raises this as it leaves"
    if note == _NOTE_PROTECTED:
        return ("not yet: the thread is inside the standard library's own lock handling, where an exception "
                "would leave a lock held; it is armed (and woken) as soon as the thread is out")
    if note == _NOTE_QUEUED:
        return "not yet: queued behind an earlier request, and woken when it is armed"
    if note == _NOTE_WAITER_RELEASED:
        return "Condition.wait: its waiter was released"
    if note == _NOTE_HANDED_ON:
        return "Condition.wait: it was notified already; the notification was handed on"
    if note == _NOTE_LEFT_WAIT:
        return "Condition.wait: it had already left the wait"
    why = "not woken: no wait hardstop can end was found in this worker thread"
    tail = _NOT_SIGNAL_ENDED_TAIL if _signal_workers else _NOT_WOKEN_TAIL
    code = receipt._wake_code
    if code is None:
        return why + " (it runs no Python code)" + tail
    line = None
    for start, end, number in code.co_lines():
        if start <= receipt._wake_lasti < end:
            line = number
            break
    return f"{why} (it is in {code.co_name}, {code.co_filename}:{line}){tail}"


cpdef bint unlist_waiter(waiters, waiter) except -1:
    """Take ``waiter`` out of a Condition's ``_waiters``; False when it is not
    listed (it was notified). No ValueError on that common branch: raising and
    catching one cost more than the rest of the wake."""
    cdef Py_ssize_t index = 0
    for listed in waiters:
        if listed is waiter:
            del waiters[index]
            return True
        index += 1
    return False
