# cython: language_level=3, embedsignature=True, binding=True
"""The C boundary of hardstop: thread states, the pending-exception slot, receipts.

CPython gives every thread state one slot for an asynchronous exception
(``PyThreadState_SetAsyncExc``); the target raises whatever class it finds there
at its next check of the "eval breaker". Everything in this module exists to use
that slot safely:

* **Which thread.** A request names an ident; we walk this interpreter's thread
  states and arm only when exactly one carries it. CPython itself arms the first
  match, which may be an idle twin (a C extension's ``PyThreadState_New``, or on
  3.10/3.11 a child pre-allocated by ``Thread.start()`` with its parent's
  ident): the call "succeeds" and nothing is ever raised in the running thread.
* **What is raised.** The slot must hold a class. To raise an *instance*, we arm
  a "carrier": a private subclass of the instance's own type whose ``__new__``
  (``deliver`` below) returns that very instance. Subclassing keeps
  ``except TheType`` right on every version (3.10 records the armed class as the
  exception type). ``deliver`` runs in the target at the moment of raising, so it
  is also the only exact "delivered" signal there is.
* **One slot, many requests.** We keep one armed request per thread and queue the
  rest in order. The next is armed once the previous one was withdrawn, or was
  raised *and* the target is no longer handling it (it is not on the thread's
  stack of exceptions being handled): as Haskell masks asynchronous exceptions
  inside handlers, an ``except``/``finally`` block that handles one of ours is
  never cut short by the next. The "pump" (``pump()``, run by a helper thread
  only while something is queued) does that check. A carrier class is shared by
  every request of one exception type, so which request is being raised is known
  from ``_armed[ident]``, never from the class.

Why the receipt state machine lives here and not in Python: arming, withdrawing
and delivering must each be one indivisible step. Code compiled here runs under
the GIL without executing bytecode, so no other thread runs in the middle and no
pending exception (not even one we just armed on the calling thread itself) can
be raised half way. A pure-Python version needs a lock that the delivering
thread would have to take from inside ``__new__``, which deadlocks when a thread
interrupts itself or a signal handler interrupts the lock's owner.

Free-threaded builds: this module does not declare itself free-threading
compatible, so importing it re-enables the GIL there, which is exactly the
guarantee the code above relies on.
"""

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.pycapsule cimport PyCapsule_New
from cpython.exc cimport PyErr_Clear, PyErr_SetObject

import sys as _sys
import threading
from _thread import allocate_lock

from hardstop._errors import AmbiguousThread, Interrupted, ThreadNotFound

cdef extern from "Python.h":
    ctypedef struct PyInterpreterState:
        pass
    ctypedef struct PyFrameObject:
        pass
    ctypedef struct _PyErr_StackItem:
        PyObject *exc_value
        _PyErr_StackItem *previous_item
    ctypedef int (*Py_tracefunc)(PyObject *, PyFrameObject *, int, PyObject *) noexcept
    int PyTrace_RETURN
    ctypedef struct PyThreadState:
        Py_tracefunc c_profilefunc
        PyObject *dict
        PyObject *async_exc
        unsigned long thread_id
        _PyErr_StackItem *exc_info
    int PY_VERSION_HEX
    PyInterpreterState *PyInterpreterState_Get()
    PyThreadState *PyInterpreterState_ThreadHead(PyInterpreterState *)
    PyThreadState *PyThreadState_Next(PyThreadState *)
    PyThreadState *PyThreadState_Get()
    PyFrameObject *PyThreadState_GetFrame(PyThreadState *)   # a new reference, or NULL
    PyFrameObject *PyEval_GetFrame()   # borrowed: the calling Python frame, or NULL
    int PyFrame_GetLineNumber(PyFrameObject *)
    PyObject *PyDict_New()
    int PyGILState_Check() nogil
    # Declared here on purpose: Cython's bundled cpython/pystate.pxd gives the
    # ident as `long`, but it is `unsigned long` since 3.7. This is the only
    # place hardstop calls it (CPython marks it "XXX Deprecate this").
    int PyThreadState_SetAsyncExc(unsigned long, PyObject *)

cdef extern from *:
    """
    /* Public from 3.13; the same function had a leading underscore before. */
    #if PY_VERSION_HEX >= 0x030D0000
    #define hardstop_is_finalizing() Py_IsFinalizing()
    #else
    #define hardstop_is_finalizing() _Py_IsFinalizing()
    #endif
    """
    # True once the interpreter has begun to shut down: every other thread state
    # is gone by then, and daemon threads never run Python code again.
    bint hardstop_is_finalizing()

cdef extern from "frameobject.h":   # not included by Python.h before 3.11
    PyFrameObject *PyFrame_GetBack(PyFrameObject *)   # a new reference, or NULL

cdef extern from *:
    """
    /* Exported by every version, declared in an internal header from 3.13. */
    #if PY_VERSION_HEX >= 0x030D0000
    PyAPI_FUNC(int) _PyEval_SetProfile(PyThreadState *tstate, Py_tracefunc func, PyObject *arg);
    #endif
    """
    # Sets the profile function of any thread state (the caller holds the GIL):
    # what sys.setprofile does for the calling thread only.
    int _PyEval_SetProfile(PyThreadState *tstate, Py_tracefunc func, PyObject *arg)

cdef extern from "hardstop.h":
    ctypedef struct Hardstop_CAPI:
        int version
        int (*interrupt_ident)(unsigned long, PyObject *, PyObject **) noexcept nogil
        int (*cancel)(PyObject *) noexcept nogil
        int (*wait)(PyObject *, double) noexcept nogil
    int HARDSTOP_CAPI_VERSION
    int HARDSTOP_ERROR
    int HARDSTOP_NOT_FOUND
    int HARDSTOP_AMBIGUOUS
    int HARDSTOP_INVALID
    const char *HARDSTOP_CAPSULE_NAME

PENDING = "pending"
DEFERRED = "deferred"   # never stored: pending while a shield holds it back
DELIVERED = "delivered"
CANCELLED = "cancelled"
UNDELIVERED = "undelivered"

# 3.9-3.12 keep one interpreter-wide "async exception pending" flag, set by every
# arming and reset only when some thread raises one: after a withdrawal it stays
# set and every thread takes the slow path at each check (11-37% slower loops),
# and after one delivery it is reset although another thread may still be armed.
# 3.13+ keep the flag per thread and reset it themselves.
cdef bint _SHARED_FLAG = PY_VERSION_HEX < 0x030D0000
# 3.10/3.11 create the exception object lazily, when a handler first sees it; C
# code that discards the error before then (e.g. the fallback printer of a failed
# sys.unraisablehook) means `deliver` never runs. Seen from outside, the slot is
# empty and the receipt still pending: after this many seconds of that, the pump
# gives it up, so the requests queued behind it move on. (Handlers see a raised
# exception within microseconds; a second is far beyond any normal unwinding.)
cdef bint _LAZY_EXCEPTIONS = PY_VERSION_HEX < 0x030C0000
cdef double _GIVE_UP_AFTER = 1.0

cdef dict _armed = {}    # ident -> the Receipt whose carrier is in that thread's slot
cdef dict _queued = {}   # ident -> list of Receipts waiting for the slot, oldest first
# ident -> address of the exception of ours it raised last. An address, not the
# object: holding it would keep its traceback's frames (and their locals) alive.
# A reused address can only delay the next request until that handler ends.
cdef dict _handling = {}
cdef bint _pump_running = False
# ident -> the Receipt raised there last, until the next or the thread's end: how
# an exception that CPython swallows in a finalizer is recognised (_SwallowWatch).
cdef dict _last_delivered = {}
cdef dict _active = threading._active   # threading's own registry: ident -> Thread
cdef str _WATCH_KEY = "hardstop._hardstop.watch"


cdef class Deadline


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
    cdef public str wake   # how the target's wait was ended, or why it was not (set by _wake)
    cdef object _carrier
    cdef str _status
    cdef object _done   # a lock held until the receipt is final; made by wait()
    cdef double _taken_at    # when the pump first saw it taken from the slot, undelivered
    cdef int _level     # shields at positions >= this hold it back (0: every shield)
    cdef object _scope  # the Deadline whose expiry this is, or None

    def __init__(self):
        raise TypeError("Receipt objects are made by hardstop.interrupt(), not directly.")

    @property
    def status(self):
        """``"pending"``, ``"deferred"`` (pending, held back by a shield the
        target is in), ``"delivered"``, ``"cancelled"`` or ``"undelivered"``."""
        if self._status is PENDING and _held(self):
            return DEFERRED
        return self._status

    @property
    def delivered(self):
        """True once the exception has been raised in the target."""
        return self._status is DELIVERED

    def __repr__(self):
        return f"<hardstop.Receipt {self.status} {self.exception!r} -> thread {self.ident}>"

    def cancel(self):
        """Withdraw the request if it has not been raised yet.

        Returns True when withdrawn: nothing is ever raised for it afterwards.
        Returns False when it was already raised, is being raised right now, or
        had ended otherwise.
        """
        if self._status is not PENDING:
            return False
        queue = _queued.get(self.ident)
        if queue is not None and self in queue:
            queue.remove(self)
            if not queue:
                del _queued[self.ident]
            _finish(self, CANCELLED, None)
            return True
        if _armed.get(self.ident) is not self or not _disarm(self.ident, self._carrier):
            return False   # the target has taken it from the slot: it is being raised
        del _armed[self.ident]
        _finish(self, CANCELLED, None)
        _arm_next(self.ident)
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
        if self._status is not PENDING or seconds == 0:
            return self._status is DELIVERED
        if self._done is None:
            self._done = allocate_lock()
            self._done.acquire()
        # lock.acquire takes -1 for "forever" and refuses timeouts past PY_TIMEOUT_MAX.
        while not self._done.acquire(True, -1 if seconds > _LONGEST_WAIT else seconds):
            if seconds <= _LONGEST_WAIT:
                return False
        self._done.release()   # hand the wake-up on to any other waiter
        return self._status is DELIVERED


from _thread import TIMEOUT_MAX as _LONGEST_WAIT
from time import monotonic as _monotonic

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
    receipt._status = status
    receipt.reason = reason
    if receipt._done is not None:
        receipt._done.release()


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


def thread_idents():
    """The ident of every thread state of this interpreter, newest first.

    Unlike ``sys._current_frames()``, this includes threads with no Python frame.
    """
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    idents = []
    while ts != NULL:
        idents.append(ts.thread_id)
        ts = PyThreadState_Next(ts)
    return idents


cdef bint _disarm(unsigned long ident, object carrier) noexcept:
    """Empty the slot of the thread ``ident`` if it still holds ``carrier``."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    cdef PyObject *held
    while ts != NULL:
        if ts.thread_id == ident and ts.async_exc == <PyObject *>carrier:
            held = ts.async_exc
            ts.async_exc = NULL
            Py_DECREF(<object>held)
            return True
        ts = PyThreadState_Next(ts)
    return False


cdef class _ThreadWatch:
    """Kept in a target's thread-state dict; CPython drops it as the thread ends.

    ``PyThreadState_Clear`` clears that dict in the ending thread, with the GIL,
    before the ident can be reused: requests still pending then never were raised.
    """
    cdef unsigned long ident

    def __dealloc__(self):
        if self.ident and _armed is not None:
            _thread_ended(self.ident)


cdef str _why_ended():
    """The reason given to a request whose thread is gone before it raised it."""
    if hardstop_is_finalizing():
        return ("the interpreter shut down before the thread raised this exception "
                "(daemon threads run no more Python code)")
    return "the thread ended before it raised this exception"


cdef void _thread_ended(unsigned long ident):
    cdef Receipt receipt
    pending = _queued.pop(ident, [])
    armed = _armed.pop(ident, None)
    _handling.pop(ident, None)
    _scopes.pop(ident, None)
    _last_delivered.pop(ident, None)
    _watching_leave.discard(ident)
    if armed is not None:
        pending.insert(0, armed)
    why = _why_ended()
    for receipt in pending:
        _finish(receipt, UNDELIVERED, why)


cdef int _watch(PyThreadState *ts, unsigned long ident) except -1:
    cdef _ThreadWatch watch
    if ts.dict == NULL:
        ts.dict = PyDict_New()   # what PyThreadState_GetDict does for its own thread
        if ts.dict == NULL:
            return -1
    states = <dict>ts.dict
    old = states.get(_WATCH_KEY)
    if old is not None and (<_ThreadWatch>old).ident == ident:
        return 0
    if old is not None:
        (<_ThreadWatch>old).ident = 0   # the state changed ident: the old watch means nothing
    watch = _ThreadWatch.__new__(_ThreadWatch)
    watch.ident = ident
    states[_WATCH_KEY] = watch
    return 0


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


cdef int _arm(Receipt receipt, PyThreadState *ts) except -1:
    _watch(ts, receipt.ident)
    if PyThreadState_SetAsyncExc(receipt.ident, <PyObject *>receipt._carrier) != 1:
        _disarm(receipt.ident, receipt._carrier)
        raise ThreadNotFound(f"Thread {receipt.ident} vanished while it was being armed.")
    _armed[receipt.ident] = receipt
    return 0


cdef bint _is_handling(PyThreadState *ts, Py_ssize_t address) noexcept:
    """Is that exception on the thread's stack of exceptions being handled (except/finally)?"""
    cdef _PyErr_StackItem *item = ts.exc_info
    while item != NULL:
        if <Py_ssize_t>item.exc_value == address:
            return True
        item = item.previous_item
    return False


cdef bint _still_handling(unsigned long ident, PyThreadState *ts):
    """Is the thread still in a handler of the last exception of ours it raised?"""
    address = _handling.get(ident)
    if address is None:
        return False
    if _is_handling(ts, address):
        return True
    del _handling[ident]
    return False


# Standard-library lock handling (threading, queue, ...) that an exception must
# not land in: a Condition's __exit__ interrupted at its first line leaves the
# lock held, and Queue's bookkeeping half done. Filled by hardstop._protected.
cdef set _protected_codes = set()   # id() of each code object (kept alive there)
cdef object _wait_code = None       # Condition.wait: protected but at its waits
cdef object _wait_lines = frozenset()


def _bind_protected(codes, wait_code, wait_lines, condition_exit, semaphore_exit):
    global _protected_codes, _wait_code, _wait_lines, _condition_exit, _semaphore_exit
    _protected_codes = {id(code) for code in codes}
    _wait_code, _wait_lines = wait_code, frozenset(wait_lines)
    _condition_exit, _semaphore_exit = condition_exit, semaphore_exit


cdef bint _leaving = False          # _leave_watch is arming: the frame being left does not count
cdef set _watching_leave = set()    # idents whose profile function is _leave_watch
# Armed by their own thread in _leave_watch, which cannot wake a wait that thread
# is about to begin (a time.sleep right after a `with condition:`): the pump
# wakes them on its next round, and again at each of _REWAKE_AFTER (seconds
# after arming) while they stay armed. One wake is not enough: the pump runs as
# the thread gives the GIL up to begin its wait, and a signal that arrives
# before the system call starts is lost (an ASan CI run slept 60 s so).
cdef dict _armed_unwoken = {}   # receipt -> (when armed, wakes sent)
cdef tuple _REWAKE_AFTER = (0.0, 0.02, 0.1, 0.5)


cdef bint _protected_frame(PyFrameObject *frame) except -1:
    if frame == NULL:
        return False
    current = <object><PyObject *>frame
    code = current.f_code
    if id(code) not in _protected_codes:
        return False
    return code is not _wait_code or current.f_lineno not in _wait_lines


cdef bint _in_protected_code(PyThreadState *ts) except -1:
    """Is the thread's innermost frame standard-library lock handling? Arming
    there is put off until it returns to other code (see _leave_watch); the next
    check after a thread stopped in other code is at a function's start, before
    it has done anything."""
    cdef PyFrameObject *frame
    if _leaving or not _protected_codes:
        return False
    frame = PyThreadState_GetFrame(ts)
    if frame == NULL:
        return False
    try:
        return _protected_frame(frame)
    finally:
        Py_DECREF(<object><PyObject *>frame)   # the reference PyThreadState_GetFrame gave us


cdef void _watch_leave(PyThreadState *ts, unsigned long ident) noexcept:
    """Have the thread itself arm its request as it returns to other code: polling
    from outside sees a thread busy with a Queue almost only inside it (it gives
    the GIL up at checks, and nearly all of its checks are there). A thread that
    has a profile function of its own is left to the pump."""
    if ident in _watching_leave or ts.c_profilefunc != NULL:
        return
    if _PyEval_SetProfile(ts, _leave_watch, NULL) < 0:
        PyErr_Clear()   # an audit hook refused: the pump still polls
        return
    _watching_leave.add(ident)


cdef int _leave_watch(PyObject *unused, PyFrameObject *frame, int what, PyObject *result) noexcept:
    """Profile function of a thread with a request put off: on a normal return
    to a frame outside the lock handling, arm it (raised at the caller's next check)."""
    global _leaving
    cdef PyFrameObject *caller
    cdef unsigned long ident
    if what != PyTrace_RETURN or result == NULL or frame == NULL:   # NULL result: an exception unwinds
        return 0
    caller = PyFrame_GetBack(frame)
    try:
        if _protected_frame(caller):
            return 0
    except BaseException:
        PyErr_Clear()
        return 0
    finally:
        if caller != NULL:
            Py_DECREF(<object><PyObject *>caller)
    ident = PyThread_get_thread_ident()
    _watching_leave.discard(ident)
    _PyEval_SetProfile(PyThreadState_Get(), NULL, NULL)
    _leaving = True
    try:
        receipt = _arm_next(ident)
        if receipt is not None:
            _armed_unwoken[receipt] = (_monotonic(), 0)
    except BaseException:
        PyErr_Clear()
    finally:
        _leaving = False
    return 0


def in_protected_code(unsigned long ident):
    """True when the thread ``ident`` is inside standard-library lock handling."""
    cdef PyThreadState *ts = NULL
    return _count_states(ident, &ts) == 1 and _in_protected_code(ts)


cdef object _first_free(list queue):
    """The oldest request in ``queue`` that no shield holds back, or None."""
    for receipt in queue:
        if not _held(receipt):
            return receipt
    return None


cdef object _arm_next(unsigned long ident):
    """Arm the oldest queued request for ``ident`` that no shield holds back, unless
    one of ours is armed there or the thread is still handling the last one it
    raised; return what was armed."""
    cdef Receipt receipt
    cdef PyThreadState *ts = NULL
    if ident in _armed:
        return None
    queue = _queued.get(ident)
    while queue:
        n = _count_states(ident, &ts)
        if n > 1:
            return None   # a twin is present (3.10/3.11: a thread being started); the pump retries
        if n == 1 and _still_handling(ident, ts):
            return None   # the pump retries once the handler is done
        if n == 1 and _in_protected_code(ts):
            _watch_leave(ts, ident)
            return None   # armed as it leaves the lock handling (or by the pump)
        receipt = queue[0] if n == 0 else _first_free(queue)
        if receipt is None:
            return None   # all held back: the shield's exit arms the next
        queue.remove(receipt)
        if not queue:
            del _queued[ident]
        if n == 0:
            _finish(receipt, UNDELIVERED, _why_ended())
            continue
        try:
            _arm(receipt, ts)
            return receipt
        except Exception as error:
            _finish(receipt, UNDELIVERED, str(error))
    return None


cdef void _resignal_armed():
    """3.10-3.12: raise the shared flag again for requests still armed elsewhere."""
    cdef Receipt receipt
    cdef PyThreadState *ts = NULL
    for receipt in list(_armed.values()):
        if _count_states(receipt.ident, &ts) == 1 and ts.async_exc == <PyObject *>receipt._carrier:
            PyThreadState_SetAsyncExc(receipt.ident, <PyObject *>receipt._carrier)
            return


class _ResetFlag(BaseException):
    """Raised in the calling thread only to make CPython reset its shared flag."""


cdef int _reset_shared_flag() except -1:
    """3.10-3.12: after a withdrawal, raise and catch a private exception in this
    thread, the only way to clear the interpreter-wide flag; skipped while any
    slot of this interpreter is armed, since that request needs the flag.

    Armed here, right after the scan, with no bytecode in between: armed from a
    Python function, another thread could arm a request of ours on this thread
    first, and this one would replace it. A request armed here meanwhile (while
    the bytecode below gives the GIL up) replaces ours instead and is raised in
    its place, as a delivery: it propagates to the caller."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    while ts != NULL:
        if ts.async_exc != NULL:
            return 0
        ts = PyThreadState_Next(ts)
    PyThreadState_SetAsyncExc(PyThread_get_thread_ident(), <PyObject *>_ResetFlag)
    try:
        _run_bytecode()
    except _ResetFlag:
        pass
    if _armed:
        _resignal_armed()
    return 0


# The flag is only checked by bytecode, so the reset needs a few instructions of it.
_namespace = {}
exec("def run_bytecode():\n    for _ in (0, 1, 2):\n        pass\n", _namespace)
_run_bytecode = _namespace.pop("run_bytecode")


def deliver(cls, *args):
    """``__new__`` of every carrier class: runs in the target as it raises."""
    cdef unsigned long ident = PyThread_get_thread_ident()
    cdef Receipt receipt
    candidate = _armed.get(ident)
    # Ours only if the slot was just emptied by the interpreter. Otherwise the
    # carrier is being called by 3.10, which records it as the exception's type:
    # re-raising normalizes (carrier, instance) by calling carrier(instance),
    # and that must give back the same instance, not wrap it in a new one.
    # A delivery calls the carrier without arguments (the slot holds a class).
    if (args or candidate is None or (<Receipt>candidate)._carrier is not cls
            or PyThreadState_Get().async_exc != NULL):
        base = cls.__base__
        if len(args) == 1 and isinstance(args[0], base):
            return args[0]
        return base(*args)
    receipt = candidate
    del _armed[ident]
    _delivered(receipt, ident)
    if _SHARED_FLAG and _armed:
        _resignal_armed()   # CPython has just reset the flag other armed threads need
    if not _LAZY_EXCEPTIONS:
        _finish_interrupted_exit()
    return receipt.exception


cdef object _condition_exit = None   # threading.Condition.__exit__'s code (bound by hardstop._protected)
cdef object _semaphore_exit = None   # threading.Semaphore.__exit__'s, BoundedSemaphore's too


cdef void _finish_interrupted_exit() except *:
    """Raised at the first instruction of ``Condition.__exit__`` or
    ``Semaphore.__exit__``, which a with statement in any frame calls with no
    protection around it: release what that ``__exit__`` was about to release,
    and let the exception go on from there. (3.12+ only: before, the exception
    is created later, away from that frame.)"""
    cdef PyFrameObject *frame = PyEval_GetFrame()
    if frame == NULL:
        return
    current = <object><PyObject *>frame
    code = current.f_code
    if current.f_lasti > 0 or (code is not _condition_exit and code is not _semaphore_exit):
        return
    lock = current.f_locals.get("self")
    try:
        if code is _condition_exit:
            lock._lock.release()   # C: nothing else can be raised in between
        else:
            lock.release()   # Semaphore.release, Python code, as its own __exit__ would run it
    except (RuntimeError, ValueError):
        pass   # not held, or a BoundedSemaphore released too often: that __exit__ would have failed too


cdef void _delivered(Receipt receipt, unsigned long ident) except *:
    _finish(receipt, DELIVERED, None)
    _handling[ident] = <Py_ssize_t><PyObject *>receipt.exception   # the next waits until it is handled
    _last_delivered[ident] = receipt
    _watch_unraisable()
    if receipt._scope is not None:
        _expiry_delivered(<Deadline>receipt._scope)


# CPython swallows an exception raised in __del__, a weakref callback or a GC
# callback: it hands it to sys.unraisablehook and goes on. One of ours raised
# there was not delivered to the code it was aimed at, so its receipt must not
# say so. hardstop wraps whatever hook is installed when it delivers (pytest,
# for one, installs its own once per session), and the wrapper, called in the
# thread that swallowed it, turns that receipt to "undelivered" before passing
# the exception on. Deadlines and kill() then raise again, as when any code
# swallows their exception. A deadline's expiry is not passed on: it is
# hardstop's own carrier, which the program never sees, and the deadline fires
# again (without that, Dask's GC diagnostics printed "Exception ignored" for it).
cdef str _SWALLOWED = ("raised inside a finalizer (__del__, a weakref or GC callback), where CPython "
                       "swallows exceptions: it went to sys.unraisablehook")


cdef class _SwallowWatch:
    cdef readonly object wrapped

    def __call__(self, unraisable):
        if _swallowed(PyThread_get_thread_ident(), getattr(unraisable, "exc_value", None)):
            return None
        # The hook reports the error (it formats a traceback, pytest records it):
        # a request that lands in it would break the report. Held until it returns.
        with shield():
            return self.wrapped(unraisable)

    def __repr__(self):
        return f"<hardstop watching {self.wrapped!r}>"


cdef void _watch_unraisable() except *:
    cdef _SwallowWatch watch
    hook = _sys.unraisablehook
    if type(hook) is not _SwallowWatch:
        watch = _SwallowWatch.__new__(_SwallowWatch)
        watch.wrapped = hook
        _sys.unraisablehook = watch


cdef bint _swallowed(unsigned long ident, object error) except -1:
    """Turn the receipt of ``error``, just swallowed, to undelivered; True if it was a deadline's expiry."""
    cdef Receipt receipt = _last_delivered.get(ident)
    if receipt is None or error is None or receipt.exception is not error or receipt._status is not DELIVERED:
        return False
    del _last_delivered[ident]
    receipt._status = UNDELIVERED
    receipt.reason = _SWALLOWED
    _handling.pop(ident, None)   # nothing handles it: the next request may be armed
    return receipt._scope is not None


cdef void _raise_armed_now(unsigned long ident) except *:
    """Raise here, in the calling thread, the request of ours armed in its slot."""
    cdef Receipt receipt = _armed.get(ident)
    if receipt is None or not _disarm(ident, receipt._carrier):
        return
    del _armed[ident]
    if _SHARED_FLAG:
        _reset_shared_flag()   # the slot was emptied by us, not by CPython
    _delivered(receipt, ident)
    raise receipt.exception


def pump():
    """Arm what can be armed now; return ``(receipts armed, keep going)``.

    Called by the pump thread; once "keep going" is False that thread must end,
    and ``claim_pump()`` lets the next queued request start a new one.
    """
    global _pump_running
    armed = _due_rewakes(_monotonic())
    for ident in list(_queued):
        if _LAZY_EXCEPTIONS:
            _give_up_if_discarded(ident)
        receipt = _arm_next(ident)
        if receipt is not None:
            armed.append(receipt)
    if not _pump_needed():
        _pump_running = False
    return armed, _pump_running


cdef list _due_rewakes(double now):
    """The self-armed receipts to wake (again) now; forget those raised or done."""
    due = []
    for receipt, (since, sent) in list(_armed_unwoken.items()):
        if _armed.get(receipt.ident) is not receipt or sent == len(_REWAKE_AFTER):
            del _armed_unwoken[receipt]
        elif now - since >= _REWAKE_AFTER[sent]:
            _armed_unwoken[receipt] = (since, sent + 1)
            due.append(receipt)
    return due


cdef bint _pump_needed():
    """Is anything queued that the pump could arm, or armed by its thread and not
    woken yet? (What shields hold back is armed by the shield's exit, not polled for.)"""
    if _armed_unwoken:
        return True
    for queue in _queued.values():
        if _first_free(queue) is not None:
            return True
    return False


cdef void _give_up_if_discarded(unsigned long ident):
    cdef PyThreadState *ts = NULL
    cdef Receipt receipt = _armed.get(ident)
    if receipt is None or _count_states(ident, &ts) != 1 or ts.async_exc == <PyObject *>receipt._carrier:
        return
    now = _monotonic()
    if receipt._taken_at == 0:
        receipt._taken_at = now
    elif now - receipt._taken_at >= _GIVE_UP_AFTER:
        del _armed[ident]
        _finish(receipt, UNDELIVERED,
                "raised, then discarded by C code before any handler saw it (CPython 3.10/3.11)")


def claim_pump():
    """True if the caller must start a pump thread (something is queued, none runs)."""
    global _pump_running
    if _pump_running or not _pump_needed():
        return False
    _pump_running = True
    return True


def release_pump():
    """Undo ``claim_pump()`` when the pump thread could not be started."""
    global _pump_running
    _pump_running = False


def arm(object thread, unsigned long ident, object exc, object carrier):
    """Check the target and arm (or queue) ``exc`` for it, in one step under the GIL.

    ``thread`` is the ``threading.Thread`` the caller named, or None for a bare
    ident. ``carrier`` is the carrier class of ``type(exc)``. Returns a Receipt.
    """
    return _arm_request(thread, ident, exc, carrier, 0, None)


cdef Receipt _arm_request(object thread, unsigned long ident, object exc, object carrier,
                          int level, object scope):
    cdef PyThreadState *ts
    cdef Receipt receipt
    if thread is not None:
        owner = _active.get(ident)
        if owner is not thread:
            if owner is None:
                raise ThreadNotFound(f"{thread!r} is not running: it has finished.")
            raise ThreadNotFound(f"{thread!r} has finished: its ident {ident} now belongs to {owner!r}.")
    ts = _only_state(ident)
    receipt = Receipt.__new__(Receipt)
    receipt.thread = thread if thread is not None else _active.get(ident)
    receipt.ident = ident
    receipt.exception = exc
    receipt._carrier = carrier
    receipt._status = PENDING
    receipt._level = level
    receipt._scope = scope
    queue = _queued.get(ident)
    if (ident in _armed or _held(receipt) or (queue and _first_free(queue) is not None)
            or _still_handling(ident, ts)):
        _queued.setdefault(ident, []).append(receipt)
    elif _in_protected_code(ts):
        _queued.setdefault(ident, []).append(receipt)
        _watch_leave(ts, ident)
    else:
        _arm(receipt, ts)
    return receipt


def current_frame(unsigned long ident):
    """The frame the thread ``ident`` is running (or blocked in), or None.

    None as well when no single thread state carries ``ident``.
    """
    cdef PyThreadState *ts = NULL
    cdef PyFrameObject *frame
    if _count_states(ident, &ts) != 1:
        return None
    frame = PyThreadState_GetFrame(ts)
    if frame == NULL:
        return None
    result = <object><PyObject *>frame
    Py_DECREF(result)   # drop the reference PyThreadState_GetFrame gave us
    return result


def is_armed(Receipt receipt):
    """True while ``receipt`` is the request in its thread's slot, not yet raised."""
    return _armed.get(receipt.ident) is receipt


def still_handling(unsigned long ident):
    """True while the thread runs an except/finally block handling the last
    exception of ours that it raised."""
    cdef PyThreadState *ts = NULL
    return _count_states(ident, &ts) == 1 and _still_handling(ident, ts)


def pending_count(unsigned long ident):
    """How many requests of hardstop's are pending for ``ident`` (armed or queued)."""
    return (ident in _armed) + len(_queued.get(ident, ()))


def slot_is_empty(unsigned long ident):
    """True when no thread state carrying ``ident`` has anything in its slot."""
    cdef PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get())
    while ts != NULL:
        if ts.thread_id == ident and ts.async_exc != NULL:
            return False
        ts = PyThreadState_Next(ts)
    return True


# ---- Scopes: shields and deadlines.
#
# Each thread has a depth counter of the scopes it is in (shields and deadlines,
# innermost last) and the position of its innermost shield. A request carries a
# level: 0 for interrupt(), a deadline's own position for its expiry. A shield
# holds a request back when it sits inside the request's scope (position > level):
# every shield holds interrupt() requests, and a deadline entered *inside* a
# shield still fires there (trio's rule: the shield protects its body from the
# outside, not from limits the body sets itself). Entering, leaving and firing
# are each one step here, under the GIL, so no request lands half way.

cdef class _ThreadScopes:
    cdef int depth        # shields and deadlines this thread is in
    cdef int shield_top   # position of its innermost shield; 0 when it is in none


cdef dict _scopes = {}    # ident -> _ThreadScopes


cdef _ThreadScopes _own_scopes(unsigned long ident):
    cdef _ThreadScopes scopes = _scopes.get(ident)
    if scopes is None:
        _watch(PyThreadState_Get(), ident)   # dropped with the thread
        scopes = _ThreadScopes.__new__(_ThreadScopes)
        _scopes[ident] = scopes
    return scopes


cdef bint _held(Receipt receipt):
    """Does a shield of the target hold this request back?"""
    cdef _ThreadScopes scopes = _scopes.get(receipt.ident)
    return scopes is not None and scopes.shield_top > receipt._level


cdef void _hold_armed(unsigned long ident) except *:
    """A shield was just entered: take back what is armed for it, first in line."""
    cdef Receipt receipt = _armed.get(ident)
    if receipt is None or not _held(receipt) or not _disarm(ident, receipt._carrier):
        return
    del _armed[ident]
    _queued.setdefault(ident, []).insert(0, receipt)
    if _SHARED_FLAG:
        _reset_shared_flag()


cdef void _release_held(unsigned long ident) except *:
    """A scope was left: arm at once what its shield held back, if anything."""
    cdef PyThreadState *ts = NULL
    queue = _queued.get(ident)
    if not queue or ident in _armed:
        return
    free = [receipt for receipt in queue if not _held(receipt)]
    if not free:
        return
    # More than one, or a handler of ours still running: the pump takes over
    # after this one. Started first, since it is Python code and this thread
    # raises what gets armed at its next check.
    busy = _count_states(ident, &ts) != 1 or _still_handling(ident, ts)
    if (len(free) > 1 or busy) and _start_pump is not None and claim_pump():
        _start_pump()
    _arm_next(ident)


cdef class shield:
    """``with hardstop.shield():`` defer interrupts aimed at this thread.

    Requests made while the thread is inside (and one armed just before it got
    in) are held, in order, and the oldest is raised as the outermost shield is
    left. Shields nest. A deadline entered inside a shield still fires inside it.
    """
    cdef unsigned long _ident
    cdef int _position
    cdef int _outer_top
    cdef bint _inside

    def __enter__(self):
        cdef unsigned long ident = PyThread_get_thread_ident()
        cdef _ThreadScopes scopes
        if self._inside:
            raise RuntimeError("This hardstop.shield() is entered already: use one per with statement.")
        scopes = _own_scopes(ident)
        self._ident = ident
        self._inside = True
        self._outer_top = scopes.shield_top
        scopes.depth += 1
        self._position = scopes.depth
        scopes.shield_top = scopes.depth
        _hold_armed(ident)
        return self

    def __exit__(self, kind, value, traceback):
        cdef _ThreadScopes scopes
        if not self._inside:
            return False
        self._inside = False
        scopes = _scopes.get(self._ident)
        if scopes is not None:
            scopes.depth = self._position - 1
            scopes.shield_top = self._outer_top
            _release_held(self._ident)
        return False

    def __repr__(self):
        return f"<hardstop.shield {'entered' if self._inside else 'not entered'}>"


from heapq import heappush as _heappush, heappop as _heappop, heapify as _heapify
from hardstop._errors import DeadlineExceeded, _DeadlinePassed

cdef double _INF = float("inf")
# A deadline is level-triggered: when its expiry was raised and the block still
# runs (the exception was swallowed, maybe by CPython itself in a finalizer),
# it fires again this long after.
cdef double _REFIRE_AFTER = 0.01
cdef int _SUSPENDABLE = 0x20 | 0x80 | 0x200   # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR

cdef list _heap = []          # (when, entry number, Deadline): the watchdog's queue
cdef Py_ssize_t _entries = 0  # numbers the entries, so that equal times never compare scopes
cdef Py_ssize_t _stale = 0    # entries in _heap whose scope left or was withdrawn
cdef bint _watchdog_running = False
cdef object _expiry_carrier = None
cdef object _start_watchdog = None
cdef object _fire_now = None
cdef object _start_pump = None
_wakeup = allocate_lock()     # held; released to wake the watchdog early
_wakeup.acquire()


cdef inline double _number(object value, str what) except? -1.0:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} takes a number of seconds, not {type(value).__name__} {value!r}.")
    cdef double number
    try:
        number = value
    except OverflowError:   # an int no double can hold
        raise ValueError(f"{what} takes a number of seconds, not {value!r}.") from None
    if number != number:
        raise ValueError(f"{what} takes a number of seconds, not {value!r}.")
    return number


def deadline(seconds):
    """``with hardstop.deadline(seconds) as scope:`` raise in this block once
    ``seconds`` have passed; it leaves the block as ``hardstop.DeadlineExceeded``.
    ``None``: no limit (``math.inf``)."""
    if seconds is None:
        seconds = _INF
    cdef double span = _number(seconds, "hardstop.deadline()")
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _monotonic() + span
    scope.seconds = seconds
    return scope


def deadline_at(when):
    """Like ``deadline()``, at an absolute ``time.monotonic()`` value."""
    cdef Deadline scope = Deadline.__new__(Deadline)
    scope.when = _number(when, "hardstop.deadline_at()")
    return scope


cdef class Deadline:
    """A scope made by ``hardstop.deadline()`` or ``hardstop.deadline_at()``."""
    cdef readonly double when       # the time.monotonic() value it expires at
    cdef readonly object seconds    # as given to deadline(); None for deadline_at()
    cdef unsigned long _ident
    cdef int _level
    cdef bint _entered
    cdef bint _open
    cdef bint _expired
    cdef bint _withdrawn
    cdef bint _in_heap
    cdef bint _forced       # expire() was called
    cdef Py_ssize_t _entry
    cdef list _receipts
    cdef object _frame      # of the with statement, while the block is open
    cdef object _code       # and its code and line, for messages
    cdef public str label   # what it guards, named instead of where it was set (e.g. by hardstop.futures)
    cdef int _line

    def __init__(self):
        raise TypeError("Deadline objects are made by hardstop.deadline() or hardstop.deadline_at().")

    def __enter__(self):
        global _watchdog_running
        cdef unsigned long ident = PyThread_get_thread_ident()
        cdef _ThreadScopes scopes
        cdef PyFrameObject *frame
        if self._entered:
            raise RuntimeError(f"{self!r} was entered already: use one per with statement.")
        if self.when <= _monotonic():
            # Passed already: raised here, before the body. Armed, it would wait for the
            # body's first check, and a body without one (C calls, no loop) would run to its end.
            _raise_armed_now(ident)
            self._entered = self._expired = True
            self._ident = ident
            frame = PyEval_GetFrame()
            if frame != NULL:
                self._line = PyFrame_GetLineNumber(frame)
                self._code = (<object><PyObject *>frame).f_code
            raise DeadlineExceeded(self)
        if self.when < _INF and hardstop_is_finalizing():
            # The watchdog is a daemon thread, and daemon threads are stopped for good.
            raise RuntimeError(
                f"{self!r} cannot be enforced: the interpreter is shutting down and no thread is left to fire it."
            )
        if not _watchdog_running and self.when < _INF:
            _watchdog_running = True
            try:
                _start_watchdog()
            except BaseException:
                _watchdog_running = False
                raise
        # 3.14+ call __enter__ with an ordinary CALL, and check for a pending
        # exception after it returns, before the with statement protects its
        # body: one armed before this call would be raised there, leaving this
        # scope open with nobody to close it. Raise it here instead, before
        # anything is entered. (One armed while the thread waits for the GIL at
        # that check is raised at the next check, inside the body: 3.13+ test a
        # snapshot of the eval breaker taken before they let the GIL go.)
        _raise_armed_now(ident)
        scopes = _own_scopes(ident)
        self._entered = self._open = True
        self._ident = ident
        scopes.depth += 1
        self._level = scopes.depth
        self._receipts = []
        frame = PyEval_GetFrame()
        if frame != NULL:
            self._frame = <object><PyObject *>frame
            self._line = PyFrame_GetLineNumber(frame)
            self._code = self._frame.f_code
        if self.when < _INF:
            _schedule(self, self.when)
        return self

    def __exit__(self, kind, value, traceback):
        if not self._open:
            return False
        self._close()
        if isinstance(value, _DeadlinePassed) and (<object>value).scope is self:
            raise DeadlineExceeded(self) from value
        return False

    cdef void _close(self, bint restore_depth=True) except *:
        cdef _ThreadScopes scopes
        self._open = False
        self._unschedule()
        for receipt in self._receipts:
            if (<Receipt>receipt)._status is PENDING:
                receipt.cancel()
        self._receipts = None
        self._frame = None   # its locals may hold this scope: no cycle left behind
        scopes = _scopes.get(self._ident)
        if scopes is not None and restore_depth:
            scopes.depth = self._level - 1

    cdef void _unschedule(self):
        global _stale
        if self._in_heap:
            self._in_heap = False
            _stale += 1
            if _stale > 1024 and _stale * 2 > len(_heap):
                _compact()

    @property
    def ident(self):
        """The ident of the thread that entered it (0 before that)."""
        return self._ident

    @property
    def expired(self):
        """True once the deadline has fired (its expiry was raised or armed in the block)."""
        return self._expired

    @property
    def remaining(self):
        """Seconds left until the deadline (0.0 once it has passed; inf for none)."""
        left = self.when - _monotonic()
        return left if left > 0 else 0.0

    @property
    def where(self):
        """``file:line`` of the with statement; None before it is entered."""
        if self._code is None:
            return None
        return f"{self._code.co_filename}:{self._line}"

    @property
    def description(self):
        """Names this deadline and where it was set, e.g. in ``DeadlineExceeded``."""
        what = (f"the deadline of {self.seconds} s" if self.seconds is not None
                else f"the deadline at monotonic time {self.when:.3f}")
        where = self.where
        if self.label is not None:
            what += f" set for {self.label}"
        elif where is not None:
            what += f" set at {where}"
        return what + (", made to pass early by expire()," if self._forced else "")

    def cancel(self):
        """Withdraw the deadline: the block goes on without a time limit.

        Returns True when that prevented the expiry from being raised, False when
        it had been raised already or the block was left.
        """
        cdef bint pending = False
        if not self._open or self._withdrawn:
            return False
        self._withdrawn = True
        self._unschedule()
        for receipt in self._receipts:
            if (<Receipt>receipt)._status is PENDING and receipt.cancel():
                pending = True
        return pending or not self._expired

    def expire(self):
        """Make the deadline pass now, from any thread (trio's ``cancel()``).

        Its expiry is raised in the block at once, as when the time comes; a
        wait is woken. Returns False when the block was left or the deadline
        withdrawn, or it had fired already.
        """
        if not self._open or self._withdrawn or self._expired:
            return False
        self.when = _monotonic()
        self._forced = True
        self._unschedule()
        _fire_now(self)   # in this thread: no wait for the watchdog to get the GIL
        return True

    def __bool__(self):
        raise TypeError(
            "A hardstop.Deadline has no truth value: `if scope:` (stopit's idiom) cannot say whether it "
            "fired; test `scope.expired`, or `scope is not None` for whether there is one."
        )

    def __repr__(self):
        state = ("expired" if self._expired else "withdrawn" if self._withdrawn
                 else "open" if self._open else "left" if self._entered else "not entered")
        return f"<hardstop.Deadline {state}, {self.remaining:.3f} s left>"


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
    """Its expiry was raised in the block; if the block goes on, fire again soon."""
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


def _bind_deadlines(carrier, start_watchdog, fire_now):
    global _expiry_carrier, _start_watchdog, _fire_now
    _expiry_carrier = carrier
    _start_watchdog = start_watchdog
    _fire_now = fire_now


def after_fork_in_child():
    """In a child process: nothing armed or queued in the parent is ever raised
    here; the deadlines of the thread that forked fire here from a new watchdog."""
    global _pump_running, _watchdog_running, _stale, _wakeup
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
            (<Deadline>receipt._scope)._in_heap = False
    own = _scopes.get(me)
    _scopes.clear()
    if own is not None:
        _scopes[me] = own
    live = [entry for entry in _heap if _live(entry) and (<Deadline>entry[2])._ident == me]
    _heap[:] = live
    _heapify(_heap)
    _stale = 0
    for receipt in pending:
        if receipt._scope is not None and receipt.ident == me:
            retry_later(receipt._scope, 0.0)   # fired in the parent: fire again here
    _pump_running = False
    _watchdog_running = False
    _wakeup = allocate_lock()
    _wakeup.acquire()
    if _SHARED_FLAG:
        _reset_shared_flag()


# ---- The C API (hardstop.h): a versioned capsule of functions that take the GIL.

cdef object _interrupt = None   # hardstop._interrupt.interrupt, bound by that module


def _bind_interrupt(func, start_pump):
    global _interrupt, _start_pump
    _interrupt = func
    _start_pump = start_pump


cdef int _failure(BaseException error, bint caller_held_gil) noexcept:
    """Map an exception to a C API code; leave it set only if the caller holds the GIL."""
    cdef int code = HARDSTOP_ERROR
    if isinstance(error, ThreadNotFound):
        code = HARDSTOP_NOT_FOUND
    elif isinstance(error, AmbiguousThread):
        code = HARDSTOP_AMBIGUOUS
    elif isinstance(error, (TypeError, ValueError)):
        code = HARDSTOP_INVALID
    if caller_held_gil:
        PyErr_SetObject(type(error), error)
    return code


cdef int _capi_interrupt_gil(unsigned long ident, object exc, PyObject **out, bint held) noexcept:
    try:
        receipt = _interrupt(ident, exc)
    except BaseException as error:
        return _failure(error, held)
    if out != NULL:
        Py_INCREF(receipt)
        out[0] = <PyObject *>receipt
    return 0


cdef int _capi_interrupt(unsigned long ident, PyObject *exc, PyObject **out) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_interrupt_gil(ident, <object>exc if exc != NULL else Interrupted, out, held)
    return code


cdef int _capi_cancel_gil(object receipt, bint held) noexcept:
    try:
        return 1 if (<Receipt?>receipt).cancel() else 0
    except BaseException as error:
        return _failure(error, held)


cdef int _capi_cancel(PyObject *receipt) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_cancel_gil(<object>receipt, held)
    return code


cdef int _capi_wait_gil(object receipt, double timeout, bint held) noexcept:
    try:
        return 1 if (<Receipt?>receipt).wait(None if timeout < 0 else timeout) else 0
    except BaseException as error:
        return _failure(error, held)


cdef int _capi_wait(PyObject *receipt, double timeout) noexcept nogil:
    cdef bint held = PyGILState_Check()
    cdef int code
    with gil:
        code = _capi_wait_gil(<object>receipt, timeout, held)
    return code


cdef Hardstop_CAPI _capi
_capi.version = HARDSTOP_CAPI_VERSION
_capi.interrupt_ident = _capi_interrupt
_capi.cancel = _capi_cancel
_capi.wait = _capi_wait
_C_API = PyCapsule_New(<void *>&_capi, HARDSTOP_CAPSULE_NAME, NULL)
