"""ReLU power iteration: fastrelu vs the obvious NumPy loop vs scipy.optimize vs the limit.

Run with ``pytest bench/test_power_speed.py -s``. On ``(m, n) = (270, 30)`` (Gaussian
weights, zero bias, ``tol = 1e-10``) it measures in the same run:

- ``fastrelu``: :func:`fastrelu.relu_power_iteration` with 10^6 starts, all cores
  (accelerated steps, the default);
- ``fastrelu_plain``: the same with ``accelerate=False`` (the plain power iteration of
  THEORY §7), 10^5 starts;
- ``numpy_loop``: per start, ``x <- W^T ReLU(W x) / |W^T ReLU(W x)|`` written the obvious
  way with the same stopping rule, on the first 200 of the same starts;
- ``scipy``: ``scipy.optimize.minimize`` (BFGS with the exact gradient) of
  ``-|ReLU(W x)|^2 / |x|^2`` from the first 200 of the same starts;
- ``limit``: the dense products the fastrelu run must do (for every block and every
  iteration, ``G = R W``, the images ``G W^T`` and those of the previous steps, on the
  live starts the run had), plus drawing the starts, on the same blocks and threads, in
  a ``nogil`` Numba loop like the kernel's.

Microseconds per start go to ``extra_info``; the objective each method reaches is
reported (best value, and the fraction of starts that end within a relative 1e-8 of the
best value of the 10^6-start run). The last test prints the table.
"""

import time

import numba
import numpy as np
import pytest
import scipy.optimize
from _recording import record

import fastrelu as fr
from fastrelu._core.validation import n_jobs_value
from fastrelu._runtime.parallel import run_blocks
from fastrelu._runtime.seeds import block_generator
from fastrelu._spectral.power import POWER_BLOCK, POWER_STREAM

M, N = 270, 30
STARTS = 1_000_000
PLAIN_STARTS = 100_000
LOOP_STARTS = 200
SEED = 1
TOL = 1e-10
#: A start "reaches" the best value when it ends within this relative distance of it.
REACHED = 1e-8
RESULTS = {}


def _weight():
    return np.random.default_rng(0).standard_normal((M, N))


def _starts(count):
    """The first ``count`` starts of fastrelu's run (stream 2 of the seed)."""
    blocks = []
    for b in range(-(-count // POWER_BLOCK)):
        X = block_generator(SEED, b, POWER_STREAM).standard_normal((min(POWER_BLOCK, STARTS - b * POWER_BLOCK), N))
        blocks.append(X / np.linalg.norm(X, axis=1, keepdims=True))
    return np.concatenate(blocks)[:count]


def numpy_loop(W, X, max_iter=1000):
    """The ReLU power iteration start by start, as one would first write it."""
    values = np.empty(X.shape[0])
    for s, x in enumerate(X):
        for _ in range(max_iter):
            g = W.T @ np.maximum(W @ x, 0.0)
            norm = np.linalg.norm(g)
            if norm == 0.0 or norm - g @ x <= TOL * norm:
                break
            x = g / norm
        values[s] = np.linalg.norm(np.maximum(W @ x, 0.0))
    return values


def scipy_multistart(W, X):
    """BFGS on -|ReLU(W x)|^2 / |x|^2 (scale-invariant) with its exact gradient."""

    def objective(x):
        r = np.maximum(W @ x, 0.0)
        xx = x @ x
        f = r @ r
        return -f / xx, -(2.0 * (W.T @ r) * xx - 2.0 * f * x) / (xx * xx)

    values = np.empty(X.shape[0])
    for s, x0 in enumerate(X):
        res = scipy.optimize.minimize(objective, x0, jac=True, method="BFGS")
        x = res.x / np.linalg.norm(res.x)
        values[s] = np.linalg.norm(np.maximum(W @ x, 0.0))
    return values


@numba.njit(nogil=True)
def _limit_block(X, W, W_t, its, accelerated, Z, R, G):
    """The products of one block whose starts made ``its`` iterations (see ``limit``)."""
    size = X.shape[0]
    top = 0
    for s in range(size):
        top = max(top, its[s])
    for it in range(top + 1):
        before = 0
        after = 0
        for s in range(size):
            before += its[s] >= it
            after += its[s] > it
        if it % 16 == 0:
            np.dot(X[:before], W_t, Z[:before])
        np.dot(R[:before], W, G[:before])
        if after == 0:
            break
        np.dot(G[:after], W_t, Z[:after])
        if accelerated and it > 0:
            np.dot(X[:after], W_t, Z[:after])
    np.dot(X, W_t, Z[:size])
    return Z[0, 0]


def limit(W, n_iter, accelerated=True):
    """Draw the starts and do the products of a run whose starts made ``n_iter`` iterations,
    block by block on the same threads, in a ``nogil`` Numba loop like the kernel's: per
    iteration, on the live starts, ``R @ W`` (gradients), ``G @ W^T`` (their images) and,
    accelerated, ``P @ W^T`` (the previous steps' images); plus ``X @ W^T`` every 16
    iterations and at the end."""
    W_t = np.ascontiguousarray(W.T)
    total = n_iter.shape[0]
    n_blocks = -(-total // POWER_BLOCK)

    def make_worker():
        X = np.empty((POWER_BLOCK, N))
        Z = np.empty((POWER_BLOCK, M))
        R = np.ones((POWER_BLOCK, M))  # any data: the cost of a product does not depend on it
        G = np.empty((POWER_BLOCK, N))
        checksum = [0.0]

        def process(b):
            size = min(POWER_BLOCK, total - b * POWER_BLOCK)
            block_generator(SEED, b, POWER_STREAM).standard_normal(out=X[:size])
            its = n_iter[b * POWER_BLOCK:b * POWER_BLOCK + size]
            checksum[0] += _limit_block(X[:size], W, W_t, its, accelerated, Z, R, G)

        return process, lambda: checksum[0]

    return run_blocks(n_blocks, make_worker, n_jobs_value(None))


def _record(benchmark, kind, n_starts, values=None, best=None):
    per_start = record(benchmark, "power", kind, n_starts, "start")
    entry = {"us": per_start, "starts": n_starts}
    if values is not None:
        entry["best"] = float(values.max())
        benchmark.extra_info["best"] = entry["best"]
        if best is not None:
            entry["reached"] = float(np.mean(values >= best * (1 - REACHED)))
    RESULTS[kind] = entry


def test_fastrelu(benchmark):
    W = _weight()
    fr.relu_power_iteration(W, n_starts=1000, seed=SEED)  # compile (cached) before timing
    result = benchmark.pedantic(fr.relu_power_iteration, args=(W,),
                                kwargs={"n_starts": STARTS, "seed": SEED, "tol": TOL},
                                rounds=1, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(s1=result.s1, mean_iter=result.mean_iter,
                                n_converged=result.n_converged, n_max_iter=result.n_max_iter)
    RESULTS["run"] = result
    _record(benchmark, "fastrelu", STARTS, result.values, result.s1)
    assert result.s1 <= np.linalg.norm(W, 2)


def test_fastrelu_plain(benchmark):
    W = _weight()
    result = benchmark.pedantic(fr.relu_power_iteration, args=(W,),
                                kwargs={"n_starts": PLAIN_STARTS, "seed": SEED, "tol": TOL,
                                        "accelerate": False},
                                rounds=1, warmup_rounds=1, iterations=1)
    benchmark.extra_info["mean_iter"] = result.mean_iter
    RESULTS["plain_run"] = result
    best = RESULTS["run"].s1 if "run" in RESULTS else result.s1
    _record(benchmark, "fastrelu_plain", PLAIN_STARTS, result.values, best)


def test_numpy_loop(benchmark):
    W, X = _weight(), _starts(LOOP_STARTS)
    values = benchmark.pedantic(numpy_loop, args=(W, X), rounds=1, warmup_rounds=0, iterations=1)
    best = RESULTS["run"].s1 if "run" in RESULTS else values.max()
    _record(benchmark, "numpy_loop", LOOP_STARTS, values, best)


def test_scipy(benchmark):
    W, X = _weight(), _starts(LOOP_STARTS)
    values = benchmark.pedantic(scipy_multistart, args=(W, X), rounds=1, warmup_rounds=0, iterations=1)
    best = RESULTS["run"].s1 if "run" in RESULTS else values.max()
    _record(benchmark, "scipy", LOOP_STARTS, values, best)


def test_limit(benchmark):
    if "run" not in RESULTS:
        pytest.skip("needs the fastrelu run (its iteration counts)")
    W = _weight()
    n_iter = RESULTS["run"].n_iter
    limit(W, n_iter[:POWER_BLOCK])  # compile before timing
    benchmark.pedantic(limit, args=(W, n_iter), rounds=1, warmup_rounds=0, iterations=1)
    _record(benchmark, "limit", STARTS)


def test_summary():
    lines = [f"ReLU power iteration, (m, n) = ({M}, {N}), zero bias, tol {TOL:g}",
             f"{'method':<16}{'starts':>10}{'us/start':>11}{'best value':>14}{'reached':>9}{'fastrelu x':>12}"]
    fast = RESULTS.get("fastrelu", {}).get("us")
    for kind in ("fastrelu", "fastrelu_plain", "numpy_loop", "scipy", "limit"):
        entry = RESULTS.get(kind)
        if entry is None:
            continue
        best = f"{entry['best']:.10f}" if "best" in entry else "-"
        reached = f"{entry['reached']:.3f}" if "reached" in entry else "-"
        ratio = f"{entry['us'] / fast:.2f}" if fast else "-"
        lines.append(f"{kind:<16}{entry['starts']:>10}{entry['us']:>11.2f}{best:>14}{reached:>9}{ratio:>12}")
    if "run" in RESULTS:
        run = RESULTS["run"]
        lines.append(f"fastrelu: mean {run.mean_iter:.1f} iterations per start, {run.n_converged} converged, "
                     f"{run.n_max_iter} at max_iter, {run.n_zero} at a zero, {run.elapsed:.1f} s")
    if "plain_run" in RESULTS:
        lines.append(f"plain power iteration: mean {RESULTS['plain_run'].mean_iter:.1f} iterations per start")
    lines.append(f"{time.strftime('%Y-%m-%d')}, {n_jobs_value(None)} threads")
    print("\n" + "\n".join(lines))
