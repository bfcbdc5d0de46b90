"""Pointwise injectivity from products with W and W^T only (:func:`fastrelu.operator_injectivity`,
THEORY §10.1) on convolutions, against the products the iterations make and against the
dense routes, measured in the same run.

Run with ``pytest bench/test_matrix_free_speed.py -s``. Layers: ``Conv2d(3, 64, 3,
padding=1)`` with a batch norm on ``3 x 32 x 32`` inputs (``n = 3072``, ``m = 65536``;
its dense rows take 1.6 GB) and ``Conv2d(16, 64, 3, padding=1)`` on ``16 x 32 x 32``
(``n = 16384``, ``m = 65536``: 8.6 GB, over a quarter of this machine's memory, so
``analyze_model`` takes this route by default). Per point:

- ``fastrelu``: ``operator_injectivity(layer.operator(), layer.bias, X)`` on both cores;
- ``limit``: the operator products that run made (the same number of products of the
  same block widths, on both cores): the work any iteration on these products must do,
  so ``ratio_to_limit`` is what the iterations' own arithmetic and Python add;
- ``plain_svd`` (the first layer only, fewer points): the loop a user would write with
  the dense rows, ``scipy.linalg.svdvals(W[active])`` per point;
- ``dense_fastrelu`` (the first layer only): :func:`fastrelu.pointwise_injectivity` on
  the dense rows, the route ``analyze_model`` takes when they fit the memory budget.
"""

import threading
import time

import numpy as np
import pytest
import scipy.linalg
from _recording import record
from scipy.sparse.linalg import LinearOperator

torch = pytest.importorskip("torch")

import fastrelu as fr  # noqa: E402

#: (name, C_in, C_out, side, points)
CASES = (("conv 3->64 on 32x32", 3, 64, 32, 8), ("conv 16->64 on 32x32", 16, 64, 32, 4))
RESULTS = {}


def _layer(c_in, c_out, side, points, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 3, padding=1),
                                torch.nn.BatchNorm2d(c_out), torch.nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    X = torch.randn(points, c_in, side, side, generator=torch.Generator().manual_seed(seed + 1))
    (found,) = fr.relu_layers(model, X[:1])
    return found, X.reshape(points, -1).numpy().astype(np.float64)


def _recording(op):
    """``op`` as a LinearOperator that records the width of every product."""
    widths = []

    def matmat(V):
        widths.append(("mat", V.shape[1]))
        return op.matmat(V)

    def rmatmat(U):
        widths.append(("rmat", U.shape[1]))
        return op.rmatmat(U)

    wrapped = LinearOperator(op.shape, matvec=lambda v: matmat(v[:, None])[:, 0],
                             rmatvec=lambda u: rmatmat(u[:, None])[:, 0], matmat=matmat,
                             rmatmat=rmatmat, dtype=np.float64)
    return wrapped, widths


def _replay(op, widths, threads=2):
    """The recorded products again, on random blocks, split over ``threads`` threads."""
    m, n = op.shape
    rng = np.random.default_rng(0)
    blocks = {("mat", k): rng.standard_normal((n, k)) for kind, k in set(widths) if kind == "mat"}
    blocks.update({("rmat", k): rng.standard_normal((m, k)) for kind, k in set(widths) if kind == "rmat"})

    def run(part):
        for kind, k in part:
            (op.matmat if kind == "mat" else op.rmatmat)(blocks[(kind, k)])

    workers = [threading.Thread(target=run, args=(widths[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_operator_injectivity(benchmark, case):
    name, c_in, c_out, side, points = case
    found, X = _layer(c_in, c_out, side, points)
    op = found.operator()
    fr.operator_injectivity(op, found.bias, X[:1], n_jobs=1)  # torch's first calls, out of the timing
    result = benchmark.pedantic(lambda: fr.operator_injectivity(op, found.bias, X, n_jobs=2),
                                rounds=1, warmup_rounds=0, iterations=1)
    RESULTS[(name, "fastrelu")] = record(benchmark, name, "fastrelu", points, "point")
    RESULTS[(name, "result")] = result
    wrapped, widths = _recording(op)
    fr.operator_injectivity(wrapped, found.bias, X, n_jobs=1)
    RESULTS[(name, "widths")] = widths


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_limit(benchmark, case):
    name, c_in, c_out, side, points = case
    widths = RESULTS.get((name, "widths"))
    if widths is None:
        pytest.skip("needs test_operator_injectivity of the same case first")
    found, _ = _layer(c_in, c_out, side, 1)
    op = found.operator()
    benchmark.pedantic(lambda: _replay(op, widths), rounds=1, warmup_rounds=0, iterations=1)
    RESULTS[(name, "limit")] = record(benchmark, name, "limit", points, "point")


def test_dense_routes(benchmark):
    name, c_in, c_out, side, points = CASES[0]
    found, X = _layer(c_in, c_out, side, points)
    if found.layer is None:
        pytest.skip("the dense rows are over the memory budget here")
    W, alpha = found.layer.weight, found.layer.bias
    fr.pointwise_injectivity(found.layer, X[:1], n_jobs=2)
    benchmark.pedantic(lambda: fr.pointwise_injectivity(found.layer, X, n_jobs=2), rounds=1,
                       warmup_rounds=0, iterations=1)
    RESULTS[(name, "dense_fastrelu")] = record(benchmark, name, "dense_fastrelu", points, "point")
    start = time.perf_counter()
    for x in X[:2]:
        scipy.linalg.svdvals(W[x @ W.T - alpha >= 0])
    RESULTS[(name, "plain_svd")] = (time.perf_counter() - start) / 2 * 1e6


def test_summary():
    lines = [f"{'layer':<22}{'n':>7}{'m':>7}{'s/point':>9}{'limit':>8}{'ratio':>7}{'iters':>7}"
             f"{'injective':>10}{'undecided':>10}{'dense s/pt':>11}{'svd s/pt':>9}"]
    for name, c_in, c_out, side, _ in CASES:
        call, floor = RESULTS.get((name, "fastrelu")), RESULTS.get((name, "limit"))
        result = RESULTS.get((name, "result"))
        if call is None or floor is None:
            continue
        dense, svd = RESULTS.get((name, "dense_fastrelu")), RESULTS.get((name, "plain_svd"))
        lines.append(f"{name:<22}{c_in * side * side:>7}{c_out * side * side:>7}{call / 1e6:>9.3f}"
                     f"{floor / 1e6:>8.3f}{call / floor:>7.2f}{np.median(result.iterations):>7.0f}"
                     f"{result.fraction:>10.2f}{result.undecided_fraction:>10.2f}"
                     f"{'' if dense is None else f'{dense / 1e6:.3f}':>11}"
                     f"{'' if svd is None else f'{svd / 1e6:.2f}':>9}")
    print("\n" + "\n".join(lines))
