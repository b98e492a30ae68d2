/* hardstop.h: interrupt Python threads from C (and, through hardstop.pxd, Cython).
 *
 * Usage, in your module's init function (with the GIL):
 *
 *     if (Hardstop_Import() < 0) return NULL;
 *
 * and then, from any thread, with or without the GIL (the functions take it):
 *
 *     PyObject *receipt = NULL;
 *     int rc = Hardstop_Interrupt(ident, NULL, &receipt);   // NULL: hardstop.Interrupted
 *     if (rc == HARDSTOP_OK) { ...; Hardstop_Wait(receipt, 1.0); Py_DECREF(receipt); }
 *
 * Every function returns a negative HARDSTOP_* code on failure. If the calling
 * thread held the GIL, the Python exception is left set, as with any C API
 * call; if it did not, the exception is cleared (there is no one to hand it to).
 * Compile with the folder from hardstop.get_include() on the include path.
 */
#ifndef HARDSTOP_H
#define HARDSTOP_H

#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised when functions are added; existing ones never change. */
#define HARDSTOP_CAPI_VERSION 1
#define HARDSTOP_CAPSULE_NAME "hardstop._hardstop._C_API"

#define HARDSTOP_OK 0
#define HARDSTOP_ERROR (-1)      /* anything else: see the Python exception */
#define HARDSTOP_NOT_FOUND (-2)  /* hardstop.ThreadNotFound */
#define HARDSTOP_AMBIGUOUS (-3)  /* hardstop.AmbiguousThread */
#define HARDSTOP_INVALID (-4)    /* TypeError or ValueError: a bad argument */

typedef struct {
    int version;
    /* hardstop.interrupt(ident, exc): exc may be NULL for hardstop.Interrupted.
       On success *receipt (if not NULL) gets a new reference to the Receipt. */
    int (*interrupt_ident)(unsigned long ident, PyObject *exc, PyObject **receipt);
    /* receipt.cancel(): 1 withdrawn, 0 too late (raised or ended), <0 error. */
    int (*cancel)(PyObject *receipt);
    /* receipt.wait(timeout): 1 delivered, 0 not (timeout, or ended otherwise),
       <0 error. A negative timeout waits for as long as it takes. The GIL is
       released while waiting. */
    int (*wait)(PyObject *receipt, double timeout);
} Hardstop_CAPI;

static Hardstop_CAPI *Hardstop_API = NULL;

/* Call once, with the GIL. Returns 0, or -1 with an exception set. */
static inline int
Hardstop_Import(void)
{
    Hardstop_CAPI *api = (Hardstop_CAPI *)PyCapsule_Import(HARDSTOP_CAPSULE_NAME, 0);
    if (api == NULL) {
        return -1;
    }
    if (api->version < HARDSTOP_CAPI_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "the installed hardstop provides C API version %d, "
                     "but this module was built against version %d",
                     api->version, HARDSTOP_CAPI_VERSION);
        return -1;
    }
    Hardstop_API = api;
    return 0;
}

static inline int
Hardstop_Interrupt(unsigned long ident, PyObject *exc, PyObject **receipt)
{
    return Hardstop_API->interrupt_ident(ident, exc, receipt);
}

static inline int
Hardstop_Cancel(PyObject *receipt)
{
    return Hardstop_API->cancel(receipt);
}

static inline int
Hardstop_Wait(PyObject *receipt, double timeout)
{
    return Hardstop_API->wait(receipt, timeout);
}

#ifdef __cplusplus
}
#endif

#endif /* HARDSTOP_H */
