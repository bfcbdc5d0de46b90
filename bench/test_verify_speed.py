"""Exact injectivity check: fastrelu vs the obvious NumPy loop vs one GEMM.

Run with ``pytest bench/test_verify_speed.py -s`` (not part of the default test run).
Each case measures in the same run, in (n-1)-subsets per second:

- ``fastrelu``: :func:`fastrelu.verify_injective` on all cores, every subset;
- ``numpy_loop``: a per-subset loop written the obvious way (``np.linalg.svd`` of the
  ``n-1`` rows for the null vector ``v``, then the rows with ``<w_i, v> > 0`` and
  ``< 0`` counted), on a prefix of the subsets;
- ``gemm``: the dense evaluation at the machine's GEMM rate with the null vectors given
  for free: ``V @ W^T`` for chunks of subsets and the two counts, on a 100 times longer
  prefix (what a vectorised method must at least do per subset; fastrelu's angular
  sweep needs less than ``m`` products per subset for large ``m``, so it can beat this).

Rates go to ``extra_info["subsets_per_s"]``; the last test prints them and the ratios.
"""

import itertools
import math

import numpy as np
import pytest
from _recording import record

import fastrelu as fr

#: (n, m, subsets for the loop; the GEMM gets 100 times as many)
CASES = {"4x40": (4, 40, 3_000), "6x36": (6, 36, 3_000), "3x1000": (3, 1000, 3_000)}
#: The cases of ``pytest bench -m quick``.
QUICK = {"4x40", "6x36"}
CASE_PARAMS = [pytest.param(case, marks=pytest.mark.quick) if case in QUICK else case for case in CASES]
RESULTS = {}


def _weight(n, m):
    return np.random.default_rng(0).standard_normal((m, n))


def _subsets(m, n, count):
    return np.array(list(itertools.islice(itertools.combinations(range(m), n - 1), count)))


def numpy_loop(W, subsets):
    """min over the subsets of the two counts, as one would first write it."""
    best = W.shape[0]
    for T in subsets:
        v = np.linalg.svd(W[T])[2][-1]
        others = np.delete(W, T, axis=0) @ v
        best = min(best, int(np.sum(others > 0)), int(np.sum(others < 0)))
    return best


def gemm(W, V, chunk=16384):
    """The counts for given null vectors V: one product per chunk of subsets."""
    best = W.shape[0]
    WT = np.ascontiguousarray(W.T)
    for start in range(0, len(V), chunk):
        S = V[start:start + chunk] @ WT
        positive = (S > 0).sum(axis=1)
        negative = (S < 0).sum(axis=1)
        # the rows of T have S ~ 0: counted on neither side up to rounding
        best = min(best, int(positive.min()), int(negative.min()))
    return best


def _null_vectors(W, subsets):
    return np.linalg.svd(W[subsets])[2][:, -1, :]


def _record(benchmark, case, kind, n_subsets):
    # the dense GEMM over the same subsets is the limit
    record(benchmark, f"verify {case}", "limit" if kind == "gemm" else kind, n_subsets, "subset")
    rate = n_subsets / benchmark.stats.stats.min
    benchmark.extra_info["subsets_per_s"] = rate
    RESULTS[(case, kind)] = rate


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fastrelu(benchmark, case):
    n, m, _ = CASES[case]
    W = _weight(n, m)
    verdict = benchmark.pedantic(fr.verify_injective, args=(W,), rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "fastrelu", math.comb(m, n - 1))
    benchmark.extra_info["injective"] = verdict.injective


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_numpy_loop(benchmark, case):
    n, m, count = CASES[case]
    W = _weight(n, m)
    subsets = _subsets(m, n, count)
    benchmark.pedantic(numpy_loop, args=(W, subsets), rounds=1, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "numpy_loop", len(subsets))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_gemm(benchmark, case):
    n, m, count = CASES[case]
    W = _weight(n, m)
    subsets = _subsets(m, n, 100 * count)
    V = _null_vectors(W, subsets)
    benchmark.pedantic(gemm, args=(W, V), rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "gemm", len(subsets))


def test_summary():
    lines = [f"{'case':<8}{'subsets':>11}{'fastrelu /s':>14}{'loop /s':>11}{'gemm /s':>13}"
             f"{'x loop':>9}{'x gemm':>8}"]
    for case, (n, m, _) in CASES.items():
        fast = RESULTS.get((case, "fastrelu"))
        loop = RESULTS.get((case, "numpy_loop"))
        dense = RESULTS.get((case, "gemm"))
        if None in (fast, loop, dense):
            continue
        lines.append(f"{case:<8}{math.comb(m, n - 1):>11,}{fast:>14.3g}{loop:>11.3g}{dense:>13.3g}"
                     f"{fast / loop:>9.0f}{fast / dense:>8.2f}")
    print("\n" + "\n".join(lines))
