"""Frame-theoretic facts about a weight matrix (THEORY §1), over the Cython core."""

import numpy as np

from ._errors import FastReluError
from ._ext import _frame
from ._validation import as_matrix, not_a_frame_error


def is_frame(weight):
    """True iff the rows of ``weight`` span R^n (``rank(W) = n``, so ``m >= n``)."""
    W = as_matrix(weight, "weight")
    return W.shape[0] >= W.shape[1] and int(np.linalg.matrix_rank(W)) == W.shape[1]


def frame_bounds(weight):
    """Optimal frame bounds ``(A, B) = (lambda_min(S), lambda_max(S))`` of ``S = W^T W``.

    Raises :class:`FastReluError` when the rows of ``weight`` are not a frame (then ``A``
    would be 0).
    """
    W = as_matrix(weight, "weight")
    if not is_frame(W):
        raise not_a_frame_error(W, "weight")
    values, info = _frame.symmetric_eigenvalues(_frame.frame_operator(W))
    if info != 0:  # pragma: no cover - LAPACK's eigensolver did not converge
        raise FastReluError(f"The eigenvalues of the frame operator of 'weight' did not converge (LAPACK info={info}).")
    return float(values[0]), float(values[-1])


def _frame_routine(weight, routine):
    """Run a compiled frame routine, turning its failure code into one clear error."""
    W = as_matrix(weight, "weight")
    if W.shape[0] < W.shape[1]:
        raise not_a_frame_error(W, "weight")
    result, info = routine(W)
    if info != 0:
        raise not_a_frame_error(W, "weight")
    return result


def canonical_dual(weight):
    """Canonical dual frame ``(S^{-1} w_i)_i`` as an ``(m, n)`` array.

    ``S = W^T W`` is factorised by Cholesky in the compiled core; the dual satisfies
    ``dual.T @ W = I`` (perfect reconstruction ``x = sum_i <x, w_i> S^{-1} w_i``).
    """
    return _frame_routine(weight, _frame.canonical_dual)


def frame_operator_inverse(weight):
    """``S^{-1}`` for the frame operator ``S = W^T W`` (Cholesky in the compiled core)."""
    return _frame_routine(weight, _frame.frame_operator_inverse)
