"""Reconstruction throughput: fastrelu vs per-sample NumPy loops vs the machine's limit.

Run with ``pytest bench/test_reconstruct_speed.py -s``. At ``(m, n) = (200, 50)`` with a
bias that keeps every input injective (``mcbe`` on the data, lowered by ``1e-6``):

- ``dual``: :func:`fastrelu.reconstruct` (``"dual"``);
- ``lstsq_loop``: per sample, ``numpy.linalg.lstsq`` on the active rows;
- ``limit``: the flops of one GEMM forming every ``S_I`` (the 0/1 activity matrix times
  the packed outer products ``w_i w_i^T``) plus the Cholesky factorisations, at the rate
  that GEMM reaches in the same run on all cores;
- ``active_limit``: the same at the flops fastrelu needs, which forms each ``S_I`` from
  the active rows only (``|I| n (n + 1)`` flops instead of ``m n (n + 1)``);
- ``frame`` vs ``frame_loop``: the frame algorithm, batched vs per sample in NumPy;
- ``dual_active85``: ``dual`` with the bias lowered so that 85% of the rows are active,
  ``S_I`` formed as ``S`` minus the inactive rows' Gram matrix (the default when those
  rows are fewer) or from the active rows.
"""


import numpy as np
import pytest
from _recording import record
from threadpoolctl import threadpool_limits

import fastrelu as fr
import fastrelu._reconstruct.driver as driver

M, N_IN, N_SAMPLES, LOOP_SAMPLES, FRAME_SAMPLES, FRAME_LOOP_SAMPLES = 200, 50, 100_000, 300, 10_000, 20
RESULTS = {}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((M, N_IN))
    X = rng.standard_normal((N_SAMPLES, N_IN))
    alpha = fr.mcbe(W, fr.Data(X[:20_000])).alpha - 1e-6
    layer = fr.ReLULayer(W, np.where(np.isfinite(alpha), alpha, 0.0))
    return layer, layer(X)


def lstsq_loop(layer, Y):
    W, alpha = layer.weight, layer.bias
    out = np.empty((Y.shape[0], W.shape[1]))
    for s, y in enumerate(Y):
        active = y > 0
        out[s] = np.linalg.lstsq(W[active], y[active] + alpha[active], rcond=None)[0]
    return out


def frame_loop(layer, Y, tol=1e-12, max_iter=10_000):
    W, alpha = layer.weight, layer.bias
    out = np.empty((Y.shape[0], W.shape[1]))
    for s, y in enumerate(Y):
        active = y > 0
        WI, c = W[active], y[active] + alpha[active]
        bounds = np.linalg.eigvalsh(WI.T @ WI)
        lam = 2.0 / (bounds[0] + bounds[-1])
        x = np.zeros(W.shape[1])
        b = WI.T @ c
        for _ in range(max_iter):
            step = WI.T @ (c - WI @ x)
            if np.linalg.norm(step) <= tol * np.linalg.norm(b):
                break
            x += lam * step
        out[s] = x
    return out


def _record(benchmark, kind, n_samples):
    RESULTS[kind] = record(benchmark, "reconstruct", kind, n_samples, "sample")


def test_dual(benchmark, problem):
    layer, Y = problem
    result = benchmark.pedantic(fr.reconstruct, args=(layer, Y, "dual"), rounds=3,
                                warmup_rounds=1, iterations=1)
    benchmark.extra_info["n_failed"] = result.n_failed
    _record(benchmark, "dual", N_SAMPLES)


@pytest.fixture(scope="module")
def mostly_active(problem):
    """The same layer with the bias lowered so that about 85% of the rows are active."""
    layer, Y = problem
    X = np.random.default_rng(0).standard_normal((N_SAMPLES // 4, N_IN))
    shifted = fr.ReLULayer(layer.weight, layer.bias - 1.5 * np.linalg.norm(layer.weight, axis=1))
    return shifted, shifted(X)


@pytest.mark.parametrize("downdate", [True, False])
def test_dual_mostly_active(benchmark, mostly_active, downdate, monkeypatch):
    """Rows mostly active: S_I = S - (inactive rows' Gram matrix), or from the active rows."""
    layer, Y = mostly_active
    monkeypatch.setattr(driver, "DOWNDATE", downdate)
    benchmark.extra_info["active_fraction"] = float((Y > 0).mean())
    benchmark.pedantic(fr.reconstruct, args=(layer, Y, "dual"), rounds=3, warmup_rounds=1,
                       iterations=1)
    _record(benchmark, "dual_active85_" + ("downdate" if downdate else "direct"), Y.shape[0])


def test_lstsq_loop(benchmark, problem):
    layer, Y = problem
    benchmark.pedantic(lstsq_loop, args=(layer, Y[:LOOP_SAMPLES]), rounds=1, iterations=1)
    _record(benchmark, "lstsq_loop", LOOP_SAMPLES)


def test_limit(benchmark, problem):
    """GEMM rate of the packed formation on this machine, turned into the limit."""
    layer, Y = problem
    upper = np.triu_indices(N_IN)
    packed = np.ascontiguousarray(layer.weight[:, upper[0]] * layer.weight[:, upper[1]])
    D = (Y[:4096] > 0).astype(float)
    out = np.empty((4096, packed.shape[1]))

    def gemm():
        np.matmul(D, packed, out=out)

    with threadpool_limits(None):
        benchmark.pedantic(gemm, rounds=5, warmup_rounds=1, iterations=1)
    rate = 2.0 * 4096 * M * packed.shape[1] / benchmark.stats.stats.min
    cholesky = N_IN**3 / 3.0
    active = (Y > 0).sum(axis=1).mean()
    benchmark.extra_info["gemm_gflops"] = rate / 1e9
    RESULTS["limit"] = (2.0 * M * packed.shape[1] + cholesky) / rate * 1e6
    RESULTS["active_limit"] = (2.0 * active * packed.shape[1] + cholesky) / rate * 1e6
    RESULTS["gemm_gflops"] = rate / 1e9
    # the limit per sample: the packed GEMM over the active rows and one Cholesky
    record(benchmark, "reconstruct", "limit", 1, "sample", seconds=RESULTS["active_limit"] * 1e-6)


def test_frame(benchmark, problem):
    layer, Y = problem
    result = benchmark.pedantic(fr.reconstruct, args=(layer, Y[:FRAME_SAMPLES], "frame"),
                                rounds=1, warmup_rounds=1, iterations=1)
    benchmark.extra_info["converged"] = int(result.converged.sum())
    benchmark.extra_info["median_iterations"] = float(np.median(result.iterations))
    _record(benchmark, "frame", FRAME_SAMPLES)


def test_frame_loop(benchmark, problem):
    layer, Y = problem
    benchmark.pedantic(frame_loop, args=(layer, Y[:FRAME_LOOP_SAMPLES]), rounds=1, iterations=1)
    _record(benchmark, "frame_loop", FRAME_LOOP_SAMPLES)


def test_summary():
    r = RESULTS
    lines = [f"GEMM rate {r.get('gemm_gflops', float('nan')):.1f} GFLOP/s; us per sample:"]
    for kind in ("dual", "dual_active85_downdate", "dual_active85_direct", "lstsq_loop", "limit",
                 "active_limit", "frame", "frame_loop"):
        if kind in r:
            lines.append(f"  {kind:<24}{r[kind]:>10.2f}")
    if "dual" in r and "lstsq_loop" in r and "limit" in r:
        lines.append(f"  dual: {r['lstsq_loop'] / r['dual']:.0f}x the lstsq loop, "
                     f"{r['dual'] / r['limit']:.2f}x the limit, "
                     f"{r['dual'] / r['active_limit']:.2f}x the active-row limit")
    if "frame" in r and "frame_loop" in r:
        lines.append(f"  frame: {r['frame_loop'] / r['frame']:.0f}x the per-sample loop")
    print("\n" + "\n".join(lines))
