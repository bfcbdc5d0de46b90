"""ReLU layers of PyTorch models (THEORY §10): discovery, operators, batch-norm folding,
capture, and the per-layer analysis of analyze_model."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch_models import (
    Branching,
    ConvNet,
    FeedForward,
    ResidualMLP,
    feedforward_example,
    randomise_batchnorm,
    seeded,
)

import fastrelu as fr
from fastrelu import FastReluError

SMALL = {"samples": 300, "width_draws": 20, "power_starts": 2, "n_jobs": 1, "enlarge": None}


def _relu_inputs(model, X):
    """The values each ``nn.ReLU`` module of the model receives on ``X`` (by its path),
    as the model computes them: forward pre-hooks, copied before an in-place ReLU."""
    seen, handles = {}, []
    for path, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            def hook(module, inputs, path=path):
                seen.setdefault(path, []).append(inputs[0].detach().clone())
            handles.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(X)
    for handle in handles:
        handle.remove()
    return seen


def _module_outputs(model, X, paths):
    """The outputs of the named modules on ``X`` (copied, not returned, by the hook)."""
    seen, handles = {}, []
    modules = dict(model.named_modules())
    for path in paths:
        def hook(module, inputs, output, path=path):
            seen.setdefault(path, []).append(output.detach().clone())
        handles.append(modules[path].register_forward_hook(hook))
    with torch.no_grad():
        model(X)
    for handle in handles:
        handle.remove()
    return seen


def _dense_conv_brute_force(weight, in_shape, stride, padding, dilation, groups):
    """THEORY §10 written out for a zero-padded Conv2d: row (c, i, j) holds the kernel of
    channel c placed at output position (i, j), truncated at the borders."""
    C_out, C_in_g, kh, kw = weight.shape
    C_in, H, W = in_shape
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out_g = C_out // groups
    dense = np.zeros((C_out, Ho, Wo, C_in, H, W))
    for c, i, j, ci, a, b in itertools.product(range(C_out), range(Ho), range(Wo), range(C_in_g),
                                               range(kh), range(kw)):
        row = i * stride[0] - padding[0] + a * dilation[0]
        col = j * stride[1] - padding[1] + b * dilation[1]
        if 0 <= row < H and 0 <= col < W:
            channel = (c // out_g) * C_in_g + ci
            dense[c, i, j, channel, row, col] += weight[c, ci, a, b]
    return dense.reshape(C_out * Ho * Wo, C_in * H * W)


CONV2D_CASES = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, padding_mode)
    (1, 2, 3, 1, 0, 1, 1, "zeros"),
    (2, 4, 3, 2, 1, 1, 1, "zeros"),
    (4, 4, 3, 1, 2, 2, 2, "zeros"),
    (3, 6, (2, 3), (2, 1), (1, 0), (1, 2), 3, "zeros"),
    (2, 3, 3, 1, 1, 1, 1, "circular"),
    (2, 2, 3, 2, 1, 1, 1, "reflect"),
    (2, 2, 3, 1, 1, 1, 2, "replicate"),
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_dense_rows_match_the_convolution_on_basis_vectors(case):
    C_in, C_out, kernel, stride, padding, dilation, groups, mode = case
    seeded(1)
    conv = nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=mode).double()
    model = nn.Sequential(conv, nn.ReLU())
    shape = (C_in, 7, 6)
    (found,) = fr.relu_layers(model, torch.zeros(1, *shape, dtype=torch.float64))
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    with torch.no_grad():
        columns = (conv(basis) - conv.bias.reshape(1, -1, 1, 1)).reshape(n, -1)
    W = found.layer.weight
    np.testing.assert_allclose(W, columns.numpy().T, rtol=0, atol=1e-14)
    if mode == "zeros":
        pair = lambda value: value if isinstance(value, tuple) else (value, value)  # noqa: E731
        brute = _dense_conv_brute_force(conv.weight.detach().numpy(), shape, pair(stride),
                                        pair(padding), pair(dilation), groups)
        np.testing.assert_allclose(W, brute, rtol=0, atol=1e-14)
    # the shared bias: alpha_(c, p) = -b_c at every position p
    positions = found.positions
    np.testing.assert_array_equal(found.layer.bias, np.repeat(-conv.bias.detach().numpy(), positions))
    assert found.kind == "conv2d" and found.channels == C_out and found.input_shape == shape
    # the matrix-free operator is the same map
    operator = found.operator()
    v, u = np.random.default_rng(0).standard_normal(n), np.random.default_rng(1).standard_normal(found.m)
    np.testing.assert_allclose(operator.matvec(v), W @ v, atol=1e-12)
    np.testing.assert_allclose(operator.rmatvec(u), W.T @ u, atol=1e-12)
    V = np.random.default_rng(2).standard_normal((n, 3))
    np.testing.assert_allclose(operator @ V, W @ V, atol=1e-12)
    np.testing.assert_allclose(operator.H @ (W @ V), W.T @ (W @ V), atol=1e-11)


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_conv1d_dense_rows(mode):
    seeded(2)
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, padding_mode=mode).double()
    model = nn.Sequential(conv, nn.BatchNorm1d(6).double(), nn.ReLU())
    randomise_batchnorm(model).eval()
    (found,) = fr.relu_layers(model, torch.zeros(1, 4, 11, dtype=torch.float64))
    n = 44
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 4, 11)
    with torch.no_grad():
        zero = model[1](conv(torch.zeros(1, 4, 11, dtype=torch.float64)))
        columns = (model[1](conv(basis)) - zero).reshape(n, -1)
    np.testing.assert_allclose(found.layer.weight, columns.numpy().T, atol=1e-13)
    assert found.kind == "conv1d" and found.batchnorm == "1"


def test_folded_batchnorm_equals_conv_then_batchnorm():
    seeded(3)
    model = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                                              nn.Flatten(), nn.Linear(5 * 36, 7), nn.BatchNorm1d(7),
                                              nn.ReLU()))
    model.eval()
    X = torch.randn(40, 3, 6, 6)
    found = fr.relu_layers(model, X[:1])
    assert [(layer.name, layer.batchnorm) for layer in found] == [("0", "1"), ("4", "5")]
    # THEORY §10: W' = diag(s) W, b' = s (b - mu) + beta with s = gamma / sqrt(var + eps)
    bn = model[1]
    s = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).numpy()
    conv_only = fr.relu_layers(nn.Sequential(model[0], nn.ReLU()), X[:1])[0]
    P = 36
    np.testing.assert_allclose(found[0].layer.weight, np.repeat(s, P)[:, None] * conv_only.layer.weight,
                               rtol=1e-12, atol=1e-15)
    bias, mean = model[0].bias.detach().double().numpy(), bn.running_mean.double().numpy()
    b_folded = s * (bias - mean) + bn.bias.detach().double().numpy()
    np.testing.assert_allclose(found[0].layer.bias, -np.repeat(b_folded, P), rtol=1e-12, atol=1e-15)
    # in float64 the fold equals conv-then-BN to 1e-12; the float32 model's to 1e-5
    seen = _relu_inputs(model, X)
    inputs = fr.capture(model, X, found)
    for layer, path in zip(found, ("2", "6")):
        expected = seen[path][0].reshape(40, -1).double().numpy()
        scale = np.abs(expected).max()
        assert np.abs(layer.pre_activation(inputs[layer.name]) - expected).max() <= 1e-5 * scale
    model64 = model.double()
    X64 = X.double()
    seen = _relu_inputs(model64, X64)
    found64 = fr.relu_layers(model64, X64[:1])
    inputs = fr.capture(model64, X64, found64)
    for layer, path in zip(found64, ("2", "6")):
        expected = seen[path][0].reshape(40, -1).numpy()
        scale = np.abs(expected).max()
        assert np.abs(layer.pre_activation(inputs[layer.name]) - expected).max() <= 1e-12 * scale
        dense = inputs[layer.name] @ layer.layer.weight.T - layer.layer.bias
        assert np.abs(dense - expected).max() <= 1e-12 * scale


def _example_models():
    seeded(4)
    cnn = randomise_batchnorm(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                            nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6),
                                            nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
                                            nn.Linear(24, 10)))
    return {
        "cnn": (cnn, torch.rand(30, 1, 8, 8), {"0": ("2", None), "3": ("5", None)}),
        "residual": (ResidualMLP(), torch.randn(30, 6), {"stem": (None, "stem"), "fc1": (None, "fc1")}),
        "feedforward": (FeedForward(16, 64), torch.randn(5, 7, 16), {"fc1": ("act", None)}),
        "convnet": (randomise_batchnorm(ConvNet()), torch.randn(6, 2, 9, 9),
                    {"conv": ("act", None), "line": (None, "line")}),
    }


@pytest.mark.parametrize("which", ["cnn", "residual", "feedforward", "convnet"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pre_activation_equals_the_models_own_pre_relu_values(which, dtype):
    model, X, expected = _example_models()[which]
    model = model.to(dtype).eval()
    X = X.to(dtype)
    found = fr.relu_layers(model, X[:1])
    assert found.names() == list(expected)
    inputs = fr.capture(model, X, found)
    relu_seen = _relu_inputs(model, X)
    module_seen = _module_outputs(model, X, [path for _, path in expected.values() if path])
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for layer in found:
        relu_path, module_path = expected[layer.name]
        seen = relu_seen[relu_path][0] if relu_path else module_seen[module_path][0]
        seen = seen.double().numpy()
        values = layer.pre_activation(inputs[layer.name])
        assert values.shape == (inputs[layer.name].shape[0], layer.m)
        seen = seen.reshape(values.shape)
        assert np.abs(values - seen).max() <= tolerance * np.abs(seen).max()


def test_reasons_for_relus_that_are_not_layers_of_one_affine_map():
    found = fr.relu_layers(ResidualMLP(), torch.randn(2, 6))
    assert found.method == "fx"
    (where, reason), = found.others
    assert where == "F.relu" and "residual sum" in reason and "add" in reason
    found = fr.relu_layers(randomise_batchnorm(ConvNet()), torch.randn(2, 2, 9, 9))
    (where, reason), = found.others
    assert where == "F.relu" and "MaxPool2d 'pool'" in reason


@pytest.mark.parametrize("which", ["cnn", "residual", "feedforward", "convnet"])
def test_fx_and_hooks_find_the_same_layers(which):
    model, X, _ = _example_models()[which]
    by_fx = fr.relu_layers(model, X[:2], method="fx")
    by_hooks = fr.relu_layers(model, X[:2], method="hooks")
    assert by_fx.method == "fx" and by_hooks.method == "hooks"
    assert by_fx.names() == by_hooks.names()
    assert [(a.batchnorm, a.relu, a.kind) for a in by_fx] == [(b.batchnorm, b.relu, b.kind) for b in by_hooks]
    assert [reason for _, reason in by_fx.others] == [reason for _, reason in by_hooks.others]
    for a, b in zip(by_fx, by_hooks):
        np.testing.assert_array_equal(a.layer.weight, b.layer.weight)


def test_models_that_do_not_trace_are_read_by_hooks():
    model = Branching()
    found = fr.relu_layers(model, torch.randn(3, 4))
    assert found.method == "hooks" and found.trace_error
    assert found.names() == ["a", "b"]
    assert [layer.relu for layer in found] == ["torch.relu", "F.relu"]
    with pytest.raises(FastReluError, match="must trace with torch.fx.*method='hooks'"):
        fr.relu_layers(model, torch.randn(3, 4), method="fx")


def test_a_module_called_twice_gives_one_layer_per_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            return torch.relu(self.fc(torch.relu(self.fc(x))))

    model, X = Twice(), torch.randn(9, 5)
    found = fr.relu_layers(model, X[:1])
    assert found.names() == ["fc@0", "fc@1"]
    inputs = fr.capture(model, X, found)
    with torch.no_grad():
        first = torch.relu(model.fc(X))
    np.testing.assert_allclose(inputs["fc@0"], X.double().numpy())
    np.testing.assert_allclose(inputs["fc@1"], first.double().numpy())


def test_feedforward_block_reads_its_layernorm_and_tokens():
    seeded(5)
    model = FeedForward(d=16, hidden=64)
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.normal_()
    X = torch.randn(4, 7, 16)
    (found,) = fr.relu_layers(model, X[:1])
    assert found.tokens == 7 and found.input_shape == (16,) and found.layernorm.name == "norm"
    Q = found.layernorm.basis()
    np.testing.assert_allclose(Q.T @ Q, np.eye(15), atol=1e-14)
    np.testing.assert_allclose(Q.T @ np.ones(16), 0, atol=1e-14)
    # every LayerNorm output is gamma * u + beta with u on the hyperplane's sphere of radius
    # sqrt(d var / (var + eps)) <= sqrt(d)
    tokens = fr.capture(model, X, [found])["fc1"]
    assert tokens.shape == (28, 16)
    ln = found.layernorm
    U = (tokens - ln.beta) / ln.gamma
    np.testing.assert_allclose(U.sum(axis=1), 0, atol=1e-5)
    radius = np.linalg.norm(U @ Q, axis=1)
    assert np.all(radius <= math.sqrt(16) * (1 + 1e-6)) and np.all(radius > math.sqrt(16) * 0.99)


def _torch_copy_of(network):
    """A float64 torch.nn.Sequential computing the same map as a fastrelu Network."""
    modules = []
    for layer in network.hidden:
        linear = nn.Linear(layer.weight.shape[1], layer.weight.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weight.copy()))
            linear.bias.copy_(torch.from_numpy(-layer.bias))
        modules += [linear, nn.ReLU()]
    out = nn.Linear(network.output.weight.shape[1], network.output.weight.shape[0], dtype=torch.float64)
    with torch.no_grad():
        out.weight.copy_(torch.from_numpy(network.output.weight.copy()))
        out.bias.copy_(torch.from_numpy(-network.output.bias))
    return nn.Sequential(*modules, out)


def _assert_close(a, b, where):
    """JSON-like values equal, numbers to rounding (the two routes sum in other orders)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, str) or a is None:
        assert a == b, where
    else:
        np.testing.assert_allclose(np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-9,
                                   atol=1e-12, err_msg=where)


def test_analyze_model_on_the_digits_mlp_equals_analyze():
    digits = fr.digits_model(hidden=(80, 96), seed=0, max_iter=60)
    model = _torch_copy_of(digits.network)
    X, y = digits.X_test[:90], digits.y_test[:90]
    settings = dict(SMALL, enlarge="kde", enlarge_points=200, seed=3)
    by_network = fr.analyze(digits.network, X, y=y, **settings)
    by_model = fr.analyze_model(model, X, labels=y, **settings)
    assert [layer.name for layer in by_model.layers] == ["0", "2"]
    assert by_model.accuracy == by_network.accuracy
    for k, (a, b) in enumerate(zip(by_network.layers, by_model.layers)):
        first, second = a.to_dict(), b.to_dict()
        for key in ("elapsed", "stage_seconds", "name", "kind", "input_shape"):
            first.pop(key), second.pop(key)
        if k > 0:  # analyze recovers the network input, analyze_model the layer's own input
            for key in ("reconstructed_fraction", "reconstruction_error"):
                first.pop(key), second.pop(key)
        assert first.keys() == second.keys()
        for key in first:
            _assert_close(first[key], second[key], key)
    assert by_model.layers[1].reconstructed_fraction == by_model.layers[1].injective_fraction
    for key in by_network.samples:
        if ".reconstruct" in key and not key.startswith("layer0"):
            continue
        np.testing.assert_allclose(np.asarray(by_network.samples[key], dtype=float),
                                   np.asarray(by_model.samples[key], dtype=float), rtol=1e-9,
                                   atol=1e-10, err_msg=key)  # errors of ~1e-13 are rounding


def test_analyze_model_on_a_cnn_gives_channel_estimates_and_restores_the_model():
    seeded(6)
    model, X, _ = _example_models()["cnn"]
    model.train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    report = fr.analyze_model(model, X, **SMALL)
    assert model.training and all(module.training for module in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert report.parameters["model_was_training"] is True
    assert [layer.name for layer in report.layers] == ["0", "3"]
    layer = report.layers[1]
    assert layer.kind == "conv2d" and layer.input_shape == (4, 8, 8) and layer.shape == (96, 256)
    for name, estimate in layer.estimates.items():
        channel = layer.channel_estimates[name]
        np.testing.assert_array_equal(channel, estimate.reshape(6, 16).min(axis=1))
        shared = layer.bias.reshape(6, 16)[:, 0]
        assert layer.channel_fraction_above[name] == np.mean(shared > channel)
    assert set(layer.stage_seconds) == {"estimates", "injectivity", "recovery", "local metrics",
                                        "s_1", "width"}
    import json
    json.dumps(report.to_dict())


def test_analyze_model_layernorm_sphere_analysis():
    seeded(7)
    model = FeedForward(d=8, hidden=32)
    X = torch.randn(12, 5, 8)
    report = fr.analyze_model(model, X, **SMALL)
    (layer,) = report.layers
    assert layer.name == "fc1" and layer.shape == (32, 8)
    assert report.samples["layer0.injective"].shape == (60,)
    sphere = layer.sphere
    assert sphere["shape"] == (32, 7) and sphere["radius"] == pytest.approx(math.sqrt(8))
    # the estimate, in the layer's coordinates, is MCBE on the sphere of the rows W diag(gamma) Q
    (found,) = fr.relu_layers(model, X[:1])
    ln = found.layernorm
    W = found.layer.weight
    rows = (W * ln.gamma) @ ln.basis()
    direct = fr.mcbe(rows, fr.Sphere(7, radius=math.sqrt(8)), 300, seed=0, n_jobs=1).alpha
    np.testing.assert_allclose(layer.estimates["layernorm_sphere"], direct + W @ ln.beta)
    assert layer.fraction_above["layernorm_sphere"] == sphere["fraction_above"]
    assert 0 <= sphere["injective_fraction"] <= 1 and 0 <= sphere["heldout_fraction"] <= 1
    # tokens of one sequence are all fitted or all held out
    held = report.samples["heldout"]
    assert held.shape == (12,)


def test_capture_from_a_dataloader_and_to_memory_maps(tmp_path):
    seeded(8)
    model, X, _ = _example_models()["cnn"]
    found = fr.relu_layers(model, X[:1])
    in_memory = fr.capture(model, X.numpy(), found, batch_size=7)
    dataset = torch.utils.data.TensorDataset(X, torch.zeros(30))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    streamed = fr.capture(model, loader, found, out_dir=tmp_path)
    for name, values in in_memory.items():
        assert values.dtype == np.float64 and values.shape == (30, found[found.names().index(name)].n)
        assert isinstance(streamed[name], np.memmap)
        np.testing.assert_array_equal(np.asarray(streamed[name]), values)
        assert (tmp_path / f"{name}.npy").exists()


def test_bad_input_gets_clear_errors(monkeypatch):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with pytest.raises(FastReluError, match=r"must be a torch.nn.Module, or an ONNX model .*Got dict"):
        fr.relu_layers({}, torch.zeros(1, 4))
    with pytest.raises(FastReluError, match="apply at least one ReLU"):
        fr.relu_layers(nn.Sequential(nn.Linear(4, 2)), torch.zeros(1, 4))
    with pytest.raises(FastReluError, match=r"'example' parameter must hold inputs the model runs on. Got inputs of shape \(5,\) each \(tried on a batch of shape \(1, 5\)\)"):
        fr.relu_layers(model, torch.zeros(1, 5))
    with pytest.raises(FastReluError, match="'method' parameter"):
        fr.relu_layers(model, torch.zeros(1, 4), method="trace")
    with pytest.raises(FastReluError, match="TorchScript"):
        fr.relu_layers(torch.jit.script(model), torch.zeros(1, 4))
    with pytest.raises(FastReluError, match="meta device"):
        fr.relu_layers(nn.Sequential(nn.Linear(4, 8, device="meta"), nn.ReLU()), torch.zeros(1, 4))
    found = fr.relu_layers(model, torch.zeros(1, 4))
    with pytest.raises(FastReluError, match=r"'data' parameter must hold inputs the model runs on. Got a batch of shape \(3, 6\)"):
        fr.capture(model, torch.zeros(3, 6), found)
    with pytest.raises(FastReluError, match="'layers' parameter must name ReLU layers of the model: \\['0'\\]. Got \\['fc'\\]"):
        fr.analyze_model(model, torch.randn(10, 4), layers=["fc"], **SMALL)
    with pytest.raises(FastReluError, match="'labels' parameter must be a 1-D array of 10"):
        fr.analyze_model(model, torch.randn(10, 4), labels=np.zeros(9), **SMALL)
    with pytest.raises(FastReluError, match="'data' parameter must be a tensor, an array or a DataLoader"):
        fr.capture(model, 5, found)
    # a layer whose dense matrix is over the budget is analysed matrix-free; when not even
    # that fits, the error says why
    monkeypatch.setenv("FASTRELU_MEMORY_LIMIT", "1000")
    found = fr.relu_layers(model, torch.zeros(1, 4))
    assert found[0].layer is None and found[0].dense_bytes == 8 * 8 * 4
    with pytest.raises(FastReluError, match="must have a ReLU layer whose analysis fits the memory and time budget. Got none: .*fits in memory"):
        fr.analyze_model(model, torch.randn(10, 4), **SMALL)


def test_batchnorm_without_running_statistics_is_not_folded():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.ReLU(),
                          nn.Linear(6, 12), nn.ReLU())
    found = fr.relu_layers(model, torch.randn(3, 4))
    assert found.names() == ["3"]
    (where, reason), = found.others
    assert where == "2" and "track_running_stats=False" in reason


def test_a_model_without_affine_modules_has_no_layers_to_analyse():
    class Functional(nn.Module):
        """F.linear on bare parameters, and control flow: nothing to trace, no module
        to hook."""

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(8, 4))

        def forward(self, x):
            if x.sum() > -1e9:
                x = x + 0.0
            return torch.relu(F.linear(x, self.weight))

    found = fr.relu_layers(Functional(), torch.randn(2, 4))
    assert found.method == "hooks" and len(found) == 0
    (where, reason), = found.others
    assert where == "torch.relu" and "the output of linear" in reason and "Linear/Conv1d/Conv2d" in reason
    with pytest.raises(FastReluError, match="must have a ReLU layer that fastrelu can analyse. Got none"):
        fr.analyze_model(Functional(), torch.randn(10, 4), **SMALL)


def test_a_trained_feedforward_block_on_the_layernorm_sphere():
    example = feedforward_example
    block, A, loss = example.train(d=12, hidden=48, steps=150, seed=0)
    tokens = torch.randn(8, 6, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        start = torch.nn.functional.mse_loss(tokens, tokens + torch.tanh(tokens @ A.T))
    assert loss < 0.5 * float(start)  # it learned something
    report = fr.analyze_model(block, tokens, **SMALL)
    (layer,) = report.layers
    assert layer.name == "fc1" and layer.sphere["shape"] == (48, 11)
    (found,) = fr.relu_layers(block, tokens[:1])
    inputs = fr.capture(block, tokens, [found])["fc1"]
    with torch.no_grad():
        expected = block.fc1(block.norm(tokens)).reshape(-1, 48).double().numpy()
    assert np.abs(found.pre_activation(inputs) - expected).max() <= 1e-5 * np.abs(expected).max()


class _InplaceResidual(nn.Module):
    """``x += fc2(relu(fc1(x)))``: fc1's input is changed in place after fc1 read it, and
    the residual ``h.add_(x)`` before a ReLU makes it not a layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 6)
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 6)
        self.fc3 = nn.Linear(6, 6)

    def forward(self, x):
        x = self.stem(x)
        x += self.fc2(F.relu(self.fc1(x)))
        h = self.fc3(x)
        h.add_(x)
        return torch.relu(h)


@pytest.mark.parametrize("method", ["fx", "hooks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_operations(method, dtype):
    seeded(9)
    model = _InplaceResidual().to(dtype)
    X = torch.randn(5, 4, dtype=dtype)
    found = fr.relu_layers(model, X[:1], method=method)
    assert found.names() == ["fc1"]  # fc3's output is changed by add_ before its ReLU
    (where, reason), = found.others
    assert where == "torch.relu" and ("add" in reason)
    inputs = fr.capture(model, X, found)
    with torch.no_grad():
        expected = model.stem(X).double().numpy()
    np.testing.assert_allclose(inputs["fc1"], expected, rtol=1e-12)  # a copy, taken when fc1 ran


def test_passthrough_modules_and_modules_traced_into():
    seeded(10)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 16), nn.Identity(), nn.ReLU())
    X = torch.randn(3, 4)
    assert fr.relu_layers(model, X, method="fx").names() == fr.relu_layers(model, X, method="hooks").names() == ["0", "3"]

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.enc(x))

    found = fr.relu_layers(Encoder(), torch.randn(5, 2, 8))  # the ReLU inside PyTorch's own module
    assert found.names() == ["enc.linear1"] and found[0].tokens == 2

    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return torch.relu(self.fc(input=x))

    for method in ("fx", "hooks"):
        found = fr.relu_layers(Keyword(), torch.randn(2, 3), method=method)
        assert found.names() == ["fc"]


def test_capture_leaves_no_trace_of_failed_runs(tmp_path):
    seeded(11)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    other = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU())
    found = fr.relu_layers(other, torch.zeros(1, 2))
    with pytest.raises(FastReluError, match="must come from this model"):
        fr.capture(model, torch.zeros(3, 2), found)
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())
    found = fr.relu_layers(model, torch.zeros(1, 2))

    def batches():
        yield torch.full((2, 2), 100.0)
        yield torch.zeros(2, 3)  # the model refuses this batch

    with pytest.raises(FastReluError, match="must hold inputs the model runs on"):
        fr.capture(model, batches(), found, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    again = fr.capture(model, torch.zeros(3, 2), found, out_dir=tmp_path)
    np.testing.assert_array_equal(np.asarray(again["0"]), np.zeros((3, 2)))
    assert all(not module._forward_hooks for module in model.modules())


def test_capture_never_changes_the_callers_data_and_counts_tokens(monkeypatch):
    class Scales(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 5)

        def forward(self, x):
            x.mul_(2.0)
            return torch.relu(self.fc(x))

    data = np.ones((4, 3), dtype=np.float32)
    found = fr.relu_layers(Scales(), data[:1])
    fr.capture(Scales(), data, found)
    np.testing.assert_array_equal(data, 1.0)
    # the memory check counts every token of a sequence model
    model = FeedForward(d=8, hidden=16)
    tokens = torch.randn(100, 50, 8)
    (layer,) = fr.relu_layers(model, tokens[:1])
    monkeypatch.setenv("FASTRELU_MEMORY_LIMIT", str(8 * 100 * 50 * 8 - 1))
    with pytest.raises(FastReluError, match="Pass out_dir="):
        fr.capture(model, tokens, [layer])


def test_an_example_without_a_batch_axis_is_refused():
    with pytest.raises(FastReluError, match=r"must be a batch of model inputs .* Got shape \(4,\)"):
        fr.relu_layers(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.zeros(4))


def test_analyze_model_errors_name_the_argument_and_over_budget_layers_are_left_out(monkeypatch):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 16), nn.ReLU())
    with pytest.raises(FastReluError, match=r"'data' parameter must hold inputs the model runs on. Got inputs of shape \(5,\) each"):
        fr.analyze_model(model, torch.randn(10, 5), **SMALL)
    with pytest.raises(FastReluError, match=r"'fit_data' parameter must hold inputs the model runs on"):
        fr.analyze_model(model, torch.randn(10, 4), fit_data=torch.randn(10, 5), **SMALL)
    with pytest.raises(FastReluError, match=r"Got the path 'model.pt'; load the module first"):
        fr.analyze_model("model.pt", torch.randn(10, 4), **SMALL)
    # a layer whose analysis does not fit the budget is named, the others are analysed
    import fastrelu._networks.model_report as model_report
    from fastrelu._core.errors import BudgetError

    real = model_report.layer_report

    def refuse_the_second(k, *args, **kwargs):
        if k == 1:
            raise BudgetError("The 'weight' parameter must give a working set that fits in memory. Got ...")
        return real(k, *args, **kwargs)

    monkeypatch.setattr(model_report, "layer_report", refuse_the_second)
    report = fr.analyze_model(model, torch.randn(20, 4), labels=np.zeros(20, dtype=int), **SMALL)
    assert [layer.name for layer in report.layers] == ["0"]
    assert "working set" in report.parameters["not_analysed"]["2"]
    assert report.accuracy is not None and "layer1.n_active" not in report.samples


def test_a_layer_over_the_memory_budget_is_analysed_matrix_free(monkeypatch):
    """The same convolution analysed from its dense rows and, with a memory budget below
    them, from products with W and W^T: the iterative estimates agree with the exact
    numbers, and what needs the rows is skipped with the reason."""
    seeded(4)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 16 * 16, 5), nn.ReLU())
    randomise_batchnorm(model).eval()
    X = torch.randn(16, 2, 16, 16)
    dense = fr.analyze_model(model, X, layers=["0"], **SMALL)
    monkeypatch.setenv("FASTRELU_MEMORY_LIMIT", str(4 * 8 * 1536 * 512 - 1))  # W: 1536 x 512
    (found,) = [layer for layer in fr.relu_layers(model, X[:1]) if layer.name == "0"]
    assert found.layer is None
    free = fr.analyze_model(model, X, layers=["0"], **{**SMALL, "n_jobs": None})
    assert free.parameters["not_analysed"] == {}
    (d,), (f,) = dense.layers, free.layers
    assert d.iterative is None and f.iterative is not None
    assert f.shape == d.shape == (1536, 512) and f.kind == "conv2d" and f.name == "0"
    # exact in both: activity, the widths (the same draws on the same outputs)
    assert f.dead == d.dead
    assert f.width_in == d.width_in and f.width_out == pytest.approx(d.width_out, rel=1e-12)
    np.testing.assert_array_equal(free.samples["layer0.n_active"], dense.samples["layer0.n_active"])
    # the estimates: sigma_min / sigma_max of the active rows, injectivity, recovery
    for metric in ("sigma_min", "sigma_max"):
        np.testing.assert_allclose(free.samples[f"layer0.{metric}"], dense.samples[f"layer0.{metric}"],
                                   rtol=1e-7)
    assert f.injective_fraction == d.injective_fraction > 0
    assert f.heldout_fraction["learned"] == d.heldout_fraction["learned"]
    assert f.stable_fraction == d.stable_fraction
    assert f.reconstructed_fraction == d.reconstructed_fraction
    assert f.reconstruction_error < 1e-6
    assert f.spectral_norm == pytest.approx(d.spectral_norm, rel=1e-8)
    np.testing.assert_allclose(f.frame_bounds, d.frame_bounds, rtol=1e-7)
    assert f.iterative["undecided_fraction"] == 0 and f.iterative["not_converged"] == 0
    assert set(f.stage_seconds) == {"frame bounds", "injectivity", "recovery", "width"}
    assert set(f.iterative["estimated"]) >= {"injective_fraction", "spectral_norm", "frame_bounds"}
    # what needs the rows is skipped, with the reason
    assert np.isnan(f.s1) and f.estimates == {} and f.fraction_above == {}
    for name in ("data", "ball", "s_1"):
        assert "matrix-free" in f.skipped[name]
    assert np.all(np.isnan(free.samples["layer0.width"]))
    # the report writes (JSON, figures)
    json = free.to_dict()
    assert json["layers"][0]["iterative"]["rank_tol"] == 1e-6
    assert "0*" in free.summary() and "iterative estimates" in free.summary()


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(7, 9), nn.BatchNorm1d(9), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=1, padding_mode="circular"),
                          nn.BatchNorm1d(4), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding="same", dilation=2), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv1d(2, 4, 3, padding="valid"), nn.ReLU()),
])
def test_the_operator_and_its_adjoint_are_the_dense_rows(make):
    seeded(6)
    model = randomise_batchnorm(make().double()).eval()
    shape = {nn.Linear: (7,), nn.Conv1d: (2, 9), nn.Conv2d: (2, 7, 7)}[type(model[0])]
    (found,) = fr.relu_layers(model, torch.zeros(1, *shape, dtype=torch.float64))
    W, operator = found.layer.weight, found.operator()
    rng = np.random.default_rng(0)
    V, U = rng.standard_normal((found.n, 5)), rng.standard_normal((found.m, 5))
    np.testing.assert_allclose(operator.matmat(V), W @ V, atol=1e-13)
    np.testing.assert_allclose(operator.rmatmat(U), W.T @ U, atol=1e-13)


def test_points_given_as_nested_lists_are_points_not_batches():
    seeded(7)
    model = nn.Sequential(nn.Linear(2, 6), nn.ReLU())
    points = [[1.0, 2.0], [3.0, -4.0], [0.5, 0.25]]
    found = fr.relu_layers(model, torch.zeros(1, 2))
    captured = fr.capture(model, points, found)
    np.testing.assert_array_equal(captured["0"], np.array(points))
    report = fr.analyze_model(model, points, **SMALL)
    assert report.parameters["n_points"] == 3
