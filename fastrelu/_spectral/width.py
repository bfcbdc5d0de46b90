"""Gaussian mean width of sets, linear maps and ReLU layers, and the local metrics of a
layer at data points (THEORY §8)."""

import math
from dataclasses import dataclass, field

import numpy as np

from fastrelu._core import budget as _budget
from fastrelu._core.domains import Data
from fastrelu._core.errors import FastReluError
from fastrelu._core.frames import spectral_norm
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import MIN_RANK_TOL, as_matrix, n_jobs_value, positive_int
from fastrelu._runtime import checkpoint as _checkpoint
from fastrelu._runtime.blocks import BlockPlan, digest, execute
from fastrelu._runtime.parallel import Stopwatch, run_blocks
from fastrelu._runtime.seeds import WIDTH_BLOCK, WIDTH_STREAM, block_generator
from fastrelu._spectral import kernels
from fastrelu._spectral.power import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    _Ascent,
    _tol_value,
    _unit_rows,
    ascent_bytes,
)

DEFAULT_DRAWS = 10_000
#: Ascent starts per draw for a layer on the unit ball.
DEFAULT_STARTS_PER_DRAW = 8
#: Points of a finite set compared with a block of draws at once.
SET_CHUNK = 4096
#: Default relative tolerance of the local singular values (times sigma_1(W)).
DEFAULT_RTOL = 1e-6
#: The Gram matrices W^T D_x W are formed by one GEMM with the m x n^2 outer products of
#: the rows when those take at most this many entries (128 MiB), else per point.
OUTER_MAX_ENTRIES = 1 << 24
#: Trapezoidal rule of :func:`fastrelu._spectral.kernels.local_width`: nodes v in
#: [-72, 68] with step 1/2. The integrand is analytic in the strip |Im v| < pi, so the
#: discretisation error is of order exp(-2 pi^2 / h) ~ 1e-17; the truncated tails are
#: below n e^(-36) and 2 e^(-34) relative to the result's scale.
_NODES_V = np.arange(-72.0, 68.0 + 0.25, 0.5)
_NODES = np.exp(_NODES_V)
_WEIGHTS = 0.5 * np.exp(-0.5 * _NODES_V)


@dataclass(frozen=True, eq=False)
class Estimate:
    """A Monte Carlo estimate: the mean of ``n_draws`` i.i.d. per-draw values.

    Attributes
    ----------
    value : float
        The mean of the per-draw values.
    stderr : float
        Its standard error, ``std(ddof=1) / sqrt(n_draws)`` (NaN for one draw).
    n_draws : int
    per_draw : str
        What each per-draw value is: ``"exact"`` (the supremum is computed exactly, so
        ``value`` is an unbiased estimate) or ``"lower estimate"`` (the supremum is found
        by ascent from a few starts: each value is attained, hence at most the true
        supremum, and ``value`` estimates the width from below).
    method : str
        How the supremum per draw was computed.
    seed : int
        Reproduces the draws.
    elapsed : float
    """

    value: float
    stderr: float
    n_draws: int
    per_draw: str = "exact"
    method: str = ""
    seed: int | None = None
    elapsed: float = field(default=0.0, repr=False)


@dataclass(frozen=True, eq=False)
class LocalMetrics:
    """Per data point: the local linear map ``D_x W`` of a ReLU layer and its measures.

    ``D_x`` is the 0/1 diagonal of the activation pattern at ``x`` (active: ``<x, w_i> >=
    alpha_i``, THEORY §1). The singular values of ``D_x W`` are the square roots of the
    eigenvalues of ``W^T D_x W = sum_{i active} w_i w_i^T``, computed per point (LAPACK
    ``syevd`` through ``numpy.linalg.eigvalsh``); they carry an absolute error of about
    ``1e-8 sigma_1(W)`` (round-off of the Gram matrix), so values at or below
    ``tol = rtol * sigma_1(W)`` are reported as 0 and not counted.

    Attributes
    ----------
    n_active : ndarray of int64, shape (N,)
        Number of active rows.
    rank : ndarray of int64, shape (N,)
        Number of singular values of ``D_x W`` above ``tol``.
    sigma_max : ndarray, shape (N,)
        Largest singular value of ``D_x W`` (its operator norm).
    sigma_min : ndarray, shape (N,)
        ``sigma_n(D_x W)``: 0 unless the active rows span R^n; the local stability of
        reconstruction (``|x - x'| <= |D_x W (x - x')| / sigma_min`` on the pattern).
    sigma_min_nonzero : ndarray, shape (N,)
        Smallest singular value above ``tol`` (NaN where there is none).
    width : ndarray, shape (N,)
        Gaussian mean width of ``D_x W B`` (``B`` the unit ball):
        ``E |W^T D_x g| = E sqrt(sum_j lambda_j h_j^2)`` (``g ~ N(0, I_m)``,
        ``h ~ N(0, I_n)``, ``lambda_j`` the eigenvalues of ``W^T D_x W``), computed
        without sampling by the trapezoidal rule on a one-dimensional integral (relative
        error below 1e-12): exact up to round-off, not an estimate.
    singular_values : ndarray, shape (N, n), or None
        All singular values per point in decreasing order (``return_all=True``).
    rtol, tol : float
        The relative tolerance and the absolute one, ``rtol * sigma_1(W)``.
    elapsed : float
    """

    n_active: np.ndarray
    rank: np.ndarray
    sigma_max: np.ndarray
    sigma_min: np.ndarray
    sigma_min_nonzero: np.ndarray
    width: np.ndarray
    singular_values: np.ndarray | None = field(repr=False)
    rtol: float = DEFAULT_RTOL
    tol: float = 0.0
    elapsed: float = field(default=0.0, repr=False)

    @property
    def n_points(self):
        return self.n_active.shape[0]


def _merge_moments(parts, start=(0, 0.0, 0.0), *, finish=True):
    """Mean and standard error from per-block ``(count, mean, M2)``, merged in block
    order (Chan et al.) onto the moments ``start`` of the blocks before, so the result
    never depends on which thread ran a block. ``finish=False`` returns the merged
    ``(count, mean, M2)`` instead."""
    count, mean, m2 = int(start[0]), float(start[1]), float(start[2])
    for c, mu, s in parts:
        c, mu, s = int(c), float(mu), float(s)
        total = count + c
        delta = mu - mean
        mean += delta * c / total
        m2 += s + delta * delta * count * c / total
        count = total
    if not finish:
        return count, mean, m2
    stderr = math.sqrt(m2 / (count - 1) / count) if count > 1 else float("nan")
    return mean, stderr


class _WidthPlan(BlockPlan):
    """The Gaussian draws of :func:`gaussian_mean_width` in blocks of ``WIDTH_BLOCK``.
    State: the moments ``(count, mean, M2)`` of blocks ``0 .. merged-1``, merged in block
    order (a floating-point mean is not associative), and the ``(count, mean, M2)`` of
    the blocks finished ahead of the first missing one (``ahead_*``, sorted by block),
    merged as soon as the blocks before them are: the state holds only the blocks that
    finished out of order, never one entry per block of the run.

    ``kind`` is ``"set"`` (``points``), ``"image"`` (``layer`` of ``points``), ``"linear"``
    (``weight``) or ``"ball"`` (``layer`` on the unit ball, by ascent)."""

    kernel = "gaussian_mean_width"
    desc = "mean width"
    max_task_blocks = 16
    variable = ("ahead_block", "ahead_count", "ahead_mean", "ahead_m2")

    def __init__(self, kind, n_draws, seed, *, points=None, layer=None, weight=None,
                 n_starts=DEFAULT_STARTS_PER_DRAW, max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL):
        super().__init__(-(-n_draws // WIDTH_BLOCK))
        self.kind, self.n_draws, self.seed = kind, n_draws, seed
        self.points, self.layer, self.weight = points, layer, weight
        self.n_starts, self.max_iter, self.tol = n_starts, max_iter, tol

    def fingerprint(self):
        inputs = {"points": self.points, "weight": self.weight,
                  "layer weight": None if self.layer is None else self.layer.weight,
                  "layer bias": None if self.layer is None else self.layer.bias}
        ball = {"n_starts": self.n_starts, "max_iter": self.max_iter, "tol": self.tol} if self.kind == "ball" else {}
        return {"of": self.kind, **{k: digest(v) for k, v in inputs.items() if v is not None},
                "n_draws": self.n_draws, "seed": self.seed, **ball, "block_size": WIDTH_BLOCK}

    def empty(self):
        return {"merged": np.zeros((), dtype=np.int64), "count": np.zeros((), dtype=np.int64),
                "mean": np.zeros(()), "m2": np.zeros(()),
                "ahead_block": np.zeros(0, dtype=np.int64), "ahead_count": np.zeros(0, dtype=np.int64),
                "ahead_mean": np.zeros(0), "ahead_m2": np.zeros(0)}

    def _sup(self, G):
        if self.kind == "set":
            return _finite_set_sup(self.points, G)
        if self.kind == "image":
            return _finite_set_sup(self.points, G, self.layer)
        return np.linalg.norm(G @ self.weight, axis=1)

    def _worker_ball(self, moments, first):
        W, alpha = self.layer.weight, self.layer.bias
        m, n = W.shape
        n_starts, seed, n_draws = self.n_starts, self.seed, self.n_draws
        ascent = self.cached("ascent", lambda: _Ascent(kernels.MODE_LINEAR, kernels.LINE_SEARCH, W,
                                                       alpha, None, self.max_iter, self.tol))
        at_zero = np.maximum(-alpha, 0.0)
        run = ascent.worker(WIDTH_BLOCK * n_starts)
        G_buffer = np.empty((WIDTH_BLOCK, m))
        X_buffer = np.empty((WIDTH_BLOCK * n_starts, n))

        def process(b):
            size = min(WIDTH_BLOCK, n_draws - b * WIDTH_BLOCK)
            G = G_buffer[:size]
            rng = block_generator(seed, b, WIDTH_STREAM)
            rng.standard_normal(out=G)
            X = X_buffer[:size * n_starts].reshape(size, n_starts, n)
            rng.standard_normal(out=X)
            # the first start of each draw: the maximiser of <g+, W x> on the sphere
            X[:, 0, :] = np.maximum(G, 0.0) @ W
            X = _unit_rows(X.reshape(size * n_starts, n))
            _, q, _, _ = run(X, G, n_starts)
            values = np.maximum(q.reshape(size, n_starts).max(axis=1), G @ at_zero)
            _store(moments, b - first, values)

        return process

    def _worker_draws(self, moments, first):
        dim = self.weight.shape[0] if self.kind == "linear" else (
            self.points.shape[1] if self.kind == "set" else self.layer.shape[0])
        seed, n_draws = self.seed, self.n_draws
        buffer = np.empty((WIDTH_BLOCK, dim))

        def process(b):
            size = min(WIDTH_BLOCK, n_draws - b * WIDTH_BLOCK)
            G = buffer[:size]
            block_generator(seed, b, WIDTH_STREAM).standard_normal(out=G)
            _store(moments, b - first, self._sup(G))

        return process

    def compute(self, first, stop, n_jobs, *, bar=None, limit_blas=True):
        moments = {"count": np.zeros(stop - first, dtype=np.int64), "mean": np.zeros(stop - first),
                   "m2": np.zeros(stop - first)}
        build = self._worker_ball if self.kind == "ball" else self._worker_draws

        def make_worker():
            return build(moments, first), lambda: None

        run_blocks(range(first, stop), make_worker, n_jobs, bar=bar, limit_blas=limit_blas)
        return moments

    def absorb(self, state, piece, first, stop):
        # the blocks ahead with this piece, sorted by block index (a checkpoint keeps them)
        block = np.concatenate([state["ahead_block"], np.arange(first, stop, dtype=np.int64)])
        order = np.argsort(block, kind="stable")
        ahead = {name: np.concatenate([state[f"ahead_{name}"], piece[name]])[order]
                 for name in ("count", "mean", "m2")}
        block = block[order]
        # merge the run of blocks that now follows the merged ones
        merged = int(state["merged"])
        # (sorted distinct indices: once one is past its place, all later ones are)
        ready = int(np.sum(block == merged + np.arange(block.size)))
        if ready:
            count, mean, m2 = _merge_moments(
                zip(ahead["count"][:ready], ahead["mean"][:ready], ahead["m2"][:ready]),
                (state["count"], state["mean"], state["m2"]), finish=False)
            state["merged"] = np.array(merged + ready, dtype=np.int64)
            state["count"] = np.array(count, dtype=np.int64)
            state["mean"] = np.array(mean)
            state["m2"] = np.array(m2)
        state["ahead_block"] = block[ready:]
        for name in ("count", "mean", "m2"):
            state[f"ahead_{name}"] = ahead[name][ready:]

    def result(self, state):
        return _merge_moments([], (state["count"], state["mean"], state["m2"]))


def _store(moments, i, values):
    """Block statistics ``(count, mean, M2)`` of the per-draw ``values`` at slot ``i``."""
    mean = float(values.mean())
    moments["count"][i] = values.shape[0]
    moments["mean"][i] = mean
    moments["m2"][i] = float(np.sum((values - mean) ** 2))


def _finite_set_sup(points, G, layer=None):
    """``max_t <g, t>`` per row ``g`` of ``G`` over ``t`` in the rows of ``points``, or of
    ``layer(points)`` when a layer is given (its image computed chunk by chunk)."""
    best = np.full(G.shape[0], -np.inf)
    for start in range(0, points.shape[0], SET_CHUNK):
        T = points[start:start + SET_CHUNK]
        if layer is not None:
            T = np.maximum(T @ layer.weight.T - layer.bias, 0.0)
        np.maximum(best, (G @ T.T).max(axis=1), out=best)
    return best


def gaussian_mean_width(obj, *, data=None, n_draws=DEFAULT_DRAWS,
                        n_starts=DEFAULT_STARTS_PER_DRAW, seed=None, n_jobs=None,
                        max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL, progress=False,
                        client=None, checkpoint=None, checkpoint_interval=None):
    """Gaussian mean width ``w(T) = E_g sup_{t in T} <g, t>``, ``g ~ N(0, I)`` [DKM].

    Monte Carlo over ``n_draws`` draws; the supremum per draw depends on what ``obj``
    is:

    - ``Data``: the finite set of its points; the supremum is a maximum (**exact** per
      draw).
    - a 2-D array ``W`` (shape (m, n)): the image ``W B`` of the unit ball ``B`` under the
      linear map; ``sup_{|x| <= 1} <g, W x> = |W^T g|`` (**exact** per draw). Oracle: the
      identity gives ``w(B) = sqrt(2) Gamma((n+1)/2) / Gamma(n/2)``.
    - a :class:`ReLULayer` with ``data``: the image of the data, a finite set (exact per
      draw).
    - a :class:`ReLULayer` alone: the image of the unit ball,
      ``sup_{|x| <= 1} <g, ReLU(W x - alpha)>``, found by conditional-gradient ascent
      from ``n_starts`` starts per draw (one at ``W^T g+ / |W^T g+|``, the others uniform
      on the sphere) and the point ``x = 0``: a **lower estimate** per draw (attained
      values), so ``value`` estimates the width from below.

    Draws come in blocks of 256 from stream 3 of ``seed``; the result is bit-identical
    for any ``n_jobs``.

    Parameters
    ----------
    obj : Data, array_like of shape (m, n), or ReLULayer
        What is measured (see above). A 2-D array is a weight matrix; errors about it
        name it ``'weight'``, as those of :func:`mcbe` and the other functions do.
    data : Data, array_like of shape (N, n), or None, default=None
        With a layer only: the inputs whose image is measured (``None``: the unit
        ball).
    n_draws : int, default=10000
        Number of Gaussian draws.
    n_starts : int, default=8
        Ascent starts per draw (layer on the ball only).
    seed : int or None, default=None
        Seed of the draws (``None``: fresh entropy; reported).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores).
    max_iter : int, default=1000
        Iterations of each ascent at most (layer on the ball only; see
        :func:`relu_power_iteration`).
    tol : float in [0, 1), default=1e-10
        Relative Frank-Wolfe gap at which an ascent has converged (layer on the ball
        only).
    progress : bool or None, default=False
        Progress bar on stderr (as for :func:`mcbe`).
    client : distributed.Client, str or None, default=None
        Run the blocks of draws on this Dask cluster (see :func:`mcbe`); the result is
        the same bits as the local one. ``None``: run locally.
    checkpoint : str, path-like or None, default=None
        Save the partial result to this file and resume from it (see :func:`mcbe`).
        ``None``: no checkpoint.
    checkpoint_interval : float or None, default=None
        Seconds between checkpoint writes (``None``: 5).

    Returns
    -------
    Estimate

    Raises
    ------
    FastReluError
        For an ``obj`` of another type, a weight or data that are not finite 2-D arrays
        (data with ``n`` columns), ``data`` given without a layer, invalid counts,
        ``tol``, ``seed`` or ``n_jobs``, a run that does not fit in memory, an
        unreachable scheduler, or a checkpoint that cannot be read or was written for
        other parameters.

    Examples
    --------
    The identity maps the unit ball of R^3 to itself, whose width is
    ``2 sqrt(2 / pi) = 1.596``:

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> est = fr.gaussian_mean_width(np.eye(3), n_draws=2000, seed=0, n_jobs=1)
    >>> est.n_draws, est.per_draw, bool(abs(est.value - 2 * np.sqrt(2 / np.pi)) < 3 * est.stderr)
    (2000, 'exact', True)

    A layer on the unit ball is measured by ascent, from below:

    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> fr.gaussian_mean_width(fr.ReLULayer(W), n_draws=100, seed=0, n_jobs=1).per_draw
    'lower estimate'
    """
    clock = Stopwatch()
    n_draws = positive_int(n_draws, "n_draws")
    n_starts = positive_int(n_starts, "n_starts")
    max_iter = positive_int(max_iter, "max_iter")
    tol = _tol_value(tol)
    seed_used = _checkpoint.seed_for(seed, checkpoint, _WidthPlan.kernel)
    jobs = n_jobs_value(n_jobs)
    per_draw = "exact"
    if data is not None and not isinstance(obj, ReLULayer):
        raise FastReluError(f"The 'data' parameter applies to a ReLULayer only (the image of the data under the layer). Got data with a {type(obj).__name__}.")
    if isinstance(obj, Data):
        method = f"maximum over {obj.points.shape[0]} points"
        plan = _WidthPlan("set", n_draws, seed_used, points=obj.points)
    elif isinstance(obj, ReLULayer):
        m, n = obj.shape
        if data is not None:
            points = data.points if isinstance(data, Data) else as_matrix(data, "data", ncols=n)
            if points.shape[1] != n:
                raise FastReluError(f"The 'data' parameter must have {n} columns (the input dimension). Got data.shape={points.shape}.")
            method = f"maximum over the images of {points.shape[0]} points"
            plan = _WidthPlan("image", n_draws, seed_used, points=points, layer=obj)
        else:
            method = f"conditional-gradient ascent from {n_starts} starts per draw"
            per_draw = "lower estimate"
            plan = _WidthPlan("ball", n_draws, seed_used, layer=obj, n_starts=n_starts,
                              max_iter=max_iter, tol=tol)
    else:
        if not isinstance(obj, (np.ndarray, list, tuple)):
            raise FastReluError(f"The 'obj' parameter must be a fastrelu.Data, a 2-D array (a linear map, taken on the unit ball) or a fastrelu.ReLULayer. Got {type(obj).__name__} instead.")
        method = "|W^T g| (the linear map on the unit ball)"
        # A 2-D array is a weight matrix: its errors name it as every other function does
        plan = _WidthPlan("linear", n_draws, seed_used, weight=as_matrix(obj, "weight"))
    state = execute(plan, n_jobs=jobs, client=client, checkpoint=checkpoint,
                    checkpoint_interval=checkpoint_interval, progress=progress,
                    budget=_width_budget(plan, jobs))
    mean, stderr = plan.result(state)
    return Estimate(value=mean, stderr=stderr, n_draws=n_draws, per_draw=per_draw,
                    method=method, seed=seed_used, elapsed=clock())


def _width_budget(plan, jobs):
    """The memory and time budget of a :class:`_WidthPlan` (memory checked here)."""
    weight = plan.weight if plan.layer is None else plan.layer.weight
    m, n = (0, 0) if weight is None else weight.shape
    n_points = 0 if plan.points is None else plan.points.shape[0]
    dim = {"set": 0 if plan.points is None else plan.points.shape[1], "image": m,
           "linear": m, "ball": m}[plan.kind]
    return width_budget(plan.kind, dim, m, n, n_points, plan.n_draws, jobs,
                             n_starts=plan.n_starts).check_memory()


def local_metrics(layer, X, *, rtol=DEFAULT_RTOL, return_all=False, n_jobs=None, progress=None):
    """Singular values and Gaussian mean width of the local linear map ``D_x W`` per point.

    For each row ``x`` of ``X``: the active rows ``I(x) = {i : <x, w_i> >= alpha_i}``,
    the singular values of ``D_x W`` (the layer's Jacobian at ``x`` where no
    pre-activation is at its threshold) and the width ``E |W^T D_x g|`` of
    ``D_x W B`` (THEORY §8). See :class:`LocalMetrics` for the definitions, the
    tolerance and the accuracy. Points are processed in chunks (memory ``O(chunk n^2)``,
    plus the ``m x n^2`` outer products of the rows when they fit in 128 MiB).

    Parameters
    ----------
    layer : ReLULayer
        The layer ``ReLU(W x - alpha)``.
    X : array_like, shape (N, n)
        The points (``N = 0`` is allowed).
    rtol : float, default=1e-6
        Singular values at or below ``rtol * sigma_1(W)`` count as zero (at least 1e-7,
        the resolution of singular values from Gram matrices; below 1).
    return_all : bool, default=False
        Also return all ``n`` singular values per point.
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    progress : bool or None, default=None
        Progress bar on stderr (points): ``True`` always, ``False`` never, ``None`` only
        when the run lasts more than two seconds and stderr is a terminal.

    Returns
    -------
    LocalMetrics

    Raises
    ------
    FastReluError
        For a ``layer`` that is not a :class:`ReLULayer`, points that are not a finite
        2-D array with ``n`` columns, an ``rtol`` outside ``[1e-7, 1)``, an invalid
        ``n_jobs``, or more points than fit in memory.

    Examples
    --------
    The tetrahedron with zero bias: one active row at ``(1, 1, 1)``, three at
    ``-(1, 1, 1)`` (singular values ``sqrt(4/3)``, ``sqrt(4/3)`` and ``sqrt(1/3)``):

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> X = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    >>> metrics = fr.local_metrics(fr.ReLULayer(T), X, n_jobs=1)
    >>> metrics.n_active, metrics.rank
    (array([1, 3]), array([1, 3]))
    >>> np.round(metrics.sigma_max, 3), np.round(metrics.sigma_min, 3)
    (array([1.   , 1.155]), array([0.   , 0.577]))
    """
    return local_metrics_with_norm(layer, X, None, rtol=rtol, return_all=return_all,
                                   n_jobs=n_jobs, progress=progress)


def local_metrics_with_norm(layer, X, sigma1, *, rtol=DEFAULT_RTOL, return_all=False,
                            n_jobs=None, progress=None):
    """:func:`local_metrics` with ``sigma_1(W)`` given (``sigma1``, the value of
    :func:`fastrelu._core.frames.spectral_norm`, when the caller has it; None: computed
    here)."""
    clock = Stopwatch()
    if not isinstance(layer, ReLULayer):
        raise FastReluError(f"The 'layer' parameter must be a fastrelu.ReLULayer (build one with ReLULayer(weight, bias)). Got {type(layer).__name__} instead.")
    W, alpha = layer.weight, layer.bias
    m, n = W.shape
    X = as_matrix(X, "X", ncols=n, allow_empty=True)
    try:
        rtol = float(rtol)
    except (TypeError, ValueError):
        rtol = float("nan")
    if not MIN_RANK_TOL <= rtol < 1.0:
        raise FastReluError(f"The 'rtol' parameter must be a float in [{MIN_RANK_TOL:g}, 1) (singular values from Gram matrices are resolved only to about 1e-8 sigma_1). Got {rtol!r} instead.")
    jobs = n_jobs_value(n_jobs)
    N = X.shape[0]
    budget = local_metrics_budget(m, n, N, jobs, return_all=return_all,
                                       outer=m * n * n <= OUTER_MAX_ENTRIES).check_memory().check_start(jobs)
    if sigma1 is None:
        sigma1 = spectral_norm(W)
    tol_abs = rtol * sigma1
    n_active = np.zeros(N, dtype=np.int64)
    rank = np.zeros(N, dtype=np.int64)
    sigma_max, sigma_min = np.zeros(N), np.zeros(N)
    sigma_min_nonzero, width = np.full(N, np.nan), np.zeros(N)
    singular = np.zeros((N, n)) if return_all else None
    outer = None
    if m * n * n <= OUTER_MAX_ENTRIES:
        outer = (W[:, :, None] * W[:, None, :]).reshape(m, n * n)  # row i: w_i w_i^T
    chunk = int(max(1, min(4096, (1 << 21) // (n * n))))

    def make_worker():
        def process(b):
            part = slice(b * chunk, min(N, (b + 1) * chunk))
            mask = (X[part] @ W.T - alpha) >= 0.0
            n_active[part] = mask.sum(axis=1)
            weights = mask.astype(np.float64)
            if outer is not None:
                # A_x = sum_{i active} w_i w_i^T for all points of the chunk: one GEMM
                lam = np.linalg.eigvalsh((weights @ outer).reshape(-1, n, n))[:, ::-1]
            else:
                # one point at a time from its active rows: the eigenvalues of
                # W_I^T W_I (BLAS dsyrk), or with fewer active rows than inputs those of
                # the smaller W_I W_I^T, the same nonzero ones, and zeros
                lam = np.zeros((weights.shape[0], n))
                for p, active in enumerate(mask):
                    rows = W[active]
                    if rows.shape[0] < n:
                        values = np.linalg.eigvalsh(rows @ rows.T)
                    else:
                        values = np.linalg.eigvalsh(rows.T @ rows)
                    lam[p, :values.size] = values[::-1]  # decreasing
            np.maximum(lam, 0.0, out=lam)
            sv = np.sqrt(lam)
            small = sv <= tol_abs
            sv[small] = 0.0
            lam[small] = 0.0
            count = n - small.sum(axis=1)
            rank[part] = count
            sigma_max[part] = sv[:, 0]
            sigma_min[part] = sv[:, -1]
            last = np.where(count > 0, sv[np.arange(sv.shape[0]), np.maximum(count - 1, 0)], np.nan)
            sigma_min_nonzero[part] = last
            out = np.empty(sv.shape[0])
            kernels.local_width(np.ascontiguousarray(lam), _NODES, _WEIGHTS, out)
            width[part] = out
            if return_all:
                singular[part] = sv

        return process, lambda: None

    run_blocks(-(-N // chunk), make_worker, jobs, budget=budget, progress=progress,
               desc="local_metrics", advance=lambda b: min(N, (b + 1) * chunk) - b * chunk,
               unit="point")
    return LocalMetrics(n_active=n_active, rank=rank, sigma_max=sigma_max, sigma_min=sigma_min,
                        sigma_min_nonzero=sigma_min_nonzero, width=width,
                        singular_values=singular, rtol=rtol, tol=tol_abs, elapsed=clock())


# --------------------------------------------------------------------------- budget


def width_budget(kind, dim, m, n, n_points, n_draws, jobs, *, n_starts):
    """The budget of :func:`fastrelu.gaussian_mean_width` (``kind`` as in its plan; ``dim``
    the dimension of the draws, ``m x n`` the weights, ``n_points`` the finite set)."""
    threads = _budget.threads_of(jobs)
    if kind == "ball":
        rows = WIDTH_BLOCK * n_starts
        per_thread = ascent_bytes(m, n, rows) + _budget.FLOAT_BYTES * (WIDTH_BLOCK * m + rows * n)
        flops = 4.0 * m * n * n_starts
    elif kind == "linear":
        per_thread = _budget.FLOAT_BYTES * WIDTH_BLOCK * (dim + 2 * n)
        flops = 2.0 * m * n
    else:
        chunk = min(SET_CHUNK, max(1, n_points))
        per_thread = _budget.FLOAT_BYTES * (WIDTH_BLOCK * dim + WIDTH_BLOCK * chunk + (chunk * m if kind == "image" else 0))
        flops = 2.0 * n_points * dim + (2.0 * n_points * m * n / WIDTH_BLOCK if kind == "image" else 0.0)
    memory = [("weights and their transpose", 2 * _budget.FLOAT_BYTES * m * n, "obj"),
              ("per-thread draws and products", threads * per_thread, "n_starts" if kind == "ball" else "n_jobs"),
              ("state (moments of the finished blocks)", 4 * _budget.FLOAT_BYTES * (threads * 64 + 4), "n_draws")]
    return _budget.Budget("gaussian_mean_width", "n_draws", n_draws, "draws", WIDTH_BLOCK, memory,
                  flops_per_unit=flops, advice="Use fewer starts per draw or a smaller layer.")


def local_metrics_budget(m, n, N, jobs, *, return_all, outer):
    """The budget of :func:`fastrelu.local_metrics` on ``N`` points."""
    threads = _budget.threads_of(jobs)
    chunk = int(max(1, min(4096, (1 << 21) // (n * n))))
    memory = [("outer products of the rows", _budget.FLOAT_BYTES * m * n * n if outer else 0, "layer"),
              ("per-thread Gram matrices and activity", threads * _budget.FLOAT_BYTES * chunk * (3 * n * n + 2 * m), "n_jobs"),
              ("per-point results", _budget.FLOAT_BYTES * N * (6 + (n if return_all else 0)), "X")]
    return _budget.Budget("local_metrics", "X", N, "points", chunk, memory,
                  flops_per_unit=2.0 * m * n + n ** 3,
                  advice="Use fewer points (in chunks of your own), return_all=False, or a smaller layer.")
