"""The MCBE minima for one tile of samples (THEORY §3): each sample's most correlated
basis, selected by the primitives of :mod:`fastrelu._core.basis`, lowers the running
minima of its rows. ``SPANS_LANES`` samples are certified at once in SIMD lanes (the C
kernel ``fr_spans``); the incremental scan :func:`~fastrelu._core.basis.select_basis`
decides the rest. Nothing of size ``N x m`` is stored: one ``(tile, m)`` product at a
time.
"""

import numpy as np

from fastrelu._core.basis import SPANS_LANES, certify_lanes, collect_candidates, dot, rank_into_lane, select_basis
from fastrelu._core.jit import kernel

__all__ = ["SPANS_LANES", "mcbe_tile"]


@kernel
def mcbe_tile(U, C, weight_t, inv_norm, data_kind, r_pos, r_neg, rows, gram, unit_rows,
              use_gram, rank_tol2, alpha, counts, state, stats, keys, order, order_keys,
              kept, chol, inv_diag, lvec, cand, cand_keys, rows_buf, order_l, G):
    """Fold one tile of samples into the running minima ``alpha`` and ``counts``.

    Parameters
    ----------
    U : (t, n) samples (directions for sphere-type domains, points for data).
    C : (t, m) scratch, overwritten with ``U @ W^T``.
    weight_t : (n, m) ``W^T`` (C-contiguous).
    inv_norm : (m,) ``1 / |w_i|``.
    data_kind : True for data (value ``<x, w_i>``); False for sphere-type domains, where
        ``c = <u, w_i>`` for the unit direction ``u`` gives ``r_pos c`` (``c >= 0``) or
        ``r_neg c``.
    alpha, counts : (m,) running minima and basis counts, updated in place.
    state : (2,) float64 threshold and slack, updated in place; they steer the speed of
        the selection, never its result.
    stats : (3,) int64, updated in place: samples whose basis stayed short of ``n`` rows,
        samples that needed more than the first candidates, last candidate count.
    keys, order, order_keys, kept, chol, inv_diag, lvec, cand, cand_keys, rows_buf,
    order_l, G :
        scratch of shapes (lanes, m), (m,), (m,), (n,), (n, n), (n,), (n,), (m,), (m,),
        (n, n), (lanes, n), (n, n, lanes), ``lanes = SPANS_LANES``.

    The samples go in groups of ``lanes``: each is ranked, then the first ``n``
    candidates of all of them are certified by one lane-parallel Cholesky
    factorisation (``fr_spans``), then each is folded in, in sample order.
    """
    n = U.shape[1]
    lanes = G.shape[2]
    norms = np.empty(lanes)
    threshs = np.empty(lanes)
    sizes = np.zeros(lanes, dtype=np.int64)
    lowered = np.zeros(lanes, dtype=np.bool_)
    ranked = np.zeros(lanes, dtype=np.bool_)
    small = np.empty((n, n))
    # C = U @ W^T
    np.dot(U, weight_t, C)
    for first in range(0, U.shape[0], lanes):
        group = min(lanes, U.shape[0] - first)
        for l in range(lanes):
            ranked[l] = False
            norms[l] = 0.0
            if l >= group:
                continue
            x = U[first + l]
            norm = np.sqrt(dot(x, x, n))
            norms[l] = norm
            if norm == 0.0 and not data_kind:
                continue  # a zero Gaussian draw has no direction (probability zero)
            c_row = C[first + l]
            lane_keys = keys[l]
            for idx in range(rows.shape[0]):
                i = rows[idx]
                lane_keys[i] = c_row[i] * inv_norm[i]
            thresh = state[0] * norm if norm > 0.0 else -np.inf
            size = collect_candidates(lane_keys, rows, thresh, cand, cand_keys)
            lowered[l] = False
            if size < n and norm > 0.0:
                # Too few candidates: lower this sample's threshold once, by a wide step.
                thresh -= 4.0 * state[1] * norm
                size = collect_candidates(lane_keys, rows, thresh, cand, cand_keys)
                lowered[l] = True
            threshs[l] = thresh
            sizes[l] = size
            if size >= n:
                rank_into_lane(cand, cand_keys, size, n, order, order_keys, order_l, l)
                ranked[l] = True
        passed = certify_lanes(order_l, ranked, n, gram, unit_rows, use_gram, rank_tol2, G,
                               rows_buf, small)
        for l in range(group):
            norm = norms[l]
            if norm == 0.0 and not data_kind:
                continue
            refills = stats[1]
            if lowered[l]:
                stats[1] += 1
            c_row = C[first + l]
            count = 0
            if ranked[l] and (passed >> l) & 1:
                for j in range(n):
                    kept[j] = order_l[l, j]
                count = n
                stats[2] = sizes[l]
            else:
                count = select_basis(keys[l], threshs[l], rows, gram, unit_rows, use_gram,
                                     rank_tol2, order, order_keys, kept, chol, inv_diag, lvec,
                                     stats)
            if count < n:
                stats[0] += 1
            inv = 1.0 / norm if norm > 0.0 else 0.0
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
            # Next threshold: a little below this sample's last normalised key; the slack
            # doubles when the candidates ran short and shrinks when they were plenty.
            if count > 0 and norm > 0.0:
                if stats[1] > refills:
                    state[1] *= 2.0
                elif stats[2] > count + count // 4 + 8:
                    state[1] *= 0.8
                state[0] = keys[l, kept[count - 1]] * inv - state[1]
