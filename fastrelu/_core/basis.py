"""Most-correlated-basis selection: the Numba primitives shared by MCBE
(:mod:`fastrelu._bias.kernels`), the pointwise checks (:mod:`fastrelu._injectivity.kernels`)
and reconstruction (:mod:`fastrelu._reconstruct.kernels`).

For each sample ``x`` the rows of ``W`` are scanned by decreasing normalised correlation
``<x, w_i> / |w_i|`` (ties: smaller index first); a row is kept when its unit direction
is farther than ``rank_tol`` from the span of the kept ones (incremental Cholesky of the
Gram matrix of the unit rows while the distances are clear of ``rank_tol`` by more than
rounding, or once refined from the rows themselves; beyond, the rows' residuals against
an orthonormal basis of the kept ones),
until ``n`` are kept. See THEORY §3.

Only the rows needed are ordered: a threshold (adapted from sample to sample) picks a
little more than ``n`` candidates, which are ranked. The common case is settled by a
Cholesky factorisation of the Gram matrix of the first ``n`` candidates in scan order:
its pivots are the squared distances the greedy scan compares with ``rank_tol^2`` (of
each unit row to the span of the rows before it), so when all of them exceed it by more
than rounding can move them (``PIVOT_MARGIN``), the greedy keeps the first ``n``
candidates. In :func:`fastrelu._bias.kernels.mcbe_tile` and
:func:`fastrelu._injectivity.kernels.pointwise_tile` the factorisations of
``SPANS_LANES`` samples run at once in SIMD lanes (the C kernel ``fr_spans``);
:func:`certified_prefix` is the one-sample form (LAPACK ``dpotrf``) used at large ``n``
and by :func:`basis_of_active` for reconstruction. Otherwise (a
dependent row, a pivot close to the threshold, or too few candidates) the incremental
scan :func:`select_basis`, the definition, decides, going below the threshold when it
must; after the one-sample certificate it goes on from the first row not certified
(:func:`select_basis_from`), with the factor of the rows before it. Nothing of size ``N x m`` is stored: one ``(tile, m)`` product at a time.
"""

from typing import NamedTuple

import llvmlite.binding as llvm
import numpy as np
from numba import types
from numba.np.linalg import _LAPACK, ensure_lapack
from scipy.linalg import cython_blas, cython_lapack

from fastrelu._core import _frame
from fastrelu._core.jit import REDUCTION_FASTMATH, kernel
from fastrelu._core.memory import l2_cache_bytes

# Numba's own binding of LAPACK's ?potrf (SciPy's cython_lapack underneath), resolved by
# symbol name at load time, so the kernels that call it stay cacheable.
ensure_lapack()
_potrf = _LAPACK().numba_xxpotrf(types.float64)
_KIND_DOUBLE = ord("d")
_UPPER = ord("U")


def _cython_address(module, name):
    """The address of routine ``name`` as SciPy's ``cython_blas`` or ``cython_lapack``
    (``module``) exports it."""
    import ctypes

    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


# BLAS dsyrk (Fortran calling convention: every argument by address), by symbol name as
# above: the Gram matrix of gathered rows in n^3 / 2 multiply-adds, half a GEMM's.
llvm.add_symbol("fastrelu_dsyrk", _cython_address(cython_blas, "dsyrk"))
_dsyrk = types.ExternalFunction("fastrelu_dsyrk", types.void(*([types.voidptr] * 10)))


# LAPACK dtrtri (the inverse of a triangular matrix, blocked: BLAS-3), the same way.
llvm.add_symbol("fastrelu_dtrtri", _cython_address(cython_lapack, "dtrtri"))
_dtrtri = types.ExternalFunction("fastrelu_dtrtri", types.void(*([types.voidptr] * 6)))
# The lane-parallel certificate of the C extension (fastrelu/_core/_spans.h), called by
# its symbol name so that the kernels that call it stay cacheable; SPANS_LANES samples
# at once on this CPU (4 with AVX2 and FMA).
_ADDRESSES, SPANS_LANES = _frame.spans_kernel()
for _name, _address in _ADDRESSES.items():
    llvm.add_symbol("fastrelu_" + _name[3:], _address)
_spans = types.ExternalFunction(
    "fastrelu_spans", types.intp(types.CPointer(types.float64), types.intp, types.float64,
                                 types.float64, types.intp))
# (gram, ld, order (int64), ranked (bool), n, G, tol2, margin, lanes)
_spans_gram = types.ExternalFunction(
    "fastrelu_spans_gram", types.intp(types.CPointer(types.float64), types.intp, types.voidptr,
                                      types.voidptr, types.intp, types.CPointer(types.float64),
                                      types.float64, types.float64, types.intp))


class Rows(NamedTuple):
    """The unit rows as the basis kernels read them (from
    :class:`fastrelu._core.rows.RowGeometry`)."""

    #: (m, n) unit rows (zero for a zero row, which never counts as independent).
    unit_rows: np.ndarray
    #: (m, m) their Gram matrix when ``use_gram``, else a (1, 1) placeholder.
    gram: np.ndarray
    #: Whether ``gram`` is stored (else inner products come from ``unit_rows``).
    use_gram: bool
    #: The squared rank tolerance: a unit row this close to the span of the kept ones
    #: is dependent.
    rank_tol2: float


class Candidates(NamedTuple):
    """One thread's candidate rows of the samples it ranks."""

    #: (lanes, m) or (m,): every row's normalised correlation with the sample.
    keys: np.ndarray
    #: (m,) int64 or (lanes, m): the rows that may enter, by increasing index.
    index: np.ndarray
    #: (m,): their keys.
    index_keys: np.ndarray


class Scan(NamedTuple):
    """One thread's scratch of the incremental scan (:func:`select_basis`) and of the
    one-sample certificate (:func:`certified_prefix`)."""

    #: (m,) int64: rows in scan order.
    order: np.ndarray
    #: (m,): their keys.
    order_keys: np.ndarray
    #: (n,) int64: the basis found, in scan order.
    kept: np.ndarray
    #: (n, n): Cholesky factor of the Gram matrix of the kept unit rows.
    chol: np.ndarray
    #: (n,): the inverse of its diagonal.
    inv_diag: np.ndarray
    #: (n,): one triangular solve.
    lvec: np.ndarray
    #: (n, n): gathered unit rows when the Gram matrix is not stored.
    rows_buf: np.ndarray
    #: (n, dim): an orthonormal basis of the kept unit rows' span, formed when a
    #: squared distance falls within rounding of ``rank_tol2`` (:func:`select_basis_from`).
    ortho: np.ndarray
    #: (dim,): one residual.
    resid: np.ndarray
    #: (n + 2,): the condition estimate (:func:`ice_step`).
    ice: np.ndarray
    #: (2, n): a row's coefficients in the kept rows and its residual's projection
    #: (:func:`refined_distance2`).
    coef: np.ndarray


class Lanes(NamedTuple):
    """One thread's scratch of the lane-parallel certificate (:func:`certify_lanes`)."""

    #: (lanes, n) int64: the first ``n`` candidates of each lane in scan order.
    order_l: np.ndarray
    #: (n, stride, lanes): their Gram matrices, one per lane (rows ``stride >= n`` apart).
    G: np.ndarray
    #: (n, n): one Gram matrix computed from gathered rows.
    small: np.ndarray


def scan_scratch(m, n):
    """Fresh :class:`Scan` buffers for ``m`` rows in dimension ``n``: a basis holds at
    most ``k = min(m, n)`` rows, so the factor and the kept rows are ``k``-sized (for a
    layer with fewer neurons than inputs, ``m x m`` instead of ``n x n``; the scan then
    stops at ``k`` rows, which is where it stopped anyway)."""
    k = min(m, n)
    return Scan(order=np.empty(m, dtype=np.int64), order_keys=np.empty(m),
                kept=np.empty(k, dtype=np.int64), chol=np.zeros((k, k)), inv_diag=np.empty(k),
                lvec=np.empty(k), rows_buf=np.empty((k, k)), ortho=np.empty((k, n)),
                resid=np.empty(n), ice=ice_scratch(k), coef=np.empty((2, k)))


def lanes_scratch(n, lanes=None):
    """Fresh :class:`Lanes` buffers for ``lanes`` samples at once (default ``SPANS_LANES``).
    ``G`` is ``(n, stride, lanes)`` with the kernel's row stride (``_frame.spans_stride``:
    odd, so that its column walks spread over the cache sets); entries past column ``n``
    are never read."""
    lanes = SPANS_LANES if lanes is None else lanes
    return Lanes(order_l=np.zeros((lanes, n), dtype=np.int64),
                 G=np.empty((n, _frame.spans_stride(n), lanes)),
                 small=np.empty((n, n)))


#: The first ``n`` candidates of ``SPANS_LANES`` samples are certified at once in SIMD
#: lanes while the lanes' ``SPANS_LANES x n x n`` Gram matrices take less than this
#: multiple of the core's L2 cache; beyond, one sample at a time by LAPACK's blocked
#: Cholesky, whose working set is one ``n x n`` matrix, and the scan after a certificate
#: that stops early goes on with its factor. The choice changes a basis only where a
#: row's squared distance lies within rounding of ``rank_tol^2`` (the two factorisations
#: round differently); MCBE decides it once per run and records it with its checkpoints.
#: Measured crossover (AMD EPYC Zen 4, L2 of 1 MiB, 4 lanes, rows 4 KiB + 32 bytes apart:
#: ``_frame.spans_stride``): at m = 4 n the two paths nearly tie at n = 256 (2 MiB of
#: lanes; one by one 7% faster) and the lanes lose at 288; at m = 10 n they win up to 256
#: and lose at 320 (docs/performance.md, "The lanes' stride"). The rule sends n = 256 one
#: by one there. Other machines (2 lanes without AVX2, other L2 sizes) are not measured:
#: the rule scales with their L2 and lanes.
LANES_L2_SHARE = 2.0
#: Override of the rule above: certify one by one above this ``n`` (None: by cache).
LANES_MAX_N = None


def certify_one_by_one(n):
    """Does dimension ``n`` take the one-sample (LAPACK) certificate instead of the
    lanes?"""
    if LANES_MAX_N is not None:
        return n > LANES_MAX_N
    return SPANS_LANES * n * n * 8 >= LANES_L2_SHARE * l2_cache_bytes()


EPS = float(np.finfo(np.float64).eps)
#: A pivot d_j (the squared distance of a unit row to the span of the rows before it)
#: counts as clear of rank_tol^2 only above rank_tol^2 + PIVOT_MARGIN n^2 eps |v|^2,
#: where v = (-c, 1) and c are the row's coefficients in the rows before it (the
#: solution of their Gram system): Cholesky's computed factor is the exact one of
#: G + E with |E| <= about n^2 eps for unit rows, and the pivot moves by v^T E v to
#: first order. Closer pivots are left to the residuals against an orthonormal basis.
#: |v|^2 <= 1 + 1/lambda (lambda the smallest eigenvalue of the rows' Gram matrix), so
#: the test first tries the cheaper 2 / min(1, lambda) with an estimate of lambda by
#: incremental condition estimation (ice_step: an estimate from above, in practice
#: within a small factor, so this first test is a heuristic and the next two are the
#: bounds), which is far larger than |v|^2 for
#: most rows once n is in the hundreds, and only then computes |v|^2 itself (the
#: scan: one triangular solve; the one-sample certificate: LAPACK dtrtri of the factor
#: once, whose rows give |v_j|^2 = d_j |row j of L^-1|^2). The lane-parallel
#: certificate (fr_spans) uses 1 / the smallest earlier pivot for 1 / lambda, which
#: can be far too small (rows like Kahan's triangular matrix): THEORY §3.1.
PIVOT_MARGIN = 64.0
#: Pivots of one sample whose |v_j|^2 the one-sample certificate computes by a triangular
#: solve each before it inverts the factor once (dtrtri) for the rest.
SOLVED_PIVOTS = 8
#: The scan refines a distance from the rows (refined_distance2) while the Gram
#: matrix's error bound PIVOT_MARGIN n^2 eps |v|^2 is below this (the correction is then
#: small beside the distance); beyond, the kept rows are orthonormalised.
REFINE_LIMIT = 1e-2


@kernel
def pivot_margin(n):
    """``PIVOT_MARGIN n^2 eps``: see ``PIVOT_MARGIN`` (the cheap test uses twice this
    over the estimate of lambda)."""
    return PIVOT_MARGIN * n * n * EPS
@kernel
def cholesky_lower(G, n):
    """Cholesky factor ``L`` (``G = L L^T``) of the leading ``n x n`` block of the
    C-ordered ``G``, in place in its lower triangle; returns LAPACK's ``info`` (``> 0``:
    the leading minor of that order is not positive definite)."""
    # C order lower = Fortran order upper: dpotrf("U") on the same memory.
    return _potrf(_KIND_DOUBLE, _UPPER, n, G.ctypes, G.shape[1])


@kernel
def gram_lower(B, n, G):
    """The lower triangle of ``G[:n, :n] = B[:n] B[:n]^T`` (C-ordered ``B`` and ``G``, the
    rows of ``B`` of length ``B.shape[1]``) by one BLAS ``dsyrk``."""
    # Fortran reads the C-ordered B as B^T and G as G^T: C = A^T A with A = B^T ("T"),
    # and the C-order lower triangle is Fortran's upper ("U")
    ints = np.empty(4, dtype=np.int32)
    ints[0], ints[1], ints[2], ints[3] = n, B.shape[1], B.shape[1], G.shape[1]
    scalars = np.array([1.0, 0.0])
    chars = np.array([_UPPER, ord("T")], dtype=np.uint8)
    _dsyrk(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
           scalars[0:].ctypes, B.ctypes, ints[2:].ctypes, scalars[1:].ctypes, G.ctypes,
           ints[3:].ctypes)


@kernel
def collect_candidates(keys, rows, thresh, cand, cand_keys):
    """Rows with ``keys >= thresh`` into ``cand`` (by increasing index); returns how many."""
    size = 0
    for idx in range(rows.shape[0]):
        i = rows[idx]
        k = keys[i]
        cand[size] = i
        cand_keys[size] = k
        size += k >= thresh  # branch-free: the comparison is unpredictable
    return size


@kernel
def rank_first(cand, cand_keys, size, n, order, order_keys):
    """Write the ``n`` first of ``cand[:size]`` in scan order (decreasing key, ties by
    smaller index; ``cand`` is by increasing index) into ``order[:n]``.

    Insertion into a list bounded at ``n``: a candidate that cannot enter costs one
    comparison, so long candidate lists stay cheap.
    """
    count = 0
    for p in range(size):
        k = cand_keys[p]
        if count == n:
            if not k > order_keys[n - 1]:  # a later index loses ties
                continue
            pos = n - 1
        else:
            pos = count
            count += 1
        while pos > 0 and order_keys[pos - 1] < k:  # equal keys keep index order
            order[pos] = order[pos - 1]
            order_keys[pos] = order_keys[pos - 1]
            pos -= 1
        order[pos] = cand[p]
        order_keys[pos] = k


@kernel
def ice_step(ice, count, row, gamma):
    """One step of incremental condition estimation (C. Bischof, *Incremental condition
    estimation*, SIAM J. Matrix Anal. Appl. 11, 1990) for a triangular factor ``R``
    growing by a column ``(row[:count], gamma)`` (a new row of the lower factor ``L``);
    returns the new estimate of ``sigma_min(R)^2``, the smallest eigenvalue of the Gram
    matrix ``L L^T``: an upper bound on it, in practice within a small factor.

    ``ice`` (:func:`ice_scratch`) holds the estimate's unit vector as ``ice[1]
    ice[2:2 + count]`` (a scale and the entries, so that a step costs one dot product)
    and the estimate ``ice[0]``; the step minimises ``|x^T R|`` over ``x = (s x_old, c)``,
    the smallest eigenvalue of ``[[d2 + alpha^2, alpha gamma], [alpha gamma, gamma^2]]``
    with ``alpha = x_old . row``."""
    g2 = gamma * gamma
    if count == 0:
        ice[1] = 1.0
        ice[2] = 1.0
        ice[0] = g2
        return g2
    scale = ice[1]
    alpha = scale * _ice_dot(ice, row, count)
    d2 = ice[0]
    a = d2 + alpha * alpha
    b = alpha * gamma
    half = 0.5 * (a - g2)
    top = 0.5 * (a + g2) + np.sqrt(half * half + b * b)
    small = d2 * g2 / top if top > 0 else 0.0  # det / largest: no cancellation
    # the eigenvector of the smallest eigenvalue, from the better conditioned row
    s1, c1 = b, small - a
    s2, c2 = small - g2, b
    if s1 * s1 + c1 * c1 >= s2 * s2 + c2 * c2:
        sv, cv = s1, c1
    else:
        sv, cv = s2, c2
    norm = np.sqrt(sv * sv + cv * cv)
    if norm == 0.0:
        sv, cv = 1.0, 0.0
    else:
        sv, cv = sv / norm, cv / norm
    scale *= sv
    if abs(scale) < 1e-150:  # fold the scale into the entries before it underflows
        for p in range(count):
            ice[2 + p] *= scale
        scale = 1.0 if sv != 0.0 else 0.0
        if scale == 0.0:
            for p in range(count):
                ice[2 + p] = 0.0
            scale = 1.0
    ice[1] = scale
    ice[2 + count] = cv / scale
    ice[0] = small
    return small


@kernel(fastmath=REDUCTION_FASTMATH)
def _ice_dot(ice, row, count):
    total = 0.0
    for p in range(count):
        total += ice[2 + p] * row[p]
    return total


def ice_scratch(k):
    """Scratch of :func:`ice_step` for factors of up to ``k`` rows."""
    return np.empty(k + 2)


@kernel
def certified_prefix(order, n, basis, G, rows_buf, ice):
    """How many of the unit rows ``order[:n]``, from the first, are each certainly
    farther than ``sqrt(rank_tol2)`` from the span of the rows before them (``n``: all
    of them)? One Cholesky factorisation (LAPACK ``dpotrf``) of their Gram matrix in
    ``G``, whose leading ``j x j`` block then holds the factor of the first ``j`` rows'
    Gram matrix (``basis``: :class:`Rows`; ``rows_buf`` (n, n) scratch for the rows when
    the Gram matrix is not stored; ``ice`` (n,) scratch of the condition estimate)."""
    unit_rows, gram, use_gram = basis.unit_rows, basis.gram, basis.use_gram
    rank_tol2 = basis.rank_tol2
    if use_gram:
        # every entry of G (the lower triangle is what the factorisation reads), each
        # row gathered by increasing column of the stored Gram matrix: a pass through
        # that row in memory order rather than n random reads
        by_column = np.argsort(order[:n])
        for j in range(n):
            source = gram[order[j]]
            target = G[j]
            for t in range(n):
                k = by_column[t]
                target[k] = source[order[k]]
    else:
        # G = B B^T for the gathered unit rows B (dsyrk, the lower triangle)
        for j in range(n):
            a = order[j]
            for p in range(n):
                rows_buf[j, p] = unit_rows[a, p]
        gram_lower(rows_buf, n, G)
    info = cholesky_lower(G, n)
    # info > 0: the leading minor of order info is not positive definite, and only the
    # first info - 1 columns of the factor are complete
    size = n if info == 0 else max(info - 1, 0)
    # Only pivots clear of the threshold count (PIVOT_MARGIN): this factorisation and the
    # scan of select_basis compute each pivot (a squared distance of a unit row to a
    # span) from the same Gram entries in another order. Beyond the margin the scan keeps
    # these rows too; closer cases go to the scan, which is the definition.
    margin = pivot_margin(n)
    low = 1.0  # estimate of lambda_min of the Gram matrix of the rows before (ice_step)
    solved = 0  # pivots tested by |v_j|^2 one at a time
    inverted = False
    for j in range(size):
        pivot = G[j, j] * G[j, j]
        if not pivot > rank_tol2 + 2.0 * margin / low:
            # not clear by the bound through lambda: by |v_j|^2 itself, from one
            # triangular solve (O(j^2)) for the first few such pivots, then from the rows
            # of L^-1 (one dtrtri, BLAS-3, for all the pivots left; rows_buf is free)
            if solved < SOLVED_PIVOTS:
                v2 = 1.0 + coefficients_norm2(G, G[j], j, rows_buf[size - 1])
                solved += 1
            else:
                if not inverted:
                    invert_lower(G, size, rows_buf)
                    inverted = True
                v2 = pivot * _norm2(rows_buf[j], j + 1)
            if not pivot > rank_tol2 + margin * v2:
                return j
        low = min(low, ice_step(ice, j, G[j], G[j, j]))
    return size


@kernel
def invert_lower(G, size, M):
    """``M[:size, :size]`` (lower triangle) = the inverse of the lower triangular
    ``G[:size, :size]`` (its lower triangle), by LAPACK ``dtrtri``."""
    for j in range(size):
        for p in range(j + 1):
            M[j, p] = G[j, p]
    # C order lower = Fortran order upper, as for cholesky_lower
    ints = np.empty(3, dtype=np.int32)
    ints[0], ints[1], ints[2] = size, M.shape[1], 0
    chars = np.array([_UPPER, ord("N")], dtype=np.uint8)
    _dtrtri(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, M.ctypes, ints[1:].ctypes,
            ints[2:].ctypes)


@kernel(fastmath=REDUCTION_FASTMATH)
def _norm2(a, length):
    total = 0.0
    for p in range(length):
        total += a[p] * a[p]
    return total


@kernel
def coefficients_norm2(chol, lvec, count, c):
    """``|c|^2`` for ``c = L^-T lvec`` (``L = chol[:count, :count]``, lower), left in
    ``c``: the coefficients of a row in the kept rows when ``L lvec = g``."""
    for p in range(count):
        c[p] = lvec[p]
    for j in range(count - 1, -1, -1):  # L^T c = lvec, sweeping L's rows (contiguous)
        c[j] /= chol[j, j]
        cj = c[j]
        row = chol[j]
        for p in range(j):
            c[p] -= row[p] * cj
    return _norm2(c, count)


@kernel
def refined_distance2(u, unit_rows, kept, count, chol, coef, resid, dim):
    """``(lower, estimate)``: the squared distance of the unit row ``u`` to the span of
    the kept unit rows by one step of iterative refinement of the Gram solution, with
    a lower bound on it.

    With ``c = coef[0, :count]`` (:func:`coefficients_norm2`) the residual ``r = u -
    sum_j c_j u_j`` is formed from the rows themselves (``resid``); its part in the span
    is ``L^-1 (B r)`` (``coef[1]``), whose squared norm ``p2`` is subtracted. The
    distance is then accurate to the rounding ``e <= (dim + count) eps (1 + |c|_1)`` of
    the residual, where the Gram matrix's own is about ``n^2 eps |v|^2`` (``PIVOT_MARGIN``):
    ``lower = |r|^2 - 2 p2 - 2 |r| e' - e'^2`` with ``e' = PIVOT_MARGIN e``, which also
    leaves all of ``p2`` as the error of its own solve: valid while the Gram solve is
    accurate to well within a factor 2, which the caller ensures by refining only while
    its first-order error bound ``PIVOT_MARGIN n^2 eps |v|^2`` is below
    ``REFINE_LIMIT``."""
    c, h = coef[0], coef[1]
    for p in range(dim):
        resid[p] = u[p]
    c1 = 0.0
    for j in range(count):
        cj = c[j]
        c1 += abs(cj)
        row = unit_rows[kept[j]]
        for p in range(dim):
            resid[p] -= cj * row[p]
    r2 = dot(resid, resid, dim)
    for j in range(count):  # h = L^-1 (B r)
        acc = dot(unit_rows[kept[j]], resid, dim)
        for p in range(j):
            acc -= chol[j, p] * h[p]
        h[j] = acc / chol[j, j]
    p2 = _norm2(h, count)
    e = PIVOT_MARGIN * (dim + count) * EPS * (1.0 + c1)
    return r2 - 2.0 * p2 - 2.0 * np.sqrt(r2) * e - e * e, r2 - p2


@kernel(fastmath=REDUCTION_FASTMATH)
def dot(a, b, length):
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


@kernel
def select_basis(keys, thresh, rows, basis, scan, stats):
    """Most correlated basis of one sample; returns the number of kept rows
    (:func:`select_basis_from` with nothing known in advance)."""
    return select_basis_from(keys, thresh, rows, basis, scan, stats, 0)


@kernel(fastmath=REDUCTION_FASTMATH)
def select_basis_from(keys, thresh, rows, basis, scan, stats, start):
    """Most correlated basis of one sample; returns the number of kept rows.

    ``keys[i]`` is the sample's normalised correlation with row ``i``; ``rows`` lists the
    rows that may enter a basis (repeated directions removed); rows with
    ``keys >= thresh`` are tried first. ``basis`` (:class:`Rows`): the Gram matrix of
    the unit rows (``use_gram``) or the unit rows whose inner products are computed.
    ``scan`` (:class:`Scan`): scratch; on return ``scan.kept[:count]`` holds the basis
    in scan order. ``stats[2]`` is set to the number of first candidates, and
    ``stats[1]`` is increased when the other rows were needed.

    ``start``: the first ``start`` rows in scan order are known to be kept
    (:func:`certified_prefix`), and ``scan.chol[:start, :start]`` holds the Cholesky
    factor of their Gram matrix; the scan goes on from there with that factor.

    Each distance is first computed from the Gram matrix (its Cholesky factor); a row
    whose squared distance exceeds ``rank_tol2`` by more than rounding can move it
    (``PIVOT_MARGIN``: the bound through the condition estimate, else through the row's
    coefficients ``|v|^2``), or whose distance refined from the rows themselves
    (:func:`refined_distance2`) has a lower bound above it, is kept on that evidence.
    At the first row that none of these settles (a dependent row, or a close call),
    the kept rows are orthonormalised and from then on
    every distance is the norm of the row's residual after projecting out that basis
    twice: accurate to rounding, where the Gram matrix's is accurate only to about
    ``eps cond`` of the kept rows. The callers run the certificate for every sample with
    at least ``n`` candidate rows, so a close call is decided the same way for a given
    sample whatever else was computed before it.
    """
    unit_rows, gram, use_gram = basis.unit_rows, basis.gram, basis.use_gram
    rank_tol2 = basis.rank_tol2
    order, order_keys, kept = scan.order, scan.order_keys, scan.kept
    chol, inv_diag, lvec = scan.chol, scan.inv_diag, scan.lvec
    n = kept.shape[0]
    dim = unit_rows.shape[1]
    margin = pivot_margin(n)
    size = _collect_sorted(keys, rows, thresh, True, order, order_keys)
    stats[2] = size
    refilled = size == rows.shape[0]
    ice = scan.ice
    # low: an estimate of lambda_min of the kept rows' Gram matrix (incremental condition
    # estimation, ice_step), over which the rounding margin grows (PIVOT_MARGIN)
    low = 1.0
    for j in range(start):
        kept[j] = order[j]
        inv_diag[j] = 1.0 / chol[j, j]
        low = min(low, ice_step(ice, j, chol[j], chol[j, j]))
    accurate = False  # the distances come from an orthonormal basis of the kept rows
    pos = start
    count = start
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
        if not accurate:
            # Solve L l = g with g_j = <u_i, u_kept_j> (L: Cholesky factor of the Gram
            # matrix of the kept unit rows); the squared distance of u_i to their span
            # is then <u_i, u_i> - |l|^2.
            for j in range(count):
                if use_gram:
                    acc = gram[i, kept[j]]
                else:
                    acc = dot(unit_rows[i], unit_rows[kept[j]], dim)
                for p in range(j):
                    acc -= chol[j, p] * lvec[p]
                lvec[j] = acc * inv_diag[j]
            dist2 = gram[i, i] if use_gram else dot(unit_rows[i], unit_rows[i], dim)
            for p in range(count):
                dist2 -= lvec[p] * lvec[p]
            # clear of rounding (PIVOT_MARGIN) by the bound through lambda, by |v|^2, or
            # after one step of refinement from the rows themselves: the row is kept
            clear = dist2 > rank_tol2 + 2.0 * margin / low
            if not clear and dist2 > rank_tol2:
                v2 = 1.0 + coefficients_norm2(chol, lvec, count, scan.coef[0])
                clear = dist2 > rank_tol2 + margin * v2
                if not clear and margin * v2 < REFINE_LIMIT:
                    lower = refined_distance2(unit_rows[i], unit_rows, kept, count, chol,
                                              scan.coef, scan.resid, dim)[0]
                    # the factor keeps the Gram matrix's own pivot (it stays the computed
                    # factor of G + E that the later rows' margins assume)
                    clear = lower > rank_tol2
            if clear:
                for j in range(count):
                    chol[count, j] = lvec[j]
                diag = np.sqrt(dist2)
                chol[count, count] = diag
                inv_diag[count] = 1.0 / diag
                kept[count] = i
                low = min(low, ice_step(ice, count, lvec, diag))
                count += 1
                continue
            # Within rounding of rank_tol2 (a dependent row, or a close call): the
            # Gram matrix's Cholesky computes a distance below 1/sqrt(cond) with an
            # error of about eps cond, so from here on the distances are those of the
            # rows themselves to an orthonormal basis of the kept ones.
            _orthonormalise(unit_rows, kept, count, scan.ortho, scan.resid, dim)
            accurate = True
        dist2 = _residual(unit_rows[i], scan.ortho, count, scan.resid, dim)
        if dist2 > rank_tol2:
            scale = 1.0 / np.sqrt(dist2)
            for p in range(dim):
                scan.ortho[count, p] = scan.resid[p] * scale
            kept[count] = i
            count += 1
    return count


@kernel(fastmath=REDUCTION_FASTMATH)
def _residual(u, ortho, count, resid, dim):
    """``|r|^2`` for the residual ``r`` (left in ``resid``) of ``u`` after projecting out
    the first ``count`` rows of the orthonormal ``ortho``, projected twice (classical
    Gram–Schmidt with reorthogonalisation: accurate to rounding whatever the angles)."""
    for p in range(dim):
        resid[p] = u[p]
    for _ in range(2):
        for j in range(count):
            coef = dot(ortho[j], resid, dim)
            for p in range(dim):
                resid[p] -= coef * ortho[j, p]
    return dot(resid, resid, dim)


@kernel
def _orthonormalise(unit_rows, kept, count, ortho, resid, dim):
    """The first ``count`` rows of ``ortho``: an orthonormal basis of the kept unit rows'
    span, row by row in scan order."""
    for j in range(count):
        norm2 = _residual(unit_rows[kept[j]], ortho, j, resid, dim)
        scale = 1.0 / np.sqrt(norm2) if norm2 > 0 else 0.0
        for p in range(dim):
            ortho[j, p] = resid[p] * scale


@kernel
def _gather_lanes(order_l, lane_ok, n, unit_rows, G, rows_buf, small):
    """The Gram matrices of the unit rows ``order_l[li, :n]``, computed from the rows (no
    stored Gram matrix; with one, ``fr_spans_gram`` gathers them), into the lanes of
    ``G`` (``(n, stride, lanes)``, upper triangle) where ``lane_ok[li]``; the identity
    elsewhere."""
    lanes = G.shape[2]
    for li in range(lanes):
        if not lane_ok[li]:
            for j in range(n):
                for k in range(j, n):
                    G[j, k, li] = 1.0 if j == k else 0.0
            continue
        for j in range(n):
            a = order_l[li, j]
            for p in range(n):
                rows_buf[j, p] = unit_rows[a, p]
        np.dot(rows_buf, rows_buf.T, small)
        for j in range(n):
            for k in range(j, n):
                G[j, k, li] = small[j, k]


@kernel
def rank_into_lane(cand, cand_keys, size, n, order, order_keys, order_l, lane):
    """The first ``n`` of the candidates in scan order (see :func:`rank_first`) into
    ``order_l[lane]``."""
    rank_first(cand, cand_keys, size, n, order, order_keys)
    for j in range(n):
        order_l[lane, j] = order[j]


@kernel
def certify_lanes(lanes, ranked, n, basis, rows_buf):
    """Bit ``l`` set where ``ranked[l]`` and the rows ``lanes.order_l[l, :n]`` certainly
    enter the basis in this order (pivots clear of ``rank_tol2``, ``PIVOT_MARGIN``): one
    lane-parallel Cholesky factorisation of their Gram matrices (``fr_spans``).
    ``lanes``: :class:`Lanes`; ``basis``: :class:`Rows`; ``rows_buf``: (n, n) scratch."""
    order_l, G, small = lanes.order_l, lanes.G, lanes.small
    unit_rows, gram, use_gram = basis.unit_rows, basis.gram, basis.use_gram
    rank_tol2 = basis.rank_tol2
    if use_gram:
        passed = _spans_gram(gram.ctypes, gram.shape[1], order_l.ctypes, ranked.ctypes, n,
                             G.ctypes, rank_tol2, pivot_margin(n), G.shape[2])
    else:
        _gather_lanes(order_l, ranked, n, unit_rows, G, rows_buf, small)
        passed = _spans(G.ctypes, n, rank_tol2, pivot_margin(n), G.shape[2])
    return max(passed, 0)  # -1: a lane count the compiled kernel does not have


@kernel
def certify_then_scan(keys, thresh, rows, cand, cand_keys, size, n, basis, scan, stats):
    """The one-sample path: most correlated basis of a sample into ``scan.kept``; returns
    its size, at most ``n``. ``cand[:size]`` (by increasing index, keys in
    ``cand_keys``) are the rows of ``rows`` with ``keys >= thresh``. When there are at
    least ``n``, the first ``n`` in scan order are certified by one Cholesky
    factorisation (:func:`certified_prefix`); the incremental scan
    (:func:`select_basis_from`) decides the rest, from the first row whose pivot is not
    certified on."""
    start = 0
    if size >= n:
        rank_first(cand, cand_keys, size, n, scan.order, scan.order_keys)
        start = certified_prefix(scan.order, n, basis, scan.chol, scan.rows_buf, scan.ice)
        if start == n:
            for j in range(n):
                scan.kept[j] = scan.order[j]
            stats[2] = size
            return n
    return select_basis_from(keys, thresh, rows, basis, scan, stats, start)


@kernel
def basis_of_active(keys, active, active_keys, size, n, basis, scan, stats):
    """Most correlated basis among the rows ``active[:size]`` (by increasing index, their
    keys in ``active_keys``; ``keys`` holds every row's key) into ``scan.kept``; returns
    its size, at most ``n`` (:func:`certify_then_scan` with every active row a
    candidate)."""
    return certify_then_scan(keys, -np.inf, active[:size], active, active_keys, size, n,
                             basis, scan, stats)
