"""One (4096, 16384) layer end to end: the run times and peak memory of docs/performance.md.

Run with ``python bench/huge_layer.py`` (every step, each in a child process so that its
peak resident memory is its own) or ``python bench/huge_layer.py STEP`` for one of
``mcbe``, ``pointwise``, ``reconstruct``, ``power``, ``analyze``. The layer is the
feed-forward block size of the largest OPT models in the large-layer issue: Gaussian
``W`` of shape (16384, 4096), 64 Gaussian points, the bias 0 (half the neurons active).
Progress bars go to stderr; the table goes to stdout.
"""

import resource
import subprocess
import sys
import time

import numpy as np

import fastrelu as fr

N, M, POINTS = 4096, 16384, 64
STEPS = ("mcbe", "pointwise", "reconstruct", "power", "analyze")


def _problem():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((M, N))
    X = rng.standard_normal((POINTS, N))
    return W, X


def run(step):
    W, X = _problem()
    layer = fr.ReLULayer(W, np.zeros(M))
    start = time.perf_counter()
    if step == "mcbe":
        result = fr.mcbe(W, fr.Data(X), progress=True)
        detail = f"alpha range [{result.alpha.min():.3g}, {result.alpha.max():.3g}]"
    elif step == "pointwise":
        result = fr.pointwise_injectivity(layer, X, progress=True)
        detail = f"{int(np.count_nonzero(result))} of {POINTS} points injective"
    elif step == "reconstruct":
        result = fr.reconstruct(layer, layer(X), progress=True)
        error = np.max(np.linalg.norm(result.x - X, axis=1) / np.linalg.norm(X, axis=1))
        detail = f"{int(np.count_nonzero(result.ok))} of {POINTS} recovered, max relative error {error:.2g}"
    elif step == "power":
        result = fr.relu_power_iteration(W, n_starts=POINTS, seed=0, progress=True)
        detail = f"s_1 = {result.s1:.6g}, {result.n_iter.max()} steps at most"
    elif step == "analyze":
        rng = np.random.default_rng(1)
        network = fr.Network([layer, fr.ReLULayer(rng.standard_normal((1024, M)) / np.sqrt(M))],
                             output=fr.ReLULayer(rng.standard_normal((10, 1024)), np.zeros(10)))
        report = fr.analyze(network, X, samples=POINTS, enlarge=None, width_draws=64,
                            power_starts=8, progress=True)
        detail = f"{len(report.layers)} hidden layers; injective fraction of the first: {report.layers[0].injective_fraction:.3g}"
    else:
        raise SystemExit(f"unknown step {step!r}; one of {', '.join(STEPS)}")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"| {step} | {seconds:.1f} | {peak:.2f} | {detail} |", flush=True)


def main():
    if len(sys.argv) > 1:
        run(sys.argv[1])
        return
    print(f"(n, m) = ({N}, {M}), {POINTS} points or starts\n")
    print("| step | seconds | peak memory (GiB) | result |")
    print("| --- | --- | --- | --- |", flush=True)
    for step in STEPS:
        subprocess.run([sys.executable, __file__, step], check=False)


if __name__ == "__main__":
    main()
