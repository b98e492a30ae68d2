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
  (``deliver`` in receipt.pxi) returns that very instance. Subclassing keeps
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
  from the thread's record (``record.armed``), never from the class.

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

The module is one extension built from the files below, in reading order: to
follow what happens when a thread is interrupted, read receipt.pxi top to bottom.
"""

# The imports of every included file (cython-lint reads this file alone, hence the markers).
cimport cython  # no-cython-lint
from cpython.object cimport PyObject  # no-cython-lint
from cpython.ref cimport Py_INCREF, Py_DECREF  # no-cython-lint
from cpython.pythread cimport PyThread_get_thread_ident  # no-cython-lint
from cpython.pycapsule cimport PyCapsule_New  # no-cython-lint
from cpython.exc cimport PyErr_CheckSignals, PyErr_Clear, PyErr_Restore, PyErr_SetObject  # no-cython-lint
from cpython.weakref cimport PyWeakref_NewRef  # no-cython-lint

from _cpython cimport *   # every CPython declaration hardstop uses, one comment each

import sys as _sys  # no-cython-lint
import threading  # no-cython-lint
from _thread import allocate_lock  # no-cython-lint
from time import monotonic as _monotonic  # no-cython-lint

from hardstop._errors import AmbiguousThread, Interrupted, ThreadNotFound  # no-cython-lint

# Classes used by files before the one that defines them.
cdef class Receipt
cdef class Deadline
cdef class shield

include "threads.pxi"         # thread states: the walk, the slot; the one record kept per thread
include "receipt.pxi"         # Receipt and the request path: arm, queue, deliver, cancel
include "lost.pxi"            # a request that left the slot without being raised ends undelivered
include "interrupt.pxi"       # interrupt(): target, exception, carrier, arm, wake, in one call
include "condition_wake.pxi"  # ending a Condition wait for an armed request
include "signal_ended_calls.pxi"  # 3.15+: a worker is signalled only in a call the signal ends
include "version_quirks.pxi"  # one block per CPython quirk, headed by the versions it serves
include "stdlib_locks.pxi"    # never arming inside threading's, queue's or logging's lock handling
include "unraisable.pxi"      # an exception of ours swallowed in a finalizer is not "delivered"
include "pump.pxi"            # what the pump thread polls: queued requests, re-wakes
include "scopes.pxi"          # per-thread scope depth, and shield()
include "deadline.pxi"        # deadline(), deadline_at(), the Deadline scope
include "task.pxi"            # hardstop.futures' task: run in a deadline scope, its future settled
include "deadline_heap.pxi"   # the watchdog's heap: scheduling, firing, re-firing
include "fork.pxi"            # the child of os.fork() starts clean
include "capi.pxi"            # the C API capsule (hardstop.h)

cdef extern from *:
    """
    /* Py_mod_gil exists from 3.13; Cython's macro says what the directive above gave it. */
    #ifdef Py_MOD_GIL_NOT_USED
    #define hardstop_declares_free_threading (__Pyx_FREETHREADING_COMPATIBLE == Py_MOD_GIL_NOT_USED)
    #else
    #define hardstop_declares_free_threading 0
    #endif
    """
    bint hardstop_declares_free_threading

# Whether this extension declares free-threading support (its Py_mod_gil slot),
# so that importing it leaves the GIL off on a free-threaded build.
FREE_THREADING = hardstop_declares_free_threading
