# A Cython consumer of hardstop.pxd, as another framework would write one.
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF

from hardstop.hardstop cimport HARDSTOP_OK, Hardstop_Import, Hardstop_Interrupt, Hardstop_Wait

Hardstop_Import()


def interrupt_and_wait(unsigned long ident, double timeout):
    """Interrupt `ident` with hardstop.Interrupted and wait, all without the GIL."""
    cdef PyObject *receipt = NULL
    cdef int rc
    cdef int delivered = 0
    with nogil:
        rc = Hardstop_Interrupt(ident, NULL, &receipt)
        if rc == HARDSTOP_OK:
            delivered = Hardstop_Wait(receipt, timeout)
    if rc != HARDSTOP_OK:
        return rc, None, False
    result = <object>receipt
    Py_DECREF(result)
    return rc, result, delivered == 1
