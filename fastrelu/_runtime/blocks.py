"""One way to run every sampled kernel: locally, on a Dask cluster, with checkpoints.

A sampled kernel is a *plan* (:class:`BlockPlan`): a fixed number of blocks, a pure
function that computes the partial result of any range of blocks (``compute``), and an
exact merge of such a partial result into the run's state (``absorb``: minima, integer
sums, results placed by block index). Because block ``b`` depends only on the run's
parameters and ``b`` (its random numbers come from ``block_generator(seed, b, stream)``)
and the merge is exact, the state after all blocks is the same bits whichever machine,
process or thread ran each range and in whatever order the ranges were merged.

:func:`execute` runs a plan's missing blocks on local threads or on a Dask cluster, and
saves the state with the map of finished blocks to a checkpoint file as it goes. The map
is a list of finished ranges (:class:`BlockMap`) and the states are of fixed size (or,
for order-dependent merges, hold only the blocks finished ahead of the first missing
one), so memory does not grow with the number of blocks.
"""

import hashlib
import threading
import time
from contextlib import nullcontext

import numpy as np

from fastrelu._core import budget as _budget
from fastrelu._core.errors import FastReluError
from fastrelu._core.validation import positive_float
from fastrelu._runtime import checkpoint as _checkpoint
from fastrelu._runtime.blockmap import BlockMap
from fastrelu._runtime.parallel import progress_bar

#: Default seconds between two checkpoint writes.
DEFAULT_CHECKPOINT_INTERVAL = 5.0


class BlockPlan:
    """A block-decomposed run. Subclasses set :attr:`kernel` and implement
    :meth:`fingerprint`, :meth:`empty`, :meth:`compute` and :meth:`absorb`.

    A plan is shipped to Dask workers by pickling: attributes whose names start with
    ``_cache`` are rebuilt on the worker instead of being sent (see :meth:`cached`).
    """

    #: Name of the kernel, recorded in checkpoints.
    kernel = "blocks"
    #: Label of the progress bar.
    desc = "fastrelu"
    #: Most blocks in one of the first Dask tasks of a run, before the cost of a block is
    #: measured (then tasks are sized by time, see ``_distributed``).
    max_task_blocks = 64
    #: Names of state arrays whose first axis may vary from run to run (read back from a
    #: checkpoint at any length).
    variable = ()

    def __init__(self, n_blocks):
        self.n_blocks = int(n_blocks)

    def fingerprint(self):
        """The parameters that define the state, as a JSON-serialisable dict."""
        raise NotImplementedError

    def adopt(self, key, value):
        """Take the value a checkpoint records for fingerprint entry ``key`` where this
        machine decided otherwise (a path chosen by the cache size or the memory, not a
        parameter of the call), so that a resume elsewhere goes on as the run began.
        Returns whether it was taken; the default takes nothing (the checkpoint is then
        refused as written for other parameters)."""
        return False

    def empty(self):
        """The state before any block: a dict of NumPy arrays."""
        raise NotImplementedError

    def compute(self, first, stop, n_jobs, *, bar=None, limit_blas=True):
        """The partial result of blocks ``first .. stop-1`` on ``n_jobs`` threads (a dict
        of arrays). Pure: depends on the plan and the range only."""
        raise NotImplementedError

    def absorb(self, state, piece, first, stop):
        """Merge the partial result ``piece`` of blocks ``first .. stop-1`` into
        ``state`` in place, exactly (the order of merges never matters)."""
        raise NotImplementedError

    def cached(self, name, build):
        """``build()``, computed once per process that holds this plan (thread-safe)."""
        attribute = "_cache_" + name
        value = self.__dict__.get(attribute)
        if value is None:
            with self.__dict__.setdefault("_cache_lock", threading.Lock()):
                value = self.__dict__.get(attribute)
                if value is None:
                    value = build()
                    self.__dict__[attribute] = value
        return value

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_cache")}


def digest(array):
    """SHA-256 of an array's dtype, shape and bytes (a fingerprint of an input)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.data)
    return h.hexdigest()


def interval_value(value):
    """Seconds between checkpoint writes (``None``: the default)."""
    if value is None:
        return DEFAULT_CHECKPOINT_INTERVAL
    return positive_float(value, "checkpoint_interval", allow_zero=True)


def execute(plan, *, n_jobs, client=None, checkpoint=None, checkpoint_interval=None,
            progress=False, budget=None):
    """Run all blocks of ``plan`` and return the final state.

    Parameters
    ----------
    plan : BlockPlan
    n_jobs : int
        Local threads (ignored with a client: each Dask thread runs one task).
    client : distributed.Client, str or None
        Run on this Dask cluster (a client, or a scheduler address to connect to).
    checkpoint : str or path-like, optional
        Resume from this file when it exists and save the state to it at most every
        ``checkpoint_interval`` seconds, on interruption and at the end.
    checkpoint_interval : float, optional
        Seconds between writes (default 5).
    progress : bool or None
        Progress bar on stderr (see :func:`fastrelu.mcbe`).
    budget : fastrelu._core.budget.Budget, optional
        The run's work: its time is bounded from the sizes before anything runs, then
        measured on the first blocks of a local run, and a run over the time limit that
        is neither resumable (checkpoint) nor distributed (client) is refused
        (``_budget``).
    """
    interval = interval_value(checkpoint_interval)
    if client is not None:
        from fastrelu._runtime import distributed as _distributed

        session = _distributed.connect(client)  # before the checkpoint is touched
    else:
        session = nullcontext(None)
    with session as dask_client:
        saver = None
        state, done = plan.empty(), BlockMap(plan.n_blocks)
        if checkpoint is not None:
            saver = _checkpoint.Saver(checkpoint, plan, interval)
            loaded = saver.load()
            if loaded is not None:
                state, done = loaded
        todo = done.todo()
        if not todo:  # a finished checkpoint
            return state
        resumable = saver is not None or dask_client is not None
        threads = _budget.threads_of(n_jobs)
        if budget is not None and (saver is None or dask_client is not None):
            n_todo = sum(stop - first for first, stop in todo)
            budget.check_time(budget.lower_bound(n_todo, threads), threads, resumable=resumable)
        bar = progress_bar(plan.n_blocks, progress, plan.desc)
        bar.update(done.n_done)
        merger = _Merger(plan, state, done, saver, bar)
        try:
            if dask_client is not None:
                from fastrelu._runtime import distributed as _distributed

                _distributed.run(dask_client, plan, todo, merger)
                todo = []
            elif budget is not None:
                todo = _probe(plan, todo, merger, bar, budget, threads, resumable, progress)
            if saver is None:
                for first, stop in todo:
                    merger.merge(plan.compute(first, stop, n_jobs, bar=bar), first, stop,
                                 advance=False)
            else:
                _run_rounds(plan, todo, merger.merge, n_jobs, bar, interval)
        except BaseException as exc:
            bar.close()
            if saver is not None and merger.consistent:
                # also on Ctrl-C or a lost cluster: the merged blocks are kept
                try:
                    saver.save(state, done)
                except FastReluError as failed:  # the first error is the one to report
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"The checkpoint could not be saved either: {failed}")
            raise
        bar.close()
        if saver is not None:
            saver.save(state, done)
        return state


def _probe(plan, todo, merger, bar, budget, threads, resumable, progress):
    """Time the first blocks of the first range on one thread (``_budget.probe``; they
    are merged like any others), check the estimate of the rest, and return the ranges
    left."""
    first, stop = todo[0]

    def run(a, b):
        merger.merge(plan.compute(a, b, 1, bar=bar), a, b, advance=False)

    at, per_block = _budget.probe(run, first, stop)
    left = [(at, stop)] if at < stop else []
    left += todo[1:]
    if per_block is not None:
        n_left = sum(b - a for a, b in left)
        budget.check_time(per_block * n_left / threads, threads, resumable=resumable,
                          measured=per_block, progress=progress)
    return left


class _Merger:
    """Merges partial results into the state and marks their blocks done, saving the
    checkpoint when it is due. ``consistent`` is False only while a merge is under way
    (an interruption there must not save a state whose map of blocks disagrees)."""

    def __init__(self, plan, state, done, saver, bar):
        self.plan, self.state, self.done, self.saver, self.bar = plan, state, done, saver, bar
        self.consistent = True

    def merge(self, piece, first, stop, *, advance=True):
        self.consistent = False
        self.plan.absorb(self.state, piece, first, stop)
        self.done.add(first, stop)
        self.consistent = True
        if advance:
            self.bar.update(stop - first)
        if self.saver is not None:
            self.saver.maybe_save(self.state, self.done)

    @property
    def n_done(self):
        return self.done.n_done


def _run_rounds(plan, todo, merge, n_jobs, bar, interval):
    """Local threads in rounds of consecutive blocks, so that the state can be saved
    between rounds; a round lasts about half the checkpoint interval (at least a few
    blocks per thread, so that the threads seldom wait for each other)."""
    target = min(max(0.5 * interval, 0.02), 30.0)
    least = 2 * max(1, n_jobs)
    size = least
    for first, stop in todo:
        while first < stop:
            last = min(stop, first + size)
            start = time.perf_counter()
            merge(plan.compute(first, last, n_jobs, bar=bar), first, last, advance=False)
            per_block = (time.perf_counter() - start) / (last - first)
            size = max(least, int(target / per_block) if per_block > 0 else 4 * size)
            first = last
