# cython: language_level=3
"""Batched reconstruction of ReLU-layer inputs (typed Cython over BLAS/LAPACK, OpenMP).

For each sample with active rows ``I`` (``D[s] != 0``) the frame operator of the active
subframe is ``S_I = W_I^T W_I`` and the right-hand side ``b = W_I^T (y_I + alpha_I)``.
``S_I`` is summed in register tiles (``_lanes.h``) from the gathered active rows, or, when
the inactive rows are fewer, as ``S`` minus their Gram matrix (a down-date): the work is
``min(|I|, m - |I|) n^2 / 2`` multiply-adds rather than ``m n^2 / 2``. Then

- ``dual``: ``x = S_I^{-1} b`` by Cholesky, with Hager's estimate of ``|S_I^{-1}|_1``
  (LAPACK's condition estimator) or the exact eigenvalues for the condition number.
  The factorisation, the solves and the estimate run for ``FR_LANES`` samples at once,
  one sample per SIMD lane;
- ``frame``: the exact frame bounds ``A_I, B_I`` (LAPACK ``dsyev``) and the frame
  algorithm ``x <- x + lam (b - S_I x)``, ``lam = 2 / (A_I + B_I)``, which is
  ``x + lam W_I^T (y_I + alpha_I - W_I x)`` written with ``S_I`` (``n^2`` instead of
  ``|I| n`` per step); it stops when ``|b - S_I x| <= tol |b|``;
- where ``I`` does not span: the minimum-norm least-squares solution ``S_I^+ b`` (the
  eigenvalues above NumPy's ``pinv`` threshold only), which is ``pinv(W_I) (y_I + alpha_I)``.

A sample's arithmetic involves only the layer and its own outputs, in a fixed order, so
its result is the same alone, in any batch, at any position and on any number of threads.
The down-date is used only when the inactive rows' squared norms sum to at most the
active rows' (the subtraction's rounding then stays within a small factor of the direct
sum's), and a sample found not to span gets its least-squares answer from ``S_I`` summed
directly.
Sub-batches of up to ``SUB`` samples share one set of scratch buffers.

For large ``n`` (``blocked``) the lanes' ``2 FR_LANES n^2`` doubles per thread leave the
cache: each sample is then solved alone with BLAS-3 and LAPACK -- ``S_I`` by ``dsyrk``
over the gathered rows (``ROW_BLOCK`` at a time, the same down-date rule), ``dpotrf``,
``dpotrs``, and the condition number from ``dpocon`` (LAPACK's estimator, Higham's
refinement of Hager's method) or the eigenvalues; the frame algorithm steps with
``dsymv``.
"""

import numpy as np

from cython.parallel cimport prange
from libc.float cimport DBL_EPSILON
from libc.math cimport fabs, sqrt, INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from libc.string cimport memcpy, memset

from scipy.linalg.cython_blas cimport dgemm, dsymv, dsyrk
from scipy.linalg.cython_lapack cimport (dgecon, dgesdd, dgetrf, dgetrs, dlansy, dpocon,
                                         dpotrf, dpotrs, dsyev)

cdef extern from "_lanes.h" nogil:
    enum:
        FR_LANES
        FR_ROW_ALIGN
    int fr_gather(const unsigned char *active, const double *y, const double *alpha,
                  const double *W, const double *sq, int m, int n, int stride,
                  int downdate, double *G, double *b, int *inactive, int *rows)
    Py_ssize_t fr_lane_stride(Py_ssize_t n)
    void fr_gram_upper(const double *G, int k, int stride, int n, const double *base,
                       double *S, Py_ssize_t rs, Py_ssize_t cs)
    unsigned fr_cholesky_lanes(double *U, int n)
    void fr_cholesky_solve_lanes(const double *R, double *x, int n)
    void fr_residual_lanes(const double *S, const double *x, const double *b, double *r,
                           int n)
    void fr_norm1_lanes(const double *S, double *column, int n, double *norm)
    void fr_inverse_norm1_lanes(const double *R, double *v, double *w, int n,
                                double *estimate)

cdef enum:
    # Samples per sub-batch (one set of scratch buffers), a multiple of FR_LANES.
    SUB = 32
    # Rows per dsyrk call of the blocked path (its gathered rows stay in the L2 cache
    # for n up to about 512 and the call is long enough to run at BLAS-3 speed).
    ROW_BLOCK = 128
    # Columns per dgemm call of dense_frame_operator.
    COLUMN_BLOCK = 128

cdef enum:
    MODE_DUAL = 0
    MODE_FRAME = 1
    MODE_PINV = 2


def lanes():
    """Samples per SIMD group of the dual kernels in this build (4 with AVX, 2 with SSE2,
    1 for a compiler without vector extensions)."""
    return FR_LANES


cdef inline double _norm(const double *v, int n) noexcept nogil:
    cdef double total = 0.0
    cdef int k
    for k in range(n):
        total = total + v[k] * v[k]
    return sqrt(total)


cdef void _residual(const double *S, const double *x, const double *b, double *r,
                    int n) noexcept nogil:
    """r = b - S x for the full symmetric (n, n) S (axpy over the rows of S)."""
    cdef Py_ssize_t j, k, size = n
    cdef double value
    cdef const double *row
    for k in range(size):
        r[k] = b[k]
    for j in range(size):
        row = S + j * size
        value = x[j]
        for k in range(size):
            r[k] = r[k] - row[k] * value


cdef void _residual_symv(const double *S, const double *x, const double *b, double *r,
                         int n) noexcept nogil:
    """r = b - S x by BLAS ``dsymv`` on the upper triangle of the C-ordered S."""
    cdef char uplo = b'L'
    cdef int one = 1, k
    cdef double minus = -1.0, plus = 1.0
    for k in range(n):
        r[k] = b[k]
    dsymv(&uplo, &n, &minus, <double *> S, &n, <double *> x, &one, &plus, r, &one)


cdef void _unpack_lane(const double *SL, int lane, int n, double *S) noexcept nogil:
    """The full symmetric (n, n) S of one lane from the upper triangle in lane layout
    (rows ``fr_lane_stride(n)`` apart)."""
    cdef Py_ssize_t a, c, size = n, ld = fr_lane_stride(n)
    for a in range(size):
        for c in range(a, size):
            S[a * size + c] = SL[(a * ld + c) * FR_LANES + lane]
            S[c * size + a] = S[a * size + c]


cdef double _exact_cond(const double *S, double *E, double *ev, double *work, int lwork,
                        int n) noexcept nogil:
    """Condition number of W_I, sqrt(lam_max / lam_min) of S_I (inf if not positive)."""
    cdef char jobn = b'N'
    cdef char uplo = b'U'
    cdef int info = 0, k
    for k in range(n * n):
        E[k] = S[k]
    dsyev(&jobn, &uplo, &n, E, &n, ev, work, &lwork, &info)
    return sqrt(ev[n - 1] / ev[0]) if info == 0 and ev[0] > 0.0 else INFINITY


cdef int _pinv_solve(const double *S, const double *b, double *x, double *E, double *ev,
                     double *work, int lwork, int n) noexcept nogil:
    """x = sum over eigenpairs (lam_k > n eps lam_max) of (v_k . b / lam_k) v_k: the
    minimum-norm least-squares solution (NumPy's ``pinv`` cut-off)."""
    cdef char jobz = b'V'
    cdef char uplo = b'U'
    cdef int info = 0
    cdef int j, k
    cdef double coef, threshold
    for k in range(n * n):
        E[k] = S[k]
    dsyev(&jobz, &uplo, &n, E, &n, ev, work, &lwork, &info)
    for k in range(n):
        x[k] = 0.0
    if info != 0:
        return info
    threshold = n * DBL_EPSILON * ev[n - 1]
    for j in range(n):
        if ev[j] > threshold:
            coef = 0.0
            for k in range(n):
                coef = coef + E[j * n + k] * b[k]
            coef = coef / ev[j]
            for k in range(n):
                x[k] = x[k] + coef * E[j * n + k]
    return 0


cdef struct Layer:
    const double *W       # (m, n) weights
    const double *alpha   # (m,) bias
    const double *sq      # (m,) squared row norms
    const double *full    # frame operator S (down-date base), or NULL: no down-date;
                          # padded (lanes) or the full (n, n) matrix (blocked)
    int m
    int n
    int stride            # row stride of the gathered rows (n rounded up to a tile)
    bint blocked          # one sample at a time with BLAS-3 and LAPACK (large n)


cdef int _form(const Layer *L, const unsigned char *active, const double *y, bint downdate,
               double *G, double *b, double *S, Py_ssize_t rs, Py_ssize_t cs,
               int *downdated) noexcept nogil:
    """S_I (upper triangle, at S[a * rs + c * cs]) and b of one sample; returns the number
    of active rows. ``downdate``: S minus the inactive rows' Gram matrix when that is
    cheaper and as accurate (see fr_gather); ``downdated`` tells whether it was."""
    cdef int held, count
    count = fr_gather(active, y, L.alpha, L.W, L.sq, L.m, L.n, L.stride,
                      downdate and L.full != NULL, G, b, downdated, &held)
    fr_gram_upper(G, held, L.stride, L.n, L.full if downdated[0] else NULL, S, rs, cs)
    return count


cdef void _symmetrise(double *S, int n) noexcept nogil:
    """Copy the upper triangle of the C-ordered (n, n) S to its lower triangle."""
    cdef Py_ssize_t a, c, size = n
    for a in range(size):
        for c in range(a + 1, size):
            S[c * size + a] = S[a * size + c]


cdef void _flush_rows(const double *G, int held, int n, double sign,
                      double *S) noexcept nogil:
    """S += sign G^T G for the ``held`` gathered rows of G (C order, (held, n)): BLAS
    ``dsyrk`` on the upper triangle of the C-ordered S (Fortran sees G^T and S^T)."""
    cdef char uplo = b'L'
    cdef char trans = b'N'
    cdef double one = 1.0
    if held > 0:
        dsyrk(&uplo, &trans, <int *> &n, &held, &sign, <double *> G, <int *> &n, &one, S,
              <int *> &n)


cdef int _form_blocked(const Layer *L, const unsigned char *active, const double *y,
                       bint downdate, double *G, double *b, double *S,
                       int *downdated) noexcept nogil:
    """S_I (upper triangle of the C-ordered (n, n) S) and b of one sample with BLAS-3: the active
    rows (or, for the down-date, the inactive ones) gathered ``ROW_BLOCK`` at a time and
    summed by ``dsyrk``; the down-date rule is ``fr_gather``'s. Returns the number of
    active rows."""
    cdef int m = L.m, n = L.n
    cdef int count = 0, held = 0, a, k
    cdef double on = 0.0, off = 0.0, value, sign
    cdef bint use_inactive
    cdef const double *w
    for a in range(m):
        if active[a]:
            count = count + 1
            on = on + L.sq[a]
        else:
            off = off + L.sq[a]
    use_inactive = downdate and L.full != NULL and 2 * count > m and off <= on
    downdated[0] = use_inactive
    if use_inactive:
        memcpy(S, L.full, <size_t> n * n * sizeof(double))
        sign = -1.0
    else:
        memset(S, 0, <size_t> n * n * sizeof(double))
        sign = 1.0
    for k in range(n):
        b[k] = 0.0
    for a in range(m):
        w = L.W + <Py_ssize_t> a * n
        if active[a]:
            value = y[a] + L.alpha[a]
            for k in range(n):
                b[k] = b[k] + value * w[k]
        if (active[a] != 0) != use_inactive:
            memcpy(G + <Py_ssize_t> held * n, w, n * sizeof(double))
            held = held + 1
            if held == ROW_BLOCK:
                _flush_rows(G, held, n, sign, S)
                held = 0
    _flush_rows(G, held, n, sign, S)
    return count


cdef int _form_full(const Layer *L, const unsigned char *active, const double *y,
                    bint downdate, double *G, double *b, double *S,
                    int *downdated) noexcept nogil:
    """The full symmetric (n, n) S_I and b of one sample, by the layer's path."""
    cdef int count
    if L.blocked:
        count = _form_blocked(L, active, y, downdate, G, b, S, downdated)
    else:
        count = _form(L, active, y, downdate, G, b, S, L.n, 1, downdated)
    _symmetrise(S, L.n)
    return count


cdef void _direct_full(const Layer *L, const unsigned char *active, const double *y,
                       double *G, double *b, double *S) noexcept nogil:
    """The full symmetric (n, n) S_I summed from the active rows (no down-date): the
    least-squares answers of samples that do not span are computed from it."""
    cdef int downdated
    _form_full(L, active, y, False, G, b, S, &downdated)


cdef struct Scratch:
    double *G       # (m, stride) gathered active rows; (ROW_BLOCK, n) when blocked
    double *b       # (n,)
    double *S       # (n, n) full frame operator of one sample
    double *E       # (n, n) LAPACK workspace copy
    double *ev      # (n,)
    double *r       # (n,)
    double *work    # (lwork,)
    double *SL      # (n, n, FR_LANES) frame operators in lane layout (upper triangle)
    double *UL      # (n, n, FR_LANES) their Cholesky factors
    double *XL      # (n, FR_LANES) solutions
    double *BL      # (n, FR_LANES) right-hand sides
    double *RL      # (n, FR_LANES) residuals / column sums
    double *VL      # (n, FR_LANES) Hager's vectors
    double *WL      # (n, FR_LANES)
    double *U       # (n, n) Cholesky factor of one sample (blocked path)
    double *x       # (n,) solution of one sample (blocked path)
    int *iwork      # (n,) LAPACK integer workspace (blocked path)


cdef bint _allocate(Scratch *t, const Layer *L, int lwork) noexcept nogil:
    """The scratch of one sub-batch: the lane buffers, or for the blocked path
    ``ROW_BLOCK`` gathered rows and one factor (so a thread holds about ``4 n^2``
    doubles, not ``2 FR_LANES n^2`` plus all ``m`` rows)."""
    cdef int m = L.m, n = L.n
    cdef Py_ssize_t nn = <Py_ssize_t> n * n, nl = <Py_ssize_t> n * FR_LANES
    memset(t, 0, sizeof(Scratch))
    if L.blocked:
        t.G = <double *> malloc(<Py_ssize_t> ROW_BLOCK * n * sizeof(double))
    else:
        t.G = <double *> malloc(<Py_ssize_t> m * L.stride * sizeof(double))
    t.b = <double *> malloc(n * sizeof(double))
    t.S = <double *> malloc(nn * sizeof(double))
    t.E = <double *> malloc(nn * sizeof(double))
    t.ev = <double *> malloc(n * sizeof(double))
    t.r = <double *> malloc(n * sizeof(double))
    t.work = <double *> malloc(lwork * sizeof(double))
    if L.blocked:
        t.U = <double *> malloc(nn * sizeof(double))
        t.x = <double *> malloc(n * sizeof(double))
        t.iwork = <int *> malloc(n * sizeof(int))
        return not (t.G == NULL or t.b == NULL or t.S == NULL or t.E == NULL
                    or t.ev == NULL or t.r == NULL or t.work == NULL or t.U == NULL
                    or t.x == NULL or t.iwork == NULL)
    # the lanes' matrices: n rows fr_lane_stride(n) apart (see _lanes.h)
    t.SL = <double *> malloc(<Py_ssize_t> n * fr_lane_stride(n) * FR_LANES * sizeof(double))
    t.UL = <double *> malloc(<Py_ssize_t> n * fr_lane_stride(n) * FR_LANES * sizeof(double))
    t.XL = <double *> malloc(nl * sizeof(double))
    t.BL = <double *> malloc(nl * sizeof(double))
    t.RL = <double *> malloc(nl * sizeof(double))
    t.VL = <double *> malloc(nl * sizeof(double))
    t.WL = <double *> malloc(nl * sizeof(double))
    return not (t.G == NULL or t.b == NULL or t.S == NULL or t.E == NULL or t.ev == NULL
                or t.r == NULL or t.work == NULL or t.SL == NULL or t.UL == NULL
                or t.XL == NULL or t.BL == NULL or t.RL == NULL or t.VL == NULL
                or t.WL == NULL)


cdef void _release(Scratch *t) noexcept nogil:
    free(t.U)
    free(t.x)
    free(t.iwork)
    free(t.G)
    free(t.b)
    free(t.S)
    free(t.E)
    free(t.ev)
    free(t.r)
    free(t.work)
    free(t.SL)
    free(t.UL)
    free(t.XL)
    free(t.BL)
    free(t.RL)
    free(t.VL)
    free(t.WL)


cdef void _dual_group(const Layer *L, const unsigned char *A, const double *Y, int first,
                      int count, int lwork, double max_cond, bint exact, Scratch *t,
                      double *X, unsigned char *ok, double *cond,
                      double *resid) noexcept nogil:
    """Dual solves for the ``count <= FR_LANES`` samples from ``first``, one per lane
    (unused lanes hold the identity)."""
    cdef int m = L.m, n = L.n
    cdef Py_ssize_t ld = fr_lane_stride(n), k, s
    cdef Py_ssize_t lane_entries = <Py_ssize_t> n * ld  # per lane, padding included
    cdef int rows[FR_LANES]
    cdef int downdated[FR_LANES]
    cdef double norm1[FR_LANES]
    cdef double estimate[FR_LANES]
    cdef int l, a, c
    cdef unsigned failed
    cdef double value, bnorm, rnorm
    cdef bint spans
    for l in range(FR_LANES):
        if l < count:
            s = first + l
            rows[l] = _form(L, &A[s * m], &Y[s * m], True, t.G, t.b, t.SL + l,
                            ld * FR_LANES, FR_LANES, &downdated[l])
            for k in range(n):
                t.BL[k * FR_LANES + l] = t.b[k]
        else:
            rows[l] = n
            downdated[l] = 0
            for k in range(lane_entries):
                t.SL[k * FR_LANES + l] = 0.0
            for k in range(n):
                t.SL[(k * ld + k) * FR_LANES + l] = 1.0
                t.BL[k * FR_LANES + l] = 0.0
    for k in range(lane_entries * FR_LANES):
        t.UL[k] = t.SL[k]
    failed = fr_cholesky_lanes(t.UL, n)
    for k in range(n * FR_LANES):
        t.XL[k] = t.BL[k]
    fr_cholesky_solve_lanes(t.UL, t.XL, n)
    if not exact:
        fr_norm1_lanes(t.SL, t.RL, n, norm1)
        fr_inverse_norm1_lanes(t.UL, t.VL, t.WL, n, estimate)
    for l in range(count):
        s = first + l
        if rows[l] < n or (failed >> l) & 1u:  # fewer rows than dimensions, or singular
            cond[s] = INFINITY
        elif exact:
            _unpack_lane(t.SL, l, n, t.S)
            cond[s] = _exact_cond(t.S, t.E, t.ev, t.work, lwork, n)
        else:
            cond[s] = sqrt(norm1[l] * estimate[l])
        spans = cond[s] < max_cond
        ok[s] = 1 if spans else 0
        if not spans:
            # the least-squares answer replaces the lane's solution, from S_I summed
            # over the active rows (and the residual below uses that S_I too)
            if downdated[l]:
                _direct_full(L, &A[s * m], &Y[s * m], t.G, t.b, t.S)
                for a in range(n):
                    for c in range(a, n):
                        t.SL[(a * ld + c) * FR_LANES + l] = t.S[a * n + c]
            else:
                _unpack_lane(t.SL, l, n, t.S)
            for k in range(n):
                t.b[k] = t.BL[k * FR_LANES + l]
            _pinv_solve(t.S, t.b, t.r, t.E, t.ev, t.work, lwork, n)
            for k in range(n):
                t.XL[k * FR_LANES + l] = t.r[k]
    fr_residual_lanes(t.SL, t.XL, t.BL, t.RL, n)
    for l in range(count):
        s = first + l
        bnorm = 0.0
        rnorm = 0.0
        for k in range(n):
            value = t.XL[k * FR_LANES + l]
            X[s * n + k] = value
            bnorm = bnorm + t.BL[k * FR_LANES + l] * t.BL[k * FR_LANES + l]
            rnorm = rnorm + t.RL[k * FR_LANES + l] * t.RL[k * FR_LANES + l]
        resid[s] = sqrt(rnorm) / sqrt(bnorm) if bnorm > 0.0 else sqrt(rnorm)


cdef void _dual_one(const Layer *L, const unsigned char *A, const double *Y, Py_ssize_t s,
                   int lwork, double max_cond, bint exact, Scratch *t, double *X,
                   unsigned char *ok, double *cond, double *resid) noexcept nogil:
    """Dual solve of sample ``s`` by LAPACK (the blocked path): ``dpotrf`` of S_I,
    ``dpotrs``, and ``dpocon`` (Hager's estimate of ``|S_I^{-1}|_1``, the lanes' method)
    or the eigenvalues for the condition number."""
    cdef int m = L.m, n = L.n
    cdef char uplo = b'L'
    cdef char norm = b'1'
    cdef int info = 0, nrhs = 1, rows, downdated, k
    cdef double anorm, rcond = 0.0, bnorm
    cdef double *x = &X[s * n]
    cdef bint spans
    # S_I in the upper triangle of the C-ordered S: Fortran's lower ('L') triangle
    rows = _form_blocked(L, &A[s * m], &Y[s * m], True, t.G, t.b, t.S, &downdated)
    cond[s] = INFINITY
    if rows >= n:
        memcpy(t.U, t.S, <size_t> n * n * sizeof(double))
        dpotrf(&uplo, &n, t.U, &n, &info)
        if info == 0:
            for k in range(n):
                x[k] = t.b[k]
            dpotrs(&uplo, &n, &nrhs, t.U, &n, x, &n, &info)
            if exact:
                _symmetrise(t.S, n)
                cond[s] = _exact_cond(t.S, t.E, t.ev, t.work, lwork, n)
            else:
                anorm = dlansy(&norm, &uplo, &n, t.S, &n, t.work)
                dpocon(&uplo, &n, t.U, &n, &anorm, &rcond, t.work, t.iwork, &info)
                cond[s] = sqrt(1.0 / rcond) if info == 0 and rcond > 0.0 else INFINITY
    spans = cond[s] < max_cond
    ok[s] = 1 if spans else 0
    if spans:
        _residual_symv(t.S, x, t.b, t.r, n)
    else:
        if downdated:  # the least-squares answer from S_I summed over the active rows
            _direct_full(L, &A[s * m], &Y[s * m], t.G, t.b, t.S)
        else:
            _symmetrise(t.S, n)
        _pinv_solve(t.S, t.b, x, t.E, t.ev, t.work, lwork, n)
        _residual(t.S, x, t.b, t.r, n)
    bnorm = _norm(t.b, n)
    resid[s] = _norm(t.r, n) / bnorm if bnorm > 0.0 else _norm(t.r, n)


cdef void _one_sample(const Layer *L, const unsigned char *A, const double *Y,
                      Py_ssize_t s, int lwork, double max_cond, int mode, double tol,
                      int64_t max_iter, Scratch *t, double *X, unsigned char *ok,
                      double *cond, int64_t *iters, double *resid) noexcept nogil:
    """Frame algorithm (``mode`` 1) or least squares (2) for sample ``s``."""
    cdef int m = L.m, n = L.n
    cdef int rows, k
    cdef int64_t it
    cdef double lam, bnorm, rnorm
    cdef double *x = &X[s * n]
    cdef bint spans = False
    cdef int downdated
    rows = _form_full(L, &A[s * m], &Y[s * m], mode == MODE_FRAME, t.G, t.b, t.S,
                      &downdated)
    bnorm = _norm(t.b, n)
    iters[s] = 0
    cond[s] = INFINITY
    if rows >= n and mode == MODE_FRAME:
        # the exact frame bounds of W_I (the step needs them)
        cond[s] = _exact_cond(t.S, t.E, t.ev, t.work, lwork, n)
        spans = cond[s] < max_cond
        if spans:
            lam = 2.0 / (t.ev[0] + t.ev[n - 1])
            for k in range(n):
                x[k] = 0.0
            it = 0
            while True:
                if L.blocked:  # BLAS dsymv: half the matrix read per step
                    _residual_symv(t.S, x, t.b, t.r, n)
                else:
                    _residual(t.S, x, t.b, t.r, n)
                rnorm = _norm(t.r, n)
                rnorm = rnorm / bnorm if bnorm > 0.0 else rnorm  # the residual reported
                if rnorm <= tol or it >= max_iter:
                    break
                for k in range(n):
                    x[k] = x[k] + lam * t.r[k]
                it = it + 1
            iters[s] = it
            # the residual the stopping rule measured for this x (recomputing it by another
            # summation order could put it on the other side of tol)
            resid[s] = rnorm  # compared with tol exactly as the loop compared it
            ok[s] = 1
            return
    ok[s] = 1 if spans else 0
    if not spans:
        if downdated:  # the least-squares answer from S_I summed over the active rows
            _direct_full(L, &A[s * m], &Y[s * m], t.G, t.b, t.S)
        _pinv_solve(t.S, t.b, x, t.E, t.ev, t.work, lwork, n)
    _residual(t.S, x, t.b, t.r, n)
    resid[s] = _norm(t.r, n) / bnorm if bnorm > 0.0 else _norm(t.r, n)


cdef void _sub_batch(const Layer *L, const unsigned char *A, const double *Y,
                     Py_ssize_t start, Py_ssize_t stop, double max_cond, int mode,
                     bint exact, double tol, int64_t max_iter, double *X,
                     unsigned char *ok, double *cond, int64_t *iters,
                     double *resid) noexcept nogil:
    """Reconstruct samples ``start .. stop-1``; see the module docstring."""
    cdef int lwork = 66 * L.n + 16
    cdef Py_ssize_t s
    cdef Scratch t
    if not _allocate(&t, L, lwork):
        for s in range(start, stop):
            ok[s] = 255  # out of memory: reported by the caller
    elif mode == MODE_DUAL and L.blocked:
        for s in range(start, stop):
            _dual_one(L, A, Y, s, lwork, max_cond, exact, &t, X, ok, cond, resid)
            iters[s] = 0
    elif mode == MODE_DUAL:
        s = start
        while s < stop:
            _dual_group(L, A, Y, s, <int> min(FR_LANES, stop - s), lwork, max_cond, exact,
                        &t, X, ok, cond, resid)
            s = s + FR_LANES
        for s in range(start, stop):
            iters[s] = 0
    else:
        for s in range(start, stop):
            _one_sample(L, A, Y, s, lwork, max_cond, mode, tol, max_iter, &t, X, ok, cond,
                        iters, resid)
    _release(&t)


cdef inline Py_ssize_t _sub_batch_size(Py_ssize_t N, int n_threads) noexcept nogil:
    """Samples per sub-batch for one-sample-at-a-time work: ``SUB``, or fewer so that
    every thread gets about four sub-batches (a few long samples must not all land in
    one sub-batch, on one thread). A sample's result does not depend on it."""
    return max(1, min(SUB, N // (4 * max(n_threads, 1))))


def padded_frame_operator(const double[:, ::1] W):
    """The frame operator ``S = W^T W`` of all rows as the down-date base of the kernels:
    upper triangle of an ``(n rounded up to 4, stride)`` array, zero elsewhere."""
    cdef int m = <int> W.shape[0]
    cdef int n = <int> W.shape[1]
    cdef int stride = (n + FR_ROW_ALIGN - 1) // FR_ROW_ALIGN * FR_ROW_ALIGN
    cdef int a, k
    G_array = np.zeros((max(m, 1), stride))
    full_array = np.zeros(((n + 3) // 4 * 4, stride))
    cdef double[:, ::1] G = G_array
    cdef double[:, ::1] full = full_array
    with nogil:
        for a in range(m):
            for k in range(n):
                G[a, k] = W[a, k]
        fr_gram_upper(&G[0, 0], m, stride, n, NULL, &full[0, 0], stride, 1)
    return full_array


def dense_frame_operator(const double[:, ::1] W, int n_threads):
    """The frame operator ``S = W^T W`` as a full ``(n, n)`` array: the down-date base of
    the blocked path. Column blocks of ``COLUMN_BLOCK`` by BLAS ``dgemm``, in parallel;
    each entry is one ``dgemm``'s sum over the rows, so the result does not depend on
    ``n_threads``."""
    cdef int m = <int> W.shape[0]
    cdef int n = <int> W.shape[1]
    cdef int n_blocks = (n + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    cdef int j
    S_array = np.zeros((n, n))
    cdef double[:, ::1] S = S_array
    if m == 0 or n == 0:
        return S_array
    with nogil:
        for j in prange(n_blocks, num_threads=n_threads, schedule="dynamic"):
            _column_block(&W[0, 0], m, n, j * COLUMN_BLOCK, &S[0, 0])
        _symmetrise(&S[0, 0], n)
    return S_array


cdef void _column_block(const double *W, int m, int n, int j0, double *S) noexcept nogil:
    """Rows ``j0..n-1`` of Fortran's columns ``j0..j0+COLUMN_BLOCK-1`` of ``S = W^T W``
    (the upper triangle's block row in C order)."""
    cdef char no = b'N'
    cdef char tr = b'T'
    cdef int rows = n - j0
    cdef int cols = min(COLUMN_BLOCK, n - j0)
    cdef double one = 1.0, zero = 0.0
    dgemm(&no, &tr, &rows, &cols, &m, &one, <double *> W + j0, &n, <double *> W + j0, &n,
          &zero, S + <Py_ssize_t> j0 * n + j0, &n)


def active_subframe_solve(const unsigned char[:, ::1] A, const double[:, ::1] Y,
                          const double[::1] alpha, const double[:, ::1] W,
                          const double[::1] sq, const double[:, ::1] full, bint downdate,
                          bint blocked, double max_cond, int mode, bint exact, double tol,
                          int64_t max_iter, int n_threads, double[:, ::1] X,
                          unsigned char[::1] ok, double[::1] cond, int64_t[::1] iters,
                          double[::1] resid):
    """Reconstruct every sample of a batch from its active rows (see the module doc).

    Parameters
    ----------
    A : (N, m) active rows (nonzero = active); Y : (N, m) outputs; alpha : (m,) bias;
    W : (m, n) weights; sq : (m,) their squared norms.
    full, downdate : the down-date base (``padded_frame_operator(W)``, or
        ``dense_frame_operator(W)`` for ``blocked``); with ``downdate``, a sample whose
        inactive rows are fewer and no heavier (sum of squared norms) than its active
        ones gets ``S_I = S - W_Ic^T W_Ic`` from them (dual and frame).
    blocked : one sample at a time by BLAS-3 and LAPACK (``dsyrk``, ``dpotrf``,
        ``dpotrs``, ``dpocon``) instead of the register tiles and SIMD lanes.
    max_cond : ``I`` spans when the condition number of ``W_I`` is below this.
    mode : 0 dual (Cholesky), 1 frame algorithm, 2 least squares for every sample.
    exact : exact condition numbers (eigenvalues) instead of Hager's estimate (dual).
    tol, max_iter : stopping rule of the frame algorithm.
    n_threads : OpenMP threads.
    X (N, n), ok (N,), cond (N,), iters (N,), resid (N,) : outputs, written in place;
    ``ok`` is 255 for a sub-batch that could not allocate its scratch memory.
    """
    cdef Py_ssize_t N = A.shape[0]
    cdef Py_ssize_t sub = SUB
    cdef Py_ssize_t n_sub, j
    cdef Layer L
    L.W = &W[0, 0]
    L.alpha = &alpha[0]
    L.sq = &sq[0]
    L.full = &full[0, 0] if downdate else NULL
    L.m = <int> A.shape[1]
    L.n = <int> W.shape[1]
    L.stride = (L.n + FR_ROW_ALIGN - 1) // FR_ROW_ALIGN * FR_ROW_ALIGN
    L.blocked = blocked
    if N == 0:
        return
    if blocked:
        sub = _sub_batch_size(N, n_threads)
    n_sub = (N + sub - 1) // sub
    with nogil:
        for j in prange(n_sub, num_threads=n_threads, schedule="dynamic"):
            _sub_batch(&L, &A[0, 0], &Y[0, 0], j * sub, min(N, (j + 1) * sub), max_cond,
                       mode, exact, tol, max_iter, &X[0, 0], &ok[0], &cond[0], &iters[0],
                       &resid[0])


cdef void _basis_one(const double *W, const int64_t *rows, const double *C, double *x,
                     double *A, double *F, double *sv, double *work, int lwork, int *iwork,
                     int *ipiv, int n, bint exact, int *status,
                     double *cond) noexcept nogil:
    """Solve W_B x = c_B for the n rows ``rows``; the condition number of W_B in cond
    (exact: ratio of the extreme singular values; otherwise LAPACK's estimate of the
    infinity-norm condition number from the LU factors)."""
    cdef char jobz = b'N'
    cdef char trans = b'T'
    cdef char norm = b'1'
    cdef int info = 0, nrhs = 1
    cdef int j, k
    cdef double dummy = 0.0, anorm = 0.0, total, rcond = 0.0
    cdef int one = 1
    # A (C order, n x n) = W_B; Fortran sees W_B^T, whose 1-norm is W_B's infinity norm.
    for j in range(n):
        total = 0.0
        for k in range(n):
            A[j * n + k] = W[rows[j] * n + k]
            total = total + fabs(A[j * n + k])
        if total > anorm:
            anorm = total
        x[j] = C[rows[j]]
    status[0] = 0
    if exact:
        for k in range(n * n):
            F[k] = A[k]
        dgesdd(&jobz, &n, &n, F, &n, sv, &dummy, &one, &dummy, &one, work, &lwork, iwork,
               &info)
        cond[0] = sv[0] / sv[n - 1] if info == 0 and sv[n - 1] > 0.0 else INFINITY
    dgetrf(&n, &n, A, &n, ipiv, &info)
    if info != 0:
        cond[0] = INFINITY
        return
    if not exact:
        dgecon(&norm, &n, A, &n, &anorm, &rcond, work, iwork, &info)
        cond[0] = 1.0 / rcond if info == 0 and rcond > 0.0 else INFINITY
    # (W_B^T)^T x = W_B x = c_B
    dgetrs(&trans, &n, &nrhs, A, &n, ipiv, x, &n, &info)
    status[0] = 1 if info == 0 else 0


cdef void _basis_sub(const double *W, const int64_t *rows, const int64_t *count,
                     const double *C, int start, int stop, int m, int n, bint exact,
                     double max_cond, double *X, unsigned char *ok,
                     double *cond) noexcept nogil:
    """Basis solves for samples ``start .. stop-1`` with one set of scratch buffers."""
    cdef int lwork = 16 * n + 64
    cdef int s, status
    cdef double *A = <double *> malloc(n * n * sizeof(double))
    cdef double *F = <double *> malloc(n * n * sizeof(double))
    cdef double *sv = <double *> malloc(n * sizeof(double))
    cdef double *work = <double *> malloc(lwork * sizeof(double))
    cdef int *iwork = <int *> malloc(8 * n * sizeof(int))
    cdef int *ipiv = <int *> malloc(n * sizeof(int))
    if A == NULL or F == NULL or sv == NULL or work == NULL or iwork == NULL or ipiv == NULL:
        for s in range(start, stop):
            ok[s] = 255  # out of memory: reported by the caller
    else:
        for s in range(start, stop):
            if count[s] < n:
                ok[s] = 0
                cond[s] = INFINITY
                continue
            status = 0
            _basis_one(W, &rows[<Py_ssize_t> s * n], &C[<Py_ssize_t> s * m],
                       &X[<Py_ssize_t> s * n], A, F, sv, work, lwork, iwork, ipiv, n, exact,
                       &status, &cond[s])
            ok[s] = 1 if status == 1 and cond[s] < max_cond else 0
    free(A)
    free(F)
    free(sv)
    free(work)
    free(iwork)
    free(ipiv)


def basis_solve(const double[:, ::1] W, const int64_t[:, ::1] rows,
                const int64_t[::1] count, const double[:, ::1] C, bint exact,
                double max_cond, int n_threads, double[:, ::1] X, unsigned char[::1] ok,
                double[::1] cond):
    """Solve ``W_B x = (y + alpha)_B`` per sample for the basis ``rows[s, :n]``.

    ``count[s] < n`` (no basis among the active rows) gives ``ok = 0`` and leaves ``X``;
    otherwise ``ok = 1`` when the solve succeeds and the condition number ``cond`` of
    ``W_B`` (exact 2-norm, or LAPACK's infinity-norm estimate) is below ``max_cond``.
    ``C`` is ``(N, m)`` ``y + alpha``;
    ``ok`` is 255 for a sub-batch that could not allocate its scratch memory.
    """
    cdef int N = <int> rows.shape[0]
    cdef int m = <int> C.shape[1]
    cdef int n = <int> W.shape[1]
    cdef int sub = _sub_batch_size(N, n_threads)
    cdef int n_sub = (N + sub - 1) // sub
    cdef int j
    if N == 0:
        return
    with nogil:
        for j in prange(n_sub, num_threads=n_threads, schedule="dynamic"):
            _basis_sub(&W[0, 0], &rows[0, 0], &count[0], &C[0, 0], j * sub,
                       min(N, (j + 1) * sub), m, n, exact, max_cond, &X[0, 0], &ok[0],
                       &cond[0])
