"""The scan of :func:`fastrelu.verify_injective` over all (n-1)-subsets of the distinct
hyperplanes, cut into blocks of whole prefixes (``_blocks``: threads, Dask, checkpoints).
"""

import math

import numpy as np

from fastrelu._injectivity import verify_kernels as kernels
from fastrelu._runtime.blocks import BlockPlan, digest, execute
from fastrelu._runtime.parallel import run_blocks


def _binomial_table(p, k):
    """``C(a, b)`` for ``a <= p``, ``b <= k`` as int64, saturated at ``2^61`` (the kernels
    only read entries bounded by ``C(p, k)``)."""
    cap = 1 << 61
    table = np.zeros((p + 1, k + 1), dtype=np.int64)
    table[:, 0] = 1
    for b in range(1, k + 1):
        previous = table[:-1, b - 1]
        # C(a, b) = sum_{j < a} C(j, b - 1); the float sum tells where int64 would overflow
        exact = np.concatenate([[0], np.cumsum(previous)])
        approx = np.concatenate([[0.0], np.cumsum(previous.astype(np.float64))])
        table[:, b] = np.where(approx > float(cap), cap, exact)
    return table


def key(value, index):
    """Order of candidates: smaller value first, then smaller (lexicographic) index."""
    return (int(value), int(index) if index >= 0 else math.inf)


#: Stands for "no index" (``math.inf`` in a key) in the int64 state of a scan.
_NO_INDEX = np.iinfo(np.int64).max


class ScanPlan(BlockPlan):
    """The (n-1)-subsets in blocks of whole prefixes. State: the least keys
    ``(count, index)`` and ``(rank, index)`` (minima), the smallest flagged subset ranks
    (at most ``cap``, a sorted merge) and the numbers flagged and scanned (sums)."""

    kernel = "verify_injective"
    desc = "verify"
    max_task_blocks = 256

    def __init__(self, arr, sweep_min, block_subsets, delta, radius_min, cap):
        p, n = arr.p, arr.n
        self.n_prefixes = math.comb(p, n - 2)
        self.per_block = max(1, round(block_subsets * self.n_prefixes / math.comb(p, n - 1)))
        super().__init__(-(-self.n_prefixes // self.per_block))
        self.arr, self.sweep_min, self.block_subsets, self.delta = arr, sweep_min, block_subsets, delta
        self.radius_min, self.cap = radius_min, cap

    def fingerprint(self):
        return {"weight": digest(self.arr.W), "block_subsets": self.block_subsets,
                "sweep_min": self.sweep_min, "delta": self.delta, "radius_min": self.radius_min,
                "cap": self.cap}

    def empty(self):
        none = [kernels.NONE, -1]
        return {"count": np.array(none, dtype=np.int64), "rank": np.array(none, dtype=np.int64),
                "flagged": np.full(self.cap, _NO_INDEX, dtype=np.int64),
                "n_flagged": np.zeros((), dtype=np.int64),
                "n_subsets": np.zeros((), dtype=np.int64)}

    def compute(self, first, stop, n_jobs, *, bar=None, limit_blas=True):
        arr, per_block, n_prefixes = self.arr, self.per_block, self.n_prefixes
        p, n = arr.p, arr.n
        k = n - 1
        binom = self.cached("binom", lambda: _binomial_table(p, k))
        cap = self.cap
        planes = kernels.Hyperplanes(U=arr.unit, npos=arr.npos, nneg=arr.nneg, hasneg=arr.hasneg,
                                     cheaper=arr.cheaper, binom=binom)
        settings = kernels.ScanSettings(delta=float(self.delta), sweep_min=int(self.sweep_min),
                                        radius_min=float(self.radius_min))

        def make_worker():
            prefix_ws, sweep = kernels.scan_scratch(p, n)
            flagged = np.zeros(cap, dtype=np.int64)
            result = np.zeros(kernels.RESULT_SIZE, dtype=np.int64)
            state = {"count": (kernels.NONE, -1), "rank": (kernels.NONE, -1), "flagged": [],
                     "n_flagged": 0, "n_subsets": 0}

            def process(b):
                start = b * per_block
                end = min(n_prefixes, start + per_block)
                kernels.scan_prefixes(planes, settings, start, end, prefix_ws, sweep, flagged,
                                      result)
                if result[kernels.BEST_COUNT_INDEX] >= 0:
                    state["count"] = min(state["count"], key(result[kernels.BEST_COUNT], result[kernels.BEST_COUNT_INDEX]))
                    state["rank"] = min(state["rank"], key(result[kernels.BEST_RANK], result[kernels.BEST_RANK_INDEX]))
                found = int(result[kernels.N_FLAGGED])
                if found and len(state["flagged"]) < cap:
                    # blocks of one thread come in increasing order: keep the first cap
                    state["flagged"].extend(flagged[:min(found, cap)].tolist())
                    del state["flagged"][cap:]
                state["n_flagged"] += found
                state["n_subsets"] += int(result[kernels.N_SUBSETS])

            return process, lambda: state

        partials = run_blocks(range(first, stop), make_worker, n_jobs, bar=bar,
                              limit_blas=limit_blas)
        return {"count": _packed(min(s["count"] for s in partials)),
                "rank": _packed(min(s["rank"] for s in partials)),
                "flagged": np.array(sorted(r for s in partials for r in s["flagged"])[:cap], dtype=np.int64),
                "n_flagged": np.array(sum(s["n_flagged"] for s in partials), dtype=np.int64),
                "n_subsets": np.array(sum(s["n_subsets"] for s in partials), dtype=np.int64)}

    def absorb(self, state, piece, first, stop):
        for name in ("count", "rank"):
            if tuple(piece[name]) < tuple(state[name]):
                state[name][:] = piece[name]
        # the smallest ranks flagged so far; unused slots hold _NO_INDEX, which sorts last
        state["flagged"][:] = np.sort(np.concatenate([state["flagged"], piece["flagged"]]))[:self.cap]
        state["n_flagged"] += piece["n_flagged"]
        state["n_subsets"] += piece["n_subsets"]


def _packed(pair):
    """A key ``(value, index)`` as int64, ``math.inf`` as ``_NO_INDEX`` (same order)."""
    return np.array([pair[0], _NO_INDEX if pair[1] == math.inf else pair[1]], dtype=np.int64)


def _unpacked(pair):
    return (int(pair[0]), math.inf if pair[1] == _NO_INDEX else int(pair[1]))


def scan(arr, jobs, progress, sweep_min, block_subsets, delta, radius_min, cap, *, client=None,
         checkpoint=None, checkpoint_interval=None):
    """Run the kernels over all (n-1)-subsets of the arrangement ``arr``. Returns the
    folded minima ``((count, index), (rank, index))``, the first flagged subset ranks
    (sorted, at most ``cap``), the number flagged and the number scanned."""
    plan = ScanPlan(arr, sweep_min, block_subsets, delta, radius_min, cap)
    if plan.n_blocks == 1 and client is None and checkpoint is None:
        # one block: no threads (the kernels call no BLAS, nothing to limit)
        state = plan.empty()
        plan.absorb(state, plan.compute(0, 1, 1, limit_blas=False), 0, 1)
    else:
        state = execute(plan, n_jobs=jobs, client=client, checkpoint=checkpoint,
                        checkpoint_interval=checkpoint_interval, progress=progress)
    flagged = state["flagged"]
    return (_unpacked(state["count"]), _unpacked(state["rank"]),
            flagged[flagged != _NO_INDEX].tolist(), int(state["n_flagged"]), int(state["n_subsets"]))
