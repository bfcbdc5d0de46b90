"""Pointwise injectivity of a ReLU layer on data, and checks of a bias on fresh points
of a domain (THEORY §2)."""

import threading
from dataclasses import dataclass, field

import numpy as np

from fastrelu._core import budget as _budget
from fastrelu._core.basis import certify_one_by_one, lanes_scratch
from fastrelu._core.domains import Ball, Data, Shell, Sphere, check_domain
from fastrelu._core.errors import FastReluError
from fastrelu._core.layer import ReLULayer
from fastrelu._core.rows import DEFAULT_RANK_TOL, RowGeometry, stores_gram
from fastrelu._core.validation import (
    as_matrix,
    n_jobs_value,
    positive_int,
    rank_tol_value,
    seed_value,
)
from fastrelu._injectivity import kernels
from fastrelu._runtime.parallel import (
    SharedBlocks,
    Stopwatch,
    block_parts,
    run_blocks,
    splits_blocks,
)
from fastrelu._runtime.seeds import BLOCK_SIZE, CHECK_STREAM, block_generator

#: Default number of fresh points for :func:`check_bias`.
DEFAULT_CHECK_POINTS = 100_000
#: At most this many failing points are kept by :func:`check_bias`.
MAX_FAILED_POINTS = 1000


class PointCounts:
    """``n_points`` and ``fraction`` of a per-point result with an ``injective`` array
    (:class:`PointwiseInjectivity`, :class:`fastrelu.OperatorInjectivity`)."""

    @property
    def n_points(self):
        """Number of points checked."""
        return self.injective.shape[0]

    @property
    def fraction(self):
        """Fraction of the points whose ``injective`` is True (``nan`` for no points)."""
        return float(self.injective.mean()) if self.n_points else float("nan")


@dataclass(frozen=True, eq=False)
class PointwiseInjectivity(PointCounts):
    """Which points of a data set a layer maps injectively (its active rows span R^n).

    Attributes
    ----------
    injective : ndarray of bool, shape (N,)
        ``True`` where the active rows ``{i : <x, w_i> >= alpha_i}`` span R^n within
        ``rank_tol``.
    n_active : ndarray of int64, shape (N,)
        Size of each point's active set.
    rank : ndarray of int64, shape (N,)
        Rank of each point's active subframe within ``rank_tol``, counted up to ``n``.
    rank_tol : float
        The rank tolerance used (see :func:`pointwise_injectivity`).
    elapsed : float
        Wall-clock seconds.
    """

    injective: np.ndarray
    n_active: np.ndarray
    rank: np.ndarray
    rank_tol: float
    elapsed: float = field(repr=False)

    @property
    def failures(self):
        """Indices of the points that are not injective."""
        return np.flatnonzero(~self.injective)

    def summary(self, limit=10):
        """A short human-readable report: the fraction and the first failing points.

        Parameters
        ----------
        limit : int, default=10
            At most this many failing points are listed.

        Returns
        -------
        str
            One line for the fraction, then one per failing point listed.
        """
        failed = self.failures
        lines = [f"{self.n_points - failed.size} of {self.n_points} points injective "
                 f"({100 * self.fraction:.2f}%), rank tolerance {self.rank_tol:g}"]
        for i in failed[:limit]:
            lines.append(f"  point {i}: {self.n_active[i]} active rows, rank {self.rank[i]}")
        if failed.size > limit:
            lines.append(f"  ... and {failed.size - limit} more")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class BiasCheck:
    """Pointwise injectivity of a layer on fresh random points of a domain.

    Attributes
    ----------
    n_points : int
        Points drawn (or the data points of a ``Data`` domain).
    n_injective : int
        Points at which the active rows span R^n (within ``rank_tol``).
    failed_points : ndarray, shape (k, n)
        The first ``k <= 1000`` points that are not injective, in drawing order.
    failed_n_active, failed_rank : ndarray of int64, shape (k,)
        Their active-set sizes and ranks (counted up to ``n``).
    domain : Sphere, Ball, Shell or Data
    seed : int or None
        Reproduces the points (they come from a stream of the seed that the bias
        estimators never use, so a bias is never checked on its own samples).
    rank_tol : float
    elapsed : float
    """

    n_points: int
    n_injective: int
    failed_points: np.ndarray = field(repr=False)
    failed_n_active: np.ndarray = field(repr=False)
    failed_rank: np.ndarray = field(repr=False)
    domain: Sphere | Ball | Shell | Data
    seed: int | None
    rank_tol: float
    elapsed: float = field(repr=False)

    @property
    def fraction(self):
        """Fraction of the points that are injective."""
        return self.n_injective / self.n_points

    @property
    def n_failed(self):
        """Number of points that are not injective."""
        return self.n_points - self.n_injective


def _checker(geometry, rank_tol, full=True):
    """A function ``check(X, n_active, rank)`` with its own scratch buffers (``full``:
    rank every point, else only those with at least ``n`` active rows, the others
    ``-1``)."""
    tile = geometry.tile
    C = np.empty((tile, geometry.m))
    layer = kernels.ActiveRows(weight_t=geometry.weight_t, bias=geometry.bias,
                               inv_norm=geometry.inv_norm)
    basis = geometry.basis(float(rank_tol) ** 2)
    one_by_one = certify_one_by_one(geometry.n)
    cands, scan, stats = geometry.scratch(lanes=1 if one_by_one else kernels.SPANS_LANES)
    lanes = lanes_scratch(1, 1) if one_by_one else lanes_scratch(geometry.n)  # unused one by one
    every_row = geometry.every_row_kept(float(rank_tol) ** 2)

    def check(X, n_active, rank):
        kernels.pointwise_block(X, C, layer, basis, n_active, rank, cands, scan, lanes, stats,
                                one_by_one, full, every_row)

    return check


def _as_layer(layer):
    if not isinstance(layer, ReLULayer):
        raise FastReluError(f"The 'layer' parameter must be a fastrelu.ReLULayer (build one with ReLULayer(weight, bias)). Got {type(layer).__name__} instead.")
    return layer


def injectivity_summary(layer, X, *, rank_tol=DEFAULT_RANK_TOL, n_jobs=None, progress=None):
    """Pointwise injectivity of ``layer`` at the rows of ``X``, with the facts behind it.

    A point ``x`` is injective when its active rows ``{i : <x, w_i> - alpha_i >= 0}``
    span R^n (THEORY §2; on the interior of a domain this is also necessary for the layer
    to be injective near ``x``). Round-off: the active rows are scanned by decreasing
    normalised correlation ``<x, w_i> / |w_i|`` and a row counts when its unit direction
    is farther than ``rank_tol`` from the span of the rows counted before it (the
    criterion of :func:`mcbe`, so a bias from ``mcbe`` makes its samples injective here).
    Activity itself is the exact comparison ``W x - alpha >= 0`` of the computed values.

    Parameters
    ----------
    layer : ReLULayer
        The layer ``ReLU(W x - alpha)``; any shape (a layer that is not a frame is
        injective nowhere). Neurons with ``alpha_i = +inf`` are never active.
    X : array_like, shape (N, n)
        The points (``N = 0`` is allowed).
    rank_tol : float, default=1e-6
        Distance below which a unit row counts as dependent (at least 1e-7, the
        resolution of distances computed from Gram matrices).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    progress : bool or None, default=None
        Progress bar on stderr: ``True`` always, ``False`` never, ``None`` only when the
        run lasts more than two seconds and stderr is a terminal.

    Returns
    -------
    PointwiseInjectivity

    Raises
    ------
    FastReluError
        For a ``layer`` that is not a :class:`ReLULayer`, points that are not a finite
        2-D array with ``n`` columns, an invalid ``rank_tol`` or ``n_jobs``, or more
        points than fit in memory.

    Examples
    --------
    The tetrahedron with zero bias: at ``(1, 1, 1)`` only one row is active, at
    ``-(1, 1, 1)`` three rows are, and they span R^3.

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> X = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    >>> result = fr.injectivity_summary(fr.ReLULayer(T), X, n_jobs=1)
    >>> result.n_active, result.rank, result.injective
    (array([1, 3]), array([1, 3]), array([False,  True]))
    >>> result.fraction, result.failures
    (0.5, array([0]))
    """
    return _summary(layer, X, rank_tol, n_jobs, progress, True)


def _summary(layer, X, rank_tol, n_jobs, progress, full):
    """:func:`injectivity_summary`; without ``full`` the points with fewer than ``n``
    active rows get rank ``-1`` (not computed: they are not injective)."""
    clock = Stopwatch()
    layer = _as_layer(layer)
    n = layer.shape[1]
    X = as_matrix(X, "X", ncols=n, allow_empty=True)
    rank_tol = rank_tol_value(rank_tol)
    jobs = n_jobs_value(n_jobs)
    N = X.shape[0]
    budget = check_budget(layer.shape[0], n, N, jobs, what="injectivity_summary", name="X",
                               outputs=True).check_memory().check_start(jobs)
    n_active = np.zeros(N, dtype=np.int64)
    rank = np.zeros(N, dtype=np.int64)
    # stored Gram matrix or not by the rows alone (never by N): a point's rank must not
    # depend on the points beside it
    geometry = RowGeometry(layer.weight, layer.bias)
    geometry.every_row_kept(float(rank_tol) ** 2)  # once, before the workers ask

    def make_worker():
        check = _checker(geometry, rank_tol, full)

        def process(part):
            b, lo, hi, _ = part
            rows = slice(b * BLOCK_SIZE + lo, b * BLOCK_SIZE + hi)
            check(X[rows], n_active[rows], rank[rows])

        return process, lambda: None

    # few blocks (large layers): the points are shared out among the threads
    parts = block_parts(0, -(-N // BLOCK_SIZE), lambda b: min(BLOCK_SIZE, N - b * BLOCK_SIZE),
                        jobs, align=geometry.tile)
    run_blocks(parts, make_worker, jobs, progress=progress, desc="injectivity", budget=budget,
               advance=lambda part: part[2] - part[1], unit="point")
    return PointwiseInjectivity(injective=rank == n, n_active=n_active, rank=rank,
                                rank_tol=rank_tol, elapsed=clock())


def pointwise_injectivity(layer, X, *, rank_tol=DEFAULT_RANK_TOL, n_jobs=None, progress=None):
    """Does the active subframe of ``layer`` at each row of ``X`` span R^n?

    :func:`injectivity_summary` gives the same answer with the active-set sizes, ranks
    and failing points; see there for the criterion and the rank tolerance.

    Parameters
    ----------
    layer : ReLULayer
        The layer ``ReLU(W x - alpha)``; neurons with ``alpha_i = +inf`` are never
        active.
    X : array_like, shape (N, n)
        The points (``N = 0`` is allowed).
    rank_tol : float, default=1e-6
        Distance below which a unit row counts as dependent (at least 1e-7).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    progress : bool or None, default=None
        Progress bar on stderr (as for :func:`injectivity_summary`).

    Returns
    -------
    ndarray of bool, shape (N,)
        ``True`` where the active rows span R^n within ``rank_tol``.

    Raises
    ------
    FastReluError
        For a ``layer`` that is not a :class:`ReLULayer`, points that are not a finite
        2-D array with ``n`` columns, or an invalid ``rank_tol`` or ``n_jobs``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> X = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    >>> fr.pointwise_injectivity(fr.ReLULayer(T), X, n_jobs=1)
    array([False,  True])
    >>> fr.pointwise_injectivity(fr.ReLULayer(T, bias=-0.6), X, n_jobs=1)
    array([ True,  True])
    """
    # only the points with at least n active rows can span R^n: no rank for the others
    return _summary(layer, X, rank_tol, n_jobs, progress, False).injective


def _draw(domain, rng, out):
    """Points of ``domain`` (Sphere, Ball or Shell) into ``out``, uniform on the sphere or
    uniform in volume for the ball and the shell (optionally the nonnegative part)."""
    rng.standard_normal(out=out)
    if domain.nonnegative:
        np.abs(out, out=out)
    norms = np.linalg.norm(out, axis=1)
    norms[norms == 0.0] = 1.0  # a zero draw (probability zero) stays at the origin
    n = out.shape[1]
    if isinstance(domain, Sphere):
        radius = np.full(out.shape[0], domain.radius)
    else:
        outer = domain.radius if isinstance(domain, Ball) else domain.outer
        ratio = 0.0 if isinstance(domain, Ball) else (domain.inner / domain.outer) ** n
        # uniform in volume between the radii: t^n uniform on [inner^n, outer^n]
        radius = outer * (ratio + rng.random(out.shape[0]) * (1.0 - ratio)) ** (1.0 / n)
    out *= (radius / norms)[:, None]


def _keep_failures(failed, lock, block, points, n_active, rank):
    """Record the failing points of a block (or of a part of one: ``block`` is then
    ``(b, lo)``, keys that sort in drawing order), keeping only what the first
    ``MAX_FAILED_POINTS`` failures in drawing order can need, whatever the order in
    which blocks finish."""
    with lock:
        failed[block] = (points[:MAX_FAILED_POINTS].copy(), n_active[:MAX_FAILED_POINTS].copy(),
                         rank[:MAX_FAILED_POINTS].copy())
        total = 0
        for b in sorted(failed):
            if total >= MAX_FAILED_POINTS:
                del failed[b]  # later blocks than enough earlier failures
            else:
                total += failed[b][0].shape[0]


def check_bias(layer, domain, n_points=None, *, seed=None, rank_tol=DEFAULT_RANK_TOL,
               n_jobs=None, progress=False):
    """Measure the pointwise injectivity of a layer's bias on fresh points of a domain.

    The honest way to compare biases from different methods (:func:`mcbe`, :func:`pbe`,
    a trained network's own): draw points the estimators never saw and count those whose
    active rows span R^n (criterion and ``rank_tol`` as in :func:`injectivity_summary`).
    Sphere points are uniform on the sphere, ball and shell points uniform in volume,
    restricted to the nonnegative orthant when the domain says so; a ``Data`` domain
    uses its own points.

    Parameters
    ----------
    layer : ReLULayer
        The layer ``ReLU(W x - alpha)`` whose bias ``alpha`` is checked; ``+inf``
        entries (the rows an estimator left unconstrained) are never active.
    domain : Sphere, Ball, Shell or Data
        Where to draw the points; its dimension must be ``n``.
    n_points : int or None, default=None
        Number of points (``None``: 100,000); must be omitted for ``Data``.
    seed : int or None, default=None
        Seed of the points (``None``: fresh entropy; reported). The points come from a
        stream of the seed that the estimators never draw from.
    rank_tol : float, default=1e-6
        Rank tolerance (as in :func:`injectivity_summary`).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    progress : bool or None, default=False
        Progress bar on stderr (as for :func:`mcbe`).

    Returns
    -------
    BiasCheck

    Raises
    ------
    FastReluError
        For a ``layer`` that is not a :class:`ReLULayer`, a domain of the wrong type or
        dimension, an ``n_points`` given for a ``Data`` domain or not a positive
        integer, invalid ``seed``, ``rank_tol`` or ``n_jobs``, or a run that does not fit
        in memory.

    Examples
    --------
    With the bias ``-0.6`` (below PBE's ``-1/sqrt(3)``) the tetrahedron is injective on
    the whole sphere; with zero bias it fails at most points:

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> check = fr.check_bias(fr.ReLULayer(T, bias=-0.6), fr.Sphere(3), 300, seed=1, n_jobs=1)
    >>> check.n_points, check.n_injective, check.failed_points.shape
    (300, 300, (0, 3))
    >>> fr.check_bias(fr.ReLULayer(T), fr.Sphere(3), 300, seed=1, n_jobs=1).n_failed > 0
    True
    """
    clock = Stopwatch()
    layer = _as_layer(layer)
    n = layer.shape[1]
    check_domain(domain, n)
    rank_tol = rank_tol_value(rank_tol)
    jobs = n_jobs_value(n_jobs)
    if isinstance(domain, Data):
        if n_points is not None:
            raise FastReluError(f"The 'n_points' parameter must be omitted for a Data domain (every one of its {len(domain)} points is used). Got n_points={n_points!r}.")
        total, seed_used = len(domain), None
    else:
        total = DEFAULT_CHECK_POINTS if n_points is None else positive_int(n_points, "n_points")
        seed_used = seed_value(seed)
    budget = check_budget(layer.shape[0], n, total, jobs, what="check_bias", name="n_points",
                               outputs=False).check_memory().check_start(jobs)
    geometry = RowGeometry(layer.weight, layer.bias)
    geometry.every_row_kept(float(rank_tol) ** 2)  # once, before the workers ask
    n_blocks = -(-total // BLOCK_SIZE)
    block_size = lambda b: min(BLOCK_SIZE, total - b * BLOCK_SIZE)  # noqa: E731
    # few blocks (large layers): each block's points are shared out among the threads, at
    # tile boundaries (the same products, so the same ranks, as whole blocks); many blocks
    # run whole, each thread drawing into its own buffer (nothing then grows with N)
    whole = not splits_blocks(n_blocks, jobs)
    if whole:
        units = range(n_blocks)
    else:
        units = block_parts(0, n_blocks, block_size, jobs, align=geometry.tile)

        def draw(b):
            X = np.empty((block_size(b), n))
            _draw(domain, block_generator(seed_used, b, CHECK_STREAM), X)
            return X

        shared = SharedBlocks(units, draw)
    failed = {}
    lock = threading.Lock()

    def make_worker():
        check = _checker(geometry, rank_tol)
        buffer = np.empty((min(BLOCK_SIZE, total) if whole and seed_used is not None else 0, n))
        n_active = np.empty(BLOCK_SIZE, dtype=np.int64)
        rank = np.empty(BLOCK_SIZE, dtype=np.int64)
        good = [0]

        def process(unit):
            b, lo, hi = (unit, 0, block_size(unit)) if whole else unit[:3]
            size = hi - lo
            if seed_used is None:  # data: read in place
                X = domain.points[b * BLOCK_SIZE + lo:b * BLOCK_SIZE + hi]
            elif whole:
                X = buffer[:size]
                _draw(domain, block_generator(seed_used, b, CHECK_STREAM), X)
            else:
                X = shared.get(b)[lo:hi]
            check(X, n_active[:size], rank[:size])
            bad = np.flatnonzero(rank[:size] < n)
            good[0] += size - bad.size
            if bad.size:
                _keep_failures(failed, lock, (b, lo), X[bad], n_active[bad], rank[bad])
            if not whole and seed_used is not None:
                shared.done(b)

        return process, lambda: good[0]

    points_of = block_size if whole else (lambda part: part[2] - part[1])
    partials = run_blocks(units, make_worker, jobs, progress=progress, desc="check_bias",
                          budget=budget, advance=points_of, unit="point")
    kept = [failed[key] for key in sorted(failed)]
    if kept:
        points = np.concatenate([p[0] for p in kept])[:MAX_FAILED_POINTS]
        active = np.concatenate([p[1] for p in kept])[:MAX_FAILED_POINTS]
        ranks = np.concatenate([p[2] for p in kept])[:MAX_FAILED_POINTS]
    else:
        points, active, ranks = np.empty((0, n)), np.empty(0, np.int64), np.empty(0, np.int64)
    return BiasCheck(n_points=total, n_injective=int(sum(partials)), failed_points=points,
                     failed_n_active=active, failed_rank=ranks, domain=domain,
                     seed=seed_used, rank_tol=rank_tol, elapsed=clock())


# --------------------------------------------------------------------------- budget


def check_budget(m, n, total, jobs, *, what, name, outputs):
    """The budget of :func:`fastrelu.check_bias` (``outputs=False``: at most
    ``MAX_FAILED_POINTS`` failing points are kept) or of
    :func:`fastrelu.injectivity_summary` (``outputs``: 17 bytes per point)."""
    threads = _budget.threads_of(jobs)
    # injectivity_summary reads its points in place; check_bias draws blocks of them (on a
    # Data domain it reads them in place too: this counts the larger case)
    buffer_rows = 0 if outputs else min(total, BLOCK_SIZE)
    memory = [*_budget.row_geometry(m, n),
              _budget.basis_scratch(m, n, threads + 1, kernels.SPANS_LANES, buffer_rows)]
    if outputs:
        memory.append(("per-point results (activity, rank, verdict)", 17 * total, "X"))
    else:
        memory.append(("failing points kept", 3 * _budget.FLOAT_BYTES * MAX_FAILED_POINTS * (n + 2), "n_points"))
    return _budget.Budget(what, name, total, "points", BLOCK_SIZE, memory,
                  flops_per_unit=2.0 * m * n, setup_flops=float(m) * m * n if stores_gram(m) else 0.0,
                  advice="Use fewer points or a smaller layer.")
