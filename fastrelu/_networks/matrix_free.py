"""The report of a model layer whose dense matrix is over the memory budget (THEORY §10,
THEORY §10.1): every analysis that needs only products with ``W`` and ``W^T``,
as iterative estimates; the ones that need the rows are skipped, with the reason."""

import warnings

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from fastrelu._core import budget as _budget
from fastrelu._core.domains import Data
from fastrelu._core.memory import format_bytes
from fastrelu._core.validation import n_jobs_value
from fastrelu._injectivity.operator import (
    operator_extremes,
    operator_injectivity,
    pre_activation_chunks,
)
from fastrelu._networks.report import relative_errors
from fastrelu._networks.results import LayerReport
from fastrelu._reconstruct.driver import DEFAULT_SPAN_TOL
from fastrelu._runtime.parallel import Stopwatch, run_blocks
from fastrelu._spectral.width import gaussian_mean_width

#: Relative residual of the conjugate-gradient solve of ``W_I^T W_I x = W_I^T (y_I + alpha_I)``
#: that recovers a layer's input.
RECOVERY_RTOL = 1e-10
#: Its iterations at most.
RECOVERY_MAX_ITER = 2000


def _why_skipped(found_layer):
    """The analyses a matrix-free layer does not get, with the reason."""
    rows = (f"the dense matrix ({format_bytes(found_layer.dense_bytes)}) is over a quarter of the "
            f"memory budget, and this analysis needs the rows; the layer was analysed matrix-free")
    skipped = {name: rows for name in ("data", "data_enlarged", "ball", "pbe", "s_1", "local width")}
    if found_layer.layernorm is not None:
        skipped["layernorm_sphere"] = rows
    return skipped


def matrix_free_report(k, found_layer, Xk, heldout, width_in, settings, stages):
    """``(LayerReport, per-point metrics)`` of a model layer without its dense rows.

    Pointwise injectivity, ``sigma_min``/``sigma_max`` of the active rows and the
    condition number by :func:`fastrelu.operator_injectivity`; the frame bounds and
    ``|W|_2`` by the same iterations on ``W^T W``; the recovery of the layer's input by
    conjugate gradients on the active rows' normal equations; the Gaussian widths of the
    inputs and outputs (exact per draw, as for a dense layer). The report's ``iterative``
    field says which numbers are estimates and with which tolerances."""
    clock, times = Stopwatch(), {}
    op, alpha = found_layer.operator(), found_layer.bias
    m, n = found_layer.m, found_layer.n
    N = Xk.shape[0]
    seed, jobs, progress = settings.seed, n_jobs_value(settings.jobs), settings.progress
    _budget.check_memory(f"the matrix-free analysis of layer {found_layer.name!r}", [
        ("outputs", 8 * N * m, "data"), ("active sets", N * m, "data")],
        "Analyse fewer points, or leave the layer out with layers=.")

    def stage(name):
        stages(k, name)
        times[name] = Stopwatch()

    def done(name):
        times[name] = times[name]()

    stage("frame bounds")  # in the place of the estimates, which need the rows
    extremes = operator_extremes(op, seed=seed + k)
    done("frame bounds")
    stage("injectivity")
    found = operator_injectivity(op, alpha, Xk, seed=seed + k, n_jobs=jobs, progress=progress)
    Y = np.empty((N, m))
    for rows, Z in pre_activation_chunks(op, alpha, Xk):  # as operator_injectivity's: the same activity
        Y[rows] = Z
    active = Y >= 0
    np.maximum(Y, 0.0, out=Y)
    held = Xk[heldout]
    heldout_fraction = {"learned": float(found.injective[heldout].mean()) if held.shape[0] else float("nan")}
    done("injectivity")
    stage("recovery")
    # the bounds' condition number (injective already puts it below 1 / (sqrt(n) rank_tol))
    with np.errstate(divide="ignore", invalid="ignore"):
        cond_bound = found.sigma_max_upper / found.sigma_min_lower
    stable = found.injective & (cond_bound < 1.0 / DEFAULT_SPAN_TOL)
    recovered, error, iterations = _recover(op, alpha, Xk, Y, active, stable, jobs, progress)
    done("recovery")
    stages(k, "local metrics (skipped)")  # sigma_min and sigma_max of D_x W came with the injectivity
    stages(k, "s_1 (skipped)")
    stage("width")
    width_out = gaussian_mean_width(Data(Y), n_draws=settings.width_draws, seed=seed + k + 1,
                                    n_jobs=jobs, progress=progress)
    done("width")
    prefix = f"layer{k}."
    known = found.converged  # values known to tol; NaN elsewhere (the bounds are kept)
    per_sample = {prefix + "injective": found.injective, prefix + "n_active": found.n_active,
                  prefix + "rank": np.full(N, np.nan),
                  prefix + "sigma_min": np.where(known, found.sigma_min, np.nan),
                  prefix + "sigma_max": np.where(known, found.sigma_max, np.nan),
                  prefix + "width": np.full(N, np.nan),
                  prefix + "cond": np.where(known, found.cond, np.nan), prefix + "stable": stable,
                  prefix + "reconstructed": recovered, prefix + "reconstruction_error": error,
                  prefix + "undecided": found.undecided,
                  prefix + "sigma_min_lower": found.sigma_min_lower,
                  prefix + "sigma_max_upper": found.sigma_max_upper,
                  prefix + "converged": found.converged, prefix + "residual": found.residual}
    ok_errors = error[np.isfinite(error)]
    frame = extremes.low_bound > 0 and extremes.residual <= found.tol  # as for injective
    spans = found.n_active >= n
    iterative = {
        "method": "LOBPCG on W_I^T W_I per point (products with W and W^T), conjugate gradients for the recovery",
        "estimated": ["injective_fraction", "stable_fraction", "heldout_fraction", "frame_bounds",
                      "spectral_norm", "reconstructed_fraction", "samples.sigma_min",
                      "samples.sigma_max", "samples.cond"],
        "tol": found.tol, "max_iter": found.max_iter, "block": found.block, "rank_tol": found.rank_tol,
        "undecided_fraction": found.undecided_fraction,
        "not_converged": int((~found.converged).sum()),
        "iterations_median": float(np.median(found.iterations[spans])) if spans.any() else 0.0,
        "frame_bounds_lower": float(extremes.low_bound),
        "frame_bounds_upper": float(extremes.high_bound),
        "frame_bounds_converged": bool(extremes.converged(found.tol)),
        "recovery_rtol": RECOVERY_RTOL, "recovery_iterations_max": int(iterations.max()) if N else 0,
    }
    report = LayerReport(
        index=k, shape=(m, n), redundancy=m / n,
        frame_bounds=(extremes.low_ritz, extremes.high_ritz) if frame else None,
        bias=np.array(alpha), dead=int((~active.any(axis=0)).sum()), estimates={},
        skipped=_why_skipped(found_layer), fraction_above={},
        injective_fraction=found.fraction, stable_fraction=float(np.mean(stable)) if N else float("nan"),
        heldout_fraction=heldout_fraction,
        reconstructed_fraction=float(np.mean(recovered)) if N else float("nan"),
        reconstruction_error=float(ok_errors.max()) if ok_errors.size else float("nan"),
        s1=float("nan"), spectral_norm=float(np.sqrt(extremes.high_ritz)),
        width_in=width_in.value, width_out=width_out.value,
        width_stderr=(width_in.stderr, width_out.stderr), elapsed=clock(), stage_seconds=times,
        name=found_layer.name, kind=found_layer.kind, input_shape=found_layer.input_shape,
        iterative=iterative)
    return report, per_sample


def _recover(op, alpha, X, Y, active, stable, jobs, progress):
    """``(recovered, error, iterations)`` per point: the layer's input from its output by
    conjugate gradients on ``W_I^T W_I x = W_I^T (y_I + alpha_I)`` at the stable points
    (from ``x = 0``: deterministic); recovered when the solve reached ``RECOVERY_RTOL``."""
    N, n = X.shape
    recovered, error = np.zeros(N, dtype=bool), np.full(N, np.nan)
    iterations = np.zeros(N, dtype=np.int64)

    def make_worker():
        def process(j):
            mask = active[j]

            def normal(v):
                return op.rmatmat(mask[:, None] * op.matmat(np.reshape(v, (n, -1))))

            S = LinearOperator((n, n), matvec=lambda v: normal(v)[:, 0], matmat=normal,
                               dtype=np.float64)
            rhs = op.rmatmat((mask * (Y[j] + alpha))[:, None])[:, 0]
            count = [0]

            def counted(_):
                count[0] += 1

            x, info = cg(S, rhs, rtol=RECOVERY_RTOL, atol=0.0, maxiter=RECOVERY_MAX_ITER,
                         callback=counted)
            iterations[j] = count[0]
            if info == 0:
                recovered[j] = True
                error[j] = relative_errors(x[None, :], X[j:j + 1])[0]
        return process, lambda: None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run_blocks([int(j) for j in np.flatnonzero(stable)], make_worker, jobs, progress=progress,
                   desc="recovery (conjugate gradients)", unit="point")
    return recovered, error, iterations
