"""Memory and time budgets of the sampled functions, checked before any work.

Every sampled function states its working set (the weights and their copies, the Gram
matrix, tiles and per-thread scratch, the run's state and any output that grows with the
number of samples) and its work, and refuses with a :class:`FastReluError` what cannot be
done:

- **memory**: a working set larger than the memory available (``MemAvailable`` of
  ``/proc/meminfo``, else the free physical pages; ``FASTRELU_MEMORY_LIMIT`` overrides it
  with a number of bytes, such as ``8000000000`` or ``8G``) is refused before it is
  allocated;
- **time**: the wall-clock time is bounded from below from the sizes (the dense products
  every method must make, at ``PEAK_FLOPS`` per thread, faster than any core) and then
  measured on the first blocks of the run (one thread, after one block of warm-up: Numba
  compilation, caches). A run estimated to take longer than ``FASTRELU_MAX_SECONDS``
  (default one day; ``inf`` or ``0`` lifts the limit) is refused, unless it is
  resumable or distributed (a ``checkpoint`` or a ``client``): those are not limited,
  their estimate is printed instead.

A run estimated to take more than a minute prints its estimate on stderr at the start
when its progress bar is on.
"""

import math
import os
import sys
import time
from dataclasses import dataclass, field

from fastrelu._core.errors import BudgetError, FastReluError
from fastrelu._core.memory import MEMORY_ENV, MEMORY_SHARE, format_bytes, memory_limit  # noqa: F401 (part of the budget's interface)
from fastrelu._core.rows import stores_gram

#: Environment variable: the longest run (wall-clock seconds) started without a
#: checkpoint or a cluster; ``inf`` or ``0``: no limit.
TIME_ENV = "FASTRELU_MAX_SECONDS"
#: Default of ``FASTRELU_MAX_SECONDS``: one day.
DEFAULT_MAX_SECONDS = 86400.0
#: Floating-point operations per second and thread assumed for the lower bound on the
#: time: above what any current core does in float64 (so the bound never refuses a run
#: that could finish in time).
PEAK_FLOPS = 1e11
#: Runs estimated to take longer than this print their estimate when progress is on.
ANNOUNCE_SECONDS = 60.0
#: The timed part of the first blocks lasts about this long ...
PROBE_SECONDS = 0.05
#: ... and is made only in runs of at least this many blocks (shorter runs are run).
PROBE_MIN_BLOCKS = 16

def time_limit():
    """The longest run (seconds) started without a checkpoint or a cluster."""
    text = os.environ.get(TIME_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise FastReluError(f"The '{TIME_ENV}' environment variable must be a number of seconds >= 0 (0 or inf: no limit). Got {text!r} instead.")
    return math.inf if value == 0 else value


def format_seconds(seconds):
    """``40 s``, ``3.2 min``, ``5.1 h``, ``2.3 days``, ``41 years``."""
    if seconds == math.inf:
        return "no limit"
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600),
                              (2 * 31557600, "days", 86400), (math.inf, "years", 31557600)):
        if seconds < limit:
            value = seconds / size
            return f"{value:.2g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def threads_of(n_jobs):
    """Threads that run at once: ``n_jobs``, at most the cores."""
    return max(1, min(int(n_jobs), os.cpu_count() or 1))


@dataclass
class Budget:
    """The work of one run as a driver states it.

    ``what`` names the function, ``name``/``value`` the parameter that sets the amount of
    work (``"n_samples"``, 10**12), ``unit`` its unit; a block holds ``per_block`` units.
    ``memory`` lists ``(label, bytes, parameter)``: the working set by part and the
    parameter that makes each part large. ``flops_per_unit`` and ``setup_flops`` are lower
    bounds on the floating-point work (the dense products every method must make).
    ``advice`` says what to do about too much memory."""

    what: str
    name: str
    value: int
    unit: str
    per_block: int
    memory: list = field(default_factory=list)
    flops_per_unit: float = 0.0
    setup_flops: float = 0.0
    advice: str = ""

    @property
    def total_bytes(self):
        return sum(part[1] for part in self.memory)

    def check_memory(self):
        """Refuse a working set that does not fit (before anything is allocated)."""
        check_memory(self.what, self.memory, self.advice)
        return self

    def check_start(self, n_jobs):
        """Refuse a run that is not resumable and whose lower bound on the time already
        exceeds the limit (before anything is built)."""
        threads = threads_of(n_jobs)
        n_blocks = -(-self.value // self.per_block)
        self.check_time(self.lower_bound(n_blocks, threads), threads, resumable=False)
        return self

    def lower_bound(self, n_blocks, threads):
        """Seconds that ``n_blocks`` blocks take at least on ``threads`` threads."""
        units = min(self.value, n_blocks * self.per_block)
        return (self.setup_flops + self.flops_per_unit * units) / (PEAK_FLOPS * threads)

    def check_time(self, seconds, threads, *, resumable, measured=None, progress=False,
                   per=None):
        """Refuse (or, for a resumable run, announce) an estimate over the time limit;
        announce one over a minute when progress is on. ``measured``: seconds per
        ``per`` (default: a block of ``per_block`` units) on one thread."""
        limit = time_limit()
        per = per or f"block of {self.per_block} {self.unit}"
        how = (f"measured {measured * 1e3:.3g} ms per {per} on one thread"
               if measured is not None else
               f"at least, at {PEAK_FLOPS:.0e} floating-point operations per second and thread")
        if seconds > limit and not resumable:
            raise BudgetError(
                f"The '{self.name}' parameter must give a run shorter than the time limit of "
                f"{format_seconds(limit)} ({TIME_ENV}). Got {self.name}={self.value:,}: {self.what} "
                f"would take about {format_seconds(seconds)} on {threads} thread{'s' * (threads > 1)} "
                f"({how}). Use fewer {self.unit}, give a checkpoint (resumable runs are not "
                f"limited) or a Dask cluster, or set {TIME_ENV}=inf to allow it.")
        if seconds > ANNOUNCE_SECONDS and (progress_on(progress) or seconds > limit):
            note = "; not limited: the run is resumable or distributed" if seconds > limit else ""
            announce(f"fastrelu: {self.what} of {self.value:,} {self.unit} will take about "
                     f"{format_seconds(seconds)} on {threads} thread{'s' * (threads > 1)} ({how}{note})")


def check_memory(what, parts, advice=""):
    """Raise if the working set ``parts`` (``(label, bytes, parameter)``) exceeds the
    memory available; the message names the parameter of the largest part."""
    total = sum(part[1] for part in parts)
    limit, source = memory_limit()
    if limit is None or total <= limit:
        return
    largest = max(parts, key=lambda part: part[1])
    shown = ", ".join(f"{label} {format_bytes(size)}" for label, size, _ in
                      sorted(parts, key=lambda part: -part[1])[:4] if size > 0)
    raise BudgetError(
        f"The '{largest[2]}' parameter must give a working set that fits in memory. Got "
        f"{what} needing about {format_bytes(total)} ({shown}), but this machine has "
        f"{format_bytes(limit)} for it ({source}{'' if source.startswith(MEMORY_ENV) else f'; {MEMORY_ENV} sets it in bytes'}). "
        f"{advice}".rstrip())


def progress_on(progress):
    """Is a progress bar shown (``None``: when stderr is a terminal)?"""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def announce(text):
    """One line on stderr that does not break a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def probe(run, first, stop):
    """Run the first blocks of ``first .. stop-1`` with ``run(a, b)`` (blocks ``a .. b-1``
    on one thread): one block of warm-up, then chunks of 1, 2, 4, ... blocks until one
    lasts ``PROBE_SECONDS`` (at most a quarter of the blocks). Returns the next block to
    run and the measured seconds per block (None: too few blocks to measure)."""
    if stop - first < PROBE_MIN_BLOCKS:
        return first, None
    run(first, first + 1)
    at, size, limit, per_block = first + 1, 1, first + (stop - first) // 4, None
    while at + size <= limit:
        start = time.perf_counter()
        run(at, at + size)
        seconds = time.perf_counter() - start
        at += size
        per_block = seconds / size
        if seconds >= PROBE_SECONDS:
            break
        size *= 2
    return at, per_block


# --------------------------------------------------------------------------- working sets

#: Bytes of a float64 or an int64.
FLOAT_BYTES = 8
_F = FLOAT_BYTES


def frame_validation(m, n, *, svd=False):
    """Working set of :func:`fastrelu._core.validation.as_frame`: row chunks of the scaled
    weights, their ``n x n`` Gram matrix and its Cholesky factor; with ``svd`` the copy
    and workspace of the singular value decomposition that decides the cases the Gram
    matrix cannot."""
    if svd:
        return [("singular value decomposition (copy of W and workspace)", _F * (m * n + 4 * n * n + 8 * max(m, n)), "weight")]
    rows = max(1, min(m, (1 << 22) // max(1, n)))
    return [("Gram matrix W^T W and its Cholesky factor", 2 * _F * n * n, "weight"),
            ("scaled row chunk", _F * rows * n, "weight")]


def basis_scratch(m, n, threads, lanes, buffer_rows=4096):
    """Per-thread buffers of the most-correlated-basis and active-rank kernels;
    ``buffer_rows``: the rows of the block of drawn points each thread fills (0 for
    points of a data set, which the kernels read in place)."""
    tile = max(32, min(1024, 65536 // max(1, m)))
    k = min(m, n)  # a basis holds at most k rows (the scan's factor is k x k)
    # the lanes' Gram matrices have rows n | 1 apart (_frame.spans_stride)
    square = 2 * n * n + lanes * n * (n | 1) if m >= n else 2 * k * k  # no certificate when m < n
    per_thread = _F * (tile * m + 2 * lanes * m + 6 * m + square + buffer_rows * n)
    return ("per-thread tiles and scratch", threads * per_thread, "n_jobs")


def row_geometry(m, n, samples=None):
    """Copies of the weights shared by the workers: transposed and unit rows, and the
    Gram matrix of the unit rows when a run over ``samples`` samples stores it
    (:func:`fastrelu._core.rows.stores_gram`); else the search for repeated rows, whose
    working set is at most that of 1024 rows of it (the projection filter's pairs and
    their inner products by chunks, or 1024-row blocks of the Gram matrix)."""
    gram = m * m if stores_gram(m, n, samples) else 1024 * m
    return [("weights, transposed and unit rows", 3 * _F * m * n, "weight"),
            ("Gram matrix of the unit rows", _F * gram, "weight")]
