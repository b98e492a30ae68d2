# Cython declarations of hardstop's C API (hardstop.h): `from hardstop.hardstop cimport ...`.
# Call Hardstop_Import() once at module level; the other functions take the GIL
# themselves, so they may be called inside `with nogil:`.
from cpython.object cimport PyObject


cdef extern from "hardstop.h":
    enum:
        HARDSTOP_CAPI_VERSION
        HARDSTOP_OK
        HARDSTOP_ERROR
        HARDSTOP_NOT_FOUND
        HARDSTOP_AMBIGUOUS
        HARDSTOP_INVALID
    int Hardstop_Import() except -1
    int Hardstop_Interrupt(unsigned long ident, PyObject *exc, PyObject **receipt) nogil
    int Hardstop_Cancel(PyObject *receipt) nogil
    int Hardstop_Wait(PyObject *receipt, double timeout) nogil
