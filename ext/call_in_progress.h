/* CPython 3.15+ only (call_in_progress.c): which function a thread is calling,
   read from its innermost Python frame. Called with the GIL held (free-threaded
   builds: with the world stopped). */
#ifndef HARDSTOP_CALL_IN_PROGRESS_H
#define HARDSTOP_CALL_IN_PROGRESS_H

#include "Python.h"

/* What hardstop_call_in_progress found. */
#define HARDSTOP_CALL_UNKNOWN (-1) /* cannot tell (no frame, an unusual one, an instrumented line...) */
#define HARDSTOP_CALL_NONE 0       /* at an instruction that calls nothing, or a call that is over */
#define HARDSTOP_CALL_FOUND 1      /* *callable is the object being called (borrowed) */

/* What an opcode is, for the table handed to hardstop_set_call_kinds. */
#define HARDSTOP_OP_OTHER 0        /* calls nothing */
#define HARDSTOP_OP_CALL 1         /* CALL and its kin: [callable, self_or_null, args[oparg]] */
#define HARDSTOP_OP_CALL_KW 2      /* CALL_KW and its kin: the same, then the keyword names */
#define HARDSTOP_OP_CALL_EX 3      /* CALL_FUNCTION_EX and its kin: [func, unused, args, kwargs] */
#define HARDSTOP_OP_UNKNOWN 4      /* stands for another instruction (INSTRUMENTED_LINE...) */
#define HARDSTOP_OP_EXTENDED_ARG 5 /* widens the next instruction's oparg */

#if PY_VERSION_HEX >= 0x030F0000
/* Set the kind of each of the 256 opcodes (built in Python from the opcode module). */
void hardstop_set_call_kinds(const unsigned char *kinds);
/* One of HARDSTOP_CALL_*: the call in progress in the innermost frame of ``ts``. */
int hardstop_call_in_progress(PyThreadState *ts, PyObject **callable);
/* Called from a function that Python code called: does the calling thread's
   frame read as the headers say, and is ``expected`` the call found there? */
int hardstop_reads_own_call(PyObject *expected);
#else
#define hardstop_set_call_kinds(kinds) ((void)0)
#define hardstop_call_in_progress(ts, callable) (*(callable) = NULL, HARDSTOP_CALL_UNKNOWN)
#define hardstop_reads_own_call(expected) 0
#endif

/* The C function behind a builtin function, a bound builtin method or a method
   descriptor (the same PyMethodDef for all three), or NULL. Every version. */
PyMethodDef *hardstop_method_def(PyObject *callable);

#endif
