/* Test-only extension: a plain-C consumer of hardstop.h, and twin thread states.
 *
 * A "twin" is a second thread state carrying the calling thread's ident, as a C
 * extension makes with PyThreadState_New from a running thread. CPython's
 * PyThreadState_SetAsyncExc arms the first match, which may be the idle twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "hardstop.h"

static PyObject *
make_twin(PyObject *self, PyObject *unused)
{
    PyThreadState *twin = PyThreadState_New(PyThreadState_Get()->interp);
    if (twin == NULL) {
        return PyErr_NoMemory();
    }
    /* 3.10/3.11 set the ident at creation; 3.12+ bind it to the creating thread. */
    return PyLong_FromVoidPtr(twin);
}

static PyObject *
drop_twin(PyObject *self, PyObject *address)
{
    PyThreadState *twin = (PyThreadState *)PyLong_AsVoidPtr(address);
    if (twin == NULL) {
        return NULL;
    }
    PyThreadState_Clear(twin);
    PyThreadState_Delete(twin);
    Py_RETURN_NONE;
}

static PyObject *
result(int rc, PyObject *receipt)
{
    if (receipt == NULL) {
        return Py_BuildValue("(iO)", rc, Py_None);
    }
    return Py_BuildValue("(iN)", rc, receipt);
}

/* hardstop.interrupt(ident, exc) called from a thread that has released the GIL. */
static PyObject *
interrupt_nogil(PyObject *self, PyObject *args)
{
    unsigned long ident;
    PyObject *exc = NULL, *receipt = NULL;
    int rc;
    if (!PyArg_ParseTuple(args, "k|O", &ident, &exc)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = Hardstop_Interrupt(ident, exc, &receipt);
    Py_END_ALLOW_THREADS
    if (PyErr_Occurred()) {
        return PyErr_Format(PyExc_AssertionError, "an exception was left set for a caller without the GIL");
    }
    return result(rc, receipt);
}

/* The same with the GIL held: a failure leaves the Python exception set. */
static PyObject *
interrupt_gil(PyObject *self, PyObject *args)
{
    unsigned long ident;
    PyObject *exc = NULL, *receipt = NULL;
    if (!PyArg_ParseTuple(args, "k|O", &ident, &exc)) {
        return NULL;
    }
    if (Hardstop_Interrupt(ident, exc, &receipt) < 0) {
        return NULL;
    }
    return receipt;
}

static PyObject *
cancel_nogil(PyObject *self, PyObject *receipt)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = Hardstop_Cancel(receipt);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(rc);
}

static PyObject *
wait_nogil(PyObject *self, PyObject *args)
{
    PyObject *receipt;
    double timeout;
    int rc;
    if (!PyArg_ParseTuple(args, "Od", &receipt, &timeout)) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = Hardstop_Wait(receipt, timeout);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(rc);
}

/* Call a Python function and discard any error it raised, as some C code does. */
static PyObject *
call_and_clear(PyObject *self, PyObject *callable)
{
    PyObject *result = PyObject_CallNoArgs(callable);
    if (result == NULL) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    Py_DECREF(result);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"call_and_clear", call_and_clear, METH_O, NULL},
    {"make_twin", make_twin, METH_NOARGS, NULL},
    {"drop_twin", drop_twin, METH_O, NULL},
    {"interrupt_nogil", interrupt_nogil, METH_VARARGS, NULL},
    {"interrupt_gil", interrupt_gil, METH_VARARGS, NULL},
    {"cancel_nogil", cancel_nogil, METH_O, NULL},
    {"wait_nogil", wait_nogil, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "hardstop_testext", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_hardstop_testext(void)
{
    if (Hardstop_Import() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "NOT_FOUND", HARDSTOP_NOT_FOUND) < 0) {
        Py_CLEAR(m);
    }
#ifdef Py_GIL_DISABLED
    /* It keeps no state of its own, and hardstop's C API is safe without the GIL. */
    if (m != NULL && PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED) < 0) {
        Py_CLEAR(m);
    }
#endif
    return m;
}
