/* CPython 3.15+: the function a thread is calling, read from its innermost frame.

   From 3.15 a signal that interrupts a system call in a worker thread makes the
   call raise that thread's pending exception (gh-144748). Signalling a thread
   that is not in such a call (it runs Python, or waits in Lock.acquire) ends
   nothing and costs the interrupter a few microseconds: so hardstop signals a
   worker only when the call in progress in its innermost Python frame is one
   whose wait the signal ends (hardstop._wake_calls lists them).

   With the GIL held (free-threaded: the world stopped), every other thread is
   stopped either at a check between instructions or inside a call out of the
   interpreter; CPython stores the frame's instruction pointer and stack pointer
   before both (the garbage collector walks the same stack). During a call the
   callable is the deepest of the operands the instruction pops: at
   stackpointer[-(2 + oparg)] for CALL, [-(3 + oparg)] for CALL_KW (the keyword
   names on top), [-4] for CALL_FUNCTION_EX. After the call returned (a check
   at its end), the operands are gone: then the slot holds whatever is below the
   result, which is at worst a needless signal, never a missed one, since every
   slot from the stack base to the stack pointer is a live reference.

   Specialised opcode numbers differ between versions, so the table of what
   each opcode is comes from Python's opcode module (hardstop._wake_calls).
   Its own translation unit, as shared_flag.c: the internal headers need
   Py_BUILD_CORE. Other versions compile only hardstop_method_def from it. */

#include "patchlevel.h"   /* the version, before Python.h: Py_BUILD_CORE must come first */

#if PY_VERSION_HEX >= 0x030F0000

#define Py_BUILD_CORE_MODULE 1
#include "Python.h"
#include "internal/pycore_frame.h"        /* struct _frame: f_frame */
#include "internal/pycore_interpframe.h"  /* _PyInterpreterFrame, _PyFrame_GetBytecode */
#include "internal/pycore_stackref.h"     /* _PyStackRef */
#include "call_in_progress.h"

static unsigned char call_kinds[256];   /* all HARDSTOP_OP_OTHER until set */

void
hardstop_set_call_kinds(const unsigned char *kinds)
{
    memcpy(call_kinds, kinds, sizeof(call_kinds));
}

/* The code object a frame runs, or NULL for a frame that runs none. */
static PyCodeObject *
frame_code(_PyInterpreterFrame *frame)
{
    _PyStackRef executable = frame->f_executable;
    if (PyStackRef_IsNull(executable) || PyStackRef_IsTaggedInt(executable)) {
        return NULL;
    }
    PyObject *code = PyStackRef_AsPyObjectBorrow(executable);
    return PyCode_Check(code) ? (PyCodeObject *)code : NULL;
}

/* The first code unit of the bytecode the frame runs (free-threaded: its own copy), or NULL. */
static _Py_CODEUNIT *
frame_bytecode(_PyInterpreterFrame *frame, PyCodeObject *code)
{
#ifdef Py_GIL_DISABLED
    _PyCodeArray *copies = _PyCode_GetTLBCArray(code);
    if (frame->tlbc_index < 0 || frame->tlbc_index >= copies->size) {
        return NULL;
    }
    return (_Py_CODEUNIT *)copies->entries[frame->tlbc_index];
#else
    (void)frame;
    return _PyCode_CODE(code);
#endif
}

int
hardstop_call_in_progress(PyThreadState *ts, PyObject **callable)
{
    *callable = NULL;
    _PyInterpreterFrame *frame = ts->current_frame;
    if (frame == NULL
        || (frame->owner != FRAME_OWNED_BY_THREAD && frame->owner != FRAME_OWNED_BY_GENERATOR)) {
        return HARDSTOP_CALL_UNKNOWN;   /* no Python frame, or the C stack's own entry frame */
    }
    PyCodeObject *code = frame_code(frame);
    if (code == NULL) {
        return HARDSTOP_CALL_UNKNOWN;
    }
    _Py_CODEUNIT *first = frame_bytecode(frame, code);
    _Py_CODEUNIT *at = frame->instr_ptr;
    if (first == NULL || at < first || at >= first + Py_SIZE(code)) {
        return HARDSTOP_CALL_UNKNOWN;
    }
    int depth;
    switch (call_kinds[at->op.code]) {
    case HARDSTOP_OP_OTHER:
        return HARDSTOP_CALL_NONE;
    case HARDSTOP_OP_CALL:
        depth = 2 + at->op.arg;
        break;
    case HARDSTOP_OP_CALL_KW:
        depth = 3 + at->op.arg;
        break;
    case HARDSTOP_OP_CALL_EX:
        depth = 4;
        break;
    default:
        return HARDSTOP_CALL_UNKNOWN;
    }
    /* An oparg widened by EXTENDED_ARG (over 255 arguments): not worth reading. A
       cache entry of the instruction before that looks like one only makes us unsure. */
    if (at > first && call_kinds[at[-1].op.code] == HARDSTOP_OP_EXTENDED_ARG) {
        return HARDSTOP_CALL_UNKNOWN;
    }
    _PyStackRef *base = frame->localsplus + code->co_nlocalsplus;
    _PyStackRef *top = frame->stackpointer;
    if (top == NULL || top < base || top > base + code->co_stacksize) {
        return HARDSTOP_CALL_UNKNOWN;
    }
    if (top - base < depth) {
        return HARDSTOP_CALL_NONE;   /* its operands are gone: the call returned */
    }
    _PyStackRef slot = top[-depth];
    if (PyStackRef_IsNull(slot) || PyStackRef_IsTaggedInt(slot) || PyStackRef_IsError(slot)) {
        return HARDSTOP_CALL_NONE;   /* never a callable: the call returned */
    }
    *callable = PyStackRef_AsPyObjectBorrow(slot);
    return HARDSTOP_CALL_FOUND;
}

int
hardstop_reads_own_call(PyObject *expected)
{
    /* The struct offsets are the build headers'. A wheel built on one patch
       release runs on others: before trusting them, compare what they give
       for the calling thread with what the public API says. Each pointer is
       compared before it is followed. */
    PyThreadState *ts = PyThreadState_Get();
    PyFrameObject *caller = PyEval_GetFrame();   /* borrowed */
    if (caller == NULL || caller->f_frame != ts->current_frame) {
        return 0;
    }
    PyCodeObject *code = PyFrame_GetCode(caller);   /* a new reference */
    int same = frame_code(ts->current_frame) == code;
    Py_DECREF(code);
    if (!same) {
        return 0;
    }
    _Py_CODEUNIT *first = frame_bytecode(ts->current_frame, code);
    if (first == NULL
        || (ts->current_frame->instr_ptr - first) * (Py_ssize_t)sizeof(_Py_CODEUNIT)
               != PyFrame_GetLasti(caller)) {
        return 0;
    }
    PyObject *found;
    return hardstop_call_in_progress(ts, &found) == HARDSTOP_CALL_FOUND && found == expected;
}

#else
#include "Python.h"
#include "call_in_progress.h"
#endif

PyMethodDef *
hardstop_method_def(PyObject *callable)
{
    if (PyCFunction_Check(callable)) {
        return ((PyCFunctionObject *)callable)->m_ml;
    }
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type)) {
        return ((PyMethodDescrObject *)callable)->d_method;
    }
    return NULL;
}
