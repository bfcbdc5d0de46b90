"""The one place where fastrelu's Numba kernels get their compilation options.

Compiled kernels are cached on disk (``cache=True``) so that a new process does not pay
the JIT again. Set ``FASTRELU_NUMBA_CACHE=0`` to turn the cache off; Numba's own
``NUMBA_CACHE_DIR`` chooses where the cache lives (for read-only installs).
"""

import os

import numba

CACHE = os.environ.get("FASTRELU_NUMBA_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}

# Reassociation lets LLVM vectorise floating-point reductions; nothing else is relaxed
# (no nnan/ninf: a NaN must never be assumed away).
REDUCTION_FASTMATH = {"reassoc", "contract"}


def kernel(function=None, **options):
    """``numba.njit`` with fastrelu's defaults: cached (unless disabled) and ``nogil``."""
    options.setdefault("cache", CACHE)
    options.setdefault("nogil", True)
    if function is None:
        return numba.njit(**options)
    return numba.njit(**options)(function)
