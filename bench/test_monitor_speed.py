"""The training monitor (:class:`fastrelu.torch.InjectivityMonitor`) on a 784 -> 1024 ->
1024 -> 10 MLP with batches of 256: its time per call against the training step and
against its limit, measured in the same run.

Run with ``pytest bench/test_monitor_speed.py -s``. Per call (``window=1``) and for
``points`` = 256 and 32 of the batch's points:

- ``fastrelu``: ``monitor.step()`` right after an optimiser step (without enforcement;
  with it, the projection and the forward passes it needs are added to the same work);
- ``limit``: the LAPACK/BLAS work of the certificates such a call asks for, on both
  cores: per layer, one product and one ``dpotrf`` of an ``n x n`` SPD matrix for each
  point of the window (the MCBE estimate) and for each point of the batch with at least
  ``n`` active rows (the pointwise check; points with fewer are not injective without
  any work), as in ``test_large_speed.py``;
- ``training_step``: forward, backward and the SGD step on the batch (PyTorch, both
  cores).

The overhead of monitoring every ``every`` steps is a call's time over ``every``
training steps; ``test_summary`` prints it for ``every`` = 1, 10 and 100.
"""

import numpy as np
import pytest
from _recording import record
from test_large_speed import limit

torch = pytest.importorskip("torch")

import fastrelu as fr  # noqa: E402
from fastrelu.torch import InjectivityMonitor  # noqa: E402

WIDTHS = (784, 1024, 1024, 10)
BATCH = 256
POINTS = (256, 32)
RESULTS = {}


def _setup(seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(WIDTHS[:-1], WIDTHS[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(BATCH, WIDTHS[0], generator=generator)
    y = torch.randint(0, WIDTHS[-1], (BATCH,), generator=generator)

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()

    for _ in range(3):  # past the first steps' allocations
        train_step()
    return model, train_step, X


def test_training_step(benchmark):
    _, train_step, _ = _setup()
    benchmark.pedantic(train_step, rounds=10, warmup_rounds=2, iterations=1)
    RESULTS["training_step"] = record(benchmark, "monitor", "training_step", 1, "step")


@pytest.mark.parametrize("points", POINTS)
def test_monitor_call(benchmark, points):
    model, train_step, _ = _setup()
    monitor = InjectivityMonitor(model, points=points, seed=0)
    train_step()
    monitor.step()  # layer discovery and the kernels' compilation, out of the timing

    def call():
        monitor.step()

    # every round: a training step (its forward pass is what the monitor records), then
    # the timed call
    benchmark.pedantic(call, setup=train_step, rounds=3, warmup_rounds=0, iterations=1)
    RESULTS[("monitor", points)] = record(benchmark, f"monitor points={points}", "fastrelu", 1,
                                          "call")
    RESULTS[("history", points)] = monitor.history[-2:]
    monitor.close()


@pytest.mark.parametrize("points", POINTS)
def test_limit(benchmark, points):
    model, train_step, X = _setup()
    train_step()
    found = fr.relu_layers(model, X[:1])
    inputs = fr.capture(model, X[:points], found)
    work = []
    for layer in found:
        W, alpha = layer.layer.weight, layer.layer.bias
        Xk = inputs[layer.name]
        active = int(((Xk @ W.T - alpha >= 0).sum(axis=1) >= W.shape[1]).sum())
        n = W.shape[1]
        B = np.random.default_rng(2).standard_normal((n, n))
        spd = B @ B.T + n * np.eye(n)
        # the window's points (the estimate), then the batch's points that can be injective
        rows = np.concatenate([Xk, Xk[:active]]) if active else Xk
        work.append((W, rows, spd))

    def run():
        for W, rows, spd in work:
            limit(W, rows, spd)

    run()
    benchmark.pedantic(run, rounds=2, warmup_rounds=0, iterations=1)
    RESULTS[("limit", points)] = record(benchmark, f"monitor points={points}", "limit", 1, "call")


def test_summary():
    step = RESULTS.get("training_step")
    lines = [f"{'points':>7}{'call s':>9}{'limit s':>9}{'call/limit':>12}{'step ms':>9}"
             f"{'overhead every=1':>18}{'every=10':>10}{'every=100':>11}"]
    for points in POINTS:
        call, floor = RESULTS.get(("monitor", points)), RESULTS.get(("limit", points))
        if call is None or floor is None or step is None:
            continue
        lines.append(f"{points:>7}{call / 1e6:>9.3f}{floor / 1e6:>9.3f}{call / floor:>12.2f}"
                     f"{step / 1e3:>9.1f}{call / step:>18.1f}{call / step / 10:>10.2f}"
                     f"{call / step / 100:>11.3f}")
        for item in RESULTS.get(("history", points), []):
            lines.append(f"        layer {item.layer}: {item.seconds:.3f} s, injective "
                         f"{item.injective_fraction:.2f}, above {item.fraction_above:.2f}")
    print("\n" + "\n".join(lines))
