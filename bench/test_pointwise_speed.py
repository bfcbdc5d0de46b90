"""Pointwise injectivity throughput: fastrelu vs ``numpy.linalg.matrix_rank`` per point vs
the machine's limit.

Run with ``pytest bench/test_pointwise_speed.py -s``. Each case measures in the same run:

- ``fastrelu``: :func:`fastrelu.pointwise_injectivity`, all cores;
- ``numpy_loop``: per point, the active rows' ``numpy.linalg.matrix_rank`` (fewer points);
- ``limit``: the product ``X @ W^T`` and the activity comparison alone, tile by tile on
  the same threads.

The bias leaves about ``2 n`` rows active per point, a regime where both outcomes occur.
"""

import numpy as np
import pytest
import scipy.stats
from _recording import record

import fastrelu as fr
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks
from fastrelu._runtime.seeds import BLOCK_SIZE

CASES = {"30x270": (30, 270, 200_000, 2000), "100x1000": (100, 1000, 20_000, 200)}
#: The cases of ``pytest bench -m quick``.
QUICK = {"30x270"}
CASE_PARAMS = [pytest.param(case, marks=pytest.mark.quick) if case in QUICK else case for case in CASES]
RESULTS = {}


def _layer(n, m):
    rng = np.random.default_rng(0)
    level = np.sqrt(n) * scipy.stats.norm.ppf(1 - 2 * n / m)
    return fr.ReLULayer(rng.standard_normal((m, n)), np.full(m, level))


def _points(n, N):
    return np.random.default_rng(1).standard_normal((N, n))


def numpy_loop(layer, X):
    n = layer.shape[1]
    mask = layer.active_mask(X)
    return np.array([np.linalg.matrix_rank(layer.weight[row]) == n for row in mask])


def limit(layer, X):
    W_t = np.ascontiguousarray(layer.weight.T)
    bias = layer.bias
    N = X.shape[0]
    tile = max(32, min(1024, 65536 // W_t.shape[1]))

    def make_worker():
        C = np.empty((tile, W_t.shape[1]))
        count = [0]

        def process(b):
            for start in range(b * BLOCK_SIZE, min(N, (b + 1) * BLOCK_SIZE), tile):
                stop = min(N, start + tile, (b + 1) * BLOCK_SIZE)
                np.matmul(X[start:stop], W_t, out=C[:stop - start])
                count[0] += int(np.count_nonzero(C[:stop - start] >= bias))

        return process, lambda: count[0]

    return run_blocks(-(-N // BLOCK_SIZE), make_worker, n_jobs_value(None))


def _record(benchmark, case, kind, n_points):
    RESULTS[(case, kind)] = record(benchmark, f"pointwise {case}", kind, n_points, "point")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fastrelu(benchmark, case):
    n, m, N, _ = CASES[case]
    layer, X = _layer(n, m), _points(n, N)
    result = benchmark.pedantic(fr.pointwise_injectivity, args=(layer, X), rounds=3,
                                warmup_rounds=1, iterations=1)
    benchmark.extra_info["fraction_injective"] = float(result.mean())
    _record(benchmark, case, "fastrelu", N)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_numpy_loop(benchmark, case):
    n, m, _, N = CASES[case]
    layer, X = _layer(n, m), _points(n, N)
    expected = benchmark.pedantic(numpy_loop, args=(layer, X), rounds=1, warmup_rounds=0, iterations=1)
    np.testing.assert_array_equal(fr.pointwise_injectivity(layer, X), expected)
    _record(benchmark, case, "numpy_loop", N)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_limit(benchmark, case):
    n, m, N, _ = CASES[case]
    layer, X = _layer(n, m), _points(n, N)
    benchmark.pedantic(limit, args=(layer, X), rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "limit", N)


def test_summary():
    lines = [f"{'case':<10}{'fastrelu us':>13}{'loop us':>12}{'limit us':>11}{'x loop':>10}{'/ limit':>9}"]
    for case in CASES:
        fast, loop, floor = (RESULTS.get((case, kind)) for kind in ("fastrelu", "numpy_loop", "limit"))
        if None in (fast, loop, floor):
            continue
        lines.append(f"{case:<10}{fast:>13.3f}{loop:>12.1f}{floor:>11.3f}{loop / fast:>10.0f}{fast / floor:>9.2f}")
    print("\n" + "\n".join(lines))
