"""Running block plans on a Dask cluster (the optional extra ``fastrelu[dask]``).

The cluster only runs tasks; everything else is Dask's: a task is a range of blocks of a
plan (so the per-task cost is spread over many blocks), the plan itself is the result of
one task that the others depend on (sent once per worker, and recomputed by the
scheduler if every copy is lost with its workers), and tasks of a worker that dies are
run again elsewhere. The driver merges the partial results as they arrive; since each
range gives the same bits wherever it runs and the merge is exact, the result equals the
local one for any number of workers.

Inside a task the kernels run on the task's thread alone (``n_jobs=1``): a worker with
``k`` threads runs ``k`` tasks at once, and BLAS is held to one thread while any task
runs (the sampled kernels are serial ``nogil`` Numba functions; threads come from
fastrelu or from Dask, never from Numba).
"""

import math
import os
import threading
import time
from contextlib import contextmanager

from fastrelu._core.errors import FastReluError, MissingDependencyError

#: Seconds to wait for a scheduler given by its address.
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for a first worker when the scheduler has none.
WORKER_WAIT = 30.0
#: Seconds that a task should last once the cost of a block is known: long enough that
#: the scheduler's cost per task (about a millisecond) is negligible and that a hundred
#: nodes send it only hundreds of tasks per second.
TASK_SECONDS = 5.0
#: But at least this many tasks per worker thread for the blocks left, so that the
#: threads finish together ...
TASKS_PER_THREAD = 4
#: ... and no task shorter than this (once the cost of a block is known; the last task of
#: a range may be), so that the end of a run on many threads is not cut into a flood of
#: tiny tasks whose scheduling costs more than their work.
MIN_TASK_SECONDS = 0.5
#: Tasks in flight per worker thread: enough to keep every thread busy, few enough that
#: the scheduler never holds the whole run of a billion samples at once.
WINDOW_PER_THREAD = 2
#: Seconds between two looks at the number of worker threads (clusters grow and shrink).
THREADS_REFRESH = 2.0
#: Blocks per task when set (benchmarks of the per-task cost); None: adaptive.
FIXED_TASK_BLOCKS = None

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_controller = None


def import_distributed():
    """The ``distributed`` package (Dask's distributed scheduler), or a
    MissingDependencyError that names the optional extra to install."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError("The 'client' parameter needs the optional extra fastrelu[dask] (Dask's distributed scheduler). Got a client, but the 'distributed' package is not installed: pip install \"fastrelu[dask]\"", name="distributed") from None
    return distributed


#: Seconds to close a client whose connection failed.
CLOSE_TIMEOUT = 1.0
_client_classes = {}


def _client_class(distributed):
    """``distributed.Client`` that closes itself when its connection fails: the client
    is built before it connects, and a client left half-built would be closed by the
    garbage collector instead, which waits twice the connection timeout and prints an
    ignored ``TimeoutError`` on stderr."""
    if distributed not in _client_classes:
        class Client(distributed.Client):
            def start(self, **kwargs):
                try:
                    super().start(**kwargs)
                except BaseException:
                    try:
                        self.close(timeout=CLOSE_TIMEOUT)
                    except Exception:  # nothing to close on a scheduler never reached
                        pass
                    self.status = "closed"  # so that __del__ has nothing left to do
                    try:
                        self._loop_runner.stop()
                    except Exception:
                        pass
                    raise

        _client_classes[distributed] = Client
    return _client_classes[distributed]


@contextmanager
def connect(client, timeout=None):
    """The ``distributed.Client`` to run on: ``client`` itself, or a new connection to
    the scheduler at the address ``client`` or described by the scheduler file
    ``client`` (JSON, as written by ``dask-mpi`` or ``dask scheduler --scheduler-file``),
    closed on exit."""
    distributed = import_distributed()
    if isinstance(client, str):
        seconds = CONNECT_TIMEOUT if timeout is None else timeout
        where = {"scheduler_file": client} if os.path.isfile(client) else {"address": client}
        try:
            own = _client_class(distributed)(**where, timeout=seconds, set_as_default=False)
        except (ValueError, TypeError) as exc:
            raise FastReluError(f"The 'client' parameter must be a dask.distributed.Client or the address of a reachable Dask scheduler such as 'tcp://host:8786'. Got {client!r}, which is not one ({type(exc).__name__}: {exc}).") from None
        except (OSError, TimeoutError) as exc:
            raise FastReluError(f"The 'client' parameter must be a dask.distributed.Client or the address of a reachable Dask scheduler. Got {client!r}, which could not be reached within {seconds:g} s ({type(exc).__name__}: {exc}).") from None
        try:
            yield own
        finally:
            own.close()
    elif isinstance(client, distributed.Client):
        if client.status not in ("running", "connecting", "newly-created"):
            raise FastReluError(f"The 'client' parameter must be a connected dask.distributed.Client. Got a client with status {client.status!r} instead.")
        yield client
    else:
        raise FastReluError(f"The 'client' parameter must be a dask.distributed.Client or a scheduler address such as 'tcp://host:8786'. Got {type(client).__name__} instead.")


@contextmanager
def _one_blas_thread():
    """Hold BLAS to one thread while any task of this process runs (tasks of one worker
    run on several threads; a plain ``threadpool_limits`` per task would restore the old
    limit while another task still runs). The BLAS libraries are looked up once per
    process (they are loaded with fastrelu, before any task runs): a look-up costs about
    a millisecond, a change of limits microseconds."""
    global _blas_users, _blas_limiter, _blas_controller
    with _blas_lock:
        if _blas_users == 0:
            if _blas_controller is None:
                from threadpoolctl import ThreadpoolController

                _blas_controller = ThreadpoolController()
            _blas_limiter = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _hold(plan):
    """The task whose result is the plan: other tasks depend on it."""
    return plan


def _task(plan, first, stop):
    """Blocks ``first .. stop-1`` of ``plan`` on this worker thread; returns the partial
    result and the seconds it took (which size the next tasks)."""
    start = time.perf_counter()
    with _one_blas_thread():
        piece = plan.compute(first, stop, 1, limit_blas=False)
    return piece, time.perf_counter() - start


class _Tasks:
    """Cuts the blocks left into tasks as they are submitted: the first ones small
    (``plan.max_task_blocks`` at most), the later ones sized to last ``TASK_SECONDS``
    from the measured cost per block, while leaving at least ``TASKS_PER_THREAD`` tasks
    per thread, but never shorter than ``MIN_TASK_SECONDS``."""

    def __init__(self, plan, todo):
        self.runs = list(todo)
        self.left = sum(stop - first for first, stop in todo)
        self.cap = plan.max_task_blocks
        self.per_block = None  # seconds, once measured

    def measured(self, seconds, blocks):
        rate = seconds / blocks
        self.per_block = rate if self.per_block is None else 0.5 * (self.per_block + rate)

    def size(self, threads):
        if FIXED_TASK_BLOCKS is not None:
            return FIXED_TASK_BLOCKS
        balance = math.ceil(self.left / (TASKS_PER_THREAD * max(1, threads)))
        if self.per_block is None:
            return max(1, min(self.cap, balance))
        per_block = max(self.per_block, 1e-9)
        shortest = math.ceil(MIN_TASK_SECONDS / per_block)
        return max(1, min(round(TASK_SECONDS / per_block), max(balance, shortest)))

    def next(self, threads):
        if not self.runs:
            return None
        first, stop = self.runs[0]
        last = min(stop, first + self.size(threads))
        if last == stop:
            self.runs.pop(0)
        else:
            self.runs[0] = (last, stop)
        self.left -= last - first
        return first, last


def task_size(plan, n_todo, threads):
    """Blocks of the first tasks of a run of ``n_todo`` blocks on ``threads`` threads."""
    return _Tasks(plan, [(0, n_todo)]).size(threads)


def _failures(distributed):
    """The exceptions of a cluster that went away (their names vary across versions)."""
    from concurrent.futures import CancelledError

    return (distributed.KilledWorker, OSError, TimeoutError, CancelledError,
            getattr(distributed.client, "FutureCancelledError", CancelledError))


def run(client, plan, todo, merger):
    """Run the block ranges ``todo`` of ``plan`` on the cluster of ``client``, passing
    each result to ``merger.merge(piece, first, stop)`` as it arrives."""
    distributed = import_distributed()
    tasks = _Tasks(plan, todo)
    threads, looked = sum(client.nthreads().values()), time.monotonic()
    if threads == 0:  # a scheduler whose workers are gone would hold the tasks forever
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT)
        except Exception as exc:
            raise FastReluError(f"The 'client' parameter must give a cluster with workers. Got a scheduler with none after waiting {WORKER_WAIT:g} s ({type(exc).__name__}); nothing was computed.") from None
        threads, looked = sum(client.nthreads().values()), time.monotonic()
    held = client.submit(_hold, plan, pure=False)
    pending = {}
    completed = distributed.as_completed(loop=client.loop)  # not the default client's

    def fill():
        while len(pending) < max(8, WINDOW_PER_THREAD * threads):
            task = tasks.next(threads)
            if task is None:
                return
            future = client.submit(_task, held, *task, pure=False)
            pending[future] = task
            completed.add(future)

    fill()
    try:
        for future in completed:
            first, stop = pending.pop(future)
            piece, seconds = future.result()
            future.release()
            tasks.measured(seconds, stop - first)
            merger.merge(piece, first, stop)
            if time.monotonic() - looked > THREADS_REFRESH:
                threads, looked = sum(client.nthreads().values()), time.monotonic()
            fill()
    except _failures(distributed) as exc:
        saver = merger.saver
        kept = f" (kept in the checkpoint {saver.path!r}: rerun to resume)" if saver is not None else ""
        raise FastReluError(f"The 'client' parameter must give a cluster that stays up for the run. Got {type(exc).__name__}: {exc} after {merger.n_done} of {plan.n_blocks} blocks{kept}.") from None
    finally:
        if pending:
            try:
                client.cancel(list(pending))  # one message for all of them
            except Exception:  # the cluster may be gone: nothing left to cancel
                pass
        held.release()
