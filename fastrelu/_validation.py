"""Validation at the API edge. Kernels assume what these functions guarantee."""

import numbers
import os

import numpy as np

from ._errors import FastReluError


def as_matrix(value, name, *, ncols=None, allow_empty=False):
    """Return ``value`` as a C-contiguous, finite float64 2-D array or raise."""
    check_real(value, name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The '{name}' parameter must be a 2-D array of real numbers. Got {type(value).__name__} ({exc}).") from None
    if array.ndim != 2:
        raise FastReluError(f"The '{name}' parameter must be a 2-D array. Got an array with {name}.ndim={array.ndim} ({name}.shape={array.shape}).")
    if not allow_empty and array.size == 0:
        raise FastReluError(f"The '{name}' parameter must not be empty. Got {name}.shape={array.shape}.")
    if ncols is not None and array.shape[1] != ncols:
        raise FastReluError(f"The '{name}' parameter must have {ncols} columns (the input dimension). Got {name}.shape={array.shape}.")
    _check_finite(array, name)
    return np.ascontiguousarray(array)


def as_vector(value, name, *, length):
    """Return ``value`` as a contiguous finite float64 1-D array of ``length`` or raise."""
    check_real(value, name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The '{name}' parameter must be a 1-D array of real numbers. Got {type(value).__name__} ({exc}).") from None
    if array.ndim == 0:
        array = np.full(length, float(array))
    if array.ndim != 1 or array.shape[0] != length:
        raise FastReluError(f"The '{name}' parameter must have shape ({length},). Got {name}.shape={array.shape}.")
    _check_finite(array, name)
    return np.ascontiguousarray(array)


def check_real(value, name):
    """A complex array is an error, not silently cut to its real part."""
    if np.iscomplexobj(value):
        raise FastReluError(f"The '{name}' parameter must hold real numbers. Got complex values (dtype {np.asarray(value).dtype}).")


def _check_finite(array, name):
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        where = ", ".join(str(tuple(int(i) for i in idx)) for idx in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise FastReluError(f"The '{name}' parameter must contain only finite numbers. Got NaN or inf at {where}{more}.")


def not_a_frame_error(W, name, rank=None):
    """The error for a weight matrix whose rows do not span R^n (names the rank)."""
    n = W.shape[1]
    rank = int(np.linalg.matrix_rank(W)) if rank is None else rank
    return FastReluError(f"The '{name}' parameter must be a frame for R^{n} (rank {n}). Got rank({name}) = {rank} for {name}.shape={W.shape}.")


def as_frame(weight, name="weight"):
    """Validate a weight matrix whose rows must be a frame for R^n.

    Checks: 2-D, finite, no zero rows, ``m >= n`` and ``rank(W) = n``.
    """
    W = as_matrix(weight, name)
    m, n = W.shape
    norms = np.linalg.norm(W, axis=1)
    zero = np.flatnonzero(norms == 0.0)
    if zero.size:
        raise FastReluError(f"The '{name}' parameter must have no zero rows (a zero neuron carries no direction). Got zero rows at indices {zero[:10].tolist()}{' ...' if zero.size > 10 else ''}.")
    if m < n:
        raise FastReluError(f"The '{name}' parameter must have at least as many rows (neurons) as columns (input dimension) to be a frame. Got {name}.shape={W.shape}.")
    rank = int(np.linalg.matrix_rank(W))
    if rank < n:
        raise not_a_frame_error(W, name, rank)
    return W


def positive_int(value, name, *, minimum=1):
    """Return ``value`` as a Python int >= ``minimum`` or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise FastReluError(f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r} instead.")
    if value < minimum:
        raise FastReluError(f"The '{name}' parameter must be an integer >= {minimum}. Got {value!r} instead.")
    return int(value)


def positive_float(value, name, *, allow_zero=False):
    """Return ``value`` as a finite float > 0 (>= 0 with ``allow_zero``) or raise."""
    bound = ">= 0" if allow_zero else "> 0"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FastReluError(f"The '{name}' parameter must be a finite real number {bound}. Got {value!r} instead.") from None
    if not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero) or isinstance(value, bool):
        raise FastReluError(f"The '{name}' parameter must be a finite real number {bound}. Got {value!r} instead.")
    return x


#: Smallest meaningful rank tolerance: distances to a span are computed from Gram
#: matrices of unit rows, which resolve them only to about sqrt(machine epsilon).
MIN_RANK_TOL = 1e-7


def rank_tol_value(value, name="rank_tol"):
    """Return a rank tolerance in ``[MIN_RANK_TOL, 1)`` or raise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not MIN_RANK_TOL <= x < 1.0:
        raise FastReluError(f"The '{name}' parameter must be a float in [{MIN_RANK_TOL:g}, 1) (distances to a span are computed from Gram matrices, which resolve them only to about 1.5e-8). Got {value!r} instead.")
    return x


def seed_value(seed, name="seed"):
    """Return a non-negative int seed; ``None`` draws fresh OS entropy (reported back)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise FastReluError(f"The '{name}' parameter must be a non-negative integer or None. Got {seed!r} instead.")
    return int(seed)


def n_jobs_value(n_jobs):
    """Number of worker threads: ``None`` or -1 means all cores."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cores
    return positive_int(n_jobs, "n_jobs")
