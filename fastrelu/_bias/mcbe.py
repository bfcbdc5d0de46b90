"""Approach A: Monte Carlo most-correlated-basis bias estimation (THEORY §3)."""

import math
from dataclasses import dataclass, field

import numpy as np

from fastrelu._bias import kernels
from fastrelu._core import budget as _budget
from fastrelu._core.basis import Candidates, certify_one_by_one, lanes_scratch, scan_scratch
from fastrelu._core.domains import Ball, Data, Shell, Sphere, check_domain, domain_reduction
from fastrelu._core.errors import FastReluError
from fastrelu._core.rows import (
    DEFAULT_RANK_TOL,
    RowGeometry,
    repeated_rows,
    row_exponents,
    stores_gram,
)
from fastrelu._core.validation import (
    as_frame,
    n_jobs_value,
    positive_float,
    positive_int,
    rank_tol_value,
)
from fastrelu._runtime import checkpoint as _checkpoint
from fastrelu._runtime.blocks import BlockPlan, digest, execute
from fastrelu._runtime.parallel import SharedBlocks, Stopwatch, block_parts, run_blocks
from fastrelu._runtime.seeds import BLOCK_SIZE, SAMPLING_STREAM, block_generator

#: Default number of samples for sphere, ball and shell domains.
DEFAULT_SAMPLES = 1_000_000



@dataclass(frozen=True, eq=False)
class BiasEstimate:
    """A bias under which the layer is injective on the sampled points of a domain.

    Attributes
    ----------
    alpha : ndarray, shape (m,)
        The estimate: ``alpha_sampled`` minus the margin correction (if any). A layer
        ``ReLU(W x - a)`` with ``a <= alpha`` componentwise is injective at every sample
        whose scan reached rank n (all but ``n_incomplete`` of them; exactly so
        without margin, THEORY §3). ``+inf`` marks rows never in a most
        correlated basis: no sample constrains them.
    counts : ndarray of int64, shape (m,)
        How many samples had row ``i`` in their most correlated basis.
    n_samples : int
        Number of samples (data points for a ``Data`` domain).
    seed : int or None
        The seed that reproduces the run (``None`` for ``Data``, which draws nothing).
    margin : float or None
        The covering radius ``eps`` of the sample directions (Euclidean distance between
        unit vectors) used for the correction ``alpha_i = alpha_sampled_i - r eps |w_i|``
        (``r`` the outer radius); ``None`` when no correction was applied. If every unit
        direction of the domain is within ``eps`` of a sample, the corrected ``alpha`` is
        a bias for the whole domain. With ``margin="covering"`` it is the estimate
        :func:`covering_radius`, which the covering radius of random samples exceeds
        with probability about 1%; measured covering radii for ``n = 2..5`` are 1-36%
        smaller than it on the whole sphere and 21-64% smaller on the nonnegative part
        (the table in docs/theory.md). A margin is an estimate, never a certificate.
    elapsed : float
        Wall-clock seconds of the run.
    method : str
        ``"mcbe"`` or ``"pbe"``.
    domain : Sphere, Ball, Shell or Data
        The domain sampled.
    alpha_sampled : ndarray, shape (m,)
        ``min { <x, w_i> : x sampled, i in B(x) }`` itself.
    rank_tol : float
        Rank tolerance of the basis selection.
    repeated : ndarray of int64
        Rows whose direction repeats that of an earlier row (unit vectors within
        ``rank_tol``). fastrelu lets the earlier row stand for them: they never enter a
        basis and stay unconstrained. The scan of THEORY §3 would instead take whichever
        of the two is more correlated with the sample; the two directions differ by less
        than ``rank_tol``, so the bias of the earlier row covers both, but ``counts`` and
        ``alpha`` of such a pair may differ from the scan's.
    n_incomplete : int
        Samples whose rows did not reach rank ``n`` within ``rank_tol`` (zero for any
        reasonably conditioned frame).
    facets : ndarray of int64, shape (f, n), or None
        For ``method="pbe"``: the facets of the hull of the unit rows (row indices per
        facet) from which ``alpha`` was computed; ``None`` for MCBE.
    """

    alpha: np.ndarray
    counts: np.ndarray
    n_samples: int
    seed: int | None
    margin: float | None
    elapsed: float
    method: str
    domain: Sphere | Ball | Shell | Data
    alpha_sampled: np.ndarray = field(repr=False)
    rank_tol: float = DEFAULT_RANK_TOL
    repeated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    n_incomplete: int = 0
    facets: np.ndarray | None = field(default=None, repr=False)

    @property
    def unconstrained(self):
        """Boolean mask of rows that no sample constrained (``alpha = +inf``)."""
        return self.counts == 0


#: The covering-radius estimate solves ``N p(eps) = log N + (d - 1) log log N + u`` with
#: this ``u``: in the limit law of random coverings the probability that the samples
#: leave a larger hole is then about ``1 - exp(-e^-u)``, 1%.
COVERING_QUANTILE_U = 4.6


def _cap_fraction(eps, d):
    """Fraction of the area of ``S^d`` in a cap of chordal (Euclidean) radius ``eps``."""
    from scipy.special import betainc

    theta = 2.0 * math.asin(min(1.0, 0.5 * eps))
    half = 0.5 * float(betainc(0.5 * d, 0.5, math.sin(theta) ** 2))
    return half if theta <= 0.5 * math.pi else 1.0 - half


def covering_radius(n_samples, dim, *, nonnegative=False):
    """Estimated covering radius of ``n_samples`` uniform random points on a sphere.

    The Euclidean distance within which every point of ``S^{dim-1}`` (or of its
    nonnegative part) has a sample, as :attr:`BiasEstimate.margin` uses it.

    With ``d = dim - 1`` and ``p(eps)`` the fraction of the sphere's area in a cap of
    Euclidean radius ``eps`` (exact, by the incomplete beta function), ``eps`` solves::

        N share p(eps) = log N + (d - 1) log log N + u,      u = 4.6,

    the high quantile of the limit law of random coverings (Janson 1986; Reznikov &
    Saff, IMRN 2016 give the leading term ``N p(eps) ~ log N``, which undershoots at
    practical ``N``): the samples leave a larger hole with probability about 1%. On
    the whole sphere ``share = 1``. On the nonnegative part (area ``2^-dim`` of the
    sphere) the caps at its corners ``e_j`` have only ``2^-(dim-1)`` of their area
    inside, so relative to the part's area a corner cap has ``2 p(eps)``: fastrelu
    takes ``share = 2`` everywhere, which is conservative away from the corners.
    Clipped to 2 (the diameter).

    It is an estimate, not a bound. Measured covering radii (largest distance of
    300,000 query points, and for the nonnegative part also points on its faces, to
    the nearest of ``N`` samples; the largest of 3 sample sets) lie below it for
    ``dim = 2..5`` and ``N = 300..100,000``: the estimate exceeds them by factors
    1.01-1.57 on the whole sphere and 1.26-2.74 on the nonnegative part (docs/theory.md
    has the table). For ``dim = 2`` the exact covering radius of 300 sample sets of
    each size exceeded the estimate in 0.7-1.7% of them on the whole circle, never on
    its nonnegative quarter.

    Parameters
    ----------
    n_samples : int
        Number of sample points ``N`` (at least 1).
    dim : int
        Dimension of the space; the points lie on ``S^{dim-1}`` (at least 1).
    nonnegative : bool, default=False
        The nonnegative part of the sphere instead of the whole sphere.

    Returns
    -------
    float
        The estimate ``eps``, in ``[0, 2]``: 0 for ``dim = 1`` (the sphere ``S^0`` is two
        points) and 2 for a single sample.

    Raises
    ------
    FastReluError
        For an ``n_samples`` or ``dim`` that is not a positive integer.

    Examples
    --------
    >>> import fastrelu as fr
    >>> round(fr.covering_radius(1000, 3), 3)
    0.232
    >>> fr.covering_radius(1, 3)
    2.0
    >>> fr.covering_radius(4000, 3) < fr.covering_radius(1000, 3)
    True
    """
    n_samples = positive_int(n_samples, "n_samples")
    dim = positive_int(dim, "dim")
    if dim == 1:
        return 0.0  # S^0 is two points; any sample set of size >= 2 almost surely has both
    if n_samples < 2:
        return 2.0
    d = dim - 1
    log_n = math.log(n_samples)
    target = log_n + (d - 1) * max(0.0, math.log(log_n)) + COVERING_QUANTILE_U
    share = 2.0 if nonnegative else 1.0
    scale = n_samples * share
    if scale * _cap_fraction(2.0, d) <= target:
        return 2.0
    low, high = 0.0, 2.0
    for _ in range(80):  # bisection: p is increasing in eps
        middle = 0.5 * (low + high)
        if scale * _cap_fraction(middle, d) < target:
            low = middle
        else:
            high = middle
    return high


class _Problem:
    """The validated, precomputed inputs of one MCBE run, shared by the workers."""

    def __init__(self, W, domain, rank_tol, use_gram=None, one_by_one=None):
        m, n = W.shape
        self.m, self.n = m, n
        # The kernel works on the rows scaled by powers of two (row_exponents): the same
        # bases and bits for any finite scale, and alpha_i = 2^e_i times its result.
        self.exponents, scaled = row_exponents(W)
        self.geometry = geometry = RowGeometry(scaled, use_gram=use_gram)
        self.weight_t, self.inv_norm = geometry.weight_t, geometry.inv_norm
        self.unit_rows, self.use_gram, self.gram = geometry.unit_rows, geometry.use_gram, geometry.gram
        self.scaled_norms = geometry.norms
        self.norms = np.ldexp(self.scaled_norms, self.exponents)
        self.repeated = repeated_rows(self.unit_rows, rank_tol, self.gram if self.use_gram else None)
        keep = np.ones(m, dtype=bool)
        keep[self.repeated] = False
        self.rows = np.flatnonzero(keep).astype(np.int64)
        kind, r_pos, r_neg = domain_reduction(domain)
        self.data_kind = kind == 0
        self.r_pos, self.r_neg = float(r_pos), float(r_neg)
        self.rank_tol2 = float(rank_tol) ** 2
        self.tile = geometry.tile
        # the certificate's path, decided once for the run (see _McbePlan)
        self.one_by_one = certify_one_by_one(n) if one_by_one is None else bool(one_by_one)
        # a square frame whose scan keeps every row in any order: no certificates at all
        self.every_row = self.rows.shape[0] == n and geometry.every_row_kept(self.rank_tol2)

    def worker(self):
        """Per-thread buffers and partial minima; returns ``(fold, result)``."""
        m, n, tile = self.m, self.n, self.tile
        minima = kernels.Minima(alpha=np.full(m, np.inf), counts=np.zeros(m, dtype=np.int64),
                                state=np.array([-np.inf, 0.05]), stats=np.zeros(3, dtype=np.int64))
        C = np.empty((tile, m))
        one_by_one = self.one_by_one
        lanes_count = 1 if one_by_one else kernels.SPANS_LANES
        cands = Candidates(keys=np.empty((lanes_count, m)), index=np.empty(m, dtype=np.int64),
                           index_keys=np.empty(m))
        scan = scan_scratch(m, n)
        lanes = lanes_scratch(1, 1) if one_by_one else lanes_scratch(n)  # unused one by one
        layer = kernels.McbeRows(weight_t=self.weight_t, inv_norm=self.inv_norm, rows=self.rows,
                                 data_kind=self.data_kind, r_pos=self.r_pos, r_neg=self.r_neg)
        basis = self.geometry.basis(self.rank_tol2)
        alpha, counts, stats = minima.alpha, minima.counts, minima.stats

        def fold(U):
            kernels.mcbe_block(U, C, layer, basis, minima, cands, scan, lanes, one_by_one,
                               self.every_row)

        def result():
            return np.ldexp(alpha, self.exponents), counts, int(stats[0])

        return fold, result

    def lowered(self, alpha, step):
        """``alpha_i - step |w_i|`` computed at the rows' scale (no overflow of
        ``|w_i|`` for rows near the largest float)."""
        return np.ldexp(np.ldexp(alpha, -self.exponents) - step * self.scaled_norms,
                        self.exponents)


class _McbePlan(BlockPlan):
    """MCBE as blocks of ``BLOCK_SIZE`` samples: the state is the running minima
    ``alpha``, the counts and the number of incomplete bases (minimum and sums)."""

    kernel = "mcbe"
    desc = "mcbe"

    def __init__(self, W, domain, total, seed, rank_tol, use_gram=None):
        super().__init__(-(-total // BLOCK_SIZE))
        self.W, self.domain, self.total, self.seed, self.rank_tol = W, domain, total, seed, rank_tol
        # decided once, where the run starts: every worker and a resume use the same
        # path. The certificate's path (SIMD lanes or one sample at a time, by the L2
        # cache of this machine) decides close calls within rounding of rank_tol
        # differently, so a Dask worker or a resume elsewhere must take the same one.
        self.use_gram = stores_gram(*W.shape, total) if use_gram is None else bool(use_gram)
        self.one_by_one = certify_one_by_one(W.shape[1])

    def adopt(self, key, value):
        """A checkpoint's certificate path (``one_by_one``) is always taken: both paths
        give the scan's basis, and the run's close calls are then all rounded one way. Its
        ``stored_gram`` is taken when storing fits this machine's memory (or when it says
        not to store)."""
        if "_cache_problem" in self.__dict__ or not isinstance(value, bool):
            return False  # too late: the rows were prepared for this machine's path
        if key == "one_by_one":
            self.one_by_one = value
            return True
        if key == "stored_gram" and (not value or stores_gram(self.W.shape[0])):
            self.use_gram = value
            return True
        return False

    def problem(self):
        return self.cached("problem", lambda: _Problem(self.W, self.domain, self.rank_tol,
                                                       self.use_gram, self.one_by_one))

    def fingerprint(self):
        domain = repr(self.domain)
        if isinstance(self.domain, Data):
            domain += f" sha256:{digest(self.domain.points)}"
        return {"weight": digest(self.W), "domain": domain, "n_samples": self.total,
                "seed": self.seed, "rank_tol": self.rank_tol, "block_size": BLOCK_SIZE,
                "stored_gram": self.use_gram, "one_by_one": self.one_by_one}

    def empty(self):
        m = self.W.shape[0]
        return {"alpha": np.full(m, np.inf), "counts": np.zeros(m, dtype=np.int64),
                "n_incomplete": np.zeros((), dtype=np.int64)}

    def _draws(self, b, out):
        """The samples of block ``b`` (Gaussian directions) into ``out``."""
        block_generator(self.seed, b, SAMPLING_STREAM).standard_normal(out=out)
        if self.domain.nonnegative:
            np.abs(out, out=out)
        return out

    def compute(self, first, stop, n_jobs, *, bar=None, limit_blas=True):
        problem = self.problem()
        domain, total, n = self.domain, self.total, problem.n
        # few blocks (large layers): the blocks' samples are shared out among the threads;
        # the minima and counts merge exactly, so the result is the same
        parts = block_parts(first, stop, lambda b: min(BLOCK_SIZE, total - b * BLOCK_SIZE),
                            n_jobs, align=problem.tile)
        whole = len(parts) == stop - first
        if isinstance(domain, Data):
            points = domain.points
            samples = lambda b: points[b * BLOCK_SIZE:(b + 1) * BLOCK_SIZE]  # noqa: E731
        elif whole:
            samples = None
        else:  # each block drawn once, by the first thread that needs it, kept while used
            shared = SharedBlocks(parts, lambda b: self._draws(
                b, np.empty((min(BLOCK_SIZE, total - b * BLOCK_SIZE), n))))
            samples = shared.get

        def make_worker():
            fold, result = problem.worker()
            if samples is None:
                buffer = np.empty((min(BLOCK_SIZE, total), n))

                def process(part):
                    b = part[0]
                    fold(self._draws(b, buffer[:min(BLOCK_SIZE, total - b * BLOCK_SIZE)]))
            else:
                def process(part):
                    b, lo, hi, _ = part
                    fold(samples(b)[lo:hi])
                    if not isinstance(domain, Data):
                        shared.done(b)
            return process, result

        partials = run_blocks(parts, make_worker, n_jobs, bar=bar, limit_blas=limit_blas,
                              advance=lambda part: part[3])
        return {"alpha": np.min([p[0] for p in partials], axis=0),
                "counts": np.sum([p[1] for p in partials], axis=0).astype(np.int64),
                "n_incomplete": np.array(sum(p[2] for p in partials), dtype=np.int64)}

    def absorb(self, state, piece, first, stop):
        np.minimum(state["alpha"], piece["alpha"], out=state["alpha"])
        state["counts"] += piece["counts"]
        state["n_incomplete"] += piece["n_incomplete"]


def mcbe(weight, domain, n_samples=None, *, seed=None, margin=None, n_jobs=None,
         progress=False, rank_tol=DEFAULT_RANK_TOL, client=None, checkpoint=None,
         checkpoint_interval=None):
    """Monte Carlo most-correlated-basis bias estimation (MCBE, Approach A of [HEB]).

    For each sample ``x`` of the domain the rows are scanned by decreasing normalised
    correlation ``<x, w_i> / |w_i|`` (ties: smaller index first) and an index is kept when
    its row is linearly independent of those kept, until ``n`` are kept: the most
    correlated basis ``B(x)``. The estimate is::

        alpha_i = min { <x, w_i> : x sampled, i in B(x) }      (+inf if never in a B(x)),

    so that ``ReLU(W x - a)`` is injective at every sample whose scan reached rank ``n``
    (all but ``n_incomplete``) for every ``a <= alpha``. As the
    samples fill the domain it decreases towards the maximal bias of the domain (THEORY
    §3). The result does not depend on positive row scaling (beyond the scaling of
    ``alpha`` itself).

    Sphere-type domains are sampled by directions ``u`` uniform on the unit sphere (on
    its nonnegative part when ``nonnegative``); with ``c = <u, w_i>`` the constraint value
    is ``r c`` on the sphere ``S_r``, ``min(r c, 0)`` on the ball ``B_r`` and ``r_in c`` or
    ``r_out c`` (for ``c >= 0`` or ``c < 0``) on a shell. A ``Data`` domain uses its points.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming a frame for R^n (no zero rows, rank ``n``).
    domain : Sphere, Ball, Shell or Data
        Where injectivity is asked; its dimension must be ``n``.
    n_samples : int or None, default=None
        Number of sampled directions; ``None`` means 1,000,000. Must be omitted for
        ``Data``. With the same seed a larger ``n_samples`` extends the smaller run's
        samples.
    seed : int or None, default=None
        Seed of the run (``None``: fresh entropy; the result reports it). A seeded
        run gives bit-identical results for any ``n_jobs``, on any cluster, and after a
        resume. Without a seed, a run with a ``checkpoint`` records the fresh seed in
        the file and a rerun resumes with it.
    margin : None, "covering" or float, default=None
        Covering-radius correction for sphere-type domains: ``"covering"`` uses the
        asymptotic estimate :func:`covering_radius` of the sample count, a float is the
        covering radius ``eps`` to assume. ``alpha_i`` is lowered by ``r_out eps |w_i|``.
        An estimate, never a certificate. ``None``: no correction.
    n_jobs : int or None, default=None
        Worker threads (``None``: all cores).
    progress : bool or None, default=False
        Progress bar on stderr: ``True`` always, ``False`` never, ``None`` only when the
        run lasts more than two seconds and stderr is a terminal.
    rank_tol : float, default=1e-6
        A unit row whose distance to the span of the kept unit rows is at most
        ``rank_tol`` counts as dependent (at least 1e-7, the resolution of distances
        computed from Gram matrices).
    client : distributed.Client, str or None, default=None
        Run the blocks on this Dask cluster (a client, or a scheduler address such as
        ``"tcp://host:8786"`` to connect to), ``n_jobs`` aside. Needs the extra
        ``fastrelu[dask]``; see docs/distributed.md. The result is the same bits as
        the local one. ``None``: run locally.
    checkpoint : str, path-like or None, default=None
        Save the partial result to this file (atomically, every ``checkpoint_interval``
        seconds, on interruption and at the end) and resume from it when it exists: a
        resumed run gives exactly the result of an uninterrupted one. A file written
        for other parameters (weights, domain, ``n_samples``, seed, ``rank_tol``) is
        refused. ``margin`` is applied after the run and may differ. ``None``: no
        checkpoint.
    checkpoint_interval : float or None, default=None
        Seconds between checkpoint writes (``None``: 5).

    Returns
    -------
    BiasEstimate

    Raises
    ------
    FastReluError
        For weights that are not a frame, a domain of the wrong dimension, invalid
        parameters, an unreachable scheduler, or a checkpoint that cannot be read or
        was written for other parameters.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> W = np.random.default_rng(0).standard_normal((8, 3))
    >>> est = fr.mcbe(W, fr.Sphere(3), 500, seed=0, n_jobs=1)
    >>> est.alpha.shape, est.n_samples, int(est.counts.sum())
    ((8,), 500, 1500)

    Every sample's basis has ``n = 3`` rows, hence the 1500. The estimate makes the
    layer injective at fresh points of the sphere too, as a rule:

    >>> check = fr.check_bias(fr.ReLULayer(W, est.alpha), fr.Sphere(3), 300, seed=1, n_jobs=1)
    >>> check.fraction > 0.9
    True
    """
    clock = Stopwatch()
    W = as_frame(weight)
    m, n = W.shape
    check_domain(domain, n)
    rank_tol = rank_tol_value(rank_tol)
    jobs = n_jobs_value(n_jobs)
    is_data = isinstance(domain, Data)
    if is_data:
        if n_samples is not None:
            raise FastReluError(f"The 'n_samples' parameter must be omitted for a Data domain (every one of its {len(domain)} points is used). Got n_samples={n_samples!r}.")
        if margin is not None:
            raise FastReluError(f"The 'margin' parameter must be None for a Data domain (the domain is the finite point set itself). Got margin={margin!r}.")
        total = len(domain)
        seed_used = None
    else:
        total = DEFAULT_SAMPLES if n_samples is None else positive_int(n_samples, "n_samples")
        seed_used = _checkpoint.seed_for(seed, checkpoint, _McbePlan.kernel)
    eps = margin_value(margin, total, domain)
    budget = mcbe_budget(m, n, total, jobs, data=is_data).check_memory()

    plan = _McbePlan(W, domain, total, seed_used, rank_tol)
    state = execute(plan, n_jobs=jobs, client=client, checkpoint=checkpoint,
                    checkpoint_interval=checkpoint_interval, progress=progress, budget=budget)
    alpha_sampled = state["alpha"]
    alpha = alpha_sampled.copy()
    if eps is not None:
        alpha = plan.problem().lowered(alpha_sampled, domain.outer_radius * eps)
    return BiasEstimate(alpha=alpha, counts=state["counts"], n_samples=total, seed=seed_used,
                        margin=eps, elapsed=clock(), method="mcbe", domain=domain,
                        alpha_sampled=alpha_sampled, rank_tol=rank_tol,
                        repeated=plan.problem().repeated, n_incomplete=int(state["n_incomplete"]))


def margin_value(margin, total, domain):
    if margin is None:
        return None
    if isinstance(margin, str):
        if margin != "covering":
            raise FastReluError(f"The 'margin' parameter must be None, 'covering' or a float >= 0. Got {margin!r} instead.")
        return covering_radius(total, domain.dim, nonnegative=domain.nonnegative)
    return positive_float(margin, "margin", allow_zero=True)


# --------------------------------------------------------------------------- budget


def mcbe_budget(m, n, total, jobs, *, data):
    """The budget of :func:`fastrelu.mcbe` with ``total`` samples."""
    threads = _budget.threads_of(jobs)
    buffer_rows = 0 if data else min(total, BLOCK_SIZE)  # data are read in place
    memory = [*_budget.row_geometry(m, n, total),
              _budget.basis_scratch(m, n, threads, kernels.SPANS_LANES, buffer_rows),
              ("state (minima and counts per thread and merged)", 2 * _budget.FLOAT_BYTES * m * (threads + 3), "weight")]
    return _budget.Budget("mcbe", "n_samples", total, "samples", BLOCK_SIZE, memory,
                  flops_per_unit=2.0 * m * n, setup_flops=float(m) * m * n if stores_gram(m, n, total) else 0.0,
                  advice="Use a smaller layer, or run on a machine (or Dask workers) with more memory.")
