# Every CPython declaration the extension uses, with why it is needed. Cimported by
# _hardstop.pyx; nothing here is hardstop's own.

from cpython.object cimport PyObject

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
        int tracing                # > 0 while a trace or profile function runs
        PyObject *c_traceobj       # the function given to sys.settrace, or NULL
        PyObject *c_profileobj     # the function given to sys.setprofile, or NULL
        Py_tracefunc c_profilefunc
        PyObject *dict
        PyObject *async_exc
        unsigned long thread_id
        unsigned long long id      # unique in its interpreter: a newer state has a larger one
        _PyErr_StackItem *exc_info
    int PY_VERSION_HEX
    PyInterpreterState *PyInterpreterState_Get()
    PyThreadState *PyInterpreterState_ThreadHead(PyInterpreterState *)
    PyThreadState *PyThreadState_Next(PyThreadState *)
    PyThreadState *PyThreadState_Get()
    PyFrameObject *PyThreadState_GetFrame(PyThreadState *)   # a new reference, or NULL
    PyFrameObject *PyEval_GetFrame()   # borrowed: the calling Python frame, or NULL
    int PyFrame_GetLineNumber(PyFrameObject *)
    ctypedef struct PyCodeObject:
        int co_flags               # read without an attribute lookup (frame.f_code is audited)
    PyObject *PyDict_New()
    PyObject *PyDict_GetItem(object, object)   # borrowed, or NULL; never raises
    int PyGILState_Check() nogil
    # Turn the garbage collector off and back on (what gc.disable()/gc.enable()
    # do); each returns whether it was on before.
    int PyGC_Disable()
    int PyGC_Enable()
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

cdef extern from *:
    """
    /* 3.10/3.11: the exception a thread is raising, as its class until the object is created. */
    #if PY_VERSION_HEX < 0x030C0000
    #define hardstop_raising(ts) ((ts)->curexc_type)
    #else
    #define hardstop_raising(ts) ((PyObject *)NULL)
    #endif
    """
    # What the thread ``ts`` is raising (3.10/3.11 only; NULL on later versions,
    # which create the object, and so run our carrier's __new__, as they raise).
    PyObject *hardstop_raising(PyThreadState *ts)

cdef extern from "frameobject.h":   # not included by Python.h before 3.11
    PyFrameObject *PyFrame_GetBack(PyFrameObject *)   # a new reference, or NULL

cdef extern from *:
    """
    /* frame.f_code and frame.f_lasti without an attribute lookup. */
    #define hardstop_frame_code(f) ((PyObject *)PyFrame_GetCode(f))
    #if PY_VERSION_HEX >= 0x030B0000
    #define hardstop_frame_lasti(f) PyFrame_GetLasti(f)
    #else
    #define hardstop_frame_lasti(f) ((f)->f_lasti < 0 ? (f)->f_lasti : (f)->f_lasti * (int)sizeof(_Py_CODEUNIT))
    #endif
    """
    # The frame's code object (a new reference), as ``frame.f_code`` gives it.
    object hardstop_frame_code(PyFrameObject *)
    # The offset in bytes of its last instruction, as ``frame.f_lasti`` gives it
    # (public from 3.11, a field of the frame before).
    int hardstop_frame_lasti(PyFrameObject *)

cdef extern from *:
    """
    /* A local variable of a frame, read where it is kept (3.12+). 3.10/3.11 have
       no such accessor: there it comes from f_locals, a dict made for the call. */
    #if PY_VERSION_HEX >= 0x030C0000
    #define hardstop_frame_var(f, name) PyFrame_GetVar((f), (name))
    #else
    static PyObject *hardstop_frame_var(PyFrameObject *frame, PyObject *name) {
        PyObject *locals = PyObject_GetAttrString((PyObject *)frame, "f_locals");
        PyObject *value;
        if (locals == NULL) {
            return NULL;
        }
        value = PyDict_GetItemWithError(locals, name);
        Py_XINCREF(value);
        Py_DECREF(locals);
        if (value == NULL && !PyErr_Occurred()) {
            PyErr_SetObject(PyExc_NameError, name);
        }
        return value;
    }
    #endif
    """
    # The value of the local ``name`` (a new reference); NameError when unbound.
    object hardstop_frame_var(PyFrameObject *, object)

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

cdef extern from *:
    """
    /* Free-threaded builds (issue 17): no GIL stops the target while another
       thread reads its frames, its stack of handled exceptions or the list of
       thread states, or writes its slot. CPython's own sys._current_frames()
       stops the world for that; so does hardstop, with the same exported
       functions (declared in an internal header). The slot is read and emptied
       with atomics, as the interpreter takes it with an atomic exchange. In
       builds with a GIL all of this compiles to the plain code it was. */
    #if defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030E0000
    PyAPI_FUNC(void) _PyEval_StopTheWorld(PyInterpreterState *interp);
    PyAPI_FUNC(void) _PyEval_StartTheWorld(PyInterpreterState *interp);
    #define HARDSTOP_FREE_THREADED 1
    #define hardstop_stop_world() _PyEval_StopTheWorld(PyInterpreterState_Get())
    #define hardstop_start_world() _PyEval_StartTheWorld(PyInterpreterState_Get())
    #define hardstop_slot(ts) ((PyObject *)_Py_atomic_load_ptr(&(ts)->async_exc))
    static int hardstop_empty_slot_if(PyThreadState *ts, PyObject *expected) {
        return _Py_atomic_compare_exchange_ptr(&ts->async_exc, &expected, NULL);
    }
    #ifndef MS_WINDOWS
    #include <pthread.h>
    /* The object whose critical section guards hardstop's state. A mutex can be
       held across a fork by a thread that is not in the child (one it was handed
       to as the world stopped for the fork), and the child's first use of it is
       CPython clearing the parent's other thread states (their dicts hold our
       watches) before any Python code runs: so it is unlocked right after fork(),
       in the child, where this thread is the only one. */
    static PyObject *hardstop_core = NULL;
    static void hardstop_unlock_core_in_child(void) {
        if (hardstop_core != NULL) {
            hardstop_core->ob_mutex = (PyMutex){0};
        }
    }
    static int hardstop_keep_core(PyObject *core) {
        hardstop_core = core;
        return pthread_atfork(NULL, NULL, hardstop_unlock_core_in_child);
    }
    #else
    static int hardstop_keep_core(PyObject *core) { return 0; }
    #endif
    #else   /* GIL builds; and 3.13t, which lacks those exports: there the GIL stays on */
    #define HARDSTOP_FREE_THREADED 0
    #define hardstop_stop_world() ((void)0)
    #define hardstop_start_world() ((void)0)
    #define hardstop_slot(ts) ((ts)->async_exc)
    static int hardstop_empty_slot_if(PyThreadState *ts, PyObject *expected) {
        if (ts->async_exc != expected) return 0;
        ts->async_exc = NULL;
        return 1;
    }
    #define hardstop_keep_core(core) 0
    #endif
    """
    # True in free-threaded builds, where the calls below are real.
    bint HARDSTOP_FREE_THREADED
    # Suspend every other thread of the interpreter at its next check (or keep it
    # from running Python again if it is blocked), and let them all go on.
    void hardstop_stop_world() noexcept
    void hardstop_start_world() noexcept
    # The thread's slot, read as the interpreter writes it.
    PyObject *hardstop_slot(PyThreadState *ts) noexcept
    # Empty the slot if it still holds ``expected``; true if so. The caller owns
    # the reference the slot held.
    bint hardstop_empty_slot_if(PyThreadState *ts, PyObject *expected) noexcept
    # Free-threaded builds: see that ``core``'s mutex is free in the child of a fork.
    int hardstop_keep_core(PyObject *core) noexcept
