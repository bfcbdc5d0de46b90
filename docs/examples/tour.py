"""The README's tour as a script that runs as written: ``python docs/examples/tour.py``.

The code below is the README's tour, line for line (the tests check that the two are the
same). Sizes are small, so that the whole script runs in about 15 s on a 2-core machine;
the networks part needs scikit-learn and torch. It writes the report of the digits
network to ``tour-report/`` in the working directory.
"""

import numpy as np
import fastrelu as fr

rng = np.random.default_rng(0)
W = rng.standard_normal((270, 30))                          # m = 270 neurons, n = 30 inputs
X = rng.standard_normal((500, 30))                          # 500 data points in R^30
b = 0.1 * rng.standard_normal(270)                          # the bias of an affine layer W x + b

est = fr.mcbe(W, fr.Sphere(30), 100_000, seed=1)            # Approach A on the unit sphere
est.alpha            # (270,) bias: ReLU(W x - a) is injective at every sample for a <= alpha
est.counts           # how often each row was in a most correlated basis
est.elapsed, est.seed

fr.mcbe(W, fr.Ball(30, radius=2.0), 10_000, seed=1)         # ball, shell, nonnegative parts
fr.mcbe(W, fr.Shell(30, 0.5, 2.0, nonnegative=True), 10_000, seed=1)
fr.mcbe(W, fr.Data(X))                                      # the points of a data set
fr.mcbe(W, fr.Sphere(30), 10_000, margin="covering", seed=1)   # covering-radius correction

layer = fr.ReLULayer(W, est.alpha)                          # ReLU(W x - alpha)
layer = fr.ReLULayer.from_affine(W, b)                      # ReLU(W x + b), i.e. alpha = -b
layer.active_mask(X)                                        # I(x) = {i : <x, w_i> >= alpha_i}

fr.frame_bounds(W); fr.canonical_dual(W); fr.is_frame(W)    # frame operator, Cholesky core

small = rng.standard_normal((20, 4))
fr.pbe(small)                                               # Approach B: exact from the hull's facets
fr.is_omnidirectional(small)                                # does PBE apply?

fr.pointwise_injectivity(layer, X)                          # (N,) do the active rows span R^n?
fr.injectivity_summary(layer, X).summary()                  # fraction, failing points, ranks
fr.check_bias(layer, fr.Sphere(30), 10_000, seed=2)         # the bias on fresh points
fr.verify_injective(small)                                  # exact verdict, zero bias on R^n

fr.relu_power_iteration(W, n_starts=1_000, seed=0).s1       # ReLU singular values (docs/spectral.md)
fr.relu_singular_values(W, 3, n_starts=1_000, seed=0)
fr.gaussian_mean_width(W, seed=0); fr.local_metrics(layer, X)
fr.double_layer(layer); fr.harmonic_prune(W, keep=0.5)

rec = fr.reconstruct(layer, layer(X), "dual")               # or "basis", "frame"
rec.x, rec.cond                                             # inputs, condition number of the active rows
rec.ok                                                      # recovered: rows span and residual within its bound
rec.spans                                                   # the input is determined by the output
layer1, layer2 = layer, fr.ReLULayer(rng.standard_normal((700, 270)))   # a stack of two layers
Y = layer2(layer1(X))
fr.invert([layer1, layer2], Y)                              # through a stack of layers

import torch                                                # fastrelu[torch]
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

digits = load_digits()                                      # bundled with scikit-learn: 1797 8x8 images
X_train, X_test, y_train, y_test = train_test_split(digits.data / 16, digits.target,
                                                    test_size=0.25, random_state=0)
mlp = MLPClassifier((128,), alpha=0.0, max_iter=300, random_state=0)  # no weight decay: docs/reports.md
mlp.fit(X_train, y_train)
torch.manual_seed(0)
torch_sequential = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                       torch.nn.Linear(128, 10))

net = fr.Network.from_sklearn(mlp)                          # or Network.load("model.npz" / ".safetensors" / ".pt")
torch_net = fr.Network.from_torch(torch_sequential)         # Linear/ReLU stacks; fastrelu[torch]
net.forward(X_test); net.hidden_outputs(X_test); net.layer_inputs(X_test)

report = fr.analyze(net, X_test, y=y_test, fit_data=X_train, samples=10_000, seed=0)
print(report.summary())                                     # per layer: injectivity, biases, recovery, s_1, width
report.layers[0].heldout_fraction                           # learned vs data-driven vs ball bias on held-out points
report.auc                                                  # per-point metrics separating correct from wrong
fr.save_report(report, "tour-report")                       # report.json, samples.npz, figures (fastrelu[plot])

cnn = fr.digits_cnn(seed=0)                                 # Conv-BN-ReLU twice, pooling, Linear, in seconds
fr.relu_layers(cnn.model, cnn.X_test[:1])                   # its ReLU layers: the convolutions, batch norm folded
model_report = fr.analyze_model(cnn.model, cnn.X_test[:100], labels=cnn.y_test[:100],
                                samples=2_000, enlarge=None, seed=0)   # each layer on the inputs it receives
model_report.layers[1].channel_fraction_above               # channels whose shared bias is above the estimate
# a layer whose dense rows are over the memory budget is analysed from products with W and W^T:
# for found = fr.relu_layers(model, x)[k] and its inputs X = fr.capture(model, data, [found])[found.name],
# fr.operator_injectivity(found.operator(), found.bias, X) (LOBPCG estimates, docs/theory.md §10.1)
# while training: monitor = fastrelu.torch.InjectivityMonitor(model, enforce=True); after each
# optimizer.step(), monitor.step() keeps every layer injective on recent batches (docs/networks.md)

fr.mcbe(W, fr.enlarge_data(X, 10_000, method="kde", seed=0))   # data-driven MCBE: data plus synthetic points near it
