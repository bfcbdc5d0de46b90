"""Block-parallel execution shared by the sampled kernels.

Work is cut into fixed-size blocks; block ``b`` of a seeded run draws from its own
stream ``SeedSequence(seed, spawn_key=(b,))`` (the ``b``-th child of ``seed``), so what a
block computes never depends on which thread runs it, how many threads there are, or
which blocks ran before. Each worker thread folds its blocks into its own partial result
with an order-independent reduction (minimum, integer sum); the partials are combined at
the end. Results are therefore bit-identical for any ``n_jobs``.

Workers are Python threads running ``nogil`` Numba kernels and NumPy's random
generators (which release the GIL); BLAS is held to one thread inside the run so that the
threads do not oversubscribe the cores. ``_blocks`` runs ranges of blocks with this on
local threads, on Dask workers and between checkpoints.
"""

import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm


def progress_bar(total, progress, desc, unit="block"):
    """A tqdm bar on stderr: shown for ``progress=True``; for ``None`` only when the run
    lasts over two seconds and stderr is a terminal."""
    if progress is None:  # automatic: only for runs that turn out long, on a terminal
        return tqdm(total=total, desc=desc, unit=unit, delay=2.0, file=sys.stderr,
                    disable=not sys.stderr.isatty(), leave=False)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress)


#: A block is split into parts for the threads when the run has fewer than this many
#: blocks per thread (few blocks of expensive samples: large layers).
PARTS_PER_THREAD = 4


def splits_blocks(count, n_jobs):
    """Does :func:`block_parts` split ``count`` blocks into parts for ``n_jobs`` threads
    (fewer than ``PARTS_PER_THREAD`` blocks per thread, more than one thread)?"""
    from fastrelu._core import budget as _budget

    threads = _budget.threads_of(n_jobs)
    return threads > 1 and count < PARTS_PER_THREAD * threads


def block_parts(first, stop, sizes, n_jobs, align=1):
    """The work units of blocks ``first .. stop-1`` (``sizes(b)``: the samples of block
    ``b``): ``(b, lo, hi, share)`` for samples ``lo .. hi-1`` of block ``b``, ``share``
    the fraction of the block they are. Whole blocks when there are at least
    ``PARTS_PER_THREAD`` per thread; otherwise each block in about ``PARTS_PER_THREAD``
    parts per thread, so that a run of a few blocks of large-layer samples keeps every
    core busy. Parts start at multiples of ``align`` (the kernels' tile of points, so
    that every product of a tile is the same call whatever the split). For work whose
    partial results merge exactly (minima, counts, per-sample outputs) the split never
    changes a result."""
    from fastrelu._core import budget as _budget

    threads = _budget.threads_of(n_jobs)
    count = stop - first
    pieces = 1 if not splits_blocks(count, n_jobs) else -(-PARTS_PER_THREAD * threads // max(count, 1))
    parts = []
    for b in range(first, stop):
        size = sizes(b)
        step = -(-max(1, -(-size // pieces)) // align) * align
        for lo in range(0, size, step):
            hi = min(size, lo + step)
            parts.append((b, lo, hi, (hi - lo) / size))
    return parts


class SharedBlocks:
    """Blocks of drawn samples shared by the threads that work on their parts
    (:func:`block_parts`): block ``b`` is drawn once, by ``draw(b)`` in the first thread
    that asks for it, and dropped when the last of its parts is :meth:`done`. So a run
    split into parts draws the same samples, once, as a run of whole blocks."""

    def __init__(self, parts, draw):
        self._draw = draw
        self._drawn = {}
        self._lock = threading.Lock()
        self._left = {}
        for part in parts:
            self._left[part[0]] = self._left.get(part[0], 0) + 1

    def get(self, b):
        """The samples of block ``b``."""
        with self._lock:
            if b not in self._drawn:
                self._drawn[b] = self._draw(b)
            return self._drawn[b]

    def done(self, b):
        """One part of block ``b`` is finished with it."""
        with self._lock:
            self._left[b] -= 1
            if not self._left[b]:
                del self._drawn[b]


def run_blocks(blocks, make_worker, n_jobs, *, progress=False, desc="fastrelu", bar=None,
               limit_blas=True, budget=None, advance=None, unit="block"):
    """Run the given blocks on ``n_jobs`` threads.

    ``blocks`` is a number of blocks ``n`` (blocks ``0 .. n-1``), a ``range`` of block
    indices or a list of work units (such as the parts of :func:`block_parts`), each
    passed to ``process``. ``make_worker()`` is called once per thread and returns
    ``(process, result)``: ``process(b)`` folds block ``b`` into the thread's partial
    state and ``result()`` returns that partial state. Returns the list of partial
    results (one per thread). With one thread the blocks run in the calling thread.
    ``bar`` is a progress bar to advance instead of a new one (it is left open);
    ``limit_blas=False`` leaves BLAS's thread count to the caller; ``advance(b)`` is how
    far block ``b`` moves the bar (default 1; for the parts of :func:`block_parts`, their
    share of a block or their samples, ``unit`` naming what the bar counts). Ctrl-C stops the workers after their current block and re-raises
    ``KeyboardInterrupt``.

    With a ``budget`` (``fastrelu._core.budget.Budget``) the time is bounded from the sizes
    first, then the first blocks run on the calling thread and are timed, and a run
    estimated over the time limit is refused (``FastReluError``) before the others start.
    """
    from fastrelu._core import budget as _budget

    blocks = range(blocks) if isinstance(blocks, int) else blocks
    threads = _budget.threads_of(n_jobs)
    if budget is not None:
        budget.check_time(budget.lower_bound(len(blocks), threads), threads, resumable=False)
    step = advance or _one
    own_bar = bar is None
    if own_bar:
        bar = progress_bar(sum(map(step, blocks)) if advance else len(blocks), progress, desc,
                            unit)
    limits = threadpool_limits(limits=1, user_api="blas") if limit_blas else nullcontext()
    try:
        with limits:
            results = []
            first_worker = None
            if budget is not None:
                first_worker = make_worker()
                process = first_worker[0]

                def run(a, b):
                    for i in range(a, b):
                        process(blocks[i])
                        bar.update(step(blocks[i]))

                at, per_block = _budget.probe(run, 0, len(blocks))
                blocks = blocks[at:]
                if per_block is not None:
                    budget.check_time(per_block * len(blocks) / threads, threads,
                                      resumable=False, measured=per_block, progress=progress,
                                      per="part of a block" if isinstance(blocks, list) else None)
            workers = max(1, min(n_jobs, len(blocks)))
            if workers == 1:
                process, result = first_worker or make_worker()
                for b in blocks:
                    process(b)
                    bar.update(step(b))
                return [result()]
            if first_worker is not None:
                results.append(first_worker[1]())
            return _run_threads(blocks, make_worker, workers, bar, step) + results
    finally:
        if own_bar:
            bar.close()


def _one(block):
    return 1


def _run_threads(blocks, make_worker, workers, bar, step):
    stop = threading.Event()
    lock = threading.Lock()
    next_block = [0]
    n_blocks = len(blocks)

    def claim():
        with lock:
            b = next_block[0]
            next_block[0] += 1
        return b

    def thread_main():
        process, result = make_worker()
        while not stop.is_set():
            b = claim()
            if b >= n_blocks:
                break
            process(blocks[b])
            bar.update(step(blocks[b]))
        return result()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastrelu")
    try:
        futures = [pool.submit(thread_main) for _ in range(workers)]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    stop.set()
                    raise future.exception()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)
    return [future.result() for future in futures]


class Stopwatch:
    """Wall-clock seconds since creation."""

    def __init__(self):
        self._start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self._start
