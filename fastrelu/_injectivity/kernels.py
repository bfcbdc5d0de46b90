"""Pointwise injectivity: does the active subframe at each point span R^n?

For a point ``x`` the active rows ``{i : <x, w_i> - alpha_i >= 0}`` are scanned by
decreasing normalised correlation ``<x, w_i> / |w_i|`` (ties: smaller index), and a row
counts when its unit direction is farther than ``rank_tol`` from the span of the rows
counted before it, up to ``n``. The point is injective when ``n`` rows count. This is the
most correlated basis of THEORY §3 restricted to the active rows, so a bias from
:func:`fastrelu.mcbe` makes every one of its samples injective here with the same
``rank_tol``. The common case is one Cholesky factorisation of the first ``n`` active
rows' Gram matrix, as in the MCBE kernel: for ``SPANS_LANES`` points at once in SIMD
lanes in :func:`pointwise_tile`; a point it does not settle goes to the incremental scan
:func:`fastrelu._core.basis.select_basis`.
"""

from typing import NamedTuple

import numpy as np

from fastrelu._core.basis import (
    SPANS_LANES,
    basis_of_active,
    certify_lanes,
    rank_into_lane,
    select_basis,
)
from fastrelu._core.jit import kernel

__all__ = ["SPANS_LANES", "ActiveRows", "pointwise_block", "pointwise_tile", "pointwise_tile_one_by_one"]


class ActiveRows(NamedTuple):
    """The layer as :func:`pointwise_tile` reads it."""

    #: (n, m) ``W^T``.
    weight_t: np.ndarray
    #: (m,) the subtracted bias ``alpha``.
    bias: np.ndarray
    #: (m,) ``1 / |w_i|`` (0 for a zero row, which never counts).
    inv_norm: np.ndarray


@kernel
def pointwise_tile(X, C, layer, basis, n_active, rank, cands, scan, lanes_ws, stats, full,
                   every_row):
    """Active-set sizes and ranks (capped at ``n``) of the points of one tile.

    Parameters
    ----------
    X : (t, n) points.
    C : (t, m) scratch, overwritten with ``X @ W^T``.
    layer : ActiveRows
    basis : fastrelu._core.basis.Rows
    n_active, rank : (t,) int64 outputs.
    cands : fastrelu._core.basis.Candidates
        Scratch: ``keys`` (lanes, m), ``index`` (lanes, m) int64, ``index_keys`` (m,).
    scan : fastrelu._core.basis.Scan
    lanes_ws : fastrelu._core.basis.Lanes
        Scratch of ``lanes = SPANS_LANES`` points.
    stats : (3,) int64 scratch of the incremental scan.
    full : bool
        Rank every point; ``False``: only those with at least ``n`` active rows (the
        others get rank ``-1``: not injective, rank not computed).
    every_row : bool
        The scan keeps every row of this square ``W`` in any order
        (:func:`fastrelu._core.rows.every_row_kept`): a point's rank is its number of
        active rows, no scan needed.

    The points go in groups of ``lanes``: the first ``n`` active rows of each (in scan
    order) are certified by one lane-parallel Cholesky factorisation; a point that it
    does not settle goes to the incremental scan.
    """
    weight_t, bias, inv_norm = layer.weight_t, layer.bias, layer.inv_norm
    keys, active, active_keys = cands.keys, cands.index, cands.index_keys
    order, order_keys, order_l = scan.order, scan.order_keys, lanes_ws.order_l
    n = X.shape[1]
    m = weight_t.shape[1]
    lanes = lanes_ws.G.shape[2]
    ranked = np.zeros(lanes, dtype=np.bool_)
    np.dot(X, weight_t, C)
    for first in range(0, X.shape[0], lanes):
        group = min(lanes, X.shape[0] - first)
        for li in range(lanes):
            ranked[li] = False
            if li >= group:
                continue
            s = first + li
            size = 0
            for i in range(m):
                key = C[s, i] * inv_norm[i]
                keys[li, i] = key
                active[li, size] = i
                active_keys[size] = key
                size += C[s, i] - bias[i] >= 0.0
            n_active[s] = size
            if every_row:
                continue
            if size >= n:
                rank_into_lane(active[li], active_keys, size, n, order, order_keys, order_l, li)
                ranked[li] = True
        if every_row:
            for li in range(group):
                rank[first + li] = n_active[first + li]
            continue
        passed = certify_lanes(lanes_ws, ranked, n, basis, scan.rows_buf)
        for li in range(group):
            s = first + li
            size = n_active[s]
            if ranked[li] and (passed >> li) & 1:
                rank[s] = n
            elif size == 0:
                rank[s] = 0
            elif size < n and not full:
                rank[s] = -1
            else:
                rank[s] = select_basis(keys[li], -np.inf, active[li, :size], basis, scan, stats)


@kernel
def pointwise_tile_one_by_one(X, C, layer, basis, n_active, rank, cands, scan, stats, full,
                              every_row):
    """:func:`pointwise_tile` for large ``n``: one point at a time, the first ``n``
    active rows certified by LAPACK's blocked Cholesky
    (:func:`fastrelu._core.basis.basis_of_active`) rather than in SIMD lanes; the same
    ranks, except where a row's squared distance lies within rounding of ``rank_tol^2``
    (:func:`fastrelu._core.basis.select_basis_from`). Uses ``cands.keys[0]`` and ``cands.index[0]`` only."""
    weight_t, bias, inv_norm = layer.weight_t, layer.bias, layer.inv_norm
    keys, active, active_keys = cands.keys[0], cands.index[0], cands.index_keys
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
        if every_row:
            rank[s] = size
        elif size < n and not full:
            rank[s] = -1
        else:
            rank[s] = basis_of_active(keys, active, active_keys, size, n, basis, scan, stats)


@kernel
def pointwise_block(X, C, layer, basis, n_active, rank, cands, scan, lanes_ws, stats, one_by_one,
                    full, every_row):
    """:func:`pointwise_tile` (or, with ``one_by_one``, :func:`pointwise_tile_one_by_one`)
    on the tiles of ``C.shape[0]`` points of ``X``, in order: one call per block, so that
    the named tuples are passed in once."""
    tile = C.shape[0]
    for start in range(0, X.shape[0], tile):
        stop = min(X.shape[0], start + tile)
        if one_by_one:
            pointwise_tile_one_by_one(X[start:stop], C[:stop - start], layer, basis,
                                      n_active[start:stop], rank[start:stop], cands, scan, stats,
                                      full, every_row)
        else:
            pointwise_tile(X[start:stop], C[:stop - start], layer, basis, n_active[start:stop],
                           rank[start:stop], cands, scan, lanes_ws, stats, full, every_row)
