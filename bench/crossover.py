"""The crossovers of the size rules, measured on this machine.

Run with ``python bench/crossover.py certificate [RATIO] [N,N,...]`` or
``python bench/crossover.py reconstruction [N,N,...]``:

- ``certificate``: MCBE on the sphere and :func:`fastrelu.injectivity_summary` (bias
  ``-0.1``) with the lane-parallel certificate and with the one-sample LAPACK one
  (``_core/basis.LANES_MAX_N`` set either way), microseconds per sample or point, for
  ``m = RATIO n`` (default 10) Gaussian rows; and where this machine's rule switches
  (``certify_one_by_one``);
- ``reconstruction``: :func:`fastrelu.reconstruct` (dual and frame, zero bias,
  ``m = 4 n``) in SIMD lanes and blocked (``_reconstruct/driver.SOLVE_LANES_MAX_N``),
  microseconds per output, and where the rule switches (``solves_blocked``).

Both cores, best of three calls, each on enough samples for about a second of work
(the kernels compiled before). The figures are in docs/performance.md.
"""

import sys
import time
from functools import partial

import numpy as np

import fastrelu as fr
import fastrelu._core.basis as basis
import fastrelu._reconstruct.driver as driver


def _best(call, repeats=3):
    call()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def certificate(ratio, sizes):
    switch = next((n for n in range(1, 4097) if basis.certify_one_by_one(n)), None)
    print(f"certificate: this machine's rule goes one by one from n = {switch}")
    print(f"{'n':>5}{'m':>7}{'samples':>9}  MCBE lanes / one by one (us)  pointwise lanes / one by one (us)")
    for n in sizes:
        m = ratio * n
        W = np.random.default_rng(0).standard_normal((m, n))
        N = int(max(4000, min(100_000, 2e10 / (n**3 + 10 * m * n))))
        X = np.random.default_rng(1).standard_normal((N, n))
        layer = fr.ReLULayer(W, np.full(m, -0.1))
        cells = []
        for call in (partial(fr.mcbe, W, fr.Sphere(n), N, seed=1),
                     partial(fr.injectivity_summary, layer, X)):
            for cap in (10**9, 0):  # lanes, one by one
                basis.LANES_MAX_N = cap
                cells.append(_best(call) / N * 1e6)
        basis.LANES_MAX_N = None
        print(f"{n:>5}{m:>7}{N:>9}  {cells[0]:>12.1f} / {cells[1]:<14.1f}  {cells[2]:>12.1f} / {cells[3]:.1f}",
              flush=True)


def reconstruction(sizes):
    switch = next((n for n in range(1, 4097) if driver.solves_blocked(n)), None)
    print(f"reconstruction: this machine's rule solves blocked from n = {switch}")
    print(f"{'n':>5}{'outputs':>9}  dual lanes / blocked (us)  frame lanes / blocked (us)")
    for n in sizes:
        m = 4 * n
        W = np.random.default_rng(0).standard_normal((m, n))
        N = int(max(400, min(50_000, 4e9 / (n**3 + m * n * n / 2))))
        layer = fr.ReLULayer(W)
        Y = layer(np.random.default_rng(1).standard_normal((N, n)))
        cells = []
        for method in ("dual", "frame"):
            for cap in (10**9, 0):  # lanes, blocked
                driver.SOLVE_LANES_MAX_N = cap
                cells.append(_best(partial(fr.reconstruct, layer, Y, method)) / N * 1e6)
        driver.SOLVE_LANES_MAX_N = None
        print(f"{n:>5}{N:>9}  {cells[0]:>10.1f} / {cells[1]:<12.1f}  {cells[2]:>10.1f} / {cells[3]:.1f}",
              flush=True)


def _sizes(text, default):
    return [int(part) for part in text.split(",")] if text else default


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "certificate"
    if what == "certificate":
        ratio = int(sys.argv[2]) if len(sys.argv) > 2 else 10
        certificate(ratio, _sizes(sys.argv[3] if len(sys.argv) > 3 else "",
                                  [64, 100, 128, 192, 256, 320, 384]))
    elif what == "reconstruction":
        reconstruction(_sizes(sys.argv[2] if len(sys.argv) > 2 else "", [32, 48, 64, 96, 128]))
    else:
        sys.exit(f"usage: python bench/crossover.py certificate [RATIO] [N,...] | reconstruction [N,...]; got {what!r}")
