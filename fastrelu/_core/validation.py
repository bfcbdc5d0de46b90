"""Validation at the API edge. Kernels assume what these functions guarantee."""

import numbers
import os

import numpy as np

from fastrelu._core.errors import FastReluError


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


def _vector_of_length(value, name, length):
    """``value`` as a float64 1-D array of ``length`` (a scalar is broadcast), or raise."""
    if value is None:  # np.asarray(None, float) is NaN: say what came
        raise FastReluError(f"The '{name}' parameter must be a 1-D array of {length} real numbers (or one number for all). Got None instead.")
    check_real(value, name)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The '{name}' parameter must be a 1-D array of real numbers. Got {type(value).__name__} ({exc}).") from None
    if array.ndim == 0:
        array = np.full(length, float(array))
    if array.ndim != 1 or array.shape[0] != length:
        raise FastReluError(f"The '{name}' parameter must have shape ({length},). Got {name}.shape={array.shape}.")
    return array


def as_vector(value, name, *, length):
    """Return ``value`` as a contiguous finite float64 1-D array of ``length`` or raise."""
    array = _vector_of_length(value, name, length)
    _check_finite(array, name)
    return np.ascontiguousarray(array)


def as_bias(value, name, *, length, never_active=np.inf):
    """Return a bias as a contiguous float64 1-D array of ``length`` or raise.

    Finite entries and ``never_active`` are accepted: ``+inf`` for the subtracted bias
    ``alpha`` of ``ReLU(W x - alpha)`` (``-inf`` for the ``b`` of ``ReLU(W x + b)``)
    makes the pre-activation ``-inf`` for every input, a neuron that is never active.
    NaN is refused, and so is the opposite infinity, which would make the neuron always
    active with an infinite output. A scalar is broadcast to ``length``.
    """
    array = _vector_of_length(value, name, length)
    allowed = "+inf" if never_active > 0 else "-inf"
    refused = "-inf" if never_active > 0 else "+inf"
    nan = np.flatnonzero(np.isnan(array))
    if nan.size:
        raise FastReluError(f"The '{name}' parameter must contain only real numbers or {allowed} (a neuron that is never active). Got NaN at {_indices_text(nan)}.")
    wrong = np.flatnonzero(array == -never_active)
    if wrong.size:
        raise FastReluError(f"The '{name}' parameter must contain only real numbers or {allowed} (a neuron that is never active). Got {refused} at {_indices_text(wrong)}, which would make the neuron always active with an infinite output.")
    return np.ascontiguousarray(array)


def _indices_text(indices):
    shown = ", ".join(str(int(i)) for i in indices[:5])
    if indices.size == 1:
        return f"index {shown}"
    return f"indices {shown}" + (f" and {indices.size - 5} more" if indices.size > 5 else "")


def check_real(value, name):
    """Refuse what is not real numbers before it is converted: complex values (not
    silently cut to their real part) and text (an array of strings or bytes, or of
    objects among which a string is, even when every string spells a number; the
    command line refuses such files, and so does the API)."""
    if isinstance(value, (str, bytes)):
        raise FastReluError(f"The '{name}' parameter must hold real numbers. Got a {type(value).__name__} {value[:40]!r}; convert text to numbers first (e.g. float(...)).")
    try:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError):  # ragged or odd input: the conversion to float64 reports it
        return
    kind = array.dtype.kind
    if kind == "c":
        raise FastReluError(f"The '{name}' parameter must hold real numbers. Got complex values (dtype {array.dtype}).")
    if kind == "O":
        text = next((v for v in array.flat if isinstance(v, (str, bytes))), None)
        if text is None:
            if any(isinstance(v, complex) for v in array.flat):
                raise FastReluError(f"The '{name}' parameter must hold real numbers. Got complex values (dtype {array.dtype}).")
            return
        what = f"an object array holding text such as {text!r}"
    elif kind in "US":
        what = f"text (dtype {array.dtype})"
    else:
        return
    raise FastReluError(f"The '{name}' parameter must hold real numbers. Got {what}; convert it to numbers first (e.g. np.asarray(..., dtype=float)).")


def _check_finite(array, name):
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))
        where = ", ".join(str(tuple(int(i) for i in idx)) for idx in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise FastReluError(f"The '{name}' parameter must contain only finite numbers. Got NaN or inf at {where}{more}.")


def not_a_frame_error(W, name, rank=None):
    """The error for a weight matrix whose rows do not span R^n (names the rank)."""
    n = W.shape[1]
    rank = svd_rank(W) if rank is None else rank
    return FastReluError(f"The '{name}' parameter must be a frame for R^{n} (rank {n}). Got rank({name}) = {rank} for {name}.shape={W.shape}.")


#: Rows of the weights scaled and multiplied at once when the Gram matrix is formed.
GRAM_CHUNK_ENTRIES = 1 << 22


def svd_rank(W):
    """``numpy.linalg.matrix_rank(W)``: singular values above
    ``S.max() * max(m, n) * eps``, after a check that the SVD's working set fits."""
    from fastrelu._core import budget as _budget

    _budget.check_memory("the rank check of the weights", _budget.frame_validation(*W.shape, svd=True),
                         "Use a smaller layer or a machine with more memory.")
    return int(np.linalg.matrix_rank(W))


def _gram_decides_full_rank(W):
    """True when the Gram matrix proves ``matrix_rank(W) = n``; False when it cannot
    (rank-deficient or too close to it for the Gram matrix to tell).

    With ``A = W / max|W_ij|`` (entries in [-1, 1]: nothing overflows, and only entries
    negligible against the largest underflow) and ``G = A^T A``, rounding perturbs ``G``
    by at most about ``(m + 1) eps trace(G)`` and the Cholesky factorisation adds at
    most about ``(n + 1) eps trace(G)`` more. So the factorisation of ``G - delta I``
    with ``delta = 2 (m + n + 2) eps trace(G)`` succeeds only if
    ``sigma_n(A)^2 > delta / 2``, far above the squared threshold of the rank rule,
    ``(sigma_1(A) max(m, n) eps)^2``: the SVD's verdict is then full rank as well."""
    import scipy.linalg

    from fastrelu._core.rows import cross_product

    m, n = W.shape
    scale = float(np.max(np.abs(W)))
    rows = max(1, GRAM_CHUNK_ENTRIES // n)
    gram = np.zeros((n, n))
    for start in range(0, m, rows):
        A = W[start:start + rows] / scale
        gram += cross_product(A)  # G = A^T A, one row chunk at a time
    trace = float(np.trace(gram))
    delta = 2.0 * (m + n + 2) * np.finfo(np.float64).eps * trace
    gram[np.diag_indices(n)] -= delta
    try:
        scipy.linalg.cholesky(gram, lower=True, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return False
    return True


def as_frame(weight, name="weight"):
    """Validate a weight matrix whose rows must be a frame for R^n.

    Checks: 2-D, finite, no zero rows (a row is zero when all its entries are), ``m >= n``
    and ``rank(W) = n`` with the rule of ``numpy.linalg.matrix_rank`` (singular values
    above ``S.max() * max(m, n) * eps``). The rank is decided by the Cholesky
    factorisation of the scaled Gram matrix ``W^T W`` (``O(m n^2)``, a fraction of an SVD)
    whenever that is conclusive, and by the SVD itself otherwise (rank-deficient or
    nearly so), so the verdict is the same as the SVD's. Weights whose working set does
    not fit in memory are refused before it is allocated.
    """
    from fastrelu._core import budget as _budget

    W = as_matrix(weight, name)
    m, n = W.shape
    rows = max(1, GRAM_CHUNK_ENTRIES // n)
    nonzero = np.concatenate([(W[start:start + rows] != 0).any(axis=1) for start in range(0, m, rows)])
    zero = np.flatnonzero(~nonzero)
    if zero.size:
        raise FastReluError(f"The '{name}' parameter must have no zero rows (a zero neuron carries no direction). Got zero rows at indices {zero[:10].tolist()}{' ...' if zero.size > 10 else ''}.")
    if m < n:
        raise FastReluError(f"The '{name}' parameter must have at least as many rows (neurons) as columns (input dimension) to be a frame. Got {name}.shape={W.shape}.")
    _budget.check_memory("the frame check of the weights", _budget.frame_validation(m, n),
                         "Use a smaller layer or a machine with more memory.")
    if _gram_decides_full_rank(W):
        return W
    rank = svd_rank(W)
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
