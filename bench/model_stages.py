"""analyze_model per stage on two real models: the figures of docs/performance.md.

Run with ``python bench/model_stages.py [cnn|feedforward|matrixfree]`` (all three by
default, each in a child process). ``cnn``: the digits CNN of ``fastrelu.digits_cnn`` (trained with seed 0),
analysed on its 540 test images with the 1,257 training images fitting the estimates.
``feedforward``: an OPT-style pre-LayerNorm ReLU feed-forward block 768 -> 3072 -> 768
at random initialisation (seed 0) on 1,000 tokens (10 sequences of 100 Gaussian tokens),
half of them fitting. ``matrixfree``: ``Conv2d(16, 64, 3, padding=1)``, a batch norm and
a ReLU on 32 Gaussian inputs of shape ``16 x 32 x 32`` (``n = 16384``, ``m = 65536``;
the dense rows, 8.6 GB, are over a quarter of this machine's memory, so the layer is
analysed from products with W and W^T: THEORY §10.1). Default settings otherwise
(10,000 MCBE samples on the ball and on the LayerNorm's sphere, KDE enlargement to 10
times the fitting points), both cores.
"""

import subprocess
import sys
import time

import numpy as np

import fastrelu as fr

MODELS = ("cnn", "feedforward", "matrixfree")


def _feedforward():
    import torch
    from torch import nn

    class FeedForward(nn.Module):
        def __init__(self, d=768, hidden=3072):
            super().__init__()
            self.norm = nn.LayerNorm(d)
            self.fc1 = nn.Linear(d, hidden)
            self.fc2 = nn.Linear(hidden, d)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(self.norm(x))))

    torch.manual_seed(0)
    model = FeedForward().eval()
    tokens = torch.from_numpy(np.random.default_rng(0).standard_normal((10, 100, 768)).astype(np.float32))
    return model, tokens, {}


def _matrix_free():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    data = torch.from_numpy(np.random.default_rng(0).standard_normal((32, 16, 32, 32)).astype(np.float32))
    return model.eval(), data, {}


def _cnn():
    digits = fr.digits_cnn(seed=0)
    return digits.model, digits.X_test, {"labels": digits.y_test, "fit_data": digits.X_train}


def run(name):
    model, data, extra = {"cnn": _cnn, "feedforward": _feedforward, "matrixfree": _matrix_free}[name]()
    start = time.perf_counter()
    report = fr.analyze_model(model, data, progress=True, **extra)
    total = time.perf_counter() - start
    for layer in report.layers:
        stages = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in layer.stage_seconds.items())
        print(f"{name} layer {layer.name} {layer.shape[0]}x{layer.shape[1]} ({layer.kind}): {layer.elapsed:.1f} s; {stages}")
    print(f"{name}: analyze_model {total:.1f} s in all (capture and discovery included)")
    print(report.summary())
    for layer in report.layers:
        if layer.iterative is not None:
            info = {key: layer.iterative[key] for key in ("undecided_fraction", "not_converged",
                                                         "iterations_median", "recovery_iterations_max")}
            print(f"layer {layer.name} iterative: {info}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for model in MODELS:
            subprocess.run([sys.executable, __file__, model], check=True)
