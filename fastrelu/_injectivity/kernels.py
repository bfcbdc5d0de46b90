"""Pointwise injectivity: does the active subframe at each point span R^n?

For a point ``x`` the active rows ``{i : <x, w_i> - alpha_i >= 0}`` are scanned by
decreasing normalised correlation ``<x, w_i> / |w_i|`` (ties: smaller index), and a row
counts when its unit direction is farther than ``rank_tol`` from the span of the rows
counted before it, up to ``n``. The point is injective when ``n`` rows count. This is the
most correlated basis of THEORY §3 restricted to the active rows, so a bias from
:func:`fastrelu.mcbe` makes every one of its samples injective here with the same
``rank_tol``. The common case is one Cholesky factorisation of the first ``n`` active
rows' Gram matrix, as in the MCBE kernel: for ``SPANS_LANES`` points at once in SIMD
lanes in :func:`pointwise_tile`, one point at a time (LAPACK) in
:func:`fastrelu._core.basis.basis_of_active`.
"""

import numpy as np

from fastrelu._core.jit import kernel
from fastrelu._core.basis import SPANS_LANES, first_candidates_independent, rank_first, rank_into_lane, certify_lanes, select_basis

__all__ = ["SPANS_LANES", "pointwise_tile"]


@kernel
def pointwise_tile(X, C, weight_t, bias, inv_norm, gram, unit_rows, use_gram, rank_tol2,
                   n_active, rank, keys, active, active_keys, order, order_keys, kept,
                   chol, inv_diag, lvec, rows_buf, stats, order_l, G):
    """Active-set sizes and ranks (capped at ``n``) of the points of one tile.

    Parameters
    ----------
    X : (t, n) points.
    C : (t, m) scratch, overwritten with ``X @ W^T``.
    weight_t : (n, m) ``W^T``; bias : (m,) the subtracted bias ``alpha``.
    inv_norm : (m,) ``1 / |w_i|`` (0 for a zero row, which never counts).
    gram, unit_rows, use_gram, rank_tol2 : as for :func:`fastrelu._core.basis.mcbe_tile`.
    n_active, rank : (t,) int64 outputs.
    keys, active, active_keys, order, order_keys, kept, chol, inv_diag, lvec, rows_buf,
    stats, order_l, G : scratch of shapes (lanes, m), (lanes, m), (m,), (m,), (m,), (n,),
        (n, n), (n,), (n,), (n, n), (3,), (lanes, n), (n, n, lanes),
        ``lanes = SPANS_LANES``.

    The points go in groups of ``lanes``: the first ``n`` active rows of each (in scan
    order) are certified by one lane-parallel Cholesky factorisation; a point that it
    does not settle goes to the incremental scan.
    """
    n = X.shape[1]
    m = weight_t.shape[1]
    lanes = G.shape[2]
    ranked = np.zeros(lanes, dtype=np.bool_)
    small = np.empty((n, n))
    np.dot(X, weight_t, C)
    for first in range(0, X.shape[0], lanes):
        group = min(lanes, X.shape[0] - first)
        for l in range(lanes):
            ranked[l] = False
            if l >= group:
                continue
            s = first + l
            size = 0
            for i in range(m):
                key = C[s, i] * inv_norm[i]
                keys[l, i] = key
                active[l, size] = i
                active_keys[size] = key
                size += C[s, i] - bias[i] >= 0.0
            n_active[s] = size
            if size >= n:
                rank_into_lane(active[l], active_keys, size, n, order, order_keys, order_l, l)
                ranked[l] = True
        passed = certify_lanes(order_l, ranked, n, gram, unit_rows, use_gram, rank_tol2, G,
                               rows_buf, small)
        for l in range(group):
            s = first + l
            size = n_active[s]
            if ranked[l] and (passed >> l) & 1:
                rank[s] = n
            elif size == 0:
                rank[s] = 0
            else:
                rank[s] = select_basis(keys[l], -np.inf, active[l, :size], gram, unit_rows,
                                       use_gram, rank_tol2, order, order_keys, kept, chol,
                                       inv_diag, lvec, stats)
