# cython: language_level=3
"""Frame-operator factorisation and inversion (typed Cython over LAPACK).

All routines take C-contiguous float64 arrays. A C-contiguous ``(m, n)`` array is a
Fortran-ordered ``(n, m)`` array, so ``W`` is handed to BLAS/LAPACK as ``W^T``
without a copy. Symmetric matrices look the same in both orders; the factor
written by LAPACK into its *upper* triangle is, seen from C, the lower triangle.

Failure is data: every routine returns LAPACK's ``info`` (0 = success, ``k > 0`` =
the leading minor of order ``k`` is not positive definite) and never raises for a
numerical failure; the Python layer turns a non-zero ``info`` into one clear error.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t
from scipy.linalg.cython_blas cimport dgemm, dsyrk
from scipy.linalg.cython_lapack cimport dpotrf, dpotri, dpotrs, dsyev

cdef extern from "_build_config.h":
    int FASTRELU_SIMD_BUILD

cdef extern from *:
    """
    /* Does this CPU run code compiled with -mavx2 -mfma? (Other architectures: the
       build did not use those flags.) */
    static int fr_cpu_runs_simd_build(void)
    {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 1;
    #endif
    }
    """
    int fr_cpu_runs_simd_build()


cdef extern from "_spans.h" nogil:
    Py_ssize_t fr_spans(double *data, Py_ssize_t n, double tol2, double margin,
                        Py_ssize_t lanes)
    Py_ssize_t fr_spans_gram(const double *gram, Py_ssize_t ld, const int64_t *order,
                             const uint8_t *ranked, Py_ssize_t n, double *G,
                             double tol2, double margin, Py_ssize_t lanes)
    int fr_spans_lanes()
    Py_ssize_t fr_spans_stride(Py_ssize_t n)


def spans_stride(Py_ssize_t n):
    """The row stride of the lanes' Gram matrices in ``fr_spans`` (``_spans.h``): the
    buffer ``G`` of ``n`` rows is allocated as ``(n, spans_stride(n), lanes)``."""
    return fr_spans_stride(n)


def spans_kernel():
    """``(addresses, lanes)`` of the MCBE selection kernels of ``_spans.h`` for the Numba
    kernels: a dict of the addresses of the C functions ``fr_spans`` and
    ``fr_spans_gram`` (the lane-parallel basis certificate, without and with the gather
    of the Gram entries), and the number of samples they take at once on this CPU."""
    lanes = fr_spans_lanes()  # first: it selects the kernels the others dispatch to
    return {"fr_spans": <Py_ssize_t> &fr_spans, "fr_spans_gram": <Py_ssize_t> &fr_spans_gram}, lanes


def simd_build_runs_here():
    """``(simd, runs)``: the reconstruction extension was compiled with ``-mavx2 -mfma``,
    and this CPU can run such code. (This module itself is compiled without them.)"""
    return bool(FASTRELU_SIMD_BUILD), bool(fr_cpu_runs_simd_build())


#: Largest ``n`` whose frame operator is one multi-threaded ``dsyrk``; above it, panels of
#: ``dgemm`` (OpenBLAS 0.3.31's ``dsyrk`` crashes on AVX-512 machines for outputs of
#: about 16,000 rows; see ``fastrelu._core.rows.gram_of_rows``).
SYRK_MAX_N = 8192
cdef int _SYRK_MAX_N = 8192
cdef int _PANEL = 4096


cdef void _frame_operator(const double[:, ::1] W, double[:, ::1] S) noexcept nogil:
    """S = W^T W (full symmetric matrix written into S, shape (n, n))."""
    cdef int m = <int> W.shape[0]
    cdef int n = <int> W.shape[1]
    cdef char uplo = b'U'
    cdef char trans = b'N'
    cdef char tr = b'T'
    cdef double one = 1.0
    cdef double zero = 0.0
    cdef int i, j, start, rows, rest
    # Fortran view: A = W^T is (n, m) with lda = n, so A A^T = W^T W.
    if n <= _SYRK_MAX_N:
        dsyrk(&uplo, &trans, &n, &m, &one, <double *> &W[0, 0], &n, &zero, &S[0, 0], &n)
    else:  # Fortran rows start..start+rows-1 against rows start..n-1: the upper triangle
        start = 0
        while start < n:
            rows = min(_PANEL, n - start)
            rest = n - start
            dgemm(&trans, &tr, &rows, &rest, &m, &one, <double *> &W[0, 0] + start, &n,
                  <double *> &W[0, 0] + start, &n, &zero, &S[0, 0] + start + <Py_ssize_t> start * n, &n)
            start = start + _PANEL
    # Fortran's upper triangle is C's lower one: mirror it to the C upper triangle.
    for i in range(n):
        for j in range(i + 1, n):
            S[i, j] = S[j, i]


cdef int _cholesky_lower(double[:, ::1] S) noexcept nogil:
    """Overwrite the lower triangle (C view) of S with L, S = L L^T; zero the rest."""
    cdef int n = <int> S.shape[0]
    cdef char uplo = b'U'
    cdef int info = 0
    cdef int i, j
    dpotrf(&uplo, &n, &S[0, 0], &n, &info)
    for i in range(n):
        for j in range(i + 1, n):
            S[i, j] = 0.0
    return info


cdef int _inverse_from_cholesky(double[:, ::1] L) noexcept nogil:
    """Overwrite L (lower Cholesky factor, C view) with S^{-1} = L^{-T} L^{-1}."""
    cdef int n = <int> L.shape[0]
    cdef char uplo = b'U'
    cdef int info = 0
    cdef int i, j
    dpotri(&uplo, &n, &L[0, 0], &n, &info)
    for i in range(n):
        for j in range(i + 1, n):
            L[i, j] = L[j, i]
    return info


cdef int _solve_rows(const double[:, ::1] L, double[:, ::1] B) noexcept nogil:
    """Overwrite each row b_k of B (shape (k, n)) with S^{-1} b_k, S = L L^T."""
    cdef int n = <int> L.shape[0]
    cdef int nrhs = <int> B.shape[0]
    cdef char uplo = b'U'
    cdef int info = 0
    # Fortran view: B is (n, nrhs) with ldb = n, one right-hand side per C row.
    dpotrs(&uplo, &n, &nrhs, <double *> &L[0, 0], &n, &B[0, 0], &n, &info)
    return info


def frame_operator(const double[:, ::1] W):
    """Frame operator ``S = W^T W`` of the rows of ``W`` (shape ``(m, n)``).

    Returns a new C-contiguous ``(n, n)`` array.
    """
    S = np.empty((W.shape[1], W.shape[1]), dtype=np.float64)
    cdef double[:, ::1] S_view = S
    with nogil:
        _frame_operator(W, S_view)
    return S


def cholesky(const double[:, ::1] S):
    """Lower Cholesky factor ``L`` of a symmetric ``S = L L^T``.

    Returns ``(L, info)``; ``info > 0`` means the leading minor of that order is not
    positive definite and ``L`` is not usable. ``S`` is not modified.
    """
    L = np.array(S, dtype=np.float64, order="C", copy=True)
    cdef double[:, ::1] L_view = L
    cdef int info
    with nogil:
        info = _cholesky_lower(L_view)
    return L, info


def frame_operator_inverse(const double[:, ::1] W):
    """Inverse ``S^{-1}`` of the frame operator ``S = W^T W`` via Cholesky.

    Returns ``(S_inv, info)``; ``info != 0`` means ``S`` is not positive definite
    (``W`` is not a frame) and ``S_inv`` is not usable.
    """
    n = W.shape[1]
    S = np.empty((n, n), dtype=np.float64)
    cdef double[:, ::1] S_view = S
    cdef int info
    with nogil:
        _frame_operator(W, S_view)
        info = _cholesky_lower(S_view)
        if info == 0:
            info = _inverse_from_cholesky(S_view)
    return S, info


def canonical_dual(const double[:, ::1] W):
    """Canonical dual frame: row ``i`` of the result is ``S^{-1} w_i``.

    Returns ``(dual, info)`` with ``dual`` of shape ``(m, n)``; ``info != 0`` means
    ``W`` is not a frame and ``dual`` is not usable.
    """
    n = W.shape[1]
    S = np.empty((n, n), dtype=np.float64)
    dual = np.array(W, dtype=np.float64, order="C", copy=True)
    cdef double[:, ::1] S_view = S
    cdef double[:, ::1] dual_view = dual
    cdef int info
    with nogil:
        _frame_operator(W, S_view)
        info = _cholesky_lower(S_view)
        if info == 0:
            info = _solve_rows(S_view, dual_view)
    return dual, info


def symmetric_eigenvalues(const double[:, ::1] S):
    """Eigenvalues (ascending) of a symmetric matrix ``S``; returns ``(values, info)``."""
    cdef int n = <int> S.shape[0]
    A = np.array(S, dtype=np.float64, order="C", copy=True)
    values = np.empty(n, dtype=np.float64)
    cdef double[:, ::1] A_view = A
    cdef double[::1] w_view = values
    cdef char jobz = b'N'
    cdef char uplo = b'U'
    cdef int info = 0
    cdef int lwork = max(1, 3 * n - 1)
    work = np.empty(lwork, dtype=np.float64)
    cdef double[::1] work_view = work
    if n == 0:
        return values, 0
    with nogil:
        dsyev(&jobz, &uplo, &n, &A_view[0, 0], &n, &w_view[0], &work_view[0], &lwork, &info)
    return values, info
