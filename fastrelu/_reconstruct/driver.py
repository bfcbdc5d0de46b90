"""Reconstruction of the inputs of ReLU layers from their outputs (THEORY §6)."""

from dataclasses import dataclass, field, replace

import numpy as np
from threadpoolctl import threadpool_limits

from fastrelu._core.errors import BuildError, FastReluError
from fastrelu._core.frames import simd_build_runs_here
from fastrelu._core.layer import ReLULayer
from fastrelu._core.memory import l2_cache_bytes
from fastrelu._core.rows import DEFAULT_RANK_TOL, RowGeometry
from fastrelu._core.validation import (
    as_frame,
    check_real,
    n_jobs_value,
    positive_float,
    positive_int,
    rank_tol_value,
)
from fastrelu._reconstruct import kernels
from fastrelu._runtime.parallel import Stopwatch, block_parts, progress_bar, run_blocks
from fastrelu._runtime.seeds import BLOCK_SIZE

METHODS = ("dual", "basis", "frame")
_solvers = None


def _extension():
    """The compiled reconstruction module, imported on first use: it may have been
    built for CPUs with AVX2 and FMA (see setup.py), and on a CPU without them its
    first instruction would kill the process."""
    global _solvers
    if _solvers is None:
        simd, runs = simd_build_runs_here()
        if simd and not runs:
            raise BuildError("fastrelu's reconstruction extension was compiled for CPUs with AVX2 and FMA (those of the machine that built it), and this CPU lacks them. Reinstall fastrelu on this machine, or build it with FASTRELU_PORTABLE=1 to run on any x86-64 CPU.")
        from fastrelu._reconstruct import solvers

        _solvers = solvers
    return _solvers
#: Default relative tolerance of the frame algorithm's residual.
DEFAULT_TOL = 1e-12
#: Default iteration cap of the frame algorithm.
DEFAULT_MAX_ITER = 10_000
#: The active rows count as spanning when the condition number of W_I is below
#: 1 / span_tol (default; at least 1e-7, since cond(S_I) = cond(W_I)^2 must stay well
#: below the 1e16 at which round-off alone produces it).
DEFAULT_SPAN_TOL = 1e-6
EPS = float(np.finfo(np.float64).eps)
#: Forward error of a Cholesky solve with S_I, in units of cond(S_I) eps (generous).
ROUNDING_FACTOR = 16.0
_MODES = {"dual": 0, "frame": 1, "pinv": 2}
#: Samples per call of the compiled solver, at most.
CHUNK = 1 << 15
#: Work per call of the compiled solver (multiply-adds, about a second on one core):
#: fewer samples per call for large layers, so that progress and Ctrl-C are seen.
CHUNK_MULTIPLY_ADDS = 10**10
#: Form S_I as S minus the inactive rows' Gram matrix when those rows are fewer (half
#: the work or less) and their squared norms sum to at most those of the active rows
#: (so that the subtraction's rounding stays within a small factor of the direct sum's),
#: instead of from the active rows.
DOWNDATE = True
#: The SIMD lanes of the solves while their frame operators and factors take at most
#: this share of the core's L2 cache; beyond, the blocked path (``solves_blocked``). The
#: dual solves factorise in the lanes (rows ``fr_lane_stride(n)`` apart, see _lanes.h)
#: and win to a larger share than the frame algorithm and least squares, which step or
#: decompose one sample at a time either way. Measured (AMD EPYC Zen 4, 1 MiB L2, 4
#: lanes, ``m = 4 n``, ``python bench/crossover.py reconstruction``): the dual solve in
#: lanes 97 against 135 us per output at n = 112, 324 against 356 at 160, 497 against
#: 458 at 192; the frame algorithm 351 against 396 at 96, 563 against 533 at 112.
SOLVE_L2_SHARE = 0.5
SOLVE_L2_SHARE_DUAL = 1.5
#: Override of the rule above: the blocked path above this ``n`` (None: by cache).
SOLVE_LANES_MAX_N = None


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Inputs recovered from the outputs of a ReLU layer ``y = ReLU(W x - alpha)``.

    Attributes
    ----------
    x : ndarray, shape (N, n) (or (n,) for a single output)
        The reconstruction. Where ``spans``: the method's solution of the active
        equations ``W_I x = y_I + alpha_I``, which is the unique preimage where ``ok``.
        Elsewhere the minimum-norm least-squares solution of those equations.
    ok : ndarray of bool, shape (N,) (or a bool)
        ``x`` is the input with these outputs, to the stated accuracy: ``spans`` and
        ``residual <= residual_bound``. For ``"frame"`` this is ``converged``: an
        iteration stopped by ``max_iter`` before its tolerance is not ok, however well
        the rows span. The relative forward error ``|x - x_true| / |x_true|`` is then
        at most ``cond(S_I) residual`` with ``cond(S_I) = cond^2`` for ``"dual"`` and
        ``"frame"`` (up to the accuracy of an estimated ``cond``).
    spans : ndarray of bool, shape (N,) (or a bool)
        The active rows span R^n, so the output determines the input: at least ``n``
        active rows, and the condition number ``cond`` of ``W_I`` (of the basis ``W_B``
        for ``"basis"``) below ``1 / span_tol``. Says nothing about whether the solve
        reached its accuracy (see ``ok``).
    cond : ndarray, shape (N,) (or a float)
        2-norm condition number of the active subframe ``W_I`` (``"dual"``, ``"frame"``)
        or of the basis ``W_B`` (``"basis"``), exact or estimated (``cond=``). Where the
        rows do not span it is ``inf``, or a large finite value when round-off leaves the
        factorisation positive.
    method : str
        ``"dual"``, ``"basis"`` or ``"frame"``.
    iterations : ndarray of int64, int or None
        Frame-algorithm steps per sample (``"frame"`` only; an int for a single output).
    residual : ndarray, shape (N,) (or a float)
        ``|S_I x - W_I^T (y_I + alpha_I)| / |W_I^T (y_I + alpha_I)|``: the relative
        residual of the normal equations of the active rows (for every method).
    residual_bound : ndarray, shape (N,) (or a float)
        The residual an ``ok`` answer must meet. ``"frame"``: ``tol``, the iteration's
        stopping rule. ``"dual"`` and ``"basis"``: ``max(tol, 16 n eps cond^2)``, at
        least what a backward-stable solve can leave (``eps`` the machine epsilon), so a
        direct answer fails it only when the solve itself went wrong, or for
        ``"basis"`` when the other active rows' outputs disagree with the basis
        solution (outputs that no input gives). ``inf`` where the rows do not span.
    span_tol : float
        ``I`` counts as spanning when ``cond < 1 / span_tol``.
    elapsed : float
        Wall-clock seconds.
    tol : float
        The ``tol`` of the call (see ``residual_bound``).
    """

    x: np.ndarray
    ok: np.ndarray
    cond: np.ndarray
    method: str
    iterations: np.ndarray | int | None = field(repr=False)
    residual: np.ndarray = field(repr=False)
    spans: np.ndarray = field(repr=False)
    residual_bound: np.ndarray = field(repr=False)
    span_tol: float = DEFAULT_SPAN_TOL
    elapsed: float = field(default=0.0, repr=False)
    tol: float = field(default=DEFAULT_TOL, repr=False)

    @property
    def converged(self):
        """``"frame"``: the active rows span and the residual reached ``tol`` within
        ``max_iter`` steps (the rate ``(B_I - A_I) / (B_I + A_I)`` is slow for badly
        conditioned subframes); equal to ``ok``. ``None`` for the direct methods."""
        if self.iterations is None:
            return None
        return np.logical_and(self.spans, self.residual <= self.tol)

    @property
    def n_failed(self):
        """Number of outputs whose input was not recovered (``ok`` False): those not
        determined by their outputs and those whose solve missed ``residual_bound``."""
        return int(np.size(self.ok) - np.count_nonzero(self.ok))

    def summary(self):
        """One line on how many inputs were recovered and how well.

        Returns
        -------
        str
            How many inputs were recovered (``ok``), how many are not determined by
            their outputs (not ``spans``), how many are determined but were not solved
            to ``residual_bound``, and the conditioning of the recovered ones.
        """
        ok = np.atleast_1d(self.ok)
        spans = np.atleast_1d(self.spans)
        cond = np.atleast_1d(self.cond)[ok]
        text = (f"{self.method}: {ok.sum()} of {ok.size} inputs recovered, "
                f"{spans.size - spans.sum()} not determined by their outputs")
        missed = int(np.count_nonzero(spans & ~ok))
        if missed:
            how = (f"the frame algorithm did not reach {self.tol:g}" if self.iterations is not None
                   else "residual above its bound")
            text += f", {missed} determined but not recovered ({how})"
        if cond.size:
            text += f"; condition number median {np.median(cond):.3g}, max {cond.max():.3g}"
        if self.iterations is not None:
            text += (f"; frame algorithm: {ok.sum()} converged to {self.tol:g}, steps max "
                     f"{int(np.max(self.iterations, initial=0))}")
        return text


@dataclass(frozen=True, eq=False)
class Inversion:
    """Inputs of a stack of ReLU layers recovered from the last layer's outputs.

    Attributes
    ----------
    x : ndarray, shape (N, n_0) (or (n_0,))
        The recovered network inputs.
    ok : ndarray of bool, shape (N,) (or a bool)
        Every layer's reconstruction was ``ok`` (:class:`Reconstruction`: its active
        rows spanned and its solve met its ``residual_bound``; for ``"frame"``, every
        layer's iteration reached its tolerance): ``x`` is the unique input.
    failed_at : ndarray of int64, shape (N,) (or an int for a single output)
        Index (into ``layers``) of the deepest layer whose reconstruction was not
        ``ok`` (its active rows did not span, or its solve missed its bound), i.e.
        where recovery stopped going down from the output; ``-1`` where every layer
        was inverted. ``layers[k].spans`` tells the two causes apart.
    layers : tuple of Reconstruction
        Per layer, in the order of ``layers`` (input side first). Where the layer below
        has never-active neurons (bias ``+inf``), whose outputs are 0, a layer's
        reconstruction solves for the other coordinates of its input only (``cond`` and
        ``residual`` are those of the weight without the corresponding columns) and its
        ``x`` holds 0 at them.
    elapsed : float
    """

    x: np.ndarray
    ok: np.ndarray
    failed_at: np.ndarray
    layers: tuple = field(repr=False)
    elapsed: float = field(default=0.0, repr=False)


def _as_outputs(Y, m, name="Y"):
    check_real(Y, name)
    try:
        array = np.asarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The '{name}' parameter must be an array of layer outputs. Got {type(Y).__name__} ({exc}).") from None
    single = array.ndim == 1
    if array.ndim not in (1, 2) or array.shape[-1] != m:
        raise FastReluError(f"The '{name}' parameter must have shape (N, {m}) or ({m},) (one entry per neuron). Got {name}.shape={array.shape}.")
    array = np.ascontiguousarray(array.reshape(-1, m))
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise FastReluError(f"The '{name}' parameter must contain only finite numbers. Got NaN or inf in rows {_rows_text(rows)}.")
    negative = (array < 0).any(axis=1)
    if negative.any():
        rows = np.flatnonzero(negative)
        raise FastReluError(f"The '{name}' parameter must hold outputs of a ReLU layer (entries >= 0). Got negative entries in rows {_rows_text(rows)}.")
    return array, single


def _rows_text(rows):
    shown = ", ".join(str(int(i)) for i in rows[:10])
    return shown + (f" and {rows.size - 10} more" if rows.size > 10 else "")


def _as_active(active, shape, single):
    mask = np.asarray(active)
    if mask.dtype != np.bool_:
        raise FastReluError(f"The 'active' parameter must be a boolean mask. Got dtype {mask.dtype}.")
    expected = (shape[1],) if single else shape
    if mask.shape != expected:
        raise FastReluError(f"The 'active' parameter must have the shape of 'Y', {expected}. Got active.shape={mask.shape}.")
    return mask.reshape(shape)


def reconstruct(layer, Y, method="dual", *, active=None, cond="estimate", tol=DEFAULT_TOL,
                max_iter=DEFAULT_MAX_ITER, span_tol=DEFAULT_SPAN_TOL, n_jobs=None,
                progress=None):
    """Recover the inputs ``x`` of a ReLU layer from its outputs ``y = ReLU(W x - alpha)``.

    On the active rows ``I = {i : y_i > 0}`` (or a given ``active`` mask) the outputs
    are linear, ``y_i + alpha_i = <w_i, x>``, so ``x`` is determined exactly when
    ``(w_i)_{i in I}`` spans R^n (THEORY §6):

    - ``"dual"``: the canonical dual of the active subframe,
      ``x = S_I^{-1} sum_{i in I} (y_i + alpha_i) w_i`` with ``S_I = W_I^T W_I``
      (Cholesky solve); ``cond`` is that of ``W_I``. ``S_I`` is summed from the active
      rows, or is ``S`` minus the inactive rows' Gram matrix when those are fewer.
    - ``"basis"``: ``x = W_B^{-1} (y_B + alpha_B)`` for a basis ``B`` of ``n`` active rows,
      the most correlated basis among them (greedy by decreasing normalised correlation
      ``(y_i + alpha_i) / |w_i|``, ties by index, rank tolerance 1e-6 on the unit rows;
      for unit rows and a constant bias that is the order of the largest ``y_i``).
      Cheaper, less stable; ``cond`` is that of ``W_B``.
    - ``"frame"``: the frame algorithm ``x <- x + lam W_I^T (y_I + alpha_I - W_I x)``
      with ``lam = 2 / (A_I + B_I)`` (``A_I, B_I`` the frame bounds of ``W_I``) from
      ``x = 0``, until the relative residual is at most ``tol`` or after ``max_iter``
      steps; it converges at the rate ``(B_I - A_I) / (B_I + A_I)``.

    Where ``I`` does not span, or only with a condition number of at least
    ``1 / span_tol``, the input is not (stably) determined by the output: ``spans`` and
    ``ok`` are False and ``x`` is the minimum-norm least-squares solution
    ``pinv(W_I) (y_I + alpha_I)``; no exception is raised. Where ``I`` spans, ``ok``
    also asks that the answer met its accuracy claim (``Reconstruction.residual_bound``:
    for ``"frame"`` that the iteration reached ``tol`` within ``max_iter``).

    Neurons with ``alpha_i = +inf`` are never active: their outputs must be 0, and they
    never enter ``I`` (their equation ``y_i + alpha_i = <w_i, x>`` holds no information).

    Parameters
    ----------
    layer : ReLULayer
        The layer; its weights must be a frame.
    Y : array_like, shape (N, m) or (m,)
        Outputs (nonnegative). A single output gives single-sample results.
    method : {"dual", "basis", "frame"}, default="dual"
        The solver (see above).
    active : array_like of bool, shape of ``Y``, or None, default=None
        The active rows to use (``None``: ``Y > 0``). An exact zero output whose
        pre-activation was exactly 0 is active too; pass the mask when you know it. It
        must not mark a neuron with ``alpha_i = +inf``.
    cond : {"estimate", "exact"}, default="estimate"
        How ``Reconstruction.cond`` is computed for ``"dual"`` and ``"basis"``:
        ``"estimate"`` is the condition estimate of LAPACK's method (Hager's)
        from the factorisation already made (``sqrt`` of the 1-norm estimate for
        ``S_I``, the infinity-norm estimate for ``W_B``; cheap, usually within a small
        factor of the 2-norm value);
        ``"exact"`` computes the 2-norm condition number from eigen- or singular values
        (several times slower at ``n = 50``). ``"frame"`` always computes the exact
        frame bounds, which its step needs.
    tol : float, default=1e-12
        Relative residual at which ``"frame"`` stops; also the least
        ``residual_bound`` of the direct methods.
    max_iter : int, default=10000
        Steps of ``"frame"`` at most.
    span_tol : float, default=1e-6
        The active rows count as spanning when the condition number of ``W_I`` (of
        ``W_B`` for ``"basis"``) is below ``1 / span_tol`` (at least 1e-7:
        ``cond(S_I) = cond(W_I)^2`` must stay clear of the ``1e16`` that round-off alone
        produces for a singular ``S_I``); fewer than ``n`` active rows never span.
    n_jobs : int or None, default=None
        OpenMP threads (``None``: all cores). Results do not depend on it, and a
        sample's result does not depend on the other samples of ``Y``.
    progress : bool or None, default=None
        Progress bar on stderr, counting outputs: ``True`` always, ``False`` never,
        ``None`` only when the run lasts more than two seconds and stderr is a terminal.

    Returns
    -------
    Reconstruction

    Raises
    ------
    FastReluError
        For a ``layer`` that is not a :class:`ReLULayer` or whose weights are not a
        frame, outputs of the wrong shape, negative or not finite, an ``active`` mask
        that is not boolean or not of the shape of ``Y``, an unknown ``method`` or
        ``cond``, or invalid ``tol``, ``max_iter``, ``span_tol`` or ``n_jobs``.

    Examples
    --------
    The double layer ``[W; -W]`` keeps every input (:func:`double_layer`):

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> layer = fr.double_layer(np.random.default_rng(0).standard_normal((8, 3)))
    >>> X = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
    >>> result = fr.reconstruct(layer, layer(X), n_jobs=1)
    >>> result.ok, bool(np.allclose(result.x, X))
    (array([ True,  True]), True)

    A single output gives single-sample results:

    >>> single = fr.reconstruct(layer, layer(X[0]), method="basis", n_jobs=1)
    >>> single.x.shape, single.ok
    ((3,), True)
    """
    clock = Stopwatch()
    if not isinstance(layer, ReLULayer):
        raise FastReluError(f"The 'layer' parameter must be a fastrelu.ReLULayer. Got {type(layer).__name__} instead.")
    if method not in METHODS:
        raise FastReluError(f"The 'method' parameter must be one of {list(METHODS)}. Got {method!r} instead.")
    W = as_frame(layer.weight, "layer.weight")
    m, n = W.shape
    Y, single = _as_outputs(Y, m)
    mask = Y > 0 if active is None else _as_active(active, Y.shape, single)
    tol = positive_float(tol, "tol")
    max_iter = positive_int(max_iter, "max_iter")
    span_tol = rank_tol_value(span_tol, "span_tol")
    if cond not in ("estimate", "exact"):
        raise FastReluError(f"The 'cond' parameter must be 'estimate' or 'exact'. Got {cond!r} instead.")
    exact = cond == "exact"
    jobs = n_jobs_value(n_jobs)
    alpha = _finite_bias(layer.bias, Y, mask, active is not None)
    N = Y.shape[0]
    x = np.zeros((N, n))
    ok = np.zeros(N, dtype=np.uint8)
    cond_values = np.full(N, np.inf)
    iters = np.zeros(N, dtype=np.int64)
    resid = np.zeros(N)
    settings = (1.0 / span_tol, exact, tol, max_iter, jobs)
    bar = progress_bar(N, progress, f"reconstruct {method}", unit="output")
    # the unit rows' Gram matrix of the basis selection (when it fits its share of memory),
    # by BLAS on all cores (for any n_jobs the same call: a result does not depend on
    # n_jobs); decided by the rows alone, never by N, so that a sample's basis does not
    # depend on the samples beside it
    geometry = RowGeometry(W, alpha) if method == "basis" else None
    with threadpool_limits(1), bar:
        if method == "basis":
            _basis(W, geometry, Y, mask, settings, x, ok, cond_values, bar)
            failed = np.flatnonzero(ok == 0)
            if failed.size:  # no (well-conditioned) basis among the active rows
                # the least-squares answer pinv(W_I) (y_I + alpha_I): by the dual solve
                # where W_I itself is well conditioned (the same solution; a Cholesky
                # factorisation instead of an eigendecomposition of S_I), else by the
                # pseudo-inverse, which the dual mode falls back to there
                # (its condition number is not reported: the estimate suffices)
                failed_cond = cond_values[failed]
                estimated = (settings[0], False, *settings[2:])  # exact=False
                _subframe(W, alpha, Y[failed], mask[failed], "dual", estimated, failed, x, ok,
                          cond_values, iters, resid)
                cond_values[failed] = failed_cond
                ok[failed] = np.where(ok[failed] == 255, 255, 0)  # 255: out of memory
            _basis_residual(W, alpha, Y, mask, x, ok, resid)
        else:
            _subframe(W, alpha, Y, mask, method, settings, np.arange(N), x, ok,
                      cond_values, iters, resid, bar)
    if (ok == 255).any():
        raise MemoryError("fastrelu.reconstruct could not allocate its per-thread scratch memory")
    spans = ok == 1  # the kernels' flag: the active rows (the basis) span within span_tol
    bound = _residual_bound(method, spans, cond_values, n, tol)
    ok = spans & (resid <= bound)  # NaN residuals fail too
    iterations = iters if method == "frame" else None
    if single:
        return Reconstruction(x=x[0], ok=bool(ok[0]), cond=float(cond_values[0]), method=method,
                              iterations=None if iterations is None else int(iterations[0]),
                              residual=float(resid[0]), spans=bool(spans[0]),
                              residual_bound=float(bound[0]), span_tol=span_tol,
                              elapsed=clock(), tol=tol)
    return Reconstruction(x=x, ok=ok, cond=cond_values, method=method, iterations=iterations,
                          residual=resid, spans=spans, residual_bound=bound, span_tol=span_tol,
                          elapsed=clock(), tol=tol)


def _finite_bias(alpha, Y, mask, given):
    """The bias for the solvers: ``+inf`` (never active) replaced by 0 once it is clear
    that no output or given mask makes such a neuron active (so that ``y + alpha`` stays
    finite everywhere, also on rows no solve uses)."""
    never = np.isinf(alpha)
    if not never.any():
        return alpha
    for name, hit in (("Y", Y[:, never] > 0), ("active", mask[:, never] if given else None)):
        if hit is None or not hit.any():
            continue
        neurons = _rows_text(np.flatnonzero(never)[hit.any(axis=0)])
        rows = _rows_text(np.flatnonzero(hit.any(axis=1)))
        if name == "Y":
            raise FastReluError(f"The 'Y' parameter must hold outputs of this layer: neurons {neurons} have bias +inf (never active, output 0) but positive entries in rows {rows}.")
        raise FastReluError(f"The 'active' parameter must not mark neurons whose bias is +inf (never active). Got neurons {neurons} marked active in rows {rows}.")
    return np.where(never, 0.0, alpha)


def _residual_bound(method, spans, cond, n, tol):
    """Per sample, the relative residual an ``ok`` answer must meet (``inf`` where the
    rows do not span): ``tol`` for the frame algorithm; for a direct solve at least the
    residual ``ROUNDING_FACTOR n eps cond^2`` that backward-stable rounding may leave."""
    if method == "frame":
        bound = np.full(spans.shape, tol)
    else:
        with np.errstate(over="ignore"):
            bound = np.maximum(tol, ROUNDING_FACTOR * n * EPS * np.square(cond))
    return np.where(spans, bound, np.inf)


def solves_blocked(n, mode="dual"):
    """Does dimension ``n`` take the blocked path (one sample at a time, BLAS ``dsyrk`` and
    LAPACK) for the solves of ``mode`` instead of the SIMD lanes? The lanes keep
    ``2 x lanes x n x n`` doubles (the frame operators and their factors) per thread;
    they win while those take at most ``SOLVE_L2_SHARE_DUAL`` (dual) or
    ``SOLVE_L2_SHARE`` (the other modes) of the core's L2 cache. Both paths make the same solves and
    checks; they differ in rounding and in the condition estimate (Hager's method in
    the lanes, LAPACK's ``dpocon`` on the blocked path: both estimates of the same
    number, which can differ by a small factor, so a subframe whose condition number is
    within that factor of ``1 / span_tol`` may count as spanning on one path and not
    the other; ``cond="exact"`` agrees on both up to rounding)."""
    if SOLVE_LANES_MAX_N is not None:
        return n > SOLVE_LANES_MAX_N
    share = SOLVE_L2_SHARE_DUAL if mode == "dual" else SOLVE_L2_SHARE
    return 2 * _extension().lanes() * n * n * 8 > share * l2_cache_bytes()


def _subframe(W, alpha, Y, mask, mode, settings, index, x, ok, cond, iters, resid, bar=None):
    """Dual, frame or least-squares solves for the samples ``index``, chunk by chunk
    (``bar``: advanced by the samples of each chunk)."""
    m, n = W.shape
    max_cond, exact, tol, max_iter, jobs = settings
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    active = np.ascontiguousarray(mask).view(np.uint8)
    alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    core = _extension()
    blocked = solves_blocked(n, mode)
    # the down-date base, only when some sample has more active rows than inactive ones
    downdate = DOWNDATE and mode != "pinv" and bool((2 * np.count_nonzero(mask, axis=1) > m).any())
    if not downdate:
        full = np.zeros((1, 1))
    elif blocked:
        full = core.dense_frame_operator(W, jobs)
    else:
        full = core.padded_frame_operator(W)
    sq = np.einsum("ij,ij->i", W, W)
    # chunks only bound the time between two checks for Ctrl-C and updates of the bar:
    # about CHUNK_MULTIPLY_ADDS of work (S_I costs about m n^2 / 4 multiply-adds), at
    # least two samples per thread
    least = 2 * jobs if blocked else 64 * jobs  # two sub-batches per thread
    chunk = int(min(CHUNK, max(least, CHUNK_MULTIPLY_ADDS // max(m * n * n // 4, 1))))
    for start in range(0, Y.shape[0], chunk):
        part = slice(start, start + chunk)
        size = active[part].shape[0]
        out_x = np.empty((size, n))
        out_ok = np.empty(size, dtype=np.uint8)
        out_cond = np.empty(size)
        out_iters = np.empty(size, dtype=np.int64)
        out_resid = np.empty(size)
        core.active_subframe_solve(active[part], Y[part], alpha, W, sq, full, downdate,
                                   blocked, max_cond, _MODES[mode], exact, tol, max_iter,
                                   jobs, out_x,
                                   out_ok, out_cond, out_iters, out_resid)
        target = index[part]
        x[target], ok[target], cond[target] = out_x, out_ok, out_cond
        iters[target], resid[target] = out_iters, out_resid
        if bar is not None:
            bar.update(size)


def _basis(W, geometry, Y, mask, settings, x, ok, cond, bar):
    """Most correlated basis among the active rows (Numba; ``bar`` advanced by the samples
    whose basis is found), then one solve each (Cython). ``geometry``: the rows with the
    finite bias."""
    n = W.shape[1]
    N = Y.shape[0]
    max_cond, exact, _, _, jobs = settings
    rows = np.zeros((N, n), dtype=np.int64)
    count = np.zeros(N, dtype=np.int64)
    C = Y + geometry.bias
    basis = geometry.basis(DEFAULT_RANK_TOL**2)

    def make_worker():
        cands, scan, stats = geometry.scratch()

        def process(piece):
            b, lo, hi, _ = piece
            part = slice(b * BLOCK_SIZE + lo, b * BLOCK_SIZE + hi)
            kernels.basis_rows(C[part], mask[part], geometry.inv_norm, basis, rows[part],
                               count[part], cands, scan, stats)

        return process, lambda: None

    # few blocks (large layers): the samples are shared out among the threads
    parts = block_parts(0, -(-N // BLOCK_SIZE), lambda b: min(BLOCK_SIZE, N - b * BLOCK_SIZE),
                        jobs)
    run_blocks(parts, make_worker, jobs, bar=bar, advance=lambda piece: piece[2] - piece[1])
    _extension().basis_solve(W, rows, count, C, exact, max_cond, jobs, x, ok, cond)


def _basis_residual(W, alpha, Y, mask, x, ok, resid):
    """Relative residual of the active equations for the basis solutions."""
    for start in range(0, Y.shape[0], BLOCK_SIZE):
        part = slice(start, start + BLOCK_SIZE)
        target = (Y[part] + alpha) * mask[part]
        error = (x[part] @ W.T - (Y[part] + alpha)) * mask[part]
        good = ok[part] == 1
        scale = np.linalg.norm(target @ W, axis=1)
        value = np.linalg.norm(error @ W, axis=1)
        resid[part] = np.where(good, np.divide(value, scale, out=value.copy(), where=scale > 0), resid[part])


#: :func:`invert`'s default relative threshold of activity for reconstructed outputs.
INVERT_ZERO_TOL = 1e-9


def invert(layers, Y, method="dual", *, zero_tol=INVERT_ZERO_TOL, **options):
    """Recover the inputs of a stack of ReLU layers from the last layer's outputs.

    Layer by layer from the output: the layer's input is reconstructed
    (:func:`reconstruct`), and is itself the output of the layer below. Reconstructed
    values carry round-off, so below the last layer an entry counts as active only when
    it is clearly above the reconstruction's error (see ``zero_tol``; negative round-off
    is clipped to 0). The outputs of never-active neurons (bias ``+inf``) are known to
    be 0: the layer above them is solved for its other input coordinates only.

    Parameters
    ----------
    layers : sequence of ReLULayer
        The hidden layers, input side first; ``layers[k].weight.shape[1]`` must equal
        ``layers[k - 1].weight.shape[0]``.
    Y : array_like, shape (N, m_last) or (m_last,)
        Outputs of the last layer.
    method : {"dual", "basis", "frame"}, default="dual"
        The solver of every layer (see :func:`reconstruct`).
    zero_tol : float, default=1e-9
        Relative threshold for activity of reconstructed intermediate outputs: an entry
        counts as active when it exceeds ``max(zero_tol, 16 eps cond^2)`` (``16 eps
        cond`` for ``"basis"``; for ``"frame"`` also ``r cond^2`` with ``r`` the final
        relative residual) times the norm of its reconstructed output, ``cond`` the
        condition number of the rows that produced it. Below that, round-off could make an inactive neuron look active, which would add a
        false equation; treating a small true output as zero only drops an equation.
    **options
        Passed to :func:`reconstruct`.

    Returns
    -------
    Inversion

    Raises
    ------
    FastReluError
        For ``layers`` that are not a non-empty sequence of :class:`ReLULayer` or whose
        shapes do not chain, a negative ``zero_tol``, outputs that do not fit the last
        layer, and whatever :func:`reconstruct` refuses.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> rng = np.random.default_rng(0)
    >>> layers = [fr.double_layer(rng.standard_normal((4, 3))),
    ...           fr.double_layer(rng.standard_normal((8, 8)))]
    >>> X = rng.standard_normal((5, 3))
    >>> result = fr.invert(layers, layers[1](layers[0](X)), n_jobs=1)
    >>> bool(result.ok.all()), bool(np.allclose(result.x, X)), result.failed_at
    (True, True, array([-1, -1, -1, -1, -1]))
    """
    clock = Stopwatch()
    layers = list(layers) if not isinstance(layers, ReLULayer) else [layers]
    if not layers or not all(isinstance(layer, ReLULayer) for layer in layers):
        raise FastReluError("The 'layers' parameter must be a non-empty sequence of fastrelu.ReLULayer.")
    for k in range(1, len(layers)):
        if layers[k].shape[1] != layers[k - 1].shape[0]:
            raise FastReluError(f"The 'layers' parameter must chain: layers[{k}] takes inputs of dimension {layers[k].shape[1]} but layers[{k - 1}] has {layers[k - 1].shape[0]} outputs.")
    zero_tol = positive_float(zero_tol, "zero_tol", allow_zero=True)
    outputs, single = _as_outputs(Y, layers[-1].shape[0])
    x, ok, failed_at, results = invert_layers(layers, outputs, method, zero_tol, options)
    if single:
        x, ok, failed_at = x[0], bool(ok[0]), int(failed_at[0])
    return Inversion(x=x, ok=ok, failed_at=failed_at, layers=tuple(results), elapsed=clock())


def invert_layers(layers, outputs, method, zero_tol, options, top=None):
    """:func:`invert` on validated layers and 2-D outputs: ``(x, ok, failed_at,
    results)``. ``top``: the :func:`reconstruct` result of the last layer on these
    outputs with these options, when the caller has it (it is then not solved again)."""
    active = None
    results = [None] * len(layers)
    failed_at = np.full(outputs.shape[0], -1, dtype=np.int64)
    for k in range(len(layers) - 1, -1, -1):
        # the outputs of never-active neurons (bias +inf) of the layer below are 0: only
        # the other coordinates of this layer's input are unknown
        never = np.isinf(layers[k - 1].bias) if k else np.zeros(layers[0].shape[1], dtype=bool)
        if never.any():
            known = ReLULayer(layers[k].weight[:, ~never], layers[k].bias)
            result = reconstruct(known, outputs, method, active=active, **options)
            x_full = np.zeros((result.x.shape[0], never.size))
            x_full[:, ~never] = result.x
            result = replace(result, x=x_full)
        elif top is not None and k == len(layers) - 1:
            result = top
        else:
            result = reconstruct(layers[k], outputs, method, active=active, **options)
        results[k] = result
        # ok: spanned and solved to its bound (a frame run stopped by max_iter is not)
        failed_at[(failed_at < 0) & ~result.ok] = k
        if k:
            outputs = np.maximum(result.x, 0.0)
            # An entry counts as active only above the error the reconstruction may carry:
            # a zero read as active would add a false equation, an active entry read as
            # zero only drops a true one. Relative to |x|, the forward error of a solve
            # with S_I is about cond(S_I) eps = cond(W_I)^2 eps, of a solve with a basis
            # W_B about cond(W_B) eps, and of the frame algorithm stopped at the relative
            # residual r of the normal equations at most r cond(W_I)^2.
            cond = np.where(np.isfinite(result.cond), result.cond, 0.0)
            amplification = cond if method == "basis" else cond**2
            rel = np.maximum(zero_tol, ROUNDING_FACTOR * EPS * amplification)
            if method == "frame":
                residual = np.where(np.isfinite(result.residual), result.residual, 0.0)
                rel = np.maximum(rel, residual * amplification)
            scale = np.linalg.norm(outputs, axis=1) * rel
            active = outputs > scale[:, None]
            outputs = np.where(active, outputs, 0.0)
    return results[0].x, failed_at < 0, failed_at, results
