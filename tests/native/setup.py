"""Builds the test-only extensions against the *installed* hardstop (used by conftest)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

import hardstop

include = [hardstop.get_include()]
setup(
    name="hardstop-test-extensions",
    ext_modules=[
        Extension("hardstop_testext", ["hardstop_testext.c"], include_dirs=include),
        *cythonize(
            [Extension("hardstop_cyconsumer", ["hardstop_cyconsumer.pyx"], include_dirs=include)],
            # No state of its own; hardstop's C API is safe without the GIL.
            compiler_directives={"language_level": "3", "freethreading_compatible": True},
            quiet=True,
        ),
    ],
)
