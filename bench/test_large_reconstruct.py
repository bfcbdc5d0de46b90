"""Large layers: reconstruction (dual, basis, frame) at the shapes of real networks.

Run with ``pytest bench/test_large_reconstruct.py -s``. For each shape ``(n, m)`` and
method, in the same run and on the same outputs ``Y = ReLU(W X)`` (Gaussian ``W`` and
``X``, so about half the neurons are active):

- ``fastrelu``: :func:`fastrelu.reconstruct`, both cores;
- ``plain_loop``: the per-point loop one would write with NumPy/SciPy (BLAS on both
  cores), on fewer points:

  - dual: ``S_I = W_I^T W_I`` (NumPy's product, which calls ``dsyrk`` for ``A.T @ A``),
    ``cho_factor`` and ``cho_solve``;
  - basis: the active rows by decreasing normalised correlation, the first ``n`` of them
    certified by ``cholesky`` of their Gram matrix from the stored ``W_u W_u^T``, then
    ``lu_factor`` and ``lu_solve`` of ``W_B``;
  - frame: ``S_I``, its extreme eigenvalues by ``eigvalsh``, and the frame algorithm
    ``x <- x + lam (b - S_I x)`` to the same tolerance;

- ``limit``: the LAPACK/BLAS work any method must do per point, on both cores (one
  thread each; through NumPy, whose LAPACK and BLAS calls release the GIL, which SciPy's
  ``scipy.linalg.blas`` and ``lapack`` wrappers do not):

  - dual: ``dsyrk`` of the active rows, ``dpotrf`` and the two triangular solves
    (``dpotrs`` through ``scipy.linalg.cho_solve``: ``n^2`` work, the only call here
    that holds the GIL);
  - basis: ``dpotrf`` of an ``n x n`` SPD matrix (the certificate), ``dgetrf`` and
    ``dgetrs`` of ``W_B``;
  - frame: ``dsyrk`` of the active rows, the eigenvalues (``dsyevd``, no vectors) and
    fastrelu's number of steps of ``dsymv`` (timed apart, see :func:`symv_seconds`).

``extra_info`` holds the time per point and the ratio to the limit (``_recording.py``).
"""

import time

import numpy as np
import pytest
import scipy.linalg
from _recording import print_table, record
from scipy.linalg import blas
from threadpoolctl import threadpool_limits

import fastrelu as fr
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks

#: (n, m, points for fastrelu and the limit, points for the plain loop, c): the bias is
#: ``-c |w_i|``, so that about ``Phi(c) m`` rows are active; the nearly square layer
#: needs more than half its rows for any input to be determined. A call's set-up (the
#: frame check, and for "basis" the unit rows' Gram matrix) is timed with it; at
#: (2048, 8192) it is about 0.7 s (2 - 3 s for "basis"), hence 48 points there.
CASES = {"256x1024": (256, 1024, 400, 40, 0.0), "784x1024": (784, 1024, 48, 6, 1.4),
         "768x3072": (768, 3072, 48, 6, 0.0), "2048x8192": (2048, 8192, 48, 2, 0.0)}
#: Rounds per case, the best one recorded (the machine's times move by 20 - 30% from
#: round to round; the cheap cases afford more).
ROUNDS = {"256x1024": 7, "784x1024": 3, "768x3072": 3, "2048x8192": 2}
#: Outputs of the call that compiles the kernels before the timed rounds.
WARM_POINTS = 4
METHODS = ("dual", "basis", "frame")
RESULTS = {}
_PROBLEMS = {}


def _problem(case):
    if case not in _PROBLEMS:
        n, m, N, N_loop, c = CASES[case]
        rng = np.random.default_rng(0)
        W = rng.standard_normal((m, n))
        X = rng.standard_normal((N, n))
        layer = fr.ReLULayer(W, -c * np.linalg.norm(W, axis=1))
        Y = layer(X)
        assert fr.reconstruct(layer, Y[:2]).ok.all(), "the bench's inputs must be determined"
        _PROBLEMS[case] = (layer, Y, N_loop)
    return _PROBLEMS[case]


def _iterations(case):
    """fastrelu's frame-algorithm steps on the problem (the limit does as many)."""
    layer, Y, _ = _problem(case)
    key = (case, "iterations")
    if key not in _PROBLEMS:
        _PROBLEMS[key] = fr.reconstruct(layer, Y, "frame").iterations
    return _PROBLEMS[key]


def loop_dual(W, alpha, Y):
    for y in Y:
        act = y > 0
        W_I = W[act]
        S = W_I.T @ W_I
        scipy.linalg.cho_solve(scipy.linalg.cho_factor(S), W_I.T @ (y + alpha)[act])


def loop_basis(W, alpha, Y, gram, inv_norms):
    n = W.shape[1]
    for y in Y:
        c = y + alpha
        act = np.flatnonzero(y > 0)
        order = act[np.argsort(-(c[act] * inv_norms[act]), kind="stable")][:n]
        scipy.linalg.cholesky(gram[np.ix_(order, order)], lower=True)
        scipy.linalg.lu_solve(scipy.linalg.lu_factor(W[order]), c[order])


def loop_frame(W, alpha, Y, tol=1e-12, max_iter=10_000):
    for y in Y:
        act = y > 0
        W_I = W[act]
        S = W_I.T @ W_I
        b = W_I.T @ (y + alpha)[act]
        low, high = scipy.linalg.eigvalsh(S)[[0, -1]]
        lam = 2.0 / (low + high)
        x = np.zeros_like(b)
        bound = tol * np.linalg.norm(b)
        for _ in range(max_iter):
            r = b - S @ x
            if np.linalg.norm(r) <= bound:
                break
            x += lam * r


def _limit(N, work):
    def make_worker():
        return (lambda p: work(p)), (lambda: None)

    run_blocks(N, make_worker, n_jobs_value(None))


def limit_dual(W, alpha, Y):
    def work(p):
        act = Y[p] > 0
        W_I = W[act]
        S = W_I.T @ W_I  # NumPy calls dsyrk for A.T @ A
        factor = np.linalg.cholesky(S)
        scipy.linalg.cho_solve((factor, True), W_I.T @ (Y[p] + alpha)[act])

    _limit(Y.shape[0], work)


def limit_basis(W, Y, spd):
    n = W.shape[1]

    def work(p):
        rows = np.flatnonzero(Y[p] > 0)[:n]
        np.linalg.cholesky(spd)
        np.linalg.solve(W[rows], Y[p][rows])  # dgetrf and dgetrs

    _limit(Y.shape[0], work)


def limit_frame(W, Y):
    """``dsyrk`` and the eigenvalues per point, on both cores; the steps' ``dsymv`` are
    added from :func:`symv_seconds` (a Python loop of short BLAS calls on two threads
    would measure the interpreter, not the machine)."""
    def work(p):
        W_I = W[Y[p] > 0]
        np.linalg.eigvalsh(W_I.T @ W_I)

    _limit(Y.shape[0], work)


def symv_seconds(n, reps=200):
    """Seconds of one ``dsymv`` of an ``n x n`` matrix on one core, less the call's
    overhead (the same call on a ``1 x 1`` matrix)."""
    def run(size):
        S = np.asfortranarray(np.eye(size))
        x, y = np.ones(size), np.ones(size)
        blas.dsymv(1.0, S, x, beta=1.0, y=y, overwrite_y=1, lower=1)
        start = time.perf_counter()
        for _ in range(reps):
            blas.dsymv(1.0, S, x, beta=1.0, y=y, overwrite_y=1, lower=1)
        return (time.perf_counter() - start) / reps

    with threadpool_limits(1):
        return max(min(run(n) for _ in range(3)) - min(run(1) for _ in range(3)), 0.0)


def _record(benchmark, case, method, kind, points):
    RESULTS[(case, method, kind)] = record(benchmark, f"reconstruct {method} {case}", kind,
                                           points, "point")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_fastrelu(benchmark, case, method):
    layer, Y, _ = _problem(case)
    fr.reconstruct(layer, Y[:WARM_POINTS], method)
    benchmark.pedantic(fr.reconstruct, args=(layer, Y, method), rounds=ROUNDS[case],
                       warmup_rounds=0, iterations=1)
    _record(benchmark, case, method, "fastrelu", Y.shape[0])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_plain_loop(benchmark, case, method):
    layer, Y, N_loop = _problem(case)
    W, alpha = layer.weight, layer.bias
    if method == "dual":
        args = (loop_dual, W, alpha, Y[:N_loop])
    elif method == "basis":
        inv_norms = 1.0 / np.linalg.norm(W, axis=1)
        unit = W * inv_norms[:, None]
        args = (loop_basis, W, alpha, Y[:N_loop], unit @ unit.T, inv_norms)
    else:
        args = (loop_frame, W, alpha, Y[:N_loop])
    benchmark.pedantic(args[0], args=args[1:], rounds=1, warmup_rounds=0, iterations=1)
    _record(benchmark, case, method, "plain_loop", N_loop)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_limit(benchmark, case, method):
    layer, Y, _ = _problem(case)
    W = layer.weight
    if method == "dual":
        args = (limit_dual, W, layer.bias, Y)
    elif method == "basis":
        n = W.shape[1]
        B = np.random.default_rng(2).standard_normal((n, n))
        args = (limit_basis, W, Y, np.asfortranarray(B @ B.T + n * np.eye(n)))
    else:
        args = (limit_frame, W, Y)
    benchmark.pedantic(args[0], args=args[1:], rounds=ROUNDS[case], warmup_rounds=0,
                       iterations=1)
    seconds = benchmark.stats.stats.min
    if method == "frame":  # fastrelu's number of steps, spread over the cores
        steps = int(np.sum(_iterations(case)))
        seconds += steps * symv_seconds(W.shape[1]) / n_jobs_value(None)
        benchmark.extra_info["frame_steps"] = steps
    RESULTS[(case, method, "limit")] = record(benchmark, f"reconstruct {method} {case}",
                                              "limit", Y.shape[0], "point", seconds=seconds)


def test_summary():
    print_table(RESULTS, CASES, METHODS, "method")
