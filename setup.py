"""Build the compiled extensions of fastrelu (metadata lives in pyproject.toml)."""

import os
import subprocess
import sys
import tempfile
from distutils.ccompiler import new_compiler
from distutils.errors import CompileError, LinkError
from distutils.sysconfig import customize_compiler

import numpy
from Cython.Build import cythonize

# setuptools first: on Python >= 3.12 it provides the distutils modules used below.
from setuptools import Extension, setup


def _compiler():
    """The C compiler of the build itself ($CC, $CFLAGS, ... as build_ext sees them)."""
    compiler = new_compiler()
    customize_compiler(compiler)
    return compiler


def _openmp_flags():
    """Return (compile, link) flags for OpenMP, or empty lists when unsupported."""
    if sys.platform == "win32":
        return ["/openmp"], []
    compiler = _compiler()
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


def _host_simd_flags():
    """``-mavx2 -mfma`` when the compiler takes them and this machine runs them.

    The reconstruction kernels then use 4-wide fused multiply-adds. Like Numba's JIT,
    the extension is compiled for the machine that builds it; ``FASTRELU_PORTABLE=1``
    builds for any x86-64 (or other) CPU instead.
    """
    if sys.platform == "win32" or os.environ.get("FASTRELU_PORTABLE", "0") not in ("", "0"):
        return []
    flags = ["-mavx2", "-mfma"]
    compiler = _compiler()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "simd_probe.c")
        exe = os.path.join(tmp, "simd_probe")
        with open(src, "w") as fh:
            fh.write("int main(void){__builtin_cpu_init();"
                     "return __builtin_cpu_supports(\"avx2\") && __builtin_cpu_supports(\"fma\") ? 0 : 1;}\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, exe)
            subprocess.run([exe], check=True, capture_output=True)
        except Exception:  # no x86 compiler flags, or a CPU without AVX2/FMA
            return []
    return flags


def _write_build_config(simd):
    """fastrelu/_core/_build_config.h records the choice: the extensions depend on it, so
    that a build with other flags recompiles them, and the package checks at import
    that this CPU runs what was built. Rewritten only when it changes."""
    path = os.path.join("fastrelu", "_core", "_build_config.h")
    text = ("/* Written by setup.py: 1 when _reconstruct/solvers was compiled with -mavx2 -mfma. */\n"
            f"#define FASTRELU_SIMD_BUILD {1 if simd else 0}\n")
    try:
        with open(path) as fh:
            if fh.read() == text:
                return path
    except OSError:
        pass
    temporary = f"{path}.{os.getpid()}.tmp"  # a concurrent build never sees half a file
    with open(temporary, "w") as fh:
        fh.write(text)
    os.replace(temporary, path)
    return path


omp_compile, omp_link = _openmp_flags()
simd_flags = _host_simd_flags()
build_config = _write_build_config(bool(simd_flags))
debug = bool(os.environ.get("FASTRELU_CYTHON_DEBUG"))

# Each extension lives beside the Python code that calls it; the C headers shared by
# both (the lane-parallel Cholesky) are in fastrelu/_core.
extensions = [
    Extension(
        module,
        [module.replace(".", "/") + ".pyx"],
        include_dirs=[numpy.get_include(), os.path.join("fastrelu", "_core")],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=headers + ["fastrelu/_core/_cholesky_lanes.h", build_config],
        extra_compile_args=["-O3"] + omp_compile + simd,
        extra_link_args=omp_link,
    )
    for module, headers, simd in (
        ("fastrelu._core._frame", ["fastrelu/_core/_spans.h"], []),
        ("fastrelu._reconstruct.solvers", ["fastrelu/_reconstruct/_lanes.h"], simd_flags),
    )
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
