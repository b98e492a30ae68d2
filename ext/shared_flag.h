/* CPython 3.10-3.12 only (shared_flag.c): the interpreter-wide "async exception
   pending" flag. Both are called with the GIL held. */
#ifndef HARDSTOP_SHARED_FLAG_H
#define HARDSTOP_SHARED_FLAG_H

#include "Python.h"

#if PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030D0000
/* Are the interpreter's structs laid out as the build headers say? */
int hardstop_layout_matches(void);
/* Reset the flag (and eval_breaker, keeping every other request in it). The
   caller has checked that no thread state of this interpreter has its slot set. */
void hardstop_clear_shared_flag(void);
#else
#define hardstop_layout_matches() 0
#define hardstop_clear_shared_flag() ((void)0)
#endif

#endif
