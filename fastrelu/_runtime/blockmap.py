"""What a checkpoint records of a run besides its state: the version of the block
definitions, the map of finished blocks, and JSON-normal fingerprints. Shared by the
block runner (:mod:`fastrelu._runtime.blocks`) and the checkpoint files
(:mod:`fastrelu._runtime.checkpoint`), which import it and not each other.
"""

import bisect
import json

import numpy as np

#: Version of the definition of blocks and states, recorded in checkpoints. Raise it
#: whenever what a block computes or how a state is laid out changes.
BLOCK_FORMAT = 2

class BlockMap:
    """The finished blocks of a run of ``n_blocks`` blocks, as sorted, disjoint and
    non-adjacent ranges ``[first, stop)``: its size is the number of gaps, not the number
    of blocks (one range for a run that goes in order, a few more while a cluster
    finishes tasks out of order)."""

    def __init__(self, n_blocks, runs=()):
        self.n_blocks = int(n_blocks)
        self.starts, self.stops = [], []
        self.n_done = 0
        for first, stop in runs:
            self.add(first, stop)

    def add(self, first, stop):
        """Mark blocks ``first .. stop-1`` finished."""
        first, stop = int(first), int(stop)
        if stop <= first:
            return
        lo = bisect.bisect_left(self.stops, first)   # the runs that touch or overlap
        hi = bisect.bisect_right(self.starts, stop)
        if lo < hi:
            self.n_done -= sum(b - a for a, b in zip(self.starts[lo:hi], self.stops[lo:hi]))
            first, stop = min(first, self.starts[lo]), max(stop, self.stops[hi - 1])
        self.starts[lo:hi] = [first]
        self.stops[lo:hi] = [stop]
        self.n_done += stop - first

    def todo(self):
        """The maximal runs ``(first, stop)`` of blocks not finished."""
        gaps, at = [], 0
        for first, stop in zip(self.starts, self.stops):
            if first > at:
                gaps.append((at, first))
            at = stop
        if at < self.n_blocks:
            gaps.append((at, self.n_blocks))
        return gaps

    def to_array(self):
        """The ranges as an int64 array of shape ``(k, 2)``."""
        return np.array([self.starts, self.stops], dtype=np.int64).T.reshape(-1, 2)

    @classmethod
    def from_array(cls, array, n_blocks):
        """The map stored by :meth:`to_array`; raises ValueError if it is not one of a run
        of ``n_blocks`` blocks."""
        if array.dtype != np.int64 or array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(f"block map of shape {array.shape} and type {array.dtype}, expected (k, 2) int64")
        flat = array.ravel()
        if flat.size and (flat[0] < 0 or flat[-1] > n_blocks or np.any(array[:, 1] <= array[:, 0])
                          or np.any(array[1:, 0] <= array[:-1, 1])):
            raise ValueError(f"block map {array[:3].tolist()}... is not sorted disjoint ranges of {n_blocks} blocks")
        return cls(n_blocks, array.tolist())


def json_normal(value):
    """``value`` as it reads back from JSON (tuples become lists, and so on)."""
    return json.loads(json.dumps(value))
