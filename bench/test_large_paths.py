"""Large layers: the ReLU power iteration, the local metrics and the bias check at the
shapes of transformer feed-forward blocks.

Run with ``pytest bench/test_large_paths.py -s``. For each shape ``(n, m)`` (Gaussian
``W``; Gaussian points), in the same run:

- power iteration: :func:`fastrelu.relu_power_iteration` with 32 starts (zero bias,
  ``tol = 1e-10``); the plain loop ``x <- W^T ReLU(W x) / |W^T ReLU(W x)|`` start by
  start (``test_power_speed.numpy_loop``, BLAS on both cores) on 4 starts; the limit: the
  products the fastrelu run made (its starts' iteration counts, in its groups of starts,
  on both cores; ``test_power_speed._limit_block``);
- local metrics: :func:`fastrelu.local_metrics` (zero bias); the plain loop
  ``eigvalsh(W_I^T W_I)`` point by point (BLAS on both cores); the limit: the same two
  LAPACK/BLAS calls per point (``dsyrk`` of the active rows and ``dsyevd`` without
  vectors), one point per core;
- bias check: :func:`fastrelu.check_bias` on the sphere (bias ``-0.1``, points drawn by
  fastrelu); the plain loop and the limit of ``test_large_speed`` (the certificate of the
  first ``n`` rows by normalised correlation; the product and one ``dpotrf`` per point).

``extra_info`` holds the time per item and the ratio to the limit (``_recording.py``).
"""

import numpy as np
import pytest
from _recording import print_table, record
from test_large_speed import limit as certificate_limit
from test_large_speed import plain_loop as certificate_loop
from test_power_speed import _limit_block, numpy_loop

import fastrelu as fr
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks
from fastrelu._spectral.power import starts_per_call

#: (n, m, power starts, local-metrics points, bias-check points)
CASES = {"768x3072": (768, 3072, 32, 32, 96), "2048x8192": (2048, 8192, 32, 16, 64)}
LOOP_STARTS, LOOP_POINTS = 4, 4
ROUNDS = 2
TOL = 1e-10
RESULTS = {}
_RUNS = {}


def _weight(case):
    n, m = CASES[case][:2]
    return np.random.default_rng(0).standard_normal((m, n))


def _points(case, count):
    return np.random.default_rng(1).standard_normal((count, CASES[case][0]))


def _record(benchmark, case, path, kind, items, unit, seconds=None):
    RESULTS[(case, path, kind)] = record(benchmark, f"large {path} {case}", kind, items, unit,
                                         seconds=seconds)


def _timed(benchmark, call, *args, **kwargs):
    return benchmark.pedantic(call, args=args, kwargs=kwargs, rounds=ROUNDS, warmup_rounds=0,
                              iterations=1)


def power_limit(W, n_iter):
    """The products of a run whose starts made ``n_iter`` iterations, in the run's groups
    of starts (:func:`fastrelu._spectral.power.starts_per_call`), on both cores."""
    m, n = W.shape
    W_t = np.ascontiguousarray(W.T)
    group = starts_per_call(n, n_iter.shape[0])
    parts = list(range(0, n_iter.shape[0], group))

    def make_worker():
        X = np.random.default_rng(0).standard_normal((group, n))
        Z, R, G = np.empty((group, m)), np.ones((group, m)), np.empty((group, n))
        total = [0.0]

        def process(lo):
            its = n_iter[lo:lo + group]
            total[0] += _limit_block(X[:its.shape[0]], W, W_t, its, True, Z, R, G)

        return process, lambda: total[0]

    return run_blocks(parts, make_worker, n_jobs_value(None))


def local_loop(W, X):
    for x in X:
        W_I = W[W @ x >= 0.0]
        np.linalg.eigvalsh(W_I.T @ W_I)


def local_limit(W, X):
    def make_worker():
        def process(p):
            W_I = W[W @ X[p] >= 0.0]
            np.linalg.eigvalsh(W_I.T @ W_I)  # dsyrk (NumPy's A.T @ A) and dsyevd

        return process, lambda: None

    run_blocks(X.shape[0], make_worker, n_jobs_value(None))


@pytest.mark.parametrize("case", CASES)
def test_power(benchmark, case):
    W, starts = _weight(case), CASES[case][2]
    fr.relu_power_iteration(W, n_starts=2, seed=1, tol=TOL)
    result = _timed(benchmark, fr.relu_power_iteration, W, n_starts=starts, seed=1, tol=TOL)
    _RUNS[(case, "power")] = result
    benchmark.extra_info.update(s1=result.s1, mean_iter=result.mean_iter)
    _record(benchmark, case, "power", "fastrelu", starts, "start")


@pytest.mark.parametrize("case", CASES)
def test_power_loop(benchmark, case):
    W = _weight(case)
    X = _points(case, LOOP_STARTS)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    benchmark.pedantic(numpy_loop, args=(W, X), rounds=1, warmup_rounds=0, iterations=1)
    _record(benchmark, case, "power", "plain_loop", LOOP_STARTS, "start")


@pytest.mark.parametrize("case", CASES)
def test_power_limit(benchmark, case):
    if (case, "power") not in _RUNS:
        pytest.skip("needs the fastrelu run (its iteration counts)")
    n_iter = _RUNS[(case, "power")].n_iter
    _timed(benchmark, power_limit, _weight(case), n_iter)
    _record(benchmark, case, "power", "limit", n_iter.shape[0], "start")


@pytest.mark.parametrize("case", CASES)
def test_local(benchmark, case):
    W, X = _weight(case), _points(case, CASES[case][3])
    layer = fr.ReLULayer(W)
    fr.local_metrics(layer, X[:2])
    _timed(benchmark, fr.local_metrics, layer, X)
    _record(benchmark, case, "local", "fastrelu", X.shape[0], "point")


@pytest.mark.parametrize("case", CASES)
def test_local_loop(benchmark, case):
    W, X = _weight(case), _points(case, LOOP_POINTS)
    benchmark.pedantic(local_loop, args=(W, X), rounds=1, warmup_rounds=0, iterations=1)
    _record(benchmark, case, "local", "plain_loop", LOOP_POINTS, "point")


@pytest.mark.parametrize("case", CASES)
def test_local_limit(benchmark, case):
    W, X = _weight(case), _points(case, CASES[case][3])
    _timed(benchmark, local_limit, W, X)
    _record(benchmark, case, "local", "limit", X.shape[0], "point")


@pytest.mark.parametrize("case", CASES)
def test_check_bias(benchmark, case):
    W = _weight(case)
    n, count = W.shape[1], CASES[case][4]
    layer = fr.ReLULayer(W, np.full(W.shape[0], -0.1))
    fr.check_bias(layer, fr.Sphere(n), 2, seed=1)
    _timed(benchmark, fr.check_bias, layer, fr.Sphere(n), count, seed=1)
    _record(benchmark, case, "check_bias", "fastrelu", count, "point")


@pytest.mark.parametrize("case", CASES)
def test_check_bias_loop(benchmark, case):
    W, X = _weight(case), _points(case, LOOP_POINTS)
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    gram = unit @ unit.T
    benchmark.pedantic(certificate_loop, args=(W, X, gram), rounds=1, warmup_rounds=0,
                       iterations=1)
    _record(benchmark, case, "check_bias", "plain_loop", LOOP_POINTS, "point")


@pytest.mark.parametrize("case", CASES)
def test_check_bias_limit(benchmark, case):
    W = _weight(case)
    n, count = W.shape[1], CASES[case][4]
    B = np.random.default_rng(2).standard_normal((n, n))
    spd = B @ B.T + n * np.eye(n)
    _timed(benchmark, certificate_limit, W, _points(case, count), spd)
    _record(benchmark, case, "check_bias", "limit", count, "point")


def test_summary():
    print_table(RESULTS, CASES, ("power", "local", "check_bias"), "path")
