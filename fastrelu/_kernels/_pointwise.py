"""Pointwise injectivity: does the active subframe at each point span R^n?

For a point ``x`` the active rows ``{i : <x, w_i> - alpha_i >= 0}`` are scanned by
decreasing normalised correlation ``<x, w_i> / |w_i|`` (ties: smaller index), and a row
counts when its unit direction is farther than ``rank_tol`` from the span of the rows
counted before it, up to ``n``. The point is injective when ``n`` rows count. This is the
most correlated basis of THEORY §3 restricted to the active rows, so a bias from
:func:`fastrelu.mcbe` makes every one of its samples injective here with the same
``rank_tol``. The common case is one Cholesky factorisation of the first ``n`` active
rows' Gram matrix, as in the MCBE kernel.
"""

import numpy as np

from ._jit import kernel
from ._mcbe import _first_candidates_independent, _rank_first, select_basis


@kernel
def basis_of_active(keys, active, active_keys, size, n, gram, unit_rows, use_gram,
                    rank_tol2, order, order_keys, kept, chol, inv_diag, lvec, rows_buf,
                    stats):
    """Most correlated basis among the rows ``active[:size]`` (by increasing index, their
    keys in ``active_keys``; ``keys`` holds every row's key) into ``kept``; returns its
    size, at most ``n``. The first ``n`` active rows in scan order are certified by one
    Cholesky factorisation; otherwise the incremental scan decides."""
    if size >= n:
        _rank_first(active, active_keys, size, n, order, order_keys)
        if _first_candidates_independent(order, n, gram, unit_rows, use_gram, rank_tol2,
                                         chol, rows_buf):
            for j in range(n):
                kept[j] = order[j]
            return n
    if size == 0:
        return 0
    return select_basis(keys, -np.inf, active[:size], gram, unit_rows, use_gram, rank_tol2,
                        order, order_keys, kept, chol, inv_diag, lvec, stats)


@kernel
def pointwise_tile(X, C, weight_t, bias, inv_norm, gram, unit_rows, use_gram, rank_tol2,
                   n_active, rank, keys, active, active_keys, order, order_keys, kept,
                   chol, inv_diag, lvec, rows_buf, stats):
    """Active-set sizes and ranks (capped at ``n``) of the points of one tile.

    Parameters
    ----------
    X : (t, n) points.
    C : (t, m) scratch, overwritten with ``X @ W^T``.
    weight_t : (n, m) ``W^T``; bias : (m,) the subtracted bias ``alpha``.
    inv_norm : (m,) ``1 / |w_i|`` (0 for a zero row, which never counts).
    gram, unit_rows, use_gram, rank_tol2 : as for :func:`fastrelu._kernels._mcbe.mcbe_tile`.
    n_active, rank : (t,) int64 outputs.
    keys, active, active_keys, order, order_keys, kept, chol, inv_diag, lvec, rows_buf,
    stats : scratch of shapes (m,), (m,), (m,), (m,), (m,), (n,), (n, n), (n,), (n,),
        (n, n), (3,).
    """
    n = X.shape[1]
    m = weight_t.shape[1]
    np.dot(X, weight_t, C)
    for s in range(X.shape[0]):
        size = 0
        for i in range(m):
            key = C[s, i] * inv_norm[i]
            keys[i] = key
            active[size] = i
            active_keys[size] = key
            size += C[s, i] - bias[i] >= 0.0
        n_active[s] = size
        rank[s] = basis_of_active(keys, active, active_keys, size, n, gram, unit_rows,
                                  use_gram, rank_tol2, order, order_keys, kept, chol,
                                  inv_diag, lvec, rows_buf, stats)
