"""Large layers: MCBE on data and the pointwise ranks at the shapes of real networks.

Run with ``pytest bench/test_large_speed.py -s``. For each shape ``(n, m)`` (an MNIST
MLP's first layer 784 -> 1024, transformer feed-forward blocks 768 -> 3072 and
2048 -> 8192, and 256 -> 1024), in the same run:

- ``fastrelu``: :func:`fastrelu.mcbe` on a ``Data`` domain and on the sphere (as many
  samples as points), and :func:`fastrelu.injectivity_summary`, both cores;
- ``plain_loop``: the per-point loop one would write with SciPy (the product, the top
  ``n`` rows by normalised correlation, their Gram matrix gathered from the stored
  ``W_u W_u^T`` and ``scipy.linalg.cholesky`` of it as the certificate), on fewer points;
- ``limit``: the LAPACK/BLAS work any method must do per point, on both cores: the tiled
  product ``X W^T`` and ``dpotrf`` of one ``n x n`` SPD matrix.

``extra_info`` holds the time per point and the ratio to the limit (``_recording.py``).
"""

import numpy as np
import pytest
import scipy.linalg
from _recording import record

import fastrelu as fr
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks

#: (n, m, points for fastrelu and the limit, points for the plain loop). A call's set-up
#: (the frame check and the unit rows' Gram matrix, ``m n^2`` and ``m^2 n / 2``
#: multiply-adds) is timed with it: at (768, 3072) about 0.15 s and at (2048, 8192) about
#: 3 s, tens of points' worth of the limit, so those cases run on 160 and 128 points
#: (docs/performance.md gives the time of a call on one point and on 16 as well).
CASES = {"256x1024": (256, 1024, 400, 100), "784x1024": (784, 1024, 60, 15),
         "768x3072": (768, 3072, 160, 10), "2048x8192": (2048, 8192, 128, 4)}
#: Rounds per case, the best one recorded: the machine's own times move by 20 - 30% from
#: round to round, and the cheap cases can afford more rounds.
ROUNDS = {"256x1024": 7, "784x1024": 5, "768x3072": 3, "2048x8192": 2}
#: Points of the call that compiles the kernels before the timed rounds.
WARM_POINTS = 8
RESULTS = {}


def _problem(case):
    n, m, N, N_loop = CASES[case]
    rng = np.random.default_rng(0)
    W = rng.standard_normal((m, n))
    X = rng.standard_normal((N, n))
    return W, X, N_loop


def plain_loop(W, X, gram):
    """The common path of MCBE per point, as one would write it with SciPy."""
    n = W.shape[1]
    inv_norms = 1.0 / np.linalg.norm(W, axis=1)
    for x in X:
        key = (W @ x) * inv_norms
        top = np.argsort(-key, kind="stable")[:n]
        scipy.linalg.cholesky(gram[np.ix_(top, top)], lower=True)


def limit(W, X, spd):
    """The product and one ``dpotrf`` of an ``n x n`` SPD matrix per point, both cores."""
    W_t = np.ascontiguousarray(W.T)
    N = X.shape[0]

    def make_worker():
        C = np.empty((1, W.shape[0]))

        def process(b):
            # NumPy's BLAS and LAPACK calls release the GIL (SciPy's wrappers do not)
            np.matmul(X[b:b + 1], W_t, out=C)
            np.linalg.cholesky(spd)

        return process, lambda: None

    return run_blocks(N, make_worker, n_jobs_value(None))


def _record(benchmark, case, kind, points):
    RESULTS[(case, kind)] = record(benchmark, f"large {case}", kind, points, "point")


def _timed(benchmark, case, call, *args, **kwargs):
    """Time ``call(*args, **kwargs)`` over the case's rounds (the kernels compiled
    before, by a call on ``WARM_POINTS`` points)."""
    benchmark.pedantic(call, args=args, kwargs=kwargs, rounds=ROUNDS[case], warmup_rounds=0,
                       iterations=1)


@pytest.mark.parametrize("case", CASES)
def test_fastrelu_mcbe(benchmark, case):
    W, X, _ = _problem(case)
    fr.mcbe(W, fr.Data(X[:WARM_POINTS]))
    _timed(benchmark, case, fr.mcbe, W, fr.Data(X))
    _record(benchmark, case, "fastrelu", X.shape[0])


@pytest.mark.parametrize("case", CASES)
def test_fastrelu_mcbe_sphere(benchmark, case):
    W, X, _ = _problem(case)
    n = W.shape[1]
    fr.mcbe(W, fr.Sphere(n), WARM_POINTS, seed=1)
    _timed(benchmark, case, fr.mcbe, W, fr.Sphere(n), X.shape[0], seed=1)
    _record(benchmark, case, "fastrelu_sphere", X.shape[0])


@pytest.mark.parametrize("case", CASES)
def test_fastrelu_pointwise(benchmark, case):
    W, X, _ = _problem(case)
    layer = fr.ReLULayer(W, np.full(W.shape[0], -0.1))
    fr.injectivity_summary(layer, X[:WARM_POINTS])
    _timed(benchmark, case, fr.injectivity_summary, layer, X)
    _record(benchmark, case, "fastrelu_pointwise", X.shape[0])


@pytest.mark.parametrize("case", CASES)
def test_plain_loop(benchmark, case):
    W, X, N_loop = _problem(case)
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    gram = unit @ unit.T
    # as a user runs it: one Python loop, BLAS and LAPACK on all cores
    benchmark.pedantic(plain_loop, args=(W, X[:N_loop], gram), rounds=1, warmup_rounds=0,
                       iterations=1)
    _record(benchmark, case, "plain_loop", N_loop)


@pytest.mark.parametrize("case", CASES)
def test_limit(benchmark, case):
    W, X, _ = _problem(case)
    B = np.random.default_rng(2).standard_normal((W.shape[1], W.shape[1]))
    spd = B @ B.T + W.shape[1] * np.eye(W.shape[1])
    _timed(benchmark, case, limit, W, X, spd)
    _record(benchmark, case, "limit", X.shape[0])


def test_summary():
    lines = [f"{'case':<10}{'mcbe ms':>9}{'sphere ms':>11}{'pointwise ms':>14}{'loop ms':>9}"
             f"{'limit ms':>10}{'loop/mcbe':>11}{'mcbe/limit':>12}{'sphere/limit':>14}"
             f"{'pointwise/limit':>17}"]
    kinds = ("fastrelu", "fastrelu_sphere", "fastrelu_pointwise", "plain_loop", "limit")
    for case in CASES:
        got = [RESULTS.get((case, kind)) for kind in kinds]
        if None in got:
            continue
        fast, sphere, point, loop, floor = (value / 1e3 for value in got)
        lines.append(f"{case:<10}{fast:>9.2f}{sphere:>11.2f}{point:>14.2f}{loop:>9.2f}"
                     f"{floor:>10.2f}{loop / fast:>11.2f}{fast / floor:>12.2f}"
                     f"{sphere / floor:>14.2f}{point / floor:>17.2f}")
    print("\n" + "\n".join(lines))
