"""The MCBE minima for one tile of samples (THEORY §3): each sample's most correlated
basis, selected by the primitives of :mod:`fastrelu._core.basis`, lowers the running
minima of its rows. ``SPANS_LANES`` samples are certified at once in SIMD lanes (the C
kernel ``fr_spans``); the incremental scan :func:`~fastrelu._core.basis.select_basis`
decides the rest. Nothing of size ``N x m`` is stored: one ``(tile, m)`` product at a
time.
"""

from typing import NamedTuple

import numpy as np

from fastrelu._core.basis import (
    SPANS_LANES,
    certify_lanes,
    certify_then_scan,
    collect_candidates,
    dot,
    rank_into_lane,
    select_basis,
)
from fastrelu._core.jit import kernel

__all__ = ["SPANS_LANES", "McbeRows", "Minima", "mcbe_block", "mcbe_tile", "mcbe_tile_every_row",
           "mcbe_tile_one_by_one"]


class McbeRows(NamedTuple):
    """The layer as :func:`mcbe_tile` reads it."""

    #: (n, m) ``W^T`` (C-contiguous; rows scaled by powers of two).
    weight_t: np.ndarray
    #: (m,) ``1 / |w_i|``.
    inv_norm: np.ndarray
    #: (k,) int64: the rows that may enter a basis (repeated directions removed).
    rows: np.ndarray
    #: True for data (value ``<x, w_i>``); False for sphere-type domains, where
    #: ``c = <u, w_i>`` for the unit direction ``u`` gives ``r_pos c`` (``c >= 0``) or
    #: ``r_neg c``.
    data_kind: bool
    #: Radius for ``c >= 0``.
    r_pos: float
    #: Radius for ``c < 0``.
    r_neg: float


class Minima(NamedTuple):
    """One thread's running result, updated in place by :func:`mcbe_tile`."""

    #: (m,) running minima.
    alpha: np.ndarray
    #: (m,) int64: how often each row was in a basis.
    counts: np.ndarray
    #: (2,) threshold and slack: they steer the speed of the selection, never its result.
    state: np.ndarray
    #: (3,) int64: samples whose basis stayed short of ``n`` rows, samples that needed
    #: more than the first candidates, last candidate count.
    stats: np.ndarray


@kernel(inline="always")
def _collect(c_row, norm, n, layer, state, sample_keys, cand, cand_keys):
    """One sample's normalised correlations (its products ``c_row = W u``, ``norm = |u|``)
    into ``sample_keys``, and the rows above the running threshold into ``cand``
    (lowered once, by a wide step, when fewer than ``n`` pass). Returns
    ``(threshold, candidates, lowered)``."""
    rows, inv_norm = layer.rows, layer.inv_norm
    for idx in range(rows.shape[0]):
        i = rows[idx]
        sample_keys[i] = c_row[i] * inv_norm[i]
    thresh = state[0] * norm if norm > 0.0 else -np.inf
    size = collect_candidates(sample_keys, rows, thresh, cand, cand_keys)
    lowered = False
    if size < n and norm > 0.0:
        # Too few candidates: lower this sample's threshold once, by a wide step.
        thresh -= 4.0 * state[1] * norm
        size = collect_candidates(sample_keys, rows, thresh, cand, cand_keys)
        lowered = True
    return thresh, size, lowered


@kernel(inline="always")
def _rank_lane(c_row, norm, li, n, layer, state, cands, scan, lanes_ws):
    """Rank the candidates of one sample (its products ``c_row = W u``, ``norm = |u|``)
    into lane ``li``: its normalised correlations into ``cands.keys[li]``, the rows above
    the running threshold (lowered once, by a wide step, when fewer than ``n`` pass) and,
    when there are ``n`` of them, their first ``n`` in scan order into
    ``lanes_ws.order_l[li]``. Returns ``(threshold, candidates, lowered, ranked)``."""
    cand, cand_keys = cands.index, cands.index_keys
    thresh, size, lowered = _collect(c_row, norm, n, layer, state, cands.keys[li], cand, cand_keys)
    ranked = False
    if size >= n:
        rank_into_lane(cand, cand_keys, size, n, scan.order, scan.order_keys, lanes_ws.order_l, li)
        ranked = True
    return thresh, size, lowered, ranked


@kernel(inline="always")
def _lower_minima(c_row, kept, count, inv, layer, minima):
    """Fold one sample's basis ``kept[:count]`` into the running minima: each row's
    constraint value (``<x, w_i>`` on data; ``r_pos c`` or ``r_neg c`` for ``c = <u, w_i>``,
    ``inv = 1 / |u|``, on sphere-type domains) lowers its ``alpha``, and its count rises."""
    alpha, counts = minima.alpha, minima.counts
    data_kind, r_pos, r_neg = layer.data_kind, layer.r_pos, layer.r_neg
    for j in range(count):
        i = kept[j]
        if data_kind:
            value = c_row[i]
        else:
            c = c_row[i] * inv
            value = r_pos * c if c >= 0.0 else r_neg * c
        if value < alpha[i]:
            alpha[i] = value
        counts[i] += 1


@kernel(inline="always")
def _finish_sample(c_row, sample_keys, kept, count, n, norm, refills, layer, minima):
    """Fold one sample's basis ``kept[:count]`` in (its products ``c_row``, normalised
    keys ``sample_keys``, ``norm = |u|``) and steer the next threshold: a little below
    this sample's last normalised key, with a slack that doubles when the candidates ran
    short (``stats[1]`` rose above ``refills``) and shrinks when they were plenty."""
    state, stats = minima.state, minima.stats
    if count < n:
        stats[0] += 1
    inv = 1.0 / norm if norm > 0.0 else 0.0
    _lower_minima(c_row, kept, count, inv, layer, minima)
    if count > 0 and norm > 0.0:
        if stats[1] > refills:
            state[1] *= 2.0
        elif stats[2] > count + count // 4 + 8:
            state[1] *= 0.8
        state[0] = sample_keys[kept[count - 1]] * inv - state[1]


@kernel
def mcbe_tile(U, C, layer, basis, minima, cands, scan, lanes_ws):
    """Fold one tile of samples into the running minima.

    Parameters
    ----------
    U : (t, n) samples (directions for sphere-type domains, points for data).
    C : (t, m) scratch, overwritten with ``U @ W^T``.
    layer : McbeRows
    basis : fastrelu._core.basis.Rows
    minima : Minima
        Updated in place.
    cands : fastrelu._core.basis.Candidates
        Scratch: ``keys`` (lanes, m), ``index`` (m,) int64, ``index_keys`` (m,).
    scan : fastrelu._core.basis.Scan
    lanes_ws : fastrelu._core.basis.Lanes
        Scratch of ``lanes = SPANS_LANES`` samples.

    The samples go in groups of ``lanes``: each is ranked, then the first ``n``
    candidates of all of them are certified by one lane-parallel Cholesky
    factorisation (``fr_spans``), then each is folded in, in sample order.
    """
    weight_t, rows, data_kind = layer.weight_t, layer.rows, layer.data_kind
    state, stats = minima.state, minima.stats
    keys, kept, order_l = cands.keys, scan.kept, lanes_ws.order_l
    n = U.shape[1]
    lanes = lanes_ws.G.shape[2]
    norms = np.empty(lanes)
    threshs = np.empty(lanes)
    sizes = np.zeros(lanes, dtype=np.int64)
    lowered = np.zeros(lanes, dtype=np.bool_)
    ranked = np.zeros(lanes, dtype=np.bool_)
    # C = U @ W^T
    np.dot(U, weight_t, C)
    for first in range(0, U.shape[0], lanes):
        group = min(lanes, U.shape[0] - first)
        for li in range(lanes):
            ranked[li] = False
            norms[li] = 0.0
            if li >= group:
                continue
            x = U[first + li]
            norm = np.sqrt(dot(x, x, n))
            norms[li] = norm
            if norm == 0.0 and not data_kind:
                continue  # a zero Gaussian draw has no direction (probability zero)
            threshs[li], sizes[li], lowered[li], ranked[li] = _rank_lane(
                C[first + li], norm, li, n, layer, state, cands, scan, lanes_ws)
        passed = certify_lanes(lanes_ws, ranked, n, basis, scan.rows_buf)
        for li in range(group):
            norm = norms[li]
            if norm == 0.0 and not data_kind:
                continue
            refills = stats[1]
            if lowered[li]:
                stats[1] += 1
            c_row = C[first + li]
            count = 0
            if ranked[li] and (passed >> li) & 1:
                for j in range(n):
                    kept[j] = order_l[li, j]
                count = n
                stats[2] = sizes[li]
            else:
                count = select_basis(keys[li], threshs[li], rows, basis, scan, stats)
            _finish_sample(c_row, keys[li], kept, count, n, norm, refills, layer, minima)


@kernel
def mcbe_tile_one_by_one(U, C, layer, basis, minima, cands, scan):
    """:func:`mcbe_tile` for large ``n``: one sample at a time, the first ``n``
    candidates certified by LAPACK's blocked Cholesky (``dpotrf``) of their Gram
    matrix instead of the lane kernel, whose ``lanes x n x n`` scratch no longer fits in
    cache there. The certificate only decides whether the scan's first ``n`` rows are
    taken without scanning and where the scan starts (after the certified rows, with
    their factor), so the result is :func:`mcbe_tile`'s except where a row's squared
    distance lies within rounding of ``rank_tol^2`` (see
    :func:`fastrelu._core.basis.select_basis_from`). Uses
    ``cands.keys[0]`` and ``scan.chol`` (the Cholesky's factor, handed to the scan)
    only."""
    weight_t, rows, data_kind = layer.weight_t, layer.rows, layer.data_kind
    state, stats = minima.state, minima.stats
    cand, cand_keys = cands.index, cands.index_keys
    kept = scan.kept
    n = U.shape[1]
    np.dot(U, weight_t, C)
    lane_keys = cands.keys[0]
    for s in range(U.shape[0]):
        x = U[s]
        norm = np.sqrt(dot(x, x, n))
        if norm == 0.0 and not data_kind:
            continue  # a zero Gaussian draw has no direction (probability zero)
        c_row = C[s]
        refills = stats[1]
        thresh, size, lowered = _collect(c_row, norm, n, layer, state, lane_keys, cand, cand_keys)
        if lowered:
            stats[1] += 1
        if size < n <= rows.shape[0]:
            # every row a candidate: the certificate runs for every sample, so where the
            # scan starts (and how a close call after it is decided) depends on the
            # sample alone, never on the running threshold
            thresh = -np.inf
            size = collect_candidates(lane_keys, rows, thresh, cand, cand_keys)
        count = certify_then_scan(lane_keys, thresh, rows, cand, cand_keys, size, n, basis,
                                  scan, stats)
        _finish_sample(c_row, lane_keys, kept, count, n, norm, refills, layer, minima)


@kernel(inline="always")
def mcbe_tile_every_row(U, C, layer, minima):
    """:func:`mcbe_tile` for a square ``W`` whose scan keeps every row in every order
    (:func:`fastrelu._core.rows.every_row_kept`): every sample's basis is all the rows,
    so each lowers every row's minimum; no certificate, no scan."""
    weight_t, rows, data_kind = layer.weight_t, layer.rows, layer.data_kind
    n = U.shape[1]
    np.dot(U, weight_t, C)
    for s in range(U.shape[0]):
        x = U[s]
        norm = np.sqrt(dot(x, x, n))
        if norm == 0.0 and not data_kind:
            continue  # a zero Gaussian draw has no direction (probability zero)
        _lower_minima(C[s], rows, rows.shape[0], 1.0 / norm if norm > 0.0 else 0.0, layer, minima)


@kernel
def mcbe_block(U, C, layer, basis, minima, cands, scan, lanes_ws, one_by_one, every_row):
    """:func:`mcbe_tile` (or, with ``one_by_one``, :func:`mcbe_tile_one_by_one`) on the
    tiles of ``C.shape[0]`` samples of the block ``U``, in order: one call per block, so
    that the named tuples are passed in once (Numba types a tuple argument at every call,
    at a cost of microseconds). ``every_row``: :func:`mcbe_tile_every_row` instead."""
    tile = C.shape[0]
    for start in range(0, U.shape[0], tile):
        stop = min(U.shape[0], start + tile)
        if every_row:
            mcbe_tile_every_row(U[start:stop], C[:stop - start], layer, minima)
        elif one_by_one:
            mcbe_tile_one_by_one(U[start:stop], C[:stop - start], layer, basis, minima, cands,
                                 scan)
        else:
            mcbe_tile(U[start:stop], C[:stop - start], layer, basis, minima, cands, scan,
                      lanes_ws)
