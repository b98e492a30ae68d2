/* CPython 3.10-3.12: clearing the interpreter-wide "async exception pending" flag.

   Those versions keep, beside each thread's slot, one flag per interpreter
   (interp->ceval.pending.async_exc) that every PyThreadState_SetAsyncExc sets
   and that only the thread raising an exception resets. Emptying a slot with
   NULL (a withdrawal) leaves it set, and eval_breaker with it, so that every
   thread takes the eval loop's slow path at each check until some exception is
   raised. CPython offers no call that resets it: here we do what its own
   UNSIGNAL_ASYNC_EXC does, in C, under the GIL (the flag is "guarded by the
   GIL"), reading the struct layouts from the headers of the interpreter we are
   built for. (3.13+ keep the request per thread and clean up themselves; this
   file then builds to nothing the extension calls.)

   Its own translation unit because the internal headers need Py_BUILD_CORE,
   which must not change how Cython's generated code sees Python.h. */

#include "patchlevel.h"   /* the version, before Python.h: Py_BUILD_CORE must come first */

#if PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030D0000

#define Py_BUILD_CORE_MODULE 1
#include "Python.h"
#include "internal/pycore_runtime.h"   /* _PyRuntime, runtime->ceval.signals_pending */
#include "internal/pycore_interp.h"    /* interp->ceval: eval_breaker, the pending requests */
#include "internal/pycore_pystate.h"   /* _PyInterpreterState_GET() */
#include "shared_flag.h"

/* Would CPython's COMPUTE_EVAL_BREAKER keep eval_breaker set, for any thread?
   Every other request is kept, whichever thread asks: dropping the drop-GIL
   request, a pending signal (Ctrl-C) or a pending call would delay it. Unlike
   CPython's macro, a signal or pending call counts even when the calling thread
   could not handle it: the main thread is then waiting for the GIL and
   recomputes on taking it, so keeping the bit only costs a slow-path check. */
static int
other_requests(PyInterpreterState *interp)
{
    struct _ceval_state *ceval = &interp->ceval;
    int pending = _Py_atomic_load_relaxed(&ceval->gil_drop_request)
                  | _Py_atomic_load_relaxed(&interp->runtime->ceval.signals_pending)
                  | _Py_atomic_load_relaxed(&ceval->pending.calls_to_do);
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12 adds calls for the main thread only, and a scheduled collection. */
    pending |= _Py_atomic_load_relaxed(&interp->runtime->ceval.pending_mainthread.calls_to_do)
               | _Py_atomic_load_relaxed(&ceval->gc_scheduled);
#endif
    return pending != 0;
}

int
hardstop_layout_matches(void)
{
    /* The struct offsets are the build headers'. A wheel built on one patch
       release runs on others: if the interpreter's layout were not these
       headers', this would write into the wrong field, so the extension checks
       two fields the interpreter itself reads first, and otherwise keeps its
       portable reset. */
    PyInterpreterState *interp = _PyInterpreterState_GET();
    return interp->runtime == &_PyRuntime
           && interp->ceval.recursion_limit == Py_GetRecursionLimit();
}

void
hardstop_clear_shared_flag(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
    struct _ceval_state *ceval = &interp->ceval;
    if (!ceval->pending.async_exc) {
        return;
    }
    ceval->pending.async_exc = 0;
    _Py_atomic_store_relaxed(&ceval->eval_breaker, other_requests(interp));
    /* A signal handler, or a thread asking for the GIL, may have set its request
       and eval_breaker between our read and our store, which would lose it (a
       race CPython's own recompute has too): look again after the store, and set
       eval_breaker back if anything is pending now. Their store of the request
       comes before their store of eval_breaker, so one of the two is seen. */
    _Py_atomic_thread_fence(_Py_memory_order_seq_cst);
    if (other_requests(interp)) {
        _Py_atomic_store_relaxed(&ceval->eval_breaker, 1);
    }
}

#endif
