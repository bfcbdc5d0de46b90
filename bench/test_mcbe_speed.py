"""MCBE throughput: fastrelu vs the obvious NumPy loop vs the machine's limit.

Run with ``pytest bench`` (not part of the default test run). Each case measures in
the same run:

- ``fastrelu``: :func:`fastrelu.mcbe` on the unit sphere, all cores;
- ``numpy_loop``: a per-sample loop written the obvious way (normalised correlations,
  ``argsort``, a growing ``matrix_rank`` test), on fewer samples;
- ``limit``: what any method must do, drawing the Gaussian samples and the tiled product
  ``U @ W^T``, on the same blocks and threads as fastrelu.

Times per sample go to ``extra_info["us_per_sample"]``; the last test prints the ratios.
"""

import numpy as np
import pytest
from _recording import record

import fastrelu as fr
from fastrelu._bias.mcbe import _Problem
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks
from fastrelu._runtime.seeds import BLOCK_SIZE, block_generator

CASES = {"30x270": (30, 270, 200_000, 100), "100x1000": (100, 1000, 20_000, 5)}
#: The cases of ``pytest bench -m quick``.
QUICK = {"30x270"}
CASE_PARAMS = [pytest.param(case, marks=pytest.mark.quick) if case in QUICK else case for case in CASES]
RESULTS = {}


def _weight(n, m):
    return np.random.default_rng(0).standard_normal((m, n))


def numpy_loop(W, n_samples, seed):
    """MCBE on the sphere as one would first write it."""
    m, n = W.shape
    rng = np.random.default_rng(seed)
    norms = np.linalg.norm(W, axis=1)
    alpha = np.full(m, np.inf)
    for _ in range(n_samples):
        u = rng.standard_normal(n)
        u /= np.linalg.norm(u)
        inner = W @ u
        kept = []
        for i in np.argsort(-inner / norms, kind="stable"):
            if np.linalg.matrix_rank(W[kept + [i]]) == len(kept) + 1:
                kept.append(i)
                if len(kept) == n:
                    break
        alpha[kept] = np.minimum(alpha[kept], inner[kept])
    return alpha


def limit(W, n_samples, seed):
    """Draw the samples and form U @ W^T tile by tile, on the same blocks and threads."""
    problem = _Problem(W, fr.Sphere(W.shape[1]), 1e-6)
    n_blocks = -(-n_samples // BLOCK_SIZE)

    def make_worker():
        U = np.empty((BLOCK_SIZE, W.shape[1]))
        C = np.empty((problem.tile, W.shape[0]))
        checksum = [0.0]

        def process(b):
            size = min(BLOCK_SIZE, n_samples - b * BLOCK_SIZE)
            block_generator(seed, b).standard_normal(out=U[:size])
            for start in range(0, size, problem.tile):
                part = U[start:min(size, start + problem.tile)]
                np.matmul(part, problem.weight_t, out=C[:part.shape[0]])
                checksum[0] += C[0, 0]

        return process, lambda: checksum[0]

    return run_blocks(n_blocks, make_worker, n_jobs_value(None))


def _record(benchmark, case, kind, n_samples):
    RESULTS[(case, kind)] = record(benchmark, f"mcbe {case}", kind, n_samples, "sample")


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fastrelu(benchmark, case):
    n, m, n_samples, _ = CASES[case]
    W = _weight(n, m)
    benchmark.pedantic(fr.mcbe, args=(W, fr.Sphere(n), n_samples), kwargs={"seed": 1},
                       rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "fastrelu", n_samples)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_numpy_loop(benchmark, case):
    n, m, _, loop_samples = CASES[case]
    W = _weight(n, m)
    benchmark.pedantic(numpy_loop, args=(W, loop_samples, 1), rounds=1, warmup_rounds=0, iterations=1)
    _record(benchmark, case, "numpy_loop", loop_samples)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_limit(benchmark, case):
    n, m, n_samples, _ = CASES[case]
    W = _weight(n, m)
    benchmark.pedantic(limit, args=(W, n_samples, 1), rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, case, "limit", n_samples)


def test_summary():
    lines = [f"{'case':<10}{'fastrelu us':>13}{'loop us':>12}{'limit us':>11}{'x loop':>10}{'/ limit':>9}"]
    for case in CASES:
        fast = RESULTS.get((case, "fastrelu"))
        loop = RESULTS.get((case, "numpy_loop"))
        floor = RESULTS.get((case, "limit"))
        if None in (fast, loop, floor):
            continue
        lines.append(f"{case:<10}{fast:>13.3f}{loop:>12.1f}{floor:>11.3f}{loop / fast:>10.0f}{fast / floor:>9.2f}")
    print("\n" + "\n".join(lines))
