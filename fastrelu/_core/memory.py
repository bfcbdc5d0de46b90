"""How much memory fastrelu may plan to use: the one figure that the budget of every
run (:mod:`fastrelu._core.budget`) and the stored Gram matrix of the unit rows
(:mod:`fastrelu._core.rows`) are measured against."""

import functools
import math
import os

from fastrelu._core.errors import FastReluError

#: Environment variable: the memory a run may use, in bytes (suffixes K, M, G, T: powers
#: of 1024).
MEMORY_ENV = "FASTRELU_MEMORY_LIMIT"
#: Share of the machine's available memory that one run may plan to use (the estimates
#: leave out the interpreter and small temporaries).
MEMORY_SHARE = 0.9

_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text):
    """A number of bytes from ``8000000000`` or ``8G`` (suffixes K, M, G, T: powers of
    1024; a trailing ``B`` or ``iB`` is allowed); ``ValueError`` for anything else."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _SUFFIXES else ""
    number = float(value[:len(value) - len(unit)])
    if not math.isfinite(number) or number * _SUFFIXES[unit] < 1:
        raise ValueError(text)
    return int(number * _SUFFIXES[unit])


@functools.cache
def l2_cache_bytes():
    """The L2 cache of one core in bytes, as the system reports it (1 MiB when it does
    not say): the kernels choose between their register-tiled and their blocked LAPACK
    paths by it."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as handle:
            text = handle.read().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        return int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        return 1 << 20


def memory_limit():
    """``(bytes, source)``: the memory a run may use and where the figure comes from;
    ``(None, None)`` when the machine does not say."""
    text = os.environ.get(MEMORY_ENV)
    if text is not None and text.strip():
        try:
            return parse_bytes(text), f"{MEMORY_ENV}={text.strip()}"
        except (ValueError, IndexError):
            raise FastReluError(f"The '{MEMORY_ENV}' environment variable must be a number of bytes > 0 (optionally with a suffix K, M, G or T). Got {text!r} instead.") from None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    return int(MEMORY_SHARE * available), f"{MEMORY_SHARE:.0%} of MemAvailable {format_bytes(available)}"
    except (OSError, ValueError, IndexError):
        pass
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None, None
    return int(MEMORY_SHARE * free), f"{MEMORY_SHARE:.0%} of the free memory {format_bytes(free)}"


def format_bytes(count):
    """``7.45 GiB`` and the like."""
    count = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} EiB"
