"""Frame-theoretic facts about a weight matrix (THEORY §1), over the Cython core.

Every function here first decides whether the rows of ``W`` are a frame from the
singular values of ``W`` (the rank rule of ``numpy.linalg.matrix_rank``). For a
well-conditioned frame the frame operator ``S = W^T W`` is then factorised in the
compiled core (Cholesky, or ``dsyev`` for the bounds); its condition number is
``cond(S) = cond(W)^2``, and a Cholesky-based inverse loses about ``cond(S) eps`` of
relative accuracy. Beyond ``CHOLESKY_MAX_CONDITION`` the answers come from the singular
value decomposition of ``W`` instead, whose error grows like ``cond(W) eps``.
"""

import numpy as np

from fastrelu._core import _frame
from fastrelu._core.errors import FastReluError
from fastrelu._core.rows import cross_product
from fastrelu._core.validation import as_matrix, not_a_frame_error

#: Largest ``cond(S) = (sigma_max / sigma_min)^2`` for which the frame operator is
#: factorised by Cholesky (relative error about ``1e8 eps = 2e-8``); above it the SVD of
#: ``W`` answers.
CHOLESKY_MAX_CONDITION = 1e8


def simd_build_runs_here():
    """``(simd, runs)``: was the reconstruction extension compiled with AVX2 and FMA
    (``setup.py`` records it), and does this CPU have them? Asked before that extension
    is first imported, since on a CPU without them its first instruction would kill the
    process."""
    return _frame.simd_build_runs_here()


#: From this much work (``m n^2`` multiply-adds) on, a frame's singular values come from
#: the eigenvalues of ``W^T W`` when they settle the question (see
#: :func:`_singular_values`): a fraction of the SVD's time for the layers of real
#: networks (for a (16384, 4096) layer, seconds instead of minutes).
GRAM_SINGULAR_WORK = 4e9


def _singular_values(W):
    """Singular values of ``W`` (decreasing) and its rank by ``matrix_rank``'s rule.

    For large ``W`` (``GRAM_SINGULAR_WORK``) with ``m >= n``: the square roots of the
    eigenvalues of ``S = W^T W`` (BLAS ``dsyrk``, LAPACK ``dsyevd``) when
    ``cond(S) <= CHOLESKY_MAX_CONDITION``. Their absolute error is about
    ``n eps lambda_max``, so each is then within a relative ``cond(S) n eps <= 1e-4`` of
    the SVD's and the rank is ``n`` by the same rule (``sigma_min / sigma_max >= 1e-4``,
    far above ``max(m, n) eps``). Otherwise, and for smaller ``W``, the SVD's."""
    m, n = W.shape
    if m >= n > 0 and m * n * n >= GRAM_SINGULAR_WORK:
        largest = np.max(np.abs(W))
        scaled = W / largest if largest > 0 else W
        lam = np.linalg.eigvalsh(cross_product(scaled))[::-1]
        if lam[-1] > 0 and lam[0] <= CHOLESKY_MAX_CONDITION * lam[-1]:
            return np.sqrt(lam) * largest, n
    s = np.linalg.svd(W, compute_uv=False)
    rank = int(np.count_nonzero(s > s[0] * max(W.shape) * np.finfo(np.float64).eps)) if s.size else 0
    return s, rank


#: From this much work (``m n min(m, n)``) on, :func:`spectral_norm` and
#: :func:`leading_singular` iterate instead of taking the SVD (measured for the norm on
#: 2 cores: (8192, 2048) 1.1 - 1.6 s against 2.9 s, (16384, 4096) 6.2 s against 21.9 s;
#: (1024, 16384), just below it, 1.4 s against 2.0 s).
LANCZOS_NORM_WORK = 2e10
#: ARPACK's restarts at most before :func:`leading_singular` falls back to the SVD (its
#: default, ten times the dimension, could take long).
ARPACK_RESTARTS = 1000


def _iteration_pays(m, n, k):
    """Do ``k`` leading singular triplets of an ``m x n`` matrix come faster from Lanczos
    iteration than from the SVD? From ``LANCZOS_NORM_WORK`` on, for ``k`` up to a quarter
    of ``min(m, n)`` (beyond, the iteration loses to the SVD)."""
    small = min(m, n)
    return small >= 3 and 4 * k <= small and float(m) * n * small >= LANCZOS_NORM_WORK


def spectral_norm(W):
    """``|W|_2 = sigma_1(W)`` of a finite matrix: the SVD's largest value for small
    ``W`` (no vectors); from ``LANCZOS_NORM_WORK`` on (where the SVD takes tens of
    seconds), the leading singular value of :func:`leading_singular`, which agrees with
    the SVD's to about ``1e-14`` relative."""
    if min(W.shape) == 0:
        return 0.0
    if not _iteration_pays(*W.shape, 1):
        return float(np.linalg.norm(W, 2))
    return float(leading_singular(W, 1)[1][0])


def leading_singular(A, k):
    """``(left (m, k'), values (k',), right (k', n))``: the ``k' = min(k, m, n)`` leading
    singular triplets of ``A``, by decreasing value. A full SVD for small ``A`` (or
    ``k'`` above a quarter of ``min(m, n)``, where the iteration loses to it); from
    ``LANCZOS_NORM_WORK`` on, Lanczos iteration (ARPACK ``svds`` from a fixed start, to
    machine precision: ``tol=0``) on ``A / max|A_ij|`` (entries in [-1, 1], so that the
    products with ``A^T A`` neither overflow nor lose the matrix to underflow; applied
    without a copy), whose values agree with the SVD's to a few ``eps sigma_1`` in
    absolute terms (so to about ``1e-14`` relative near ``sigma_1``, like the SVD's own
    rounding for small values) and whose vectors span the same subspaces where the values
    are distinct; the SVD's should ARPACK not converge within ``ARPACK_RESTARTS``
    restarts."""
    import scipy.sparse.linalg as sla

    m, n = A.shape
    k = min(int(k), m, n)
    if not _iteration_pays(m, n, k):
        left, values, right = np.linalg.svd(A, full_matrices=False)
        return left[:, :k], values[:k], right[:k]
    largest = float(np.max(np.abs(A)))
    if largest == 0.0:  # every singular value 0, any orthonormal vectors
        return np.eye(m, k), np.zeros(k), np.eye(k, n)
    scaled = sla.LinearOperator((m, n), dtype=np.float64, matvec=lambda v: A @ (v / largest),
                                rmatvec=lambda u: A.T @ (u / largest),
                                matmat=lambda V: A @ (V / largest),
                                rmatmat=lambda U: A.T @ (U / largest))
    start = np.random.default_rng(0).standard_normal(min(m, n))
    try:
        left, values, right = sla.svds(scaled, k=k, tol=0, v0=start, solver="arpack",
                                       maxiter=ARPACK_RESTARTS)
    except (sla.ArpackNoConvergence, sla.ArpackError):
        left, values, right = np.linalg.svd(A, full_matrices=False)
        return left[:, :k], values[:k], right[:k]
    order = np.argsort(-values, kind="stable")
    return left[:, order], values[order] * largest, right[order]


def _checked_frame(weight):
    """``(W, s)``: the validated weight and its singular values, or the not-a-frame error
    (which names the rank)."""
    W = as_matrix(weight, "weight")
    if W.shape[0] < W.shape[1]:
        raise not_a_frame_error(W, "weight")
    s, rank = _singular_values(W)
    if rank < W.shape[1]:
        raise not_a_frame_error(W, "weight", rank)
    return W, s


def _well_conditioned(s):
    return (s[0] / s[-1]) ** 2 <= CHOLESKY_MAX_CONDITION


def is_frame(weight):
    """Whether the rows of ``weight`` are a frame for R^n.

    True iff the rows span R^n (``rank(W) = n``, so ``m >= n``; the rank as
    ``numpy.linalg.matrix_rank`` decides it).

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The rows ``w_i``; finite.

    Returns
    -------
    bool

    Raises
    ------
    FastReluError
        For a weight that is not a finite, non-empty 2-D array of real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> fr.is_frame(T), fr.is_frame(T[:2])
    (True, False)
    """
    W = as_matrix(weight, "weight")
    return W.shape[0] >= W.shape[1] and _singular_values(W)[1] == W.shape[1]


def frame_bounds(weight):
    """Optimal frame bounds ``(A, B) = (lambda_min(S), lambda_max(S))`` of ``S = W^T W``.

    ``A |x|^2 <= sum_i <x, w_i>^2 <= B |x|^2`` for every ``x``, with the largest ``A``
    and the smallest ``B``. The eigenvalues of ``S`` come from LAPACK's ``dsyev`` in the
    compiled core when ``cond(S) <= CHOLESKY_MAX_CONDITION``; otherwise they are the
    squared singular values of ``W``, which keep ``A`` accurate to about
    ``cond(W) eps`` where ``S`` would lose it.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming a frame for R^n (finite, rank ``n``).

    Returns
    -------
    A, B : float
        The lower and the upper frame bound, ``0 < A <= B``.

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, or whose rows are not a frame (then
        ``A`` would be 0); the message names the rank.

    Examples
    --------
    The regular tetrahedron is a tight frame for R^3 (``S = 4/3 I``):

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> A, B = fr.frame_bounds(T)
    >>> round(A, 3), round(B, 3)
    (1.333, 1.333)
    """
    W, s = _checked_frame(weight)
    if not _well_conditioned(s):
        return float(s[-1] ** 2), float(s[0] ** 2)
    values, info = _frame.symmetric_eigenvalues(_frame.frame_operator(W))
    if info != 0:  # pragma: no cover - LAPACK's eigensolver did not converge
        raise FastReluError(f"The eigenvalues of the frame operator of 'weight' did not converge (LAPACK info={info}).")
    return float(values[0]), float(values[-1])


def _frame_routine(weight, routine, from_svd):
    """Run a compiled Cholesky routine on a well-conditioned frame, or ``from_svd(U, s,
    Vt)`` (thin SVD of ``W``) on an ill-conditioned one."""
    W, s = _checked_frame(weight)
    if _well_conditioned(s):
        result, info = routine(W)
        if info == 0:
            return result
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    return from_svd(U, s, Vt)


def canonical_dual(weight):
    """Canonical dual frame ``(S^{-1} w_i)_i`` as an ``(m, n)`` array.

    ``S = W^T W`` is factorised by Cholesky in the compiled core (for
    ``cond(S) <= CHOLESKY_MAX_CONDITION``; beyond it the dual is ``U diag(1/s) V^T`` from
    the SVD ``W = U diag(s) V^T``). The dual satisfies ``dual.T @ W = I`` (perfect
    reconstruction ``x = sum_i <x, w_i> S^{-1} w_i``).

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming a frame for R^n (finite, rank ``n``).

    Returns
    -------
    ndarray, shape (m, n)
        Row ``i`` is ``S^{-1} w_i``.

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, or whose rows are not a frame.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> dual = fr.canonical_dual(W)
    >>> dual.shape, bool(np.allclose(dual.T @ W, np.eye(3)))
    ((8, 3), True)
    """
    return _frame_routine(weight, _frame.canonical_dual, lambda U, s, Vt: (U / s) @ Vt)


def frame_operator_inverse(weight):
    """The inverse ``S^{-1}`` of the frame operator ``S = W^T W``.

    Cholesky in the compiled core for ``cond(S) <= CHOLESKY_MAX_CONDITION``, else
    ``V diag(1/s^2) V^T`` from the SVD ``W = U diag(s) V^T``.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming a frame for R^n (finite, rank ``n``).

    Returns
    -------
    ndarray, shape (n, n)
        ``S^{-1}``, symmetric positive definite.

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, or whose rows are not a frame.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> S_inv = fr.frame_operator_inverse(W)
    >>> S_inv.shape, bool(np.allclose(S_inv @ (W.T @ W), np.eye(3)))
    ((3, 3), True)
    """
    return _frame_routine(weight, _frame.frame_operator_inverse,
                          lambda U, s, Vt: (Vt.T / s**2) @ Vt)
