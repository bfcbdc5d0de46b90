# cython: language_level=3
"""Batched reconstruction of ReLU-layer inputs (typed Cython over BLAS/LAPACK, OpenMP).

For each sample ``s`` with active rows ``I`` (a 0/1 row ``D[s]``) the frame operator of
the active subframe is ``S_I = W^T diag(D[s]) W`` and the right-hand side is
``b = W^T ((y + alpha) * D[s])``. Both are formed for a sub-batch of samples at once by
two GEMMs: ``D_sub @ P`` with ``P[i] = packed upper triangle of w_i w_i^T`` gives the
packed ``S_I`` of every sample, and ``((y + alpha) * D)_sub @ W`` the right-hand sides.
Per sample, LAPACK then gives the eigenvalues of ``S_I`` (frame bounds ``A_I, B_I``,
condition number, and whether ``I`` spans), and

- ``dual``: the canonical-dual solution ``x = S_I^{-1} b`` (Cholesky solve);
- ``frame``: the frame algorithm ``x <- x + lam (b - S_I x)``, ``lam = 2 / (A_I + B_I)``,
  which is ``x + lam W_I^T (y_I + alpha_I - W_I x)`` written with ``S_I`` (``n^2``
  instead of ``|I| n`` per step); it stops when ``|b - S_I x| <= tol |b|``;
- where ``I`` does not span: the minimum-norm least-squares solution ``S_I^+ b`` (the
  eigenvalues above the threshold only), which is ``pinv(W_I) (y_I + alpha_I)``.

Sub-batches have a fixed size and fixed positions (``SUB`` samples from the start of the
batch), so each sample's arithmetic is the same whatever the number of threads.
C-contiguous arrays are handed to Fortran as their transposes, without copies.
"""

from cython.parallel cimport prange
from libc.float cimport DBL_EPSILON
from libc.math cimport fabs, sqrt, INFINITY
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from scipy.linalg.cython_blas cimport dgemm, dgemv, dsyrk
from scipy.linalg.cython_lapack cimport dgecon, dgesdd, dgetrf, dgetrs, dsyev

cdef enum:
    # Samples per sub-batch (one pair of GEMMs); part of what makes results independent
    # of the thread count.
    SUB = 32

cdef enum:
    MODE_DUAL = 0
    MODE_FRAME = 1
    MODE_PINV = 2


cdef inline double _norm(const double *v, int n) noexcept nogil:
    cdef double total = 0.0
    cdef int k
    for k in range(n):
        total = total + v[k] * v[k]
    return sqrt(total)


cdef int _cholesky_upper(double *U, int n) noexcept nogil:
    """In place: the upper triangle of the row-major symmetric U becomes the factor R
    with S = R^T R (right-looking; every inner loop is a contiguous axpy over two
    rows, which the compiler vectorises). Returns 0, or k + 1 when the k-th pivot is
    not positive."""
    cdef Py_ssize_t k, j, p, size = n
    cdef double d, scale, lead
    cdef double *row_k
    cdef double *row_j
    for k in range(size):
        row_k = U + k * size
        d = row_k[k]
        if not d > 0.0:
            return <int> k + 1
        d = sqrt(d)
        row_k[k] = d
        scale = 1.0 / d
        for p in range(k + 1, size):
            row_k[p] = row_k[p] * scale
        for j in range(k + 1, size):
            row_j = U + j * size
            lead = row_k[j]
            for p in range(j, size):
                row_j[p] = row_j[p] - lead * row_k[p]
    return 0


cdef void _transpose(const double *R, double *L, int n) noexcept nogil:
    """L = R^T for the upper triangle of R (row-major); the rest of L is not used."""
    cdef Py_ssize_t k, p, size = n
    for k in range(size):
        for p in range(k, size):
            L[p * size + k] = R[k * size + p]


cdef void _cholesky_solve(const double *R, const double *L, double *x, int n) noexcept nogil:
    """In place: x <- S^{-1} x with S = R^T R (R upper, L = R^T lower, row-major); both
    substitutions run as contiguous axpys over rows (of R, then of L)."""
    cdef Py_ssize_t k, p, size = n
    cdef double value
    cdef const double *row
    for k in range(size):  # R^T y = x: eliminate with row k of R
        row = R + k * size
        value = x[k] / row[k]
        x[k] = value
        for p in range(k + 1, size):
            x[p] = x[p] - row[p] * value
    for k in range(size - 1, -1, -1):  # R x = y: eliminate with row k of L = column of R
        row = L + k * size
        value = x[k] / row[k]
        x[k] = value
        for p in range(k):
            x[p] = x[p] - row[p] * value


cdef double _inverse_norm1(const double *R, const double *L, double *v, double *w,
                           int n) noexcept nogil:
    """Estimate of |S^{-1}|_1 for S = R^T R by Hager's method (the estimator behind
    LAPACK's condition numbers): a lower bound, in practice within a small factor."""
    cdef int k, it, best, previous = -1
    cdef double estimate = 0.0, largest, inner
    for it in range(5):
        for k in range(n):  # the current vector: uniform, then a unit vector
            v[k] = 1.0 / n if previous < 0 else 0.0
        if previous >= 0:
            v[previous] = 1.0
        _cholesky_solve(R, L, v, n)  # y = S^{-1} x
        estimate = 0.0
        for k in range(n):
            estimate = estimate + fabs(v[k])
            w[k] = 1.0 if v[k] >= 0.0 else -1.0
        _cholesky_solve(R, L, w, n)  # z = S^{-T} sign(y) = S^{-1} sign(y)
        largest = -1.0
        best = 0
        for k in range(n):
            if fabs(w[k]) > largest:
                largest = fabs(w[k])
                best = k
        if previous < 0:
            inner = 0.0
            for k in range(n):
                inner = inner + w[k]
            inner = inner / n
        else:
            inner = w[previous]
        # no ascent direction left (z^T x is the gradient's value at x), or a repeat
        if largest <= inner or best == previous:
            break
        previous = best
    return estimate


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


cdef int _factor_and_condition(const double *S, double *E, double *T, double *ev,
                               double *work, int lwork, double *v, double *w, int n,
                               bint exact, double *cond) noexcept nogil:
    """Cholesky factor R of S (S = R^T R, upper triangle of E; returns 0 or the failing
    pivot's order) and the condition number of W_I (= sqrt(cond(S))) in cond: exact from
    the eigenvalues, or sqrt(|S|_1 * estimate of |S^{-1}|_1); T receives R^T."""
    cdef char uplo = b'U'
    cdef char jobn = b'N'
    cdef int info = 0
    cdef int k, a
    cdef double anorm = 0.0, column
    if exact:
        for k in range(n * n):
            E[k] = S[k]
        dsyev(&jobn, &uplo, &n, E, &n, ev, work, &lwork, &info)
        cond[0] = sqrt(ev[n - 1] / ev[0]) if info == 0 and ev[0] > 0.0 else INFINITY
    for k in range(n * n):
        E[k] = S[k]
    info = _cholesky_upper(E, n)
    if info != 0:
        cond[0] = INFINITY
        return info
    _transpose(E, T, n)
    if not exact:
        for a in range(n):
            column = 0.0
            for k in range(n):
                column = column + fabs(S[a * n + k])
            if column > anorm:
                anorm = column
        cond[0] = sqrt(anorm * _inverse_norm1(E, T, v, w, n))
    return 0


cdef void _sub_batch(const double *D, const double *YD, const double *W, const double *P,
                     int start, int stop, int m, int n, int npk, double max_cond,
                     int mode, bint exact, bint packed, double tol, int64_t max_iter,
                     double *X, unsigned char *ok, double *cond, int64_t *iters,
                     double *resid) noexcept nogil:
    """Reconstruct samples ``start .. stop-1``; see the module docstring."""
    cdef int count = stop - start
    cdef int lwork = 66 * n + 16
    cdef double *SP = <double *> malloc((SUB * npk if packed else m * n) * sizeof(double))
    cdef double *B = <double *> malloc(SUB * n * sizeof(double))
    cdef double *S = <double *> malloc(n * n * sizeof(double))
    cdef double *E = <double *> malloc(n * n * sizeof(double))
    cdef double *T = <double *> malloc(n * n * sizeof(double))
    cdef double *ev = <double *> malloc(n * sizeof(double))
    cdef double *r = <double *> malloc(n * sizeof(double))
    cdef double *cI = <double *> malloc(m * sizeof(double))
    cdef double *work = <double *> malloc(lwork * sizeof(double))
    cdef char trans = b'N'
    cdef char uplo = b'U'
    cdef double one = 1.0
    cdef double zero = 0.0
    cdef int info, inc = 1
    cdef int s, a, c, k, p, rows
    cdef int64_t it
    cdef double lam, bnorm, rnorm, lmin, lmax
    cdef double *x
    cdef double *b
    cdef const double *d
    cdef bint spans
    if (SP == NULL or B == NULL or S == NULL or E == NULL or T == NULL or ev == NULL
            or r == NULL or cI == NULL or work == NULL):
        for s in range(count):
            ok[start + s] = 255  # out of memory: reported by the caller
    else:
        if packed:
            # SP (count, npk) = D_sub (count, m) @ P (m, npk); B (count, n) = YD_sub @ W.
            dgemm(&trans, &trans, &npk, &count, &m, &one, <double *> P, &npk,
                  <double *> &D[start * m], &m, &zero, SP, &npk)
            dgemm(&trans, &trans, &n, &count, &m, &one, <double *> W, &n,
                  <double *> &YD[start * m], &m, &zero, B, &n)
        for s in range(count):
            x = &X[(start + s) * n]
            b = &B[s * n]
            if packed:
                # unpack the upper triangle (row-major packing) into the full S
                p = 0
                for a in range(n):
                    for c in range(a, n):
                        S[a * n + c] = SP[s * npk + p]
                        S[c * n + a] = SP[s * npk + p]
                        p = p + 1
            else:
                # gather the active rows W_I (C order, rows x n) and their values
                d = &D[(start + s) * m]
                rows = 0
                for a in range(m):
                    if d[a] != 0.0:
                        for k in range(n):
                            SP[rows * n + k] = W[a * n + k]
                        cI[rows] = YD[(start + s) * m + a]
                        rows = rows + 1
                if rows > 0:
                    # S = W_I^T W_I (Fortran upper = C lower), b = W_I^T c_I
                    dsyrk(&uplo, &trans, &n, &rows, &one, SP, &n, &zero, S, &n)
                    dgemv(&trans, &n, &rows, &one, SP, &n, cI, &inc, &zero, b, &inc)
                    for a in range(n):
                        for c in range(a + 1, n):
                            S[a * n + c] = S[c * n + a]
                else:
                    for k in range(n * n):
                        S[k] = 0.0
                    for k in range(n):
                        b[k] = 0.0
            if packed:
                d = &D[(start + s) * m]
                rows = 0
                for a in range(m):
                    rows = rows + (d[a] != 0.0)
            bnorm = _norm(b, n)
            iters[start + s] = 0
            spans = False
            if rows < n:  # fewer active rows than dimensions: cannot span
                cond[start + s] = INFINITY
            elif mode == MODE_FRAME:
                # exact frame bounds of W_I: the step needs them
                for k in range(n * n):
                    E[k] = S[k]
                info = 0
                dsyev(&trans, &uplo, &n, E, &n, ev, work, &lwork, &info)
                lmin = ev[0] if info == 0 else 0.0
                lmax = ev[n - 1]
                cond[start + s] = sqrt(lmax / lmin) if lmin > 0.0 else INFINITY
                spans = cond[start + s] < max_cond
                if spans:
                    lam = 2.0 / (lmin + lmax)
                    for k in range(n):
                        x[k] = 0.0
                    it = 0
                    while True:
                        _residual(S, x, b, r, n)
                        rnorm = _norm(r, n)
                        if rnorm <= tol * bnorm or it >= max_iter:
                            break
                        for k in range(n):
                            x[k] = x[k] + lam * r[k]
                        it = it + 1
                    iters[start + s] = it
            elif mode == MODE_DUAL:
                info = _factor_and_condition(S, E, T, ev, work, lwork, r, x, n, exact,
                                             &cond[start + s])
                spans = info == 0 and cond[start + s] < max_cond
                if spans:
                    for k in range(n):
                        x[k] = b[k]
                    _cholesky_solve(E, T, x, n)
            else:
                cond[start + s] = INFINITY
            ok[start + s] = 1 if spans else 0
            if not spans:
                _pinv_solve(S, b, x, E, ev, work, lwork, n)
            _residual(S, x, b, r, n)
            resid[start + s] = _norm(r, n) / bnorm if bnorm > 0.0 else _norm(r, n)
    free(SP)
    free(B)
    free(S)
    free(E)
    free(T)
    free(ev)
    free(r)
    free(cI)
    free(work)


def active_subframe_solve(const double[:, ::1] D, const double[:, ::1] YD,
                          const double[:, ::1] W, const double[:, ::1] P, double max_cond,
                          int mode, bint exact, bint packed, double tol, int64_t max_iter,
                          int n_threads, double[:, ::1] X, unsigned char[::1] ok,
                          double[::1] cond, int64_t[::1] iters, double[::1] resid):
    """Reconstruct every sample of a batch from its active rows (see the module doc).

    Parameters
    ----------
    D : (N, m) 0/1 active rows; YD : (N, m) ``(y + alpha) * D``; W : (m, n) weights;
    P : (m, n (n + 1) / 2) packed ``w_i w_i^T`` (upper triangle, row by row), used when
        ``packed``; otherwise each ``S_I`` is formed from the gathered rows (``dsyrk``).
    max_cond : ``I`` spans when the condition number of ``W_I`` is below this.
    mode : 0 dual (Cholesky), 1 frame algorithm, 2 least squares for every sample.
    exact : exact condition numbers (eigenvalues) instead of LAPACK's estimate (dual).
    tol, max_iter : stopping rule of the frame algorithm.
    n_threads : OpenMP threads.
    X (N, n), ok (N,), cond (N,), iters (N,), resid (N,) : outputs, written in place;
    ``ok`` is 255 for a sub-batch that could not allocate its scratch memory.
    """
    cdef int N = <int> D.shape[0]
    cdef int m = <int> D.shape[1]
    cdef int n = <int> W.shape[1]
    cdef int npk = <int> P.shape[1]
    cdef int n_sub = (N + SUB - 1) // SUB
    cdef int j
    if N == 0:
        return
    with nogil:
        for j in prange(n_sub, num_threads=n_threads, schedule="dynamic"):
            _sub_batch(&D[0, 0], &YD[0, 0], &W[0, 0], &P[0, 0], j * SUB,
                       min(N, (j + 1) * SUB), m, n, npk, max_cond, mode, exact, packed,
                       tol, max_iter, &X[0, 0], &ok[0], &cond[0], &iters[0], &resid[0])


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
            _basis_one(W, &rows[s * n], &C[s * m], &X[s * n], A, F, sv, work, lwork, iwork,
                       ipiv, n, exact, &status, &cond[s])
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
    cdef int n_sub = (N + SUB - 1) // SUB
    cdef int j
    if N == 0:
        return
    with nogil:
        for j in prange(n_sub, num_threads=n_threads, schedule="dynamic"):
            _basis_sub(&W[0, 0], &rows[0, 0], &count[0], &C[0, 0], j * SUB,
                       min(N, (j + 1) * SUB), m, n, exact, max_cond, &X[0, 0], &ok[0],
                       &cond[0])
