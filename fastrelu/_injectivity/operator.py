"""Pointwise injectivity of a layer given only products with ``W`` and ``W^T`` (THEORY §10:
convolutions too large for their dense rows): the extreme eigenvalues of ``W_I^T W_I`` per
point by LOBPCG, with bounds from the residuals."""

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import aslinearoperator, lobpcg

from fastrelu._core import budget as _budget
from fastrelu._core.errors import FastReluError, first_line
from fastrelu._core.rows import DEFAULT_RANK_TOL
from fastrelu._core.validation import (
    as_bias,
    as_matrix,
    n_jobs_value,
    positive_float,
    positive_int,
    rank_tol_value,
    seed_value,
)
from fastrelu._injectivity.pointwise import PointCounts
from fastrelu._runtime.parallel import Stopwatch, run_blocks
from fastrelu._runtime.seeds import OPERATOR_STREAM, block_generator

#: Relative residual ``|S v - theta v| / theta_max`` the iterations aim at, and the
#: relative width of the brackets of ``lambda_min`` and ``lambda_max`` at which a point's
#: estimates count as converged.
DEFAULT_TOL = 1e-6
#: Iterations of each eigenvalue iteration at most (the smallest one's restarts included).
DEFAULT_MAX_ITER = 2000
#: Vectors per eigenvalue iteration for the smallest eigenvalue (a block converges faster
#: than one vector, and its second value gives the Kato-Temple bound).
DEFAULT_BLOCK = 4
#: Points whose pre-activations are computed by one product (the products' shapes, and so
#: their rounding, do not depend on the thread count).
POINT_CHUNK = 16


@dataclass(frozen=True, eq=False)
class OperatorInjectivity(PointCounts):
    """Pointwise injectivity of a layer from products with ``W`` and ``W^T`` only
    (:func:`operator_injectivity`): per point, estimates of the extreme singular values
    of the active rows ``W_I`` and what they decide.

    Attributes
    ----------
    injective : ndarray of bool, shape (N,)
        ``True`` where the estimates show that the active rows span R^n in the sense of
        :func:`fastrelu.pointwise_injectivity` (THEORY §2, rank tolerance ``rank_tol``):
        both iterations met their residual tolerance (``residual <= tol``) and the lower
        bound of ``sigma_min(W_I)`` exceeds ``sqrt(n) * rank_tol`` times the upper bound
        of ``sigma_max(W_I)``. That is sufficient for the scan to reach
        rank ``n`` (THEORY §10.1), if the iterations found the two smallest and the
        largest eigenvalues of ``W_I^T W_I`` (they start from random blocks: likely, not
        certified).
    undecided : ndarray of bool, shape (N,)
        Points with at least ``n`` active rows that are not shown injective: their
        active rows are too ill-conditioned for the sufficient test, or the bounds too
        wide (they may still span within ``rank_tol``). Every other point is decided:
        injective, or with fewer than ``n`` active rows (never injective).
    n_active : ndarray of int64, shape (N,)
        Active rows ``{i : <x, w_i> >= alpha_i}`` per point (computed exactly from the
        products).
    sigma_min : ndarray, shape (N,)
        The Rayleigh-Ritz estimate of ``sigma_min(W_I)``: never below the true value (a
        Rayleigh quotient); ``0`` where ``n_active < n`` (exact).
    sigma_min_lower : ndarray, shape (N,)
        Its lower bound from the residuals (Kato-Temple with the second Ritz value, else
        the residual norm, less the products' rounding), valid if the iteration found
        the two smallest eigenvalues; ``0`` where ``n_active < n``.
    sigma_max : ndarray, shape (N,)
        The Rayleigh-Ritz estimate of ``sigma_max(W_I)`` (never above the true value);
        NaN where ``n_active < n`` (not computed).
    sigma_max_upper : ndarray, shape (N,)
        Its upper bound from the residual, ``sqrt(theta_max + r_max)`` (valid if the
        iteration found the largest eigenvalue); NaN where ``n_active < n``.
    cond : ndarray, shape (N,)
        ``sigma_max / sigma_min`` (``inf`` where ``sigma_min = 0``).
    residual : ndarray, shape (N,)
        The larger relative residual ``|S v - theta v| / theta_max`` of the two
        eigenpairs of ``S = W_I^T W_I``; NaN where ``n_active < n``.
    converged : ndarray of bool, shape (N,)
        ``sigma_min`` and ``sigma_max`` are known to ``tol``: the brackets
        ``[sigma_min_lower^2, sigma_min^2]`` and ``[sigma_max^2, theta_max + r_max]``
        are within ``tol`` of their Ritz values, relative (``True`` where ``n_active <
        n``: nothing to compute). A small residual alone does not make it: for a
        smallest eigenvalue far below ``tol * lambda_max`` the bracket stays wide.
    iterations : ndarray of int64, shape (N,)
        Products with ``S`` (blocks of at most ``block`` vectors) of the
        smallest-eigenvalue iteration, its restarts included: about one per iteration
        (0: a dense eigensolver, for ``n < 5 * block``, or nothing to compute).
    rank_tol, tol : float
    max_iter, block : int
        As asked (the iterations use ``min(block, n)`` vectors).
    n_dim : int
        ``n``, the input dimension.
    elapsed : float
        Wall-clock seconds.
    """

    injective: np.ndarray = field(repr=False)
    undecided: np.ndarray = field(repr=False)
    n_active: np.ndarray = field(repr=False)
    sigma_min: np.ndarray = field(repr=False)
    sigma_min_lower: np.ndarray = field(repr=False)
    sigma_max: np.ndarray = field(repr=False)
    sigma_max_upper: np.ndarray = field(repr=False)
    cond: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    converged: np.ndarray = field(repr=False)
    iterations: np.ndarray = field(repr=False)
    rank_tol: float
    tol: float
    max_iter: int
    block: int
    elapsed: float = field(repr=False)
    n_dim: int = 0

    @property
    def undecided_fraction(self):
        """Fraction of the points left undecided (NaN for no points)."""
        return float(self.undecided.mean()) if self.n_points else float("nan")

    def __repr__(self):
        return (f"OperatorInjectivity(n_points={self.n_points}, injective={int(self.injective.sum())}, "
                f"undecided={int(self.undecided.sum())}, rank_tol={self.rank_tol:g}, tol={self.tol:g})")

    def summary(self, limit=10):
        """A short human-readable report: the counts, then the first points not shown
        injective with what decided them.

        Parameters
        ----------
        limit : int, default=10
            At most this many points are listed.

        Returns
        -------
        str
        """
        N = self.n_points
        lines = [f"{int(self.injective.sum())} of {N} points shown injective, "
                 f"{int(self.undecided.sum())} undecided, "
                 f"{int((self.n_active < self.n_dim).sum())} with fewer than {self.n_dim} active rows "
                 f"(iterative estimates: rank tolerance {self.rank_tol:g}, tol {self.tol:g}; "
                 f"{int((~self.converged).sum())} not converged)"]
        others = np.flatnonzero(~self.injective)
        for i in others[:limit]:
            if self.n_active[i] < self.n_dim:
                lines.append(f"  point {i}: {self.n_active[i]} active rows")
            else:
                lines.append(f"  point {i}: undecided, sigma_min in [{self.sigma_min_lower[i]:.3g}, "
                             f"{self.sigma_min[i]:.3g}], sigma_max <= {self.sigma_max_upper[i]:.3g}")
        if others.size > limit:
            lines.append(f"  ... and {others.size - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class Spectrum:
    """Estimates of the extreme eigenvalues of ``S = W_I^T W_I`` (one point's active
    rows): the Ritz values ``low_ritz`` (smallest) and ``high_ritz`` (largest), the
    bounds their residuals give, ``low_bound <= lambda_min <= low_ritz`` and
    ``high_ritz <= lambda_max <= high_bound`` (valid if the iterations found the two
    smallest and the largest eigenvalues), the larger relative residual and the
    iterations of the smallest-eigenvalue iteration."""

    low_ritz: float
    low_bound: float
    high_ritz: float
    high_bound: float
    residual: float
    iterations: int

    def converged(self, tol):
        """Both brackets within ``tol`` of their Ritz values (relative)."""
        return (self.low_ritz - self.low_bound <= tol * self.low_ritz
                and self.high_bound - self.high_ritz <= tol * self.high_ritz)


#: Rounds of the smallest-eigenvalue iteration, each with a residual tolerance 100 times
#: smaller, while its bracket is wider than ``tol`` and iterations remain.
REFINEMENTS = 3


def spectrum(product, n, rows, *, tol, max_iter, block, rng):
    """Extreme eigenvalues of the PSD operator ``S`` on R^n given by ``product(V)`` (``V``
    of shape ``(n, k)``; ``S`` is ``W_I^T W_I`` with ``rows`` rows, for the rounding
    allowance). Dense ``eigh`` below ``5 * block`` (LOBPCG needs more), else LOBPCG for
    the largest (two vectors) and for the smallest (``block`` vectors) from ``rng``'s
    normal blocks, the latter restarted from its own block with a 100 times smaller
    residual tolerance (at most ``REFINEMENTS`` times, ``max_iter`` iterations in all,
    not below the products' rounding) while the bracket of ``lambda_min`` is wider than
    ``tol`` relative to it; warnings of the iterations are the caller's to silence."""
    if n < 5 * block:
        full = product(np.eye(n))
        vectors = scipy.linalg.eigh((full + full.T) / 2)[1]  # ascending eigenvalues
        return _bounds(product, n, rows, vectors[:, :2], vectors[:, -1:], 0)
    start = rng.standard_normal((n, block + 2))
    probe = product(start[:, :1])
    scale = float(np.linalg.norm(probe) / np.linalg.norm(start[:, 0]))
    high, high_vectors = lobpcg(_operator(product, n), start[:, block:], largest=True,
                                tol=tol * scale if scale > 0 else None, maxiter=max_iter)
    order = np.argsort(high)[::-1]
    high_theta, high_vector = float(high[order[0]]), high_vectors[:, order[:1]]
    if not high_theta > 0:  # S = 0 on the start: nothing to iterate
        return _bounds(product, n, rows, start[:, :2], high_vector, 0)
    floor = (n + rows) * np.finfo(float).eps * high_theta
    block_vectors, atol = start[:, :block], tol * high_theta
    used = [0]  # products with S: about one per iteration (the history's length is not)

    def counted(V):
        used[0] += 1
        return product(V)

    for _ in range(1 + REFINEMENTS):
        low, block_vectors = lobpcg(_operator(counted, n), block_vectors, largest=False, tol=atol,
                                    maxiter=max(1, max_iter - used[0]))
        block_vectors = block_vectors[:, np.argsort(low)]
        found = _bounds(product, n, rows, block_vectors[:, :2], high_vector, used[0])
        if found.converged(tol) or used[0] >= max_iter or atol <= floor:
            break
        atol = max(atol / 100.0, floor)
    return found


def _bounds(product, n, rows, low_vectors, high_vector, iterations):
    """:class:`Spectrum` from the two lowest Ritz vectors and the highest: their
    Rayleigh quotients and residuals recomputed, the residual bound for ``lambda_max``,
    Kato-Temple (with ``theta_2 - r_2`` below ``lambda_2``) or the residual for
    ``lambda_min``, less the products' rounding."""
    V = np.hstack([low_vectors, high_vector])
    V = V / np.linalg.norm(V, axis=0)
    SV = product(V)
    rayleigh = np.einsum("ij,ij->j", V, SV)
    r = np.linalg.norm(SV - V * rayleigh, axis=0)
    theta1 = float(rayleigh[0])
    theta_max = float(np.max(rayleigh))  # every Rayleigh quotient is below lambda_max
    high_bound = max(theta_max, float(rayleigh[-1] + r[-1]))
    low_bound = theta1 - float(r[0])
    if low_vectors.shape[1] > 1:
        beta = float(rayleigh[1] - r[1])  # below lambda_2, if these are the two smallest
        if beta > theta1:
            low_bound = max(low_bound, theta1 - float(r[0]) ** 2 / (beta - theta1))
    low_bound -= (n + rows) * np.finfo(float).eps * high_bound  # the products' rounding
    scale = theta_max if theta_max > 0 else 1.0
    return Spectrum(low_ritz=theta1, low_bound=min(max(low_bound, 0.0), theta1),
                    high_ritz=theta_max, high_bound=high_bound,
                    residual=max(float(r[0]), float(r[-1])) / scale, iterations=iterations)


def _operator(product, n):
    from scipy.sparse.linalg import LinearOperator

    return LinearOperator((n, n), matvec=lambda v: product(np.reshape(v, (n, 1)))[:, 0],
                          matmat=product, dtype=np.float64)


def as_operator(value, name="operator"):
    """``value`` (an array of shape ``(m, n)`` or a ``scipy.sparse.linalg.LinearOperator``)
    as a float64 LinearOperator, or raise."""
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        return aslinearoperator(as_matrix(value, name))
    try:
        op = aslinearoperator(value)
    except (TypeError, ValueError):
        raise FastReluError(f"The '{name}' parameter must be an array of shape (m, n) or a scipy.sparse.linalg.LinearOperator with matmat and rmatmat. Got {type(value).__name__} instead.") from None
    if len(op.shape) != 2 or min(op.shape) < 1:
        raise FastReluError(f"The '{name}' parameter must have shape (m, n) with m, n >= 1. Got shape {op.shape} instead.")
    if op.dtype is not None and np.issubdtype(op.dtype, np.complexfloating):
        raise FastReluError(f"The '{name}' parameter must be a real operator (float64). Got dtype {op.dtype} instead.")
    m, n = op.shape
    for what, product, size, rows in (("W", op.matmat, n, m), ("W^T", op.rmatmat, m, n)):
        try:  # one product each way, on zeros, before any work
            out = np.asarray(product(np.zeros((size, 1))))
        except Exception as exc:  # an operator raises whatever it raises
            raise FastReluError(f"The '{name}' parameter must provide products with {what} (matmat and rmatmat, or matvec and rmatvec). Got {type(exc).__name__}: {first_line(exc)}") from None
        if out.shape != (rows, 1) or np.iscomplexobj(out):
            raise FastReluError(f"The '{name}' parameter must map a block of shape ({size}, 1) to a real block of shape ({rows}, 1) by its product with {what}. Got {out.dtype} of shape {out.shape} instead.")
    return op


def operator_injectivity(operator, bias, X, *, rank_tol=DEFAULT_RANK_TOL, tol=DEFAULT_TOL,
                         max_iter=DEFAULT_MAX_ITER, block=DEFAULT_BLOCK, seed=0, n_jobs=None,
                         progress=None):
    """Pointwise injectivity of ``ReLU(W x - alpha)`` at the rows of ``X`` from products
    with ``W`` and ``W^T`` only (for layers whose dense rows do not fit in memory, such as
    :meth:`fastrelu.ModelLayer.operator` of a large convolution).

    At each point the active rows ``I = {i : <x, w_i> >= alpha_i}`` are found from one
    product; with at least ``n`` of them, LOBPCG estimates the largest and the smallest
    eigenvalues of ``S = W_I^T W_I`` (a product is ``W^T (1_I * (W V))``) and the
    residuals bound them (THEORY §10.1). The point is shown injective when both
    iterations met their residual tolerance and the lower bound of ``sigma_min(W_I)``
    exceeds ``sqrt(n) * rank_tol`` times the upper bound of ``sigma_max(W_I)``: then the active unit rows cannot all lie within
    ``rank_tol`` of an ``(n-1)``-dimensional span, so the scan of
    :func:`fastrelu.pointwise_injectivity` reaches rank ``n``. These are **iterative
    estimates**: the bounds hold if the iterations found the two smallest and the
    largest eigenvalues, which random starts make likely but do not certify; points the
    test cannot settle are reported ``undecided``, never injective.

    Parameters
    ----------
    operator : array_like of shape (m, n), or scipy.sparse.linalg.LinearOperator
        ``W``; a LinearOperator needs ``matmat`` and ``rmatmat`` (products with ``W`` and
        ``W^T`` on blocks of vectors).
    bias : array_like, shape (m,)
        ``alpha`` (subtracted convention).
    X : array_like, shape (N, n)
        The points.
    rank_tol : float, default=1e-6
        The rank tolerance of :func:`fastrelu.pointwise_injectivity`.
    tol : float, default=1e-6
        The residual the iterations aim at, ``|S v - theta v| <= tol * theta_max``, and
        the relative width of the brackets at which ``converged`` is set; while the
        smallest eigenvalue's bracket is wider, its iteration restarts with a 100 times
        smaller residual tolerance (three times at most).
    max_iter : int, default=2000
        Iterations of each eigenvalue iteration at most, restarts included (counted as
        products with ``S``; LOBPCG makes one per iteration, and one to start).
    block : int, default=4
        Vectors of the smallest-eigenvalue iteration; below ``n = 5 * block``, ``S`` is
        formed from ``n`` products and its eigenvalues are computed by LAPACK.
    seed : int or None, default=0
        Seeds the starting blocks (point ``j`` has its own stream): the result does not
        depend on ``n_jobs``.
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). Points are spread over them and their
        products run concurrently, so a LinearOperator must allow calls from several
        threads (NumPy arrays and :meth:`fastrelu.ModelLayer.operator` do). The result
        does not depend on ``n_jobs`` as long as a product's rounding depends only on its
        operands' shapes and values.
    progress : bool or None, default=None
        A progress bar over the points (``None``: for long runs on a terminal).

    Returns
    -------
    OperatorInjectivity

    Raises
    ------
    FastReluError
        For an operator that is not an array or a LinearOperator, a bias or points of
        the wrong shape or not finite, or invalid ``rank_tol``, ``tol``, ``max_iter``,
        ``block``, ``seed`` or ``n_jobs``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.vstack([np.eye(3), -np.eye(3)])
    >>> result = fr.operator_injectivity(W, np.zeros(6), [[1.0, 2.0, 3.0], [1.0, -1.0, 0.5]])
    >>> result.injective.tolist(), result.n_active.tolist()
    ([True, True], [3, 3])
    >>> result.sigma_min.round(12).tolist()
    [1.0, 1.0]
    """
    clock = Stopwatch()
    op = as_operator(operator)
    m, n = op.shape
    alpha = as_bias(bias, "bias", length=m)
    X = as_matrix(X, "X", ncols=n, allow_empty=True)
    rank_tol = rank_tol_value(rank_tol)
    tol = positive_float(tol, "tol")
    if not tol < 1:
        raise FastReluError(f"The 'tol' parameter must be a float in (0, 1). Got {tol!r} instead.")
    max_iter = positive_int(max_iter, "max_iter")
    block = positive_int(block, "block")
    seed = seed_value(seed)
    jobs = n_jobs_value(n_jobs)
    N = X.shape[0]
    threads = _budget.threads_of(jobs)
    _budget.check_memory("operator_injectivity", [
        ("active sets", N * m, "X"),
        ("products per thread", threads * 8 * (m + 4 * n) * (block + 2) * 3, "block"),
        ("pre-activations of a chunk", 8 * POINT_CHUNK * m, "operator")])
    active = np.zeros((N, m), dtype=bool)
    for rows, Z in pre_activation_chunks(op, alpha, X):
        active[rows] = Z >= 0
    n_active = active.sum(axis=1).astype(np.int64)
    out = {"low": np.zeros(N), "low_bound": np.zeros(N), "high": np.full(N, np.nan),
           "high_bound": np.full(N, np.nan), "residual": np.full(N, np.nan),
           "iterations": np.zeros(N, dtype=np.int64), "converged": np.ones(N, dtype=bool),
           "met": np.zeros(N, dtype=bool)}
    todo = np.flatnonzero(n_active >= n)

    def make_worker():
        def process(j):
            mask = active[j]

            def product(V):
                return op.rmatmat(mask[:, None] * op.matmat(np.ascontiguousarray(V)))

            found = spectrum(product, n, int(n_active[j]), tol=tol, max_iter=max_iter,
                             block=min(block, n), rng=block_generator(seed, int(j), OPERATOR_STREAM))
            out["low"][j], out["low_bound"][j] = found.low_ritz, found.low_bound
            out["high"][j], out["high_bound"][j] = found.high_ritz, found.high_bound
            out["residual"][j], out["iterations"][j] = found.residual, found.iterations
            out["converged"][j] = found.converged(tol)
            out["met"][j] = found.residual <= tol
        return process, lambda: None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LOBPCG's; convergence is checked below
        run_blocks([int(j) for j in todo], make_worker, jobs, progress=progress,
                   desc="operator_injectivity", unit="point")
    spans = n_active >= n
    converged = out["converged"]
    # THEORY §10.1: sigma_min(W_I) > sqrt(n) rank_tol sigma_max(W_I) implies rank n; the
    # bounds stand for the extreme eigenvalues only once the iterations met their residual
    injective = spans & out["met"] & (out["low_bound"] > n * rank_tol ** 2 * out["high_bound"])
    sigma_min = np.sqrt(np.maximum(out["low"], 0.0))
    sigma_max = np.sqrt(np.maximum(out["high"], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(sigma_min > 0, sigma_max / np.where(sigma_min > 0, sigma_min, 1.0), np.inf)
    return OperatorInjectivity(
        injective=injective, undecided=spans & ~injective, n_active=n_active,
        sigma_min=sigma_min, sigma_min_lower=np.sqrt(out["low_bound"]), sigma_max=sigma_max,
        sigma_max_upper=np.sqrt(out["high_bound"]),
        cond=cond, residual=out["residual"], converged=converged, iterations=out["iterations"],
        rank_tol=rank_tol, tol=tol, max_iter=max_iter, block=block, elapsed=clock(), n_dim=n)


def pre_activation_chunks(op, alpha, X):
    """``(rows, W X[rows]^T - alpha)`` for chunks of ``POINT_CHUNK`` points: the
    pre-activations whose signs are the activity (one product per chunk, of a shape that
    does not depend on the thread count)."""
    for lo in range(0, X.shape[0], POINT_CHUNK):
        rows = slice(lo, lo + POINT_CHUNK)
        yield rows, op.matmat(np.ascontiguousarray(X[rows].T)).T - alpha


def operator_extremes(operator, *, tol=DEFAULT_TOL, max_iter=DEFAULT_MAX_ITER,
                      block=DEFAULT_BLOCK, seed=0):
    """``Spectrum`` of ``W^T W`` for the whole operator (its frame bounds and ``|W|_2^2``),
    from the same iterations as :func:`operator_injectivity` (stream block ``-1``)."""
    op = as_operator(operator)
    m, n = op.shape

    def product(V):
        return op.rmatmat(op.matmat(np.ascontiguousarray(V)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return spectrum(product, n, m, tol=tol, max_iter=max_iter, block=min(block, n),
                        rng=block_generator(seed, 2 ** 32, OPERATOR_STREAM))

