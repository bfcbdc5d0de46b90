"""ReLU singular values: the ReLU power iteration and low-rank fits (THEORY §7)."""

import math
from dataclasses import dataclass, field

import numpy as np

from fastrelu._core import budget as _budget
from fastrelu._core.domains import Data
from fastrelu._core.errors import FastReluError
from fastrelu._core.frames import leading_singular
from fastrelu._core.validation import as_bias, as_matrix, n_jobs_value, positive_float, positive_int
from fastrelu._runtime import checkpoint as _checkpoint
from fastrelu._runtime.blocks import BlockPlan, digest, execute
from fastrelu._runtime.parallel import Stopwatch, run_blocks
from fastrelu._runtime.seeds import FIT_STREAM, POWER_BLOCK, POWER_STREAM, block_generator
from fastrelu._spectral import kernels

DEFAULT_STARTS = 10_000
DEFAULT_MAX_ITER = 1000
#: Default relative Frank-Wolfe gap: on the sphere ``1 - cos`` of the angle between
#: ``x`` and ``W^T ReLU(W x)``; the value is then accurate to about this, relatively.
DEFAULT_TOL = 1e-10
#: Names of the per-start status codes (index = code).
STATUS_NAMES = ("converged", "max_iter", "zero_gradient", "stalled")

#: Low-rank fits: sample points, ascent starts per estimate of a sup over the ball,
#: exchange rounds, and the largest data set fitted whole (larger ones by exchange).
FIT_POINTS = 2048
FIT_STARTS = 1000
FIT_ROUNDS = 3
FIT_DATA_POINTS = 8192
#: Points added to the fitting set per round (the worst ones found).
FIT_ADD = 256
#: Points with the largest distances that an optimiser step looks at, re-selected every
#: FIT_REFRESH steps (the others have negligible weight in the smooth maximum).
FIT_ACTIVE = 512
FIT_REFRESH = 10
DEFAULT_FIT_STEPS = 200
#: Rows of the data processed at once when a layer is evaluated on data.
DATA_CHUNK = 4096


@dataclass(frozen=True, eq=False)
class PowerIterationResult:
    """The largest value of ``|ReLU(W x - alpha) - ReLU(-alpha)|`` found on the unit ball.

    Attributes
    ----------
    s1 : float
        The best value over all starts: the objective evaluated exactly at ``x``. It is
        attained, hence a **lower bound** for ``s_1 = max_{|x| <= 1} |ReLU(W x - alpha) -
        ReLU(-alpha)|``, and an **estimate** of it (the global maximum with high
        probability when many starts agree; compare ``values``).
    x : ndarray, shape (n,)
        The maximiser found (a unit vector for zero bias).
    best_start : int
        Index of the start that reached ``s1`` (the smallest among equal values).
    n_starts : int
    n_converged, n_max_iter, n_zero, n_stalled : int
        Starts that stopped with a Frank-Wolfe gap below ``tol`` (converged), ran out of
        iterations, sat where the gradient vanishes (for zero bias exactly the starts with
        ``W^T ReLU(W x) = 0``, i.e. ``ReLU(W x) = 0``: a zero of the objective), or found
        no ascent step (nonzero bias only: a kink of the objective, as a rule a
        nonsmooth local maximum).
    mean_iter : float
        Mean number of iterations per start.
    values : ndarray, shape (n_starts,) or None
        The objective at each start's final point (with ``per_start=True``).
    n_iter : ndarray of int64, shape (n_starts,) or None
        Iterations made by each start.
    status : ndarray of int8, shape (n_starts,) or None
        Per start: 0 converged, 1 max_iter, 2 zero_gradient, 3 stalled
        (``STATUS_NAMES``).
    history : ndarray, shape (h, max_iter + 1) or None
        For the first ``h`` starts (``history=h``): the objective after each iteration
        (column 0: at the start), NaN after the start stopped.
    method : str
        ``"power"``, ``"accelerated power"`` or ``"conditional gradient"``.
    max_iter, tol, seed, elapsed :
        The run's parameters, the seed that reproduces it and its wall-clock seconds.
    """

    s1: float
    x: np.ndarray
    best_start: int
    n_starts: int
    n_converged: int
    n_max_iter: int
    n_zero: int
    n_stalled: int
    mean_iter: float
    values: np.ndarray | None = field(repr=False)
    n_iter: np.ndarray | None = field(repr=False)
    status: np.ndarray | None = field(repr=False)
    history: np.ndarray | None = field(repr=False)
    method: str = "accelerated power"
    max_iter: int = DEFAULT_MAX_ITER
    tol: float = DEFAULT_TOL
    seed: int | None = None
    elapsed: float = field(default=0.0, repr=False)


@dataclass(frozen=True, eq=False)
class ReLUSingularValues:
    """ReLU singular values ``s_1, ..., s_k`` of a layer on the unit ball or on data, with
    what each number is.

    ``s_j = min_{rank L <= j-1} sup_{x in X} |ReLU(W x - alpha) - ReLU(L x - alpha)|``
    (THEORY §7; ``j = 1`` means ``L = 0``).

    Attributes
    ----------
    values : ndarray, shape (k,)
        The reported number for each ``s_j``; ``kinds[j-1]`` says what it is:

        - ``"exact"``: ``s_1`` on data, the maximum over the finite set.
        - ``"lower bound"``: ``s_1`` on the ball from :func:`relu_power_iteration` (an
          attained value, the estimate of the maximum).
        - ``"upper bound"``: ``s_j``, ``j >= 2``, on data: the supremum over the data of
          the fitted ``L`` (``fits[j-2]``), evaluated exactly.
        - ``"upper bound estimate"``: ``s_j``, ``j >= 2``, on the ball: the supremum over
          the ball of the fitted ``L`` as estimated by multi-start ascent. The supremum
          of a fixed ``L`` is found from below, so this is an estimate of an upper bound,
          not a bound; it never exceeds ``sigma_j`` (the truncated SVD is a candidate).
    kinds : tuple of str, length k
    upper : ndarray, shape (k,)
        Rigorous upper bounds. Ball: ``sigma_j(W)`` (``|ReLU(W x - a) - ReLU(L x - a)| <=
        |(W - L) x|`` and Eckart-Young). Data: equal to ``values``.
    sigma : ndarray, shape (k,)
        Classical singular values ``sigma_1 >= ... >= sigma_k`` of ``W`` (of its rows
        that can be active when the bias has ``+inf`` entries; zero for a layer with
        none).
    fits : tuple of (U, V)
        For ``j = 2 .. k`` the factors of the best ``L = U V`` found, shapes
        ``(m, j-1)`` and ``(j-1, n)``.
    domain : str or Data
        ``"ball"`` (the closed unit ball) or the ``Data`` set.
    power : PowerIterationResult or None
        The run behind ``s_1`` on the ball.
    argmax : int or None
        On data: the index of the point attaining ``s_1``.
    seed : int or None
    elapsed : float
    """

    values: np.ndarray
    kinds: tuple
    upper: np.ndarray
    sigma: np.ndarray
    fits: tuple = field(repr=False)
    domain: str | Data = "ball"
    power: PowerIterationResult | None = field(default=None, repr=False)
    argmax: int | None = None
    seed: int | None = None
    elapsed: float = field(default=0.0, repr=False)

    @property
    def k(self):
        """Number of ReLU singular values reported."""
        return self.values.shape[0]


#: Starts ascended together in one call (their products with ``W`` are one GEMM): the
#: whole block of ``POWER_BLOCK``, except from this input dimension on for runs of few
#: starts, which are ascended in groups of half of them (a power of two, at least
#: ``POWER_GROUP``) so that they keep two cores busy. Fixed by ``n`` and ``n_starts``: a
#: start's bits depend on the starts it is ascended with (BLAS may round a row of a
#: product differently beside other rows), never on the thread count. Groups of 8
#: rather than 16 let a run of 16 starts use two cores: 22.4 -> 16.5 ms per start at
#: (768, 3072), 177 -> 123 at (2048, 8192) (AMD EPYC Zen 4, 2 cores).
POWER_GROUP_N = 256
POWER_GROUP = 8


def starts_per_call(n, n_starts):
    """Starts ascended together at input dimension ``n`` in a run of ``n_starts``
    (see ``POWER_GROUP_N``)."""
    if n < POWER_GROUP_N or n_starts >= 2 * POWER_BLOCK:
        return POWER_BLOCK
    half = max(1, n_starts // 2)
    return int(min(POWER_BLOCK, max(POWER_GROUP, 2 ** int(math.log2(half)))))


class _Ascent:
    """One objective of :func:`fastrelu._spectral.kernels.ascend_block` and the per-thread
    buffers to run it on blocks of starts."""

    def __init__(self, mode, step_rule, K, alpha, shift=None, max_iter=DEFAULT_MAX_ITER,
                 tol=DEFAULT_TOL):
        self.mode, self.step_rule = mode, step_rule
        self.K = np.ascontiguousarray(K)
        self.KT = np.ascontiguousarray(self.K.T)
        self.alpha = np.ascontiguousarray(alpha)
        self.shift = np.zeros_like(self.alpha) if shift is None else np.ascontiguousarray(shift)
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.no_draws = np.zeros((1, self.alpha.shape[0]))
        self.no_history = np.zeros((0, self.max_iter + 1))
        self.objective = kernels.Objective(mode=int(mode), step_rule=int(step_rule), K=self.K,
                                           KT=self.KT, alpha=self.alpha, shift=self.shift,
                                           max_iter=self.max_iter, tol=self.tol)

    def worker(self, rows):
        """A function ``run(X, draws=None, per_draw=None, history=None)`` with scratch for
        up to ``rows`` starts; returns views ``(out_x, values, n_iter, status)``."""
        p, n = self.K.shape
        out = kernels.Starts(out_x=np.empty((rows, n)), values=np.empty(rows),
                             n_iter=np.empty(rows, dtype=np.int64),
                             status=np.empty(rows, dtype=np.int64), history=self.no_history)
        scratch = kernels.StartRows(
            Z=np.empty((rows, p)), R=np.empty((rows, p)), Grad=np.empty((rows, n)),
            Zg=np.empty((rows, p)), P=np.empty((rows, n)), Zp=np.empty((rows, p)),
            Gp=np.empty((rows, n)), Zgp=np.empty((rows, p)), t_max=np.empty(rows),
            ids=np.empty(rows, dtype=np.int64))
        ritz = kernels.RitzScratch(Q=np.zeros((3, n)), H=np.zeros((3, 3)), V=np.zeros((3, 3)),
                                   h=np.zeros(3), c=np.zeros(3), coef=np.zeros(3),
                                   xr=np.empty(n), xb=np.empty(n))

        def run(X, draws=None, per_draw=None, history=None):
            size = X.shape[0]
            if draws is None:
                draws, per_draw = self.no_draws, size
            starts = kernels.Starts(out_x=out.out_x[:size], values=out.values[:size],
                                    n_iter=out.n_iter[:size], status=out.status[:size],
                                    history=self.no_history if history is None else history)
            rows_ws = kernels.StartRows(**{name: array[:size] for name, array in scratch._asdict().items()})
            kernels.ascend_block(self.objective, X, draws, per_draw, starts, rows_ws, ritz)
            return starts.out_x, starts.values, starts.n_iter, starts.status

        return run


def _unit_rows(X):
    """Scale the rows of ``X`` to unit length in place (a zero row becomes ``e_1``)."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    zero = norms == 0.0
    if zero.any():
        X[zero] = 0.0
        X[zero, 0] = 1.0
        norms[zero] = 1.0
    X /= norms[:, None]
    return X


def _tol_value(tol):
    x = positive_float(tol, "tol", allow_zero=True)
    if x >= 1.0:
        raise FastReluError(f"The 'tol' parameter must be a float in [0, 1). Got {tol!r} instead.")
    return x


def _weight_and_bias(weight, bias):
    """The rows of the layer that can be active, their bias, and which rows they are.

    A neuron with ``alpha_i = +inf`` is never active: ``ReLU(<w_i, x> - alpha_i) = 0``
    for every ``x``, and so is ``ReLU(<l_i, x> - alpha_i)`` for every row ``l_i`` of a
    comparison map ``L``. It adds nothing to ``|ReLU(W x - alpha) - ReLU(L x - alpha)|``,
    so every spectral quantity of the layer is that of the layer without it. When no
    neuron can be active the layer is constant; one zero row with zero bias stands for
    it (the same constant map, ``s_j = 0``).
    """
    W = as_matrix(weight, "weight")
    m = W.shape[0]
    if bias is None:
        return W, np.zeros(m), np.ones(m, dtype=bool)
    alpha = as_bias(bias, "bias", length=m)
    active = np.isfinite(alpha)
    if active.all():
        return W, alpha, active
    if not active.any():
        return np.zeros((1, W.shape[1])), np.zeros(1), active
    return np.ascontiguousarray(W[active]), np.ascontiguousarray(alpha[active]), active


def relu_power_iteration(weight, *, bias=None, n_starts=DEFAULT_STARTS,
                         max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL, seed=None, n_jobs=None,
                         accelerate=True, history=0, per_start=True, progress=False,
                         client=None, checkpoint=None, checkpoint_interval=None):
    """Maximise ``|ReLU(W x - alpha) - ReLU(-alpha)|`` over the unit ball from many starts.

    Zero bias: the ReLU power iteration of THEORY §7 on the unit sphere::

        x <- W^T ReLU(W x) / |W^T ReLU(W x)|,

    which never decreases ``f(x) = |ReLU(W x)|^2 / 2`` (convex and 2-homogeneous, with
    gradient ``W^T ReLU(W x)``). With ``accelerate=True`` (default) each step takes the
    better of that step and a locally optimal (LOBPCG-type) step: the Rayleigh-Ritz
    maximiser of ``|D W y|^2`` (``D`` the activation pattern at ``x``) on
    ``span{x, W^T ReLU(W x), previous step}``, scored by the true objective; so it never
    does worse than the power step, and it typically needs several times fewer
    iterations. (With zero bias the maximum over the ball is attained on the sphere.)

    Nonzero bias: the objective is not convex (a row with ``alpha_i < 0`` contributes
    ``max(<w_i, x>, alpha_i)^2``, with a concave kink) and its maximum over the ball need
    not be on the sphere. Conditional-gradient (Frank-Wolfe) ascent on the unit ball:
    candidates ``(1 - t) x + t G / |G|`` (``G`` the gradient, ``t`` halved from an
    adaptive maximum), their radial projections onto the sphere, the same towards the
    least-norm point of the segment between the previous and the current gradient
    (along a ridge where the iterates would zigzag) and, with ``accelerate``, the local
    maximum of the activation pattern's quadratic on the sphere of
    ``span{x, G, previous step}`` (Newton's method on that sphere); the best is taken
    only when it increases the objective. Starts that end at a kink (no ascent step
    found) are reported as stalled; they are nonsmooth local maxima as a rule.

    Starts are uniform on the unit sphere, drawn in blocks of 256 from stream 2 of
    ``seed`` (``block_generator(seed, b, POWER_STREAM)``), and iterated in blocks (two dense
    products per iteration per block, each start stopping on its own). A start stops
    when ``|G| - <G, x> <= tol |G|`` (converged; on the sphere ``1 - cos`` of the angle
    between ``x`` and ``G``), when ``G = 0`` (zero bias: ``ReLU(W x) = 0``, the start is
    a zero of the objective and stays there), when no ascent step is found, or after
    ``max_iter`` iterations. The result is bit-identical for any ``n_jobs``.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The layer's weights ``W`` (finite).
    bias : array_like, shape (m,), scalar or None, default=None
        The subtracted bias ``alpha`` (``None``: zero). ``+inf`` marks a neuron that is
        never active; it contributes nothing, so the result is that of the layer
        without it (a layer with no neuron that can be active is constant: ``s = 0``).
    n_starts : int, default=10000
        Number of random starts.
    max_iter : int, default=1000
        Iterations per start at most.
    tol : float in [0, 1), default=1e-10
        Relative Frank-Wolfe gap at which a start has converged.
    seed : int or None, default=None
        Seed of the starts (``None``: fresh entropy; reported).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores).
    accelerate : bool, default=True
        The locally optimal step beside the power step (zero bias) or the line search
        (nonzero bias). ``False`` with zero bias runs the plain power iteration.
    history : int, default=0
        Record the objective after every iteration for the first ``history`` starts (at
        most 256).
    per_start : bool, default=True
        Keep every start's final value, iteration count and status (13 bytes per
        start).
    progress : bool or None, default=False
        Progress bar on stderr (as for :func:`mcbe`).
    client : distributed.Client, str or None, default=None
        Run the blocks of starts on this Dask cluster (see :func:`mcbe`); the result is
        the same bits as the local one. ``None``: run locally.
    checkpoint : str, path-like or None, default=None
        Save the partial result to this file and resume from it (see :func:`mcbe`).
        ``None``: no checkpoint.
    checkpoint_interval : float or None, default=None
        Seconds between checkpoint writes (``None``: 5).

    Returns
    -------
    PowerIterationResult

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, a bias of the wrong shape or with
        NaN or ``-inf``, invalid ``n_starts``, ``max_iter``, ``tol``, ``history``,
        ``seed`` or ``n_jobs``, a run that does not fit in memory, an unreachable
        scheduler, or a checkpoint that cannot be read or was written for other
        parameters.

    Examples
    --------
    With zero bias the double layer ``[W; -W]`` has ``s_1 = sigma_1(W)``:

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> result = fr.relu_power_iteration(np.vstack([W, -W]), n_starts=64, seed=0, n_jobs=1)
    >>> result.n_starts, result.method, bool(np.isclose(result.s1, np.linalg.norm(W, 2)))
    (64, 'accelerated power', True)
    >>> result.x.shape, result.values.shape
    ((3,), (64,))
    """
    clock = Stopwatch()
    W, alpha, _ = _weight_and_bias(weight, bias)
    m, n = W.shape
    n_starts = positive_int(n_starts, "n_starts")
    max_iter = positive_int(max_iter, "max_iter")
    tol = _tol_value(tol)
    seed_used = _checkpoint.seed_for(seed, checkpoint, _PowerPlan.kernel)
    jobs = n_jobs_value(n_jobs)
    n_hist = positive_int(history, "history", minimum=0)
    if n_hist > min(POWER_BLOCK, n_starts):
        raise FastReluError(f"The 'history' parameter must be an integer in [0, {min(POWER_BLOCK, n_starts)}] (at most n_starts and at most {POWER_BLOCK}). Got {history!r} instead.")
    zero_bias = not alpha.any()
    if accelerate:
        rule = kernels.ACCELERATED
    else:
        rule = kernels.POWER if zero_bias else kernels.LINE_SEARCH
    method = ("accelerated " if accelerate else "") + ("power" if zero_bias
                                                       else "conditional gradient")
    budget = power_budget(m, n, n_starts, jobs, per_start=per_start, n_hist=n_hist,
                               max_iter=max_iter).check_memory()
    plan = _PowerPlan(W, alpha, rule, n_starts, max_iter, tol, seed_used, n_hist, per_start)
    state = execute(plan, n_jobs=jobs, client=client, checkpoint=checkpoint,
                    checkpoint_interval=checkpoint_interval, progress=progress, budget=budget)
    counts = state["counts"]
    return PowerIterationResult(
        s1=math.sqrt(float(state["best_value"])), x=state["best_x"],
        best_start=int(state["best_index"]), n_starts=n_starts,
        n_converged=int(counts[kernels.CONVERGED]), n_max_iter=int(counts[kernels.MAX_ITER]),
        n_zero=int(counts[kernels.ZERO_GRADIENT]), n_stalled=int(counts[kernels.STALLED]),
        mean_iter=int(state["iterations"]) / n_starts,
        values=state["values"] if per_start else None,
        n_iter=state["n_iter"] if per_start else None,
        status=state["status"] if per_start else None,
        history=np.sqrt(state["history"]) if n_hist else None, method=method,
        max_iter=max_iter, tol=tol, seed=seed_used, elapsed=clock())


class _PowerPlan(BlockPlan):
    """The starts of :func:`relu_power_iteration` in blocks of ``POWER_BLOCK``. State: the
    best start (largest value, then smallest index), status counts and iterations
    (sums), and the per-start arrays and history placed by start index."""

    kernel = "relu_power_iteration"
    desc = "power iteration"

    def __init__(self, W, alpha, rule, n_starts, max_iter, tol, seed, n_hist, per_start):
        super().__init__(-(-n_starts // POWER_BLOCK))
        self.W, self.alpha, self.rule = W, alpha, rule
        self.n_starts, self.max_iter, self.tol, self.seed = n_starts, max_iter, tol, seed
        self.n_hist, self.per_start = n_hist, per_start

    def ascent(self):
        return self.cached("ascent", lambda: _Ascent(kernels.MODE_RELU, self.rule, self.W, self.alpha,
                                                     np.maximum(-self.alpha, 0.0), self.max_iter,
                                                     self.tol))

    def fingerprint(self):
        return {"weight": digest(self.W), "bias": digest(self.alpha), "step_rule": int(self.rule),
                "n_starts": self.n_starts, "max_iter": self.max_iter, "tol": self.tol,
                "seed": self.seed, "history": self.n_hist, "per_start": bool(self.per_start),
                "block_size": POWER_BLOCK,
                **({"starts_per_call": group} if (group := starts_per_call(self.W.shape[1], self.n_starts)) != POWER_BLOCK else {})}

    def _arrays(self, count):
        if not self.per_start:
            return {}
        return {"values": np.full(count, np.nan), "n_iter": np.zeros(count, dtype=np.int64),
                "status": np.zeros(count, dtype=np.int8)}

    def empty(self):
        return {"best_value": np.array(-1.0), "best_index": np.array(-1, dtype=np.int64),
                "best_x": np.zeros(self.W.shape[1]), "counts": np.zeros(4, dtype=np.int64),
                "iterations": np.zeros((), dtype=np.int64),
                "history": np.full((self.n_hist, self.max_iter + 1), np.nan),
                **self._arrays(self.n_starts)}

    def compute(self, first, stop, n_jobs, *, bar=None, limit_blas=True):
        ascent, n, n_starts, seed = self.ascent(), self.W.shape[1], self.n_starts, self.seed
        offset = first * POWER_BLOCK
        piece = self._arrays(min(n_starts, stop * POWER_BLOCK) - offset)
        hist = np.full((self.n_hist, self.max_iter + 1), np.nan)
        keep = self.per_start

        group = starts_per_call(n, n_starts)
        parts = []  # (block, first start in it, share of the block)
        for b in range(first, stop):
            size_b = min(POWER_BLOCK, n_starts - b * POWER_BLOCK)
            parts += [(b, lo, (min(lo + group, size_b) - lo) / size_b)
                      for lo in range(0, size_b, group)]

        def make_worker():
            run = ascent.worker(group)
            buffer = np.empty((POWER_BLOCK, n))
            drawn = [-1]
            best = {"value": -1.0, "index": -1, "x": np.zeros(n)}
            counts = np.zeros(4, dtype=np.int64)
            iterations = [0]

            def process(part):
                b, lo, _ = part
                size_b = min(POWER_BLOCK, n_starts - b * POWER_BLOCK)
                if drawn[0] != b:  # the block's starts, drawn whole (then its groups)
                    block_generator(seed, b, POWER_STREAM).standard_normal(out=buffer[:size_b])
                    _unit_rows(buffer[:size_b])
                    drawn[0] = b
                start = b * POWER_BLOCK + lo
                size = min(group, size_b - lo)
                X = buffer[lo:lo + size].copy()
                record = hist[lo:lo + size] if b == 0 and lo < hist.shape[0] else None
                out_x, q, its, codes = run(X, history=record)
                local = int(np.argmax(q))  # the first of equal maxima
                value, index = float(q[local]), start + local
                if value > best["value"] or (value == best["value"] and index < best["index"]):
                    best.update(value=value, index=index, x=out_x[local].copy())
                counts[:] += np.bincount(codes, minlength=4)[:4]
                iterations[0] += int(its.sum())
                if keep:
                    own = slice(start - offset, start - offset + size)
                    piece["values"][own] = np.sqrt(q)
                    piece["n_iter"][own] = its
                    piece["status"][own] = codes

            return process, lambda: (best, counts, iterations[0])

        partials = run_blocks(parts, make_worker, n_jobs, bar=bar, limit_blas=limit_blas,
                              advance=lambda part: part[2])
        best = max((p[0] for p in partials), key=lambda item: (item["value"], -item["index"]))
        piece.update(best_value=best["value"], best_index=best["index"], best_x=best["x"],
                     counts=np.sum([p[1] for p in partials], axis=0),
                     iterations=sum(p[2] for p in partials))
        if first == 0:
            piece["history"] = hist
        return piece

    def absorb(self, state, piece, first, stop):
        value, index = piece["best_value"], piece["best_index"]
        if value > state["best_value"] or (value == state["best_value"] and index < state["best_index"]):
            state["best_value"][()] = value
            state["best_index"][()] = index
            state["best_x"][:] = piece["best_x"]
        state["counts"] += piece["counts"]
        state["iterations"] += piece["iterations"]
        if "history" in piece:
            state["history"][:] = piece["history"]
        if self.per_start:
            part = slice(first * POWER_BLOCK, first * POWER_BLOCK + piece["values"].shape[0])
            for name in ("values", "n_iter", "status"):
                state[name][part] = piece[name]


def _relu_distances(W, alpha, X, U=None, V=None):
    """``|ReLU(W x - alpha) - ReLU(L x - alpha)|`` for each row of ``X``, chunked;
    ``L = U V`` (``L = 0`` when ``U`` is None)."""
    out = np.empty(X.shape[0])
    shift = np.maximum(-alpha, 0.0)
    for start in range(0, X.shape[0], DATA_CHUNK):
        part = X[start:start + DATA_CHUNK]
        # D = ReLU(X W^T - alpha) - ReLU(X V^T U^T - alpha)
        D = np.maximum(part @ W.T - alpha, 0.0)
        D -= shift if U is None else np.maximum((part @ V.T) @ U.T - alpha, 0.0)
        out[start:start + DATA_CHUNK] = np.sqrt(np.einsum("ij,ij->i", D, D))
    return out


def _fit_low_rank(W, alpha, points, U, V, steps):
    """Descend ``max_{x in points} |ReLU(W x - a) - ReLU(U V x - a)|`` over ``U, V``.

    Adam on a smooth maximum: the gradient of ``(1/beta) log sum_x exp(beta d_x^2)``
    (softmax weights on the squared distances ``d_x^2``), with ``beta`` rising from
    ``5 / max d^2`` to ``100 / max d^2`` over the steps. Only the ``FIT_ACTIVE`` points
    with the largest distances carry weight worth computing; they are re-selected, and
    the exact maximum over all points is evaluated, every ``FIT_REFRESH`` steps and at
    the end. Returns the factors with the smallest exact maximum met, and that maximum.
    """
    Y_all = np.maximum(points @ W.T - alpha, 0.0)
    best = (np.inf, U, V)
    lr_u = 0.01 * max(float(np.sqrt(np.mean(U * U))), 1e-12)
    lr_v = 0.01 * max(float(np.sqrt(np.mean(V * V))), 1e-12)
    moments = [np.zeros_like(U), np.zeros_like(U), np.zeros_like(V), np.zeros_like(V)]
    beta1, beta2, eps = 0.9, 0.999, 1e-16
    for step in range(steps + 1):
        if step % FIT_REFRESH == 0 or step == steps:
            D = Y_all - np.maximum((points @ V.T) @ U.T - alpha, 0.0)
            d2_all = np.einsum("ij,ij->i", D, D)
            top = float(d2_all.max())
            if top < best[0]:
                best = (top, U.copy(), V.copy())
            if top == 0.0 or step == steps:
                break
            if points.shape[0] > FIT_ACTIVE:
                chosen = np.sort(np.argpartition(-d2_all, FIT_ACTIVE)[:FIT_ACTIVE])
                P, Y = points[chosen], Y_all[chosen]
            else:
                P, Y = points, Y_all
        PV = P @ V.T
        Z = PV @ U.T - alpha
        D = Y - np.maximum(Z, 0.0)
        d2 = np.einsum("ij,ij->i", D, D)
        top = float(d2.max())
        if top == 0.0:
            continue
        frac = step / max(1, steps - 1)
        weights = np.exp((5.0 * 20.0 ** frac) * (d2 / top - 1.0))
        weights /= weights.sum()
        # M = weights * D * 1[Z > 0]; dPhi/dL = -2 M^T X, so
        # dPhi/dU = -2 M^T (X V^T) and dPhi/dV = -2 (M U)^T X
        M = np.where(Z > 0.0, D, 0.0) * weights[:, None]
        grad_u = -2.0 * (M.T @ PV)
        grad_v = -2.0 * ((M @ U).T @ P)
        decay = 0.1 ** frac
        t = step + 1
        for param, grad, first, second, lr in ((U, grad_u, moments[0], moments[1], lr_u),
                                               (V, grad_v, moments[2], moments[3], lr_v)):
            first *= beta1
            first += (1 - beta1) * grad
            second *= beta2
            second += (1 - beta2) * grad * grad
            step_size = lr * decay * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            param -= step_size * first / (np.sqrt(second) + eps)
    return best[1], best[2], math.sqrt(best[0])


def _ascend_starts(ascent, starts, jobs):
    """Run ``ascent`` from the given starts (block-parallel); returns (out_x, values)."""
    N, n = starts.shape
    out_x = np.empty((N, n))
    values = np.empty(N)

    def make_worker():
        run = ascent.worker(POWER_BLOCK)
        buffer = np.empty((POWER_BLOCK, n))

        def process(b):
            part = slice(b * POWER_BLOCK, min(N, (b + 1) * POWER_BLOCK))
            size = part.stop - part.start
            buffer[:size] = starts[part]
            x, q, _, _ = run(buffer[:size])
            out_x[part] = x
            values[part] = q

        return process, lambda: None

    run_blocks(-(-N // POWER_BLOCK), make_worker, jobs)
    return out_x, values


def _ball_points(rng, count, n, interior):
    """``count`` points uniform on the unit sphere, or in the unit ball (``interior``)."""
    X = _unit_rows(rng.standard_normal((count, n)))
    if interior:
        X *= rng.random(count)[:, None] ** (1.0 / n)
    return X


def _ball_sup(W, alpha, U, V, starts, jobs, max_iter, tol):
    """Estimate ``sup_{|x| <= 1} |ReLU(W x - a) - ReLU(U V x - a)|`` by ascent from
    ``starts``: returns the best value (attained, so from below) and the final points
    sorted by decreasing value."""
    L = U @ V
    ascent = _Ascent(kernels.MODE_FIT, kernels.ACCELERATED, np.vstack([W, L]), alpha, None,
                     max_iter, tol)
    out_x, q = _ascend_starts(ascent, starts, jobs)
    order = np.argsort(-q, kind="stable")
    return math.sqrt(max(float(q[order[0]]), 0.0)), out_x[order]


def _truncated(top, rank):
    """Factors of the truncated SVD of rank ``rank`` from ``W``'s leading singular
    triplets ``top`` (:func:`fastrelu._core.frames.leading_singular`): ``U (m, r)``,
    ``V (r, n)``."""
    left, sig, right = top
    root = np.sqrt(sig[:rank])
    return (np.ascontiguousarray(left[:, :rank] * root),
            np.ascontiguousarray(root[:, None] * right[:rank]))


def _fit_on_data(W, top, alpha, X, rank, steps, rng):
    """Best ``L = U V`` of rank ``rank`` found on the data: exact supremum over ``X``
    (``top``: ``W``'s leading singular triplets)."""
    m, n = W.shape
    candidates = [_truncated(top, rank)]
    # the best rank-r approximation of the data's images: L = Pi W, Pi the projection
    # onto the top left singular vectors of W X^T
    if X.shape[0] <= FIT_DATA_POINTS:
        sample = X
    else:
        sample = X[rng.choice(X.shape[0], FIT_DATA_POINTS, replace=False)]
    left = leading_singular(W @ sample.T, rank)[0]
    candidates.append((np.ascontiguousarray(left), np.ascontiguousarray(left.T @ W)))
    scored = [(float(_relu_distances(W, alpha, X, U, V).max()), i)
              for i, (U, V) in enumerate(candidates)]
    best_value, best_index = min(scored)
    U, V = candidates[best_index]
    best = (best_value, U, V)
    if X.shape[0] <= FIT_DATA_POINTS:
        U2, V2, value = _fit_low_rank(W, alpha, X, U.copy(), V.copy(), steps)
        value = float(_relu_distances(W, alpha, X, U2, V2).max())
        if value < best[0]:
            best = (value, U2, V2)
        return best
    points = sample
    for _ in range(FIT_ROUNDS):
        U, V, _ = _fit_low_rank(W, alpha, points, U.copy(), V.copy(), steps)
        dist = _relu_distances(W, alpha, X, U, V)
        value = float(dist.max())
        if value < best[0]:
            best = (value, U, V)
        worst = np.argsort(-dist, kind="stable")[:FIT_ADD]
        points = np.vstack([points, X[worst]])
    return best


def _fit_on_ball(W, top, alpha, rank, steps, n_starts, rng, jobs, max_iter, tol):
    """Best ``L = U V`` of rank ``rank`` found for the ball, and its estimated supremum
    (``top``: ``W``'s leading singular triplets)."""
    n = W.shape[1]
    interior = bool(alpha.any())  # zero bias: 1-homogeneous, the supremum is on the sphere
    U, V = _truncated(top, rank)
    points = _ball_points(rng, FIT_POINTS, n, interior)
    value, found = _ball_sup(W, alpha, U, V, _ball_points(rng, n_starts, n, interior),
                             jobs, max_iter, tol)
    best = (value, U, V)
    points = np.vstack([points, found[:FIT_ADD]])
    for _ in range(FIT_ROUNDS):
        if best[0] == 0.0:
            break
        U, V, _ = _fit_low_rank(W, alpha, points, U.copy(), V.copy(), steps)
        dist = _relu_distances(W, alpha, points, U, V)
        warm = points[np.argsort(-dist, kind="stable")[:FIT_ADD]]
        starts = np.vstack([warm, _ball_points(rng, n_starts, n, interior)])
        value, found = _ball_sup(W, alpha, U, V, starts, jobs, max_iter, tol)
        if value < best[0]:
            best = (value, U, V)
        points = np.vstack([points, found[:FIT_ADD]])
    return best


def relu_singular_values(weight, k, *, bias=None, data=None, n_starts=DEFAULT_STARTS,
                         fit_starts=FIT_STARTS, fit_steps=DEFAULT_FIT_STEPS,
                         max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL, seed=None, n_jobs=None,
                         client=None, checkpoint=None, checkpoint_interval=None):
    """ReLU singular values ``s_1, ..., s_k`` of ``ReLU(W x - alpha)`` [DKM] (THEORY §7).

    ::

        s_j = min_{rank L <= j-1} sup_{x in X} |ReLU(W x - alpha) - ReLU(L x - alpha)|

    on ``X`` = the closed unit ball (default) or the finite set ``data``; ``j = 1`` means
    ``L = 0``, so ``s_1 = sup_x |ReLU(W x - alpha) - ReLU(-alpha)|``.

    - ``s_1`` on data: **exact** (the maximum over the points). On the ball:
      :func:`relu_power_iteration` from ``n_starts`` starts, a **lower bound** (an
      attained value) that estimates ``s_1``; ``sigma_1(W)`` bounds it from above.
    - ``s_j``, ``j >= 2``: **upper bounds** from rank-``(j-1)`` fits ``L = U V``. The fit
      starts from the truncated SVD of ``W`` (which gives ``sigma_j`` on the ball: ReLU
      is 1-Lipschitz, so ``|ReLU(W x - a) - ReLU(L x - a)| <= |(W - L) x|``) and, on data,
      from the best rank-``(j-1)`` fit of the data's images, and is improved by Adam on
      a smooth maximum (log-sum-exp) of the distances over a finite set of points. On
      data the set is the data (exchange rounds add the worst points when there are
      more than 8192), and the reported bound is the exact maximum over all the data for
      the best ``L``: a rigorous upper bound. On the ball the set is random points plus
      the maximisers found so far, the supremum of each candidate ``L`` over the ball is
      estimated by multi-start ascent (so from below), and the smallest estimate is
      reported: an **upper bound estimate**, at most ``sigma_j``. ``upper`` holds the
      rigorous bounds (``sigma_j`` on the ball).

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The layer's weights ``W`` (finite).
    k : int
        How many ReLU singular values, ``1 <= k <= min(m, n)``.
    bias : array_like, shape (m,), scalar or None, default=None
        The subtracted bias ``alpha`` (``None``: zero). ``+inf`` marks a neuron that is
        never active; it contributes nothing, so the result is that of the layer
        without it (a layer with no neuron that can be active is constant: ``s = 0``).
    data : Data, array_like of shape (N, n), or None, default=None
        The finite domain (``None``: the unit ball).
    n_starts : int, default=10000
        Starts of the power iteration for ``s_1`` on the ball.
    fit_starts : int, default=1000
        Ball only: random starts of each ascent that estimates the supremum of a fitted
        ``L`` (the worst points found so far are added to them).
    fit_steps : int, default=200
        Adam steps per fitting round (0 keeps the initial candidates).
    max_iter : int, default=1000
        Iterations of every ascent at most (see :func:`relu_power_iteration`).
    tol : float in [0, 1), default=1e-10
        Relative Frank-Wolfe gap at which an ascent has converged.
    seed : int or None, default=None
        Seed of all random starts and points (``None``: fresh entropy; reported).
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores). The result does not depend on it.
    client : distributed.Client, str or None, default=None
        Run the power iteration behind ``s_1`` on the ball (the part that grows with
        ``n_starts``) on this Dask cluster (see :func:`relu_power_iteration`); the
        low-rank fits run locally. Not with ``data``.
    checkpoint : str, path-like or None, default=None
        Checkpoint and resume that power iteration (see :func:`relu_power_iteration`).
        Not with ``data``.
    checkpoint_interval : float or None, default=None
        Seconds between checkpoint writes (``None``: 5).

    Returns
    -------
    ReLUSingularValues

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array, a ``k`` outside ``[1, min(m, n)]``,
        a bias of the wrong shape or with NaN or ``-inf``, data that are not a finite
        2-D array with ``n`` columns, ``client`` or ``checkpoint`` given with ``data``,
        invalid counts, ``tol``, ``seed`` or ``n_jobs``, or a run that does not fit in
        memory.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> svals = fr.relu_singular_values(W, 2, n_starts=64, fit_starts=32, fit_steps=20,
    ...                                 seed=0, n_jobs=1)
    >>> svals.k, svals.kinds
    (2, ('lower bound', 'upper bound estimate'))
    >>> bool(np.all(svals.values <= svals.upper)), bool(np.allclose(svals.sigma, svals.upper))
    (True, True)

    On data ``s_1`` is exact:

    >>> X = np.random.default_rng(1).standard_normal((50, 3))
    >>> fr.relu_singular_values(W, 2, data=X, fit_steps=20, seed=0, n_jobs=1).kinds
    ('exact', 'upper bound')
    """
    clock = Stopwatch()
    W, alpha, can_fire = _weight_and_bias(weight, bias)
    m, n = W.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(m, n):
        if can_fire.all():
            limit = f"at most min(m, n) for weight.shape={W.shape}"
        else:
            limit = (f"at most min(m, n) over the {int(can_fire.sum())} of {can_fire.size} neurons "
                     f"that can be active; bias +inf switches the others off")
        raise FastReluError(f"The 'k' parameter must be an integer in [1, {min(m, n)}] ({limit}). Got {k!r} instead.")
    k = int(k)
    n_starts = positive_int(n_starts, "n_starts")
    fit_starts = positive_int(fit_starts, "fit_starts")
    fit_steps = positive_int(fit_steps, "fit_steps", minimum=0)
    max_iter = positive_int(max_iter, "max_iter")
    tol = _tol_value(tol)
    jobs = n_jobs_value(n_jobs)
    on_data = data is not None
    for name, value in (("client", client), ("checkpoint", checkpoint)):
        if on_data and value is not None:
            raise FastReluError(f"The '{name}' parameter applies to the unit ball (the power iteration for s_1); on data s_1 is exact and nothing is sampled. Got {name} with data.")
    seed_used = _checkpoint.seed_for(seed, checkpoint, _PowerPlan.kernel)
    if on_data:
        points = data.points if isinstance(data, Data) else as_matrix(data, "data")
        if points.shape[1] != n:
            raise FastReluError(f"The 'data' parameter must have {n} columns (the input dimension). Got data.shape={points.shape}.")
        domain = data if isinstance(data, Data) else Data(points)
    fits_budget(m, n, k, fit_starts, jobs, on_data=on_data,
                     n_points=points.shape[0] if on_data else 0).check_memory()
    # the k leading singular triplets, once (Lanczos for large layers)
    top = leading_singular(W, k)
    sigma = top[1]
    values, kinds, upper, fits = np.empty(k), [], np.empty(k), []
    power, argmax = None, None
    if on_data:
        dist = _relu_distances(W, alpha, points)
        argmax = int(np.argmax(dist))
        values[0] = upper[0] = dist[argmax]
        kinds.append("exact")
    else:
        power = relu_power_iteration(W, bias=alpha, n_starts=n_starts, max_iter=max_iter,
                                     tol=tol, seed=seed_used, n_jobs=jobs, per_start=False,
                                     client=client, checkpoint=checkpoint,
                                     checkpoint_interval=checkpoint_interval)
        values[0] = power.s1
        upper[0] = sigma[0]
        kinds.append("lower bound")
    for j in range(2, k + 1):
        rng = block_generator(seed_used, j, FIT_STREAM)
        if on_data:
            value, U, V = _fit_on_data(W, top, alpha, points, j - 1, fit_steps, rng)
            values[j - 1] = upper[j - 1] = value
            kinds.append("upper bound")
        else:
            value, U, V = _fit_on_ball(W, top, alpha, j - 1, fit_steps, fit_starts, rng, jobs,
                                       max_iter, tol)
            values[j - 1] = min(value, sigma[j - 1])
            upper[j - 1] = sigma[j - 1]
            kinds.append("upper bound estimate")
        if not can_fire.all():  # the never-active neurons' rows of L do not matter: 0
            full = np.zeros((can_fire.size, U.shape[1]))
            full[can_fire] = U
            U = full
        fits.append((U, V))
    return ReLUSingularValues(values=values, kinds=tuple(kinds), upper=upper, sigma=sigma,
                              fits=tuple(fits), domain=domain if on_data else "ball",
                              power=power, argmax=argmax, seed=seed_used, elapsed=clock())


# --------------------------------------------------------------------------- budget


def ascent_bytes(m, n, rows):
    """Buffers of one thread's ascent over ``rows`` starts at once."""
    return _budget.FLOAT_BYTES * rows * (5 * m + 5 * n + 4)


def power_budget(m, n, n_starts, jobs, *, per_start, n_hist, max_iter):
    """The budget of :func:`fastrelu.relu_power_iteration`."""
    threads = _budget.threads_of(jobs)
    memory = [("weights and their transpose", 2 * _budget.FLOAT_BYTES * m * n, "weight"),
              ("per-thread ascent buffers", threads * (ascent_bytes(m, n, starts_per_call(n, n_starts))
                                                       + _budget.FLOAT_BYTES * POWER_BLOCK * n), "n_jobs"),
              ("iteration history", 2 * _budget.FLOAT_BYTES * n_hist * (max_iter + 1), "history")]
    if per_start:
        memory.append(("per-start values, iterations and status (state and partial result)", 2 * 17 * n_starts, "n_starts"))
    return _budget.Budget("relu_power_iteration", "n_starts", n_starts, "starts", POWER_BLOCK, memory,
                  flops_per_unit=4.0 * m * n,
                  advice="Use fewer starts, per_start=False (13 bytes per start less), or a smaller layer.")


def fits_budget(m, n, k, fit_starts, jobs, *, on_data, n_points):
    """The low-rank fits of :func:`fastrelu.relu_singular_values` (``k - 1`` of them)."""
    threads = _budget.threads_of(jobs)
    if on_data:
        points = min(n_points, FIT_DATA_POINTS) + FIT_ROUNDS * FIT_ADD
        fits = 4 * _budget.FLOAT_BYTES * points * m
    else:
        points = FIT_POINTS + (FIT_ROUNDS + 1) * FIT_ADD
        starts = fit_starts + FIT_ADD
        fits = 4 * _budget.FLOAT_BYTES * points * m + 3 * _budget.FLOAT_BYTES * starts * n + threads * ascent_bytes(2 * m, n, POWER_BLOCK)
    memory = [("weights and the singular value decomposition", _budget.FLOAT_BYTES * (3 * m * n + 2 * n * n), "weight"),
              ("low-rank fits (points, images, ascent buffers)", fits, "fit_starts")]
    return _budget.Budget("relu_singular_values", "k", k, "values", 1, memory,
                  advice="Use fewer fit_starts, k = 1, or a smaller layer.")
