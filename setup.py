"""Declares hardstop's one extension; everything else is in pyproject.toml.

HARDSTOP_DEBUG=1 builds it with -O0 -g -Wall and Cython's line tracing off, for gdb.
HARDSTOP_SANITIZE=address,undefined builds it with those gcc/clang sanitizers (-O1 -g, frame
pointers kept, undefined behaviour fatal); docs/development.md says how to run it.
"""

import os
import sys
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("HARDSTOP_DEBUG") == "1"
sanitize = os.environ.get("HARDSTOP_SANITIZE", "")

compile_args, link_args = [], []
if sys.platform != "win32":
    if debug:
        compile_args += ["-O0", "-g", "-Wall"]
    elif sanitize:
        compile_args += ["-O1", "-g"]  # reports with exact lines, at a bearable speed
    else:
        compile_args += ["-O2"]
    if sanitize:
        compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer"]
        if "undefined" in sanitize.split(","):
            # UBSan prints and goes on by default: a finding must fail the run.
            compile_args += ["-fno-sanitize-recover=undefined"]
        link_args += [f"-fsanitize={sanitize}"]

# Free-threaded CPython 3.14+: the extension holds its own state under one critical
# section and stops the world to read other threads (ext/threads.pxi). Built with
# HARDSTOP_FREE_THREADING=1 it declares that the GIL can stay off (Py_mod_gil): a
# preview until the whole suite passes with the GIL off every time (issue 17).
# Otherwise, and on 3.13t (no exported stop-the-world calls), importing it turns
# the GIL back on.
define_macros = []
if (
    sysconfig.get_config_var("Py_GIL_DISABLED")
    and sys.version_info >= (3, 14)
    and os.environ.get("HARDSTOP_FREE_THREADING") == "1"
):
    define_macros.append(("CYTHON_FREETHREADING_COMPATIBLE", "1"))

extension = Extension(
    "hardstop._hardstop",
    # Compiled apart with CPython's internal headers: shared_flag.c, the 3.10-3.12
    # flag reset; call_in_progress.c, reading a thread's call in progress (3.15+).
    sources=["ext/_hardstop.pyx", "ext/shared_flag.c", "ext/call_in_progress.c"],
    include_dirs=["src/hardstop/include", "ext"],
    define_macros=define_macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
)

setup(
    ext_modules=cythonize(
        [extension],
        include_path=["src"],  # so Cython finds src/hardstop/*.pxd beside the package
        compiler_directives={"language_level": "3"},
        gdb_debug=debug,
    ),
)
