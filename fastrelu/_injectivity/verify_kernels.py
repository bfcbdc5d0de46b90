"""Subset enumeration of the exact injectivity check of a zero-bias layer (THEORY §5).

The rows are grouped into distinct hyperplanes through 0 (repeated and opposite rows
share one) with unit normals ``U`` of shape (p, n). For an (n-1)-subset ``T`` of the
hyperplanes (increasing indices) and a hyperplane ``g`` outside it the check needs the
sign of

    D(T, g) = det [u_{t_1}; ...; u_{t_{n-1}}; u_g] = vol(T) <u_g, v_T>,

``v_T`` the unit null vector of ``U_T`` oriented by ``det [U_T; v_T] > 0``. The
subsets are enumerated in lexicographic order, grouped by their first ``n-2`` elements
(the *prefix* ``P``; the last element ``l`` runs over ``l > max P``). A prefix has one
Householder factorisation: with ``(a, b)`` an orthonormal basis of ``span(U_P)^perp``,
``z_g = (<u_g, a>, <u_g, b>)`` and ``vol_P = det [U_P^T | a | b]``,

    D(P + {l}, g) = vol_P (z_l x z_g)          (2-D cross product).

Per prefix the kernel either evaluates these cross products directly (``O(p)`` per
subset), or it sorts the ``2q`` points ``+z_g, -z_g`` by angle once and reads every
count off prefix sums: the open half-plane left of ``z_l`` holds one point of every
other hyperplane, the ``q - 1`` points that follow ``+z_l`` in angular order
(``O(1)`` per subset after an ``O(q)`` radix sort per prefix).

Floating point is only a filter. A value ``|D| <= delta`` (``delta`` well above the
rounding error of ``D``, which is ``O(n^2 eps)`` for unit rows whatever the conditioning
of ``T``) is not trusted: the subset is *flagged* and decided by the caller in exact
arithmetic. The angular order is used for ``l`` only when ``z_l`` is not too short and
its angular neighbours are far enough (see :func:`sweep_setup`): then its place in the
order is certain and every ``|D|`` is above ``delta``. The other lines and the short
points are evaluated directly.

Kernels assume validated input, never raise and allocate nothing: the caller passes
per-thread scratch.
"""

from typing import NamedTuple

import numpy as np

from fastrelu._core.jit import kernel

#: Positions of the fields of the ``result`` array of :func:`scan_prefixes`.
BEST_COUNT, BEST_COUNT_INDEX, BEST_RANK, BEST_RANK_INDEX, N_FLAGGED, N_SUBSETS, N_SWEPT, N_DIRECT = range(8)
RESULT_SIZE = 8
#: "No value yet" for the minima (larger than any count).
NONE = np.iinfo(np.int64).max


class Hyperplanes(NamedTuple):
    """The distinct hyperplanes of a layer as :func:`scan_prefixes` reads them."""

    #: (p, n) unit normals.
    U: np.ndarray
    #: (p,) int64: rows parallel to ``U[g]`` (``npos >= 1``).
    npos: np.ndarray
    #: (p,) int64: rows opposite to ``U[g]``.
    nneg: np.ndarray
    #: (p,) int64: ``nneg > 0``.
    hasneg: np.ndarray
    #: (p,) int64: ``min(npos, nneg)``.
    cheaper: np.ndarray
    #: (p + 1, n) int64: binomial coefficients ``C(a, b)``.
    binom: np.ndarray


class ScanSettings(NamedTuple):
    """The thresholds of :func:`scan_prefixes`."""

    #: Filter threshold on ``|D|``: subsets with ``|D| <= delta`` are flagged.
    delta: float
    #: The angular sweep is used for prefixes with at least this many subsets and
    #: hyperplanes outside the prefix (it pays off only for both large).
    sweep_min: int
    #: Points ``z_g`` shorter than this are not sorted but evaluated directly.
    radius_min: float


class PrefixScratch(NamedTuple):
    """One thread's scratch of the prefix factorisations (``p`` hyperplanes in R^n)."""

    comb: np.ndarray  #: (n-1,) int64 the current subset
    in_prefix: np.ndarray  #: (p,) bool, all False between calls
    work: np.ndarray  #: (n, n)
    refl: np.ndarray  #: (n, n)
    beta: np.ndarray  #: (n,)
    alpha: np.ndarray  #: (n,)
    basis: np.ndarray  #: (2, n) orthonormal basis of the prefix's complement
    local: np.ndarray  #: (p,) int64 hyperplanes outside the prefix
    zx: np.ndarray  #: (p,) their coordinates in ``basis``
    zy: np.ndarray  #: (p,)
    npos_q: np.ndarray  #: (p,) int64 their row counts
    nneg_q: np.ndarray  #: (p,) int64
    hasneg_q: np.ndarray  #: (p,) int64
    diff_q: np.ndarray  #: (p,) int64


class SweepScratch(NamedTuple):
    """One thread's scratch of the angular sweep (:func:`sweep_setup`)."""

    keys: np.ndarray  #: (p,) pseudo-angles
    order: np.ndarray  #: (p,) int64 their order
    keys_tmp: np.ndarray  #: (p,) radix-sort scratch
    order_tmp: np.ndarray  #: (p,) int64
    histogram: np.ndarray  #: (256,) int64
    radius2: np.ndarray  #: (p,) squared lengths
    bad: np.ndarray  #: (p,) bool bad neighbours
    pos_plus: np.ndarray  #: (p,) int64 position of ``+z_j`` in the cyclic order
    uncertain: np.ndarray  #: (p,) bool points the sweep does not decide
    short: np.ndarray  #: (p,) int64 points too short to sort
    sum_weight: np.ndarray  #: (4p + 1,) int64 prefix sums of row counts
    sum_rank: np.ndarray  #: (4p + 1,) int64 prefix sums of nonempty indicators


def scan_scratch(p, n):
    """Fresh ``(PrefixScratch, SweepScratch)`` for ``p`` hyperplanes in R^n."""
    k = n - 1
    prefix = PrefixScratch(
        comb=np.zeros(k, dtype=np.int64), in_prefix=np.zeros(p, dtype=np.bool_),
        work=np.zeros((n, n)), refl=np.zeros((n, n)), beta=np.zeros(n), alpha=np.zeros(n),
        basis=np.zeros((2, n)), local=np.zeros(p, dtype=np.int64), zx=np.zeros(p),
        zy=np.zeros(p), npos_q=np.zeros(p, dtype=np.int64), nneg_q=np.zeros(p, dtype=np.int64),
        hasneg_q=np.zeros(p, dtype=np.int64), diff_q=np.zeros(p, dtype=np.int64))
    sweep = SweepScratch(
        keys=np.zeros(p), order=np.zeros(p, dtype=np.int64), keys_tmp=np.zeros(p),
        order_tmp=np.zeros(p, dtype=np.int64), histogram=np.zeros(256, dtype=np.int64),
        radius2=np.zeros(p), bad=np.zeros(p, dtype=np.bool_), pos_plus=np.zeros(p, dtype=np.int64),
        uncertain=np.zeros(p, dtype=np.bool_), short=np.zeros(p, dtype=np.int64),
        sum_weight=np.zeros(4 * p + 1, dtype=np.int64), sum_rank=np.zeros(4 * p + 1, dtype=np.int64))
    return prefix, sweep


@kernel
def unrank(rank, p, binom, comb):
    """Write the combination of lexicographic rank ``rank`` into ``comb``.

    ``comb`` (k,) receives the ``k = comb.shape[0]`` increasing elements of
    ``range(p)``; ``binom[a, b] = C(a, b)`` for ``a <= p``, ``b <= k``.
    """
    k = comb.shape[0]
    x = 0
    for i in range(k):
        while True:
            # number of combinations with comb[i] = x (and the earlier elements fixed)
            count = binom[p - x - 1, k - i - 1]
            if rank < count:
                break
            rank -= count
            x += 1
        comb[i] = x
        x += 1


@kernel
def rank_of(comb, length, p, k, binom):
    """Lexicographic rank among the k-subsets of ``range(p)`` of the first subset that
    starts with ``comb[:length]`` (``length <= k``; the rest is the smallest completion).
    """
    rank = 0
    x = 0
    for i in range(length):
        while x < comb[i]:
            rank += binom[p - x - 1, k - i - 1]
            x += 1
        x += 1
    return rank


@kernel
def _reflect_column(refl, beta, j, work, c, n):
    """Apply the ``j``-th Householder reflection ``I - beta_j v_j v_j^T`` (``v_j`` in
    ``refl[j, j:]``) to column ``c`` of ``work``, in place."""
    dot = 0.0
    for i in range(j, n):
        dot += refl[j, i] * work[i, c]
    factor = beta[j] * dot
    for i in range(j, n):
        work[i, c] -= factor * refl[j, i]


@kernel
def prefix_frame(U, comb, kp, start, work, refl, beta, alpha, basis):
    """Orthonormal basis of ``span(U_P)^perp`` for the prefix ``P = comb[:kp]`` (kp = n-2).

    Householder QR of ``U_P^T = Q R`` (n x kp). The reflections of the first ``start``
    columns are kept from the previous call (whose prefix agreed on ``comb[:start]``);
    the result is bit-identical to ``start = 0``. On return ``basis[0]``, ``basis[1]``
    hold ``a = Q e_{n-2}`` and ``b = Q e_{n-1}``. Returns the signed volume
    ``det [U_P^T | a | b] = det(Q) prod(R_jj)``: its magnitude is the volume of the
    prefix rows, 0 when a column vanishes (rank-deficient prefix).
    ``work`` (n, n), ``refl`` (n, n), ``beta`` (n,), ``alpha`` (n,) carry the
    factorisation from call to call.
    """
    n = U.shape[1]
    for c in range(start, kp):
        row = comb[c]
        for i in range(n):
            work[i, c] = U[row, i]
        for j in range(start):
            if beta[j] != 0.0:
                _reflect_column(refl, beta, j, work, c, n)
    for j in range(start, kp):
        sumsq = 0.0
        for i in range(j, n):
            sumsq += work[i, j] * work[i, j]
        norm = np.sqrt(sumsq)
        if norm == 0.0:
            beta[j] = 0.0  # no reflection; the prefix is rank-deficient
            alpha[j] = 0.0
            continue
        x0 = work[j, j]
        alpha[j] = -norm if x0 >= 0.0 else norm
        refl[j, j] = x0 - alpha[j]  # no cancellation: alpha has the sign opposite to x0
        vnorm2 = refl[j, j] * refl[j, j]
        for i in range(j + 1, n):
            refl[j, i] = work[i, j]
            vnorm2 += work[i, j] * work[i, j]
        beta[j] = 2.0 / vnorm2
        for c in range(j + 1, kp):
            _reflect_column(refl, beta, j, work, c, n)
    signed_volume = 1.0
    for j in range(kp):
        # each reflection has determinant -1
        signed_volume *= -alpha[j]
    for t in range(2):
        e = basis[t]
        for i in range(n):
            e[i] = 0.0
        e[n - 2 + t] = 1.0
        # e = H_0 H_1 ... H_{kp-1} e
        for j in range(kp - 1, -1, -1):
            if beta[j] == 0.0:
                continue
            dot = 0.0
            for i in range(j, n):
                dot += refl[j, i] * e[i]
            factor = beta[j] * dot
            for i in range(j, n):
                e[i] -= factor * refl[j, i]
    return signed_volume


@kernel
def pseudo_angle(x, y):
    """A strictly increasing function of ``atan2(y, x)`` on ``[0, 2 pi)``, onto ``[0, 4)``
    (the "diamond angle"; 0 for the zero vector). Never ``-0.0``, whose bit pattern
    would sort last."""
    if y >= 0.0:
        if x >= 0.0:
            s = x + y
            angle = y / s if s > 0.0 else 0.0
        else:
            angle = 1.0 - x / (y - x)
    elif x <= 0.0:
        angle = 2.0 - y / (-x - y)
    else:
        angle = 3.0 + x / (x - y)
    return angle + 0.0  # -0.0 + 0.0 is +0.0


@kernel
def radix_sort_pairs(bits, items, count, bits_tmp, items_tmp, histogram):
    """Sort ``bits[:count]`` (uint64) ascending and permute ``items[:count]`` alike,
    stably: least-significant-digit radix sort, eight passes of one byte (a pass is
    skipped when all keys share its byte). The bit patterns of nonnegative float64
    keys sort like the keys. ``bits_tmp``, ``items_tmp`` are buffers of the same length
    and ``histogram`` has 256 entries."""
    src_b, src_i, dst_b, dst_i = bits, items, bits_tmp, items_tmp
    in_place = True
    for shift in range(0, 64, 8):
        digit_shift = np.uint64(shift)
        for d in range(256):
            histogram[d] = 0
        for i in range(count):
            histogram[(src_b[i] >> digit_shift) & np.uint64(255)] += 1
        if histogram[(src_b[0] >> digit_shift) & np.uint64(255)] == count:
            continue
        total = 0
        for d in range(256):
            size = histogram[d]
            histogram[d] = total
            total += size
        for i in range(count):
            d = (src_b[i] >> digit_shift) & np.uint64(255)
            out = histogram[d]
            dst_b[out] = src_b[i]
            dst_i[out] = src_i[i]
            histogram[d] = out + 1
        src_b, dst_b = dst_b, src_b
        src_i, dst_i = dst_i, src_i
        in_place = not in_place
    if not in_place:
        for i in range(count):
            bits[i] = bits_tmp[i]
            items[i] = items_tmp[i]


@kernel
def sweep_setup(q, zx, zy, npos_q, nneg_q, hasneg_q, threshold, radius_min, sweep):
    """Angular order of the points ``+z_j`` (weight ``npos_q[j]``) and ``-z_j`` (weight
    ``nneg_q[j]``), ``j < q``, and prefix sums of their row counts and of their
    nonempty indicators along it.

    Points shorter than ``radius_min`` are left out (their angle is not accurate
    enough): their local indices go to ``short`` and the caller evaluates them
    directly. Each other pair ``+-z_j`` is represented by its point in the upper
    half-plane (pseudo-angle in ``[0, 2)``); the representatives are sorted and the full
    cyclic order is the representatives followed by their opposites. ``pos_plus[j]``
    receives the position of ``+z_j`` in it; ``sum_weight``, ``sum_rank`` (4q + 1) the
    prefix sums along two rounds of the cyclic order.

    Two cyclically adjacent points ``a, b`` are *bad* neighbours when
    ``z_a x z_b <= |z_a| |z_b| threshold / r^2`` (``r`` the shortest sorted length).
    A point without bad neighbours is in its true angular place (a misordered pair is
    joined by bad neighbours, the angle errors being ``O(n eps / r)``), and all its
    cross products with the other sorted points exceed ``threshold`` (they are at least
    ``r^2`` times the sine of the angle to the nearest line ``+-z_b``). ``uncertain[j]``
    marks the points with a bad neighbour and the short ones: the sweep is not used for
    them. Returns ``(number sorted, number short)``. ``sweep`` (:class:`SweepScratch`)
    holds ``keys``, ``order``, ``pos_plus``, ``uncertain``, ``short``, ``sum_weight``,
    ``sum_rank`` and the scratch.
    """
    keys, order, keys_tmp, order_tmp = sweep.keys, sweep.order, sweep.keys_tmp, sweep.order_tmp
    histogram, radius2, bad, pos_plus = sweep.histogram, sweep.radius2, sweep.bad, sweep.pos_plus
    uncertain, short = sweep.uncertain, sweep.short
    sum_weight, sum_rank = sweep.sum_weight, sweep.sum_rank
    sorted_count = 0
    short_count = 0
    r2min = radius_min * radius_min
    shortest = np.inf
    for j in range(q):
        x = zx[j]
        y = zy[j]
        r2 = x * x + y * y
        radius2[j] = r2
        if not r2 >= r2min:
            short[short_count] = j
            short_count += 1
            uncertain[j] = True
            continue
        shortest = min(shortest, r2)
        angle = pseudo_angle(x, y)
        if angle < 2.0:
            keys[sorted_count] = angle
            order[sorted_count] = j
        else:
            keys[sorted_count] = pseudo_angle(-x, -y)
            order[sorted_count] = -1 - j  # the representative is -z_j
        sorted_count += 1
    total = sorted_count
    if total < 2:
        for i in range(total):
            a = order[i]
            uncertain[a if a >= 0 else -1 - a] = True
        return total, short_count
    radix_sort_pairs(keys.view(np.uint64), order, total, keys_tmp.view(np.uint64), order_tmp, histogram)
    relative = threshold / shortest
    for i in range(total):
        a = order[i]
        ja = a if a >= 0 else -1 - a
        sa = 1.0 if a >= 0 else -1.0
        if i + 1 < total:
            b = order[i + 1]
            sb = 1.0 if b >= 0 else -1.0
        else:
            b = order[0]
            sb = -1.0 if b >= 0 else 1.0  # wrap around to the opposite of the first
        jb = b if b >= 0 else -1 - b
        cross = sa * sb * (zx[ja] * zy[jb] - zy[ja] * zx[jb])
        # consecutive points must turn counter-clockwise by a certain angle
        bad[i] = not cross > np.sqrt(radius2[ja] * radius2[jb]) * relative
    # the second half of the cycle mirrors the first: pair i + total is pair i
    for i in range(total):
        a = order[i]
        j = a if a >= 0 else -1 - a
        uncertain[j] = bad[i] or bad[i - 1 if i > 0 else total - 1]
    # prefix sums over the cyclic order written out twice, so that every window of
    # fewer than 2 * total points starting in the first round is one difference
    sum_weight[0] = 0
    sum_rank[0] = 0
    for i in range(total):
        a = order[i]
        j = a if a >= 0 else -1 - a
        if a >= 0:
            w_up, r_up, w_down, r_down = npos_q[j], 1, nneg_q[j], hasneg_q[j]
            pos_plus[j] = i
        else:
            w_up, r_up, w_down, r_down = nneg_q[j], hasneg_q[j], npos_q[j], 1
            pos_plus[j] = i + total
        sum_weight[i + 1] = w_up
        sum_rank[i + 1] = r_up
        sum_weight[i + total + 1] = w_down
        sum_rank[i + total + 1] = r_down
    for i in range(2 * total):
        sum_weight[i + 2 * total + 1] = sum_weight[i + 1]
        sum_rank[i + 2 * total + 1] = sum_rank[i + 1]
    for i in range(4 * total):
        sum_weight[i + 1] += sum_weight[i]
        sum_rank[i + 1] += sum_rank[i]
    return total, short_count


@kernel(inline="always")
def _project_outside(planes, prefix_ws, flip):
    """The hyperplanes outside the prefix (``prefix_ws.in_prefix`` False), as points
    ``z_g`` of the plane orthogonal to the prefix (``prefix_ws.basis``; the second
    coordinate times ``flip``) with their row counts, in local order; returns their
    number, their total row count and their total count of nonempty sides."""
    U, npos, nneg, hasneg = planes.U, planes.npos, planes.nneg, planes.hasneg
    a = prefix_ws.basis[0]
    b = prefix_ws.basis[1]
    p, n = U.shape
    q = 0
    total_rows = 0
    total_rank = 0
    for g in range(p):
        if prefix_ws.in_prefix[g]:
            continue
        sa = 0.0
        sb = 0.0
        for i in range(n):
            sa += U[g, i] * a[i]
            sb += U[g, i] * b[i]
        prefix_ws.zx[q] = sa
        prefix_ws.zy[q] = flip * sb
        prefix_ws.npos_q[q] = npos[g]
        prefix_ws.nneg_q[q] = nneg[g]
        prefix_ws.hasneg_q[q] = hasneg[g]
        prefix_ws.diff_q[q] = npos[g] - nneg[g]
        total_rows += npos[g] + nneg[g]
        total_rank += 1 + hasneg[g]
        prefix_ws.local[g] = q
        q += 1
    return q, total_rows, total_rank


@kernel(inline="always")
def _left_of_direct(jl, q, threshold, prefix_ws):
    """For the local point ``z_jl``: the rows and nonempty sides of the points left of it
    (cross product ``z_jl x z_j > 0``: their ``+`` side, else their ``-`` side), counted
    over all ``q`` points, and how many cross products are within ``threshold``
    (``z_jl`` itself excluded). Returns ``(rows, sides, small)``."""
    zx, zy, nneg_q = prefix_ws.zx, prefix_ws.zy, prefix_ws.nneg_q
    hasneg_q, diff_q = prefix_ws.hasneg_q, prefix_ws.diff_q
    xl = zx[jl]
    yl = zy[jl]
    count_pos = 0
    rank_pos = 0
    small = 0
    for j in range(q):
        d = xl * zy[j] - yl * zx[j]
        up = 1 if d > 0.0 else 0
        count_pos += nneg_q[j] + up * diff_q[j]
        rank_pos += hasneg_q[j] + up * (1 - hasneg_q[j])
        small += 0 if abs(d) > threshold else 1
    # the term j = jl has d = 0 exactly: remove it
    count_pos -= nneg_q[jl]
    rank_pos -= hasneg_q[jl]
    small -= 1
    return count_pos, rank_pos, small


@kernel(inline="always")
def _left_of_swept(jl, n_sorted, n_short, threshold, prefix_ws, sweep):
    """As :func:`_left_of_direct`, from the angular sweep: the sorted points strictly
    between ``+z_jl`` and ``-z_jl`` by prefix sums, the short points directly."""
    zx, zy, nneg_q = prefix_ws.zx, prefix_ws.zy, prefix_ws.nneg_q
    hasneg_q, diff_q = prefix_ws.hasneg_q, prefix_ws.diff_q
    # the sorted points strictly between +z_l and -z_l: the open half-plane left of z_l
    # (its order relative to z_l is certain) ...
    start = sweep.pos_plus[jl] + 1
    count_pos = sweep.sum_weight[start + n_sorted - 1] - sweep.sum_weight[start]
    rank_pos = sweep.sum_rank[start + n_sorted - 1] - sweep.sum_rank[start]
    # ... and the short points, directly
    xl = zx[jl]
    yl = zy[jl]
    small = 0
    for t in range(n_short):
        j = sweep.short[t]
        d = xl * zy[j] - yl * zx[j]
        up = 1 if d > 0.0 else 0
        count_pos += nneg_q[j] + up * diff_q[j]
        rank_pos += hasneg_q[j] + up * (1 - hasneg_q[j])
        small += 0 if abs(d) > threshold else 1
    return count_pos, rank_pos, small


@kernel
def scan_prefixes(planes, settings, first_prefix, stop_prefix, prefix_ws, sweep, flagged,
                  result):
    """Scan the (n-1)-subsets whose prefixes have lexicographic ranks
    ``first_prefix .. stop_prefix - 1`` among the (n-2)-subsets (n >= 2).

    For every subset ``T`` (lexicographic rank ``r``) and sign ``s`` (index
    ``2 r`` for ``s = +1``, ``2 r + 1`` for ``s = -1``) the cell next to ``s v_T`` with
    the least active rows has

        count = sum_{g not in T} (npos[g] if s D(T, g) > 0 else nneg[g])
                + sum_{g in T} min(npos[g], nneg[g])

    active rows, and (hyperplanes in general position) the least rank of the active
    rows of a cell next to ``s v_T`` is
    ``min(n, #{g not in T : that side nonempty} + #{g in T : nneg[g] > 0})``.

    Parameters
    ----------
    planes : Hyperplanes
        The distinct hyperplanes and their row counts.
    settings : ScanSettings
        The filter threshold and the sweep's thresholds.
    first_prefix, stop_prefix : int
        The range of prefix ranks.
    prefix_ws : PrefixScratch
    sweep : SweepScratch
        Scratch (``prefix_ws.in_prefix`` all False on entry and on return).
    flagged : (cap,) int64, receives the ranks of the first ``cap`` flagged subsets
        (some ``|D| <= delta``), in increasing order.
    result : (8,) int64, overwritten: least count and its first index, least rank and
        its first index (flagged subsets excluded), number of flagged subsets, number
        of subsets scanned, prefixes swept, prefixes evaluated directly.
    """
    U, npos, nneg, hasneg = planes.U, planes.npos, planes.nneg, planes.hasneg
    cheaper, binom = planes.cheaper, planes.binom
    delta, sweep_min, radius_min = settings.delta, settings.sweep_min, settings.radius_min
    comb, in_prefix, work, refl = prefix_ws.comb, prefix_ws.in_prefix, prefix_ws.work, prefix_ws.refl
    beta, alpha, basis, local = prefix_ws.beta, prefix_ws.alpha, prefix_ws.basis, prefix_ws.local
    zx, zy, npos_q, nneg_q = prefix_ws.zx, prefix_ws.zy, prefix_ws.npos_q, prefix_ws.nneg_q
    hasneg_q, uncertain = prefix_ws.hasneg_q, sweep.uncertain
    p, n = U.shape
    k = n - 1
    kp = n - 2
    best_count = NONE
    best_count_index = -1
    best_rank = NONE
    best_rank_index = -1
    n_flagged = 0
    n_subsets = 0
    n_swept = 0
    n_direct = 0
    cap = flagged.shape[0]
    if kp > 0:
        unrank(first_prefix, p, binom, comb[:kp])
    changed = 0  # the prefix agrees with the last factorised one on comb[:changed]
    rank = -1
    for prefix_rank in range(first_prefix, stop_prefix):
        if prefix_rank > first_prefix and kp > 0:
            # lexicographic successor of the prefix
            i = kp - 1
            while comb[i] == p - kp + i:
                i -= 1
            comb[i] += 1
            for j in range(i + 1, kp):
                comb[j] = comb[j - 1] + 1
            changed = min(changed, i)
        first_last = comb[kp - 1] + 1 if kp > 0 else 0
        if first_last >= p:
            continue
        if rank < 0:
            # later prefixes continue the lexicographic order of the subsets
            comb[kp] = first_last
            rank = rank_of(comb, kp + 1, p, k, binom)
        base = 0
        both = 0
        for j in range(kp):
            in_prefix[comb[j]] = True
            base += cheaper[comb[j]]
            both += hasneg[comb[j]]
        signed_volume = prefix_frame(U, comb, kp, changed, work, refl, beta, alpha, basis)
        changed = kp
        # Reflect the plane when the volume is negative, so that every D(T, g) has the
        # sign of the cross product z_l x z_g; |D| > delta iff |cross| > threshold.
        flip = -1.0 if signed_volume < 0.0 else 1.0
        threshold = delta / abs(signed_volume) if signed_volume != 0.0 else np.inf
        q, total_rows, total_rank = _project_outside(planes, prefix_ws, flip)
        swept = False
        n_sorted = 0
        n_short = 0
        if p - first_last >= sweep_min and q >= sweep_min:
            swept = True
            n_sorted, n_short = sweep_setup(q, zx, zy, npos_q, nneg_q, hasneg_q, threshold,
                                            radius_min, sweep)
            n_swept += 1
        else:
            n_direct += 1
        for li in range(first_last, p):
            jl = local[li]
            rows_out = total_rows - npos[li] - nneg[li]
            rank_out = total_rank - 1 - hasneg[li]
            if swept and not uncertain[jl]:
                count_pos, rank_pos, small = _left_of_swept(jl, n_sorted, n_short, threshold,
                                                            prefix_ws, sweep)
            else:
                count_pos, rank_pos, small = _left_of_direct(jl, q, threshold, prefix_ws)
            if small > 0:
                if n_flagged < cap:
                    flagged[n_flagged] = rank
                n_flagged += 1
            else:
                count_neg = rows_out - count_pos
                rank_neg = rank_out - rank_pos
                extra = base + cheaper[li]
                lift = both + hasneg[li]
                count_pos += extra
                count_neg += extra
                rank_pos = min(n, rank_pos + lift)
                rank_neg = min(n, rank_neg + lift)
                if count_pos < best_count:
                    best_count = count_pos
                    best_count_index = 2 * rank
                if count_neg < best_count:
                    best_count = count_neg
                    best_count_index = 2 * rank + 1
                if rank_pos < best_rank:
                    best_rank = rank_pos
                    best_rank_index = 2 * rank
                if rank_neg < best_rank:
                    best_rank = rank_neg
                    best_rank_index = 2 * rank + 1
            rank += 1
            n_subsets += 1
        for j in range(kp):
            in_prefix[comb[j]] = False
    result[BEST_COUNT] = best_count
    result[BEST_COUNT_INDEX] = best_count_index
    result[BEST_RANK] = best_rank
    result[BEST_RANK_INDEX] = best_rank_index
    result[N_FLAGGED] = n_flagged
    result[N_SUBSETS] = n_subsets
    result[N_SWEPT] = n_swept
    result[N_DIRECT] = n_direct
