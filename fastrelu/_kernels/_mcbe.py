"""Most-correlated-basis selection and the MCBE minima for one tile of samples.

For each sample ``x`` (a row of ``U``) the rows of ``W`` are scanned by decreasing
normalised correlation ``<x, w_i> / |w_i|`` (ties: smaller index first); a row is kept
when its unit direction is farther than ``rank_tol`` from the span of the kept ones
(incremental Cholesky of the Gram matrix of the unit rows), until ``n`` are kept. Each
kept row ``i`` lowers ``alpha[i]`` to the sample's constraint value and bumps
``counts[i]``. See THEORY §3.

Only the rows needed are ordered: a threshold (adapted from sample to sample) picks a
little more than ``n`` candidates, which are sorted; the other rows are sorted and
scanned only when the candidates do not reach rank ``n`` (dependent rows). Nothing of
size ``N x m`` is stored: one ``(tile, m)`` product at a time.
"""

import numpy as np

from ._jit import REDUCTION_FASTMATH, kernel


@kernel(fastmath=REDUCTION_FASTMATH)
def _dot(a, b, length):
    """sum_{p < length} a[p] * b[p]."""
    total = 0.0
    for p in range(length):
        total += a[p] * b[p]
    return total


@kernel
def _collect_sorted(keys, rows, thresh, above, order, order_keys):
    """Write the rows with ``keys >= thresh`` (``above``) or ``< thresh`` into ``order``
    sorted by decreasing key, ties by smaller index; returns how many.

    Insertion sort: the lists are short (a little over ``n`` rows) in the common case.
    """
    size = 0
    for idx in range(rows.shape[0]):
        i = rows[idx]
        k = keys[i]
        if (k >= thresh) == above:
            # rows arrive by increasing index, so equal keys stay in index order
            pos = size
            while pos > 0 and order_keys[pos - 1] < k:
                order[pos] = order[pos - 1]
                order_keys[pos] = order_keys[pos - 1]
                pos -= 1
            order[pos] = i
            order_keys[pos] = k
            size += 1
    return size


@kernel(fastmath=REDUCTION_FASTMATH)
def select_basis(keys, thresh, rows, gram, unit_rows, use_gram, rank_tol2,
                 order, order_keys, kept, chol, inv_diag, lvec, stats):
    """Most correlated basis of one sample; returns the number of kept rows.

    ``keys[i]`` is the sample's normalised correlation with row ``i``; ``rows`` lists the
    rows that may enter a basis (repeated directions removed); rows with
    ``keys >= thresh`` are tried first. ``gram`` is the Gram matrix of the unit rows
    (``use_gram``) or the unit rows' inner products are computed from ``unit_rows``. On
    return ``kept[:count]`` holds the basis in scan order, ``stats[2]`` the number of
    first candidates, and ``stats[1]`` is increased when the other rows were needed.
    """
    n = kept.shape[0]
    dim = unit_rows.shape[1]
    size = _collect_sorted(keys, rows, thresh, True, order, order_keys)
    stats[2] = size
    refilled = size == rows.shape[0]
    pos = 0
    count = 0
    while count < n:
        if pos == size:
            if refilled:
                break
            # The candidates did not reach rank n: the rows below the threshold follow.
            size = _collect_sorted(keys, rows, thresh, False, order, order_keys)
            pos = 0
            refilled = True
            stats[1] += 1
            continue
        i = order[pos]
        pos += 1
        # Solve L l = g with g_j = <u_i, u_kept_j> (L: Cholesky factor of the Gram matrix
        # of the kept unit rows); the squared distance of u_i to their span is then
        # <u_i, u_i> - |l|^2.
        for j in range(count):
            if use_gram:
                acc = gram[i, kept[j]]
            else:
                acc = _dot(unit_rows[i], unit_rows[kept[j]], dim)
            for p in range(j):
                acc -= chol[j, p] * lvec[p]
            lvec[j] = acc * inv_diag[j]
        dist2 = gram[i, i] if use_gram else _dot(unit_rows[i], unit_rows[i], dim)
        for p in range(count):
            dist2 -= lvec[p] * lvec[p]
        if dist2 > rank_tol2:
            for j in range(count):
                chol[count, j] = lvec[j]
            diag = np.sqrt(dist2)
            chol[count, count] = diag
            inv_diag[count] = 1.0 / diag
            kept[count] = i
            count += 1
    return count


@kernel
def mcbe_tile(U, C, weight_t, inv_norm, data_kind, r_pos, r_neg, rows, gram, unit_rows,
              use_gram, rank_tol2, alpha, counts, state, stats, keys, order, order_keys,
              kept, chol, inv_diag, lvec):
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
    keys, order, order_keys, kept, chol, inv_diag, lvec : scratch of shapes (m,), (m,),
        (m,), (n,), (n, n), (n,), (n,).
    """
    n = U.shape[1]
    # C = U @ W^T
    np.dot(U, weight_t, C)
    for s in range(U.shape[0]):
        x = U[s]
        norm = np.sqrt(_dot(x, x, n))
        if norm == 0.0 and not data_kind:
            continue  # a zero Gaussian draw has no direction (probability zero)
        c_row = C[s]
        for idx in range(rows.shape[0]):
            i = rows[idx]
            keys[i] = c_row[i] * inv_norm[i]
        thresh = state[0] * norm if norm > 0.0 else -np.inf
        refills = stats[1]
        count = select_basis(keys, thresh, rows, gram, unit_rows, use_gram, rank_tol2,
                             order, order_keys, kept, chol, inv_diag, lvec, stats)
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
            state[0] = keys[kept[count - 1]] * inv - state[1]
