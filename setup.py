"""Build the compiled extensions of fastrelu (metadata lives in pyproject.toml)."""

import os
import sys
import tempfile

# setuptools first: on Python >= 3.12 it provides the distutils modules used below.
from setuptools import Extension, setup
from distutils.ccompiler import new_compiler
from distutils.errors import CompileError, LinkError

import numpy
from Cython.Build import cythonize



def _openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists when unsupported."""
    if sys.platform == "win32":
        return ["/openmp"], []
    compiler = new_compiler()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as fh:
            fh.write("#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, os.path.join(tmp, "omp_probe"), extra_postargs=["-fopenmp"])
        except (CompileError, LinkError):
            print("fastrelu build: OpenMP not available, compiling the extensions serially")
            return [], []
    return ["-fopenmp"], ["-fopenmp"]


omp_compile, omp_link = _openmp_flags()
debug = bool(os.environ.get("FASTRELU_CYTHON_DEBUG"))

extensions = [
    Extension(
        f"fastrelu._ext.{name}",
        [f"fastrelu/_ext/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"] + omp_compile,
        extra_link_args=omp_link,
    )
    for name in ("_frame", "_reconstruct")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": not debug,
        },
    ),
)
