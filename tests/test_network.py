import copy
import pickle
import sys
import warnings

import numpy as np
import pytest

import fastrelu as fr
from fastrelu import FastReluError, Network, ReLULayer

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402

TOL = 1e-12


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def _affine_forward(weights, biases, X, last_linear):
    """The deep-learning forward pass ``h -> ReLU(h W^T + b)`` written out."""
    h = X
    for k, (W, b) in enumerate(zip(weights, biases)):
        h = h @ W.T + b
        if not (last_linear and k == len(weights) - 1):
            h = np.maximum(h, 0.0)
    return h


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.fixture(scope="module")
def classifier(digits):
    X, y = digits
    return _fit(MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=30, random_state=0), X, y)


def _random_network(rng, widths, last_linear):
    layers = [ReLULayer(rng.standard_normal((m, n)), rng.standard_normal(m)) for n, m in zip(widths, widths[1:])]
    return Network(layers[:-1], layers[-1]) if last_linear else Network(layers)


# --------------------------------------------------------------------- scikit-learn


def test_sklearn_classifier_logits_and_probabilities(classifier, digits):
    X, _ = digits
    net = Network.from_sklearn(classifier)
    assert net.widths == (64, 32, 16, 10) and net.depth == 2 and net.input_dim == 64
    assert net.output is not None
    logits = net.forward(X)
    # scikit-learn's own forward pass without its output activation
    if hasattr(classifier, "_forward_pass_fast"):
        raw = copy.deepcopy(classifier)
        raw.out_activation_ = "identity"
        np.testing.assert_allclose(logits, raw._forward_pass_fast(X), rtol=0, atol=TOL)
    np.testing.assert_allclose(_softmax(logits), classifier.predict_proba(X), rtol=0, atol=TOL)
    np.testing.assert_array_equal(classifier.classes_[logits.argmax(axis=1)], classifier.predict(X))


def test_sklearn_binary_classifier_logistic_output(digits):
    X, y = digits
    model = _fit(MLPClassifier(hidden_layer_sizes=(12,), max_iter=30, random_state=1), X, y % 2)
    net = Network.from_sklearn(model)
    assert net.widths == (64, 12, 1)
    p = 1.0 / (1.0 + np.exp(-net.forward(X)[:, 0]))
    np.testing.assert_allclose(p, model.predict_proba(X)[:, 1], rtol=0, atol=TOL)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_sklearn_regressor_three_hidden_layers(n_outputs):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 7))
    y = np.sin(X[:, :n_outputs]) + X[:, 1:n_outputs + 1] ** 2
    model = _fit(MLPRegressor(hidden_layer_sizes=(20, 15, 10), max_iter=40, random_state=0), X, y.ravel() if n_outputs == 1 else y)
    net = Network.from_sklearn(model)
    assert net.widths == (7, 20, 15, 10, n_outputs) and net.depth == 3
    prediction = model.predict(X).reshape(len(X), n_outputs)
    scale = max(1.0, np.abs(prediction).max())
    np.testing.assert_allclose(net.forward(X), prediction, rtol=0, atol=TOL * scale)
    # the layers follow fastrelu's convention: weight = coefs_.T, bias = -intercepts_
    np.testing.assert_array_equal(net.hidden[0].weight, model.coefs_[0].T)
    np.testing.assert_array_equal(net.hidden[0].bias, -model.intercepts_[0])


def test_sklearn_non_relu_activation_is_named():
    X = np.random.default_rng(3).standard_normal((40, 4))
    model = _fit(MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", max_iter=5, random_state=0), X, X[:, 0])
    with pytest.raises(FastReluError, match="MLPRegressor with activation 'tanh' in its hidden layers instead; fastrelu analyses ReLU networks only"):
        Network.from_sklearn(model)


def test_sklearn_unfitted_and_wrong_model():
    with pytest.raises(FastReluError, match="unfitted MLPClassifier"):
        Network.from_sklearn(MLPClassifier())
    with pytest.raises(FastReluError, match="MLPClassifier or MLPRegressor. Got dict instead"):
        Network.from_sklearn({})


# --------------------------------------------------------------------- evaluation


def test_hidden_outputs_and_layer_inputs():
    rng = np.random.default_rng(4)
    net = _random_network(rng, (5, 8, 6, 3), last_linear=True)
    X = rng.standard_normal((10, 5))
    h1 = net.hidden[0](X)
    h2 = net.hidden[1](h1)
    outputs = net.hidden_outputs(X)
    assert len(outputs) == 2 and outputs[0].shape == (10, 8) and outputs[1].shape == (10, 6)
    np.testing.assert_array_equal(outputs[0], h1)
    np.testing.assert_array_equal(outputs[1], h2)
    inputs = net.layer_inputs(X)
    assert len(inputs) == 2
    np.testing.assert_array_equal(inputs[0], X)
    np.testing.assert_array_equal(inputs[1], h1)
    np.testing.assert_allclose(net.forward(X), net.output.pre_activation(h2), rtol=0, atol=TOL)
    # one sample in, one sample out
    np.testing.assert_allclose(net.forward(X[3]), net.forward(X)[3], rtol=0, atol=TOL)
    assert [h.shape for h in net.hidden_outputs(X[3])] == [(8,), (6,)]
    assert [h.shape for h in net.layer_inputs(X[3])] == [(5,), (8,)]
    assert repr(net) == "Network(widths=(5, 8, 6, 3), linear_output=True)"


def test_network_without_output_returns_last_activations():
    rng = np.random.default_rng(5)
    net = _random_network(rng, (4, 9, 20), last_linear=False)
    X = rng.standard_normal((7, 4))
    assert net.output is None and net.widths == (4, 9, 20)
    np.testing.assert_array_equal(net.forward(X), net.hidden_outputs(X)[-1])
    # hidden layers feed fastrelu's layer tools directly
    result = fr.invert(net.hidden, net.forward(X))
    assert result.x.shape == X.shape


def test_wrong_data_width():
    net = _random_network(np.random.default_rng(6), (4, 6, 2), last_linear=True)
    with pytest.raises(FastReluError, match=r"must have 4 columns \(the network's input dimension\)\. Got X\.shape=\(3, 5\)"):
        net.forward(np.zeros((3, 5)))
    with pytest.raises(FastReluError, match="'X' parameter must hold real numbers"):
        net.forward(np.zeros((3, 4), dtype=complex))
    with pytest.raises(FastReluError, match=r"must have 4 entries .* Got X\.shape=\(3,\)"):
        net.hidden_outputs(np.zeros(3))
    with pytest.raises(FastReluError, match=r"must have 4 columns"):
        net.layer_inputs(np.zeros((2, 3)))
    with pytest.raises(FastReluError, match="finite"):
        net.forward(np.full((1, 4), np.nan))


def test_constructor_checks_the_chain():
    rng = np.random.default_rng(7)
    a, b = ReLULayer(rng.standard_normal((6, 4))), ReLULayer(rng.standard_normal((3, 5)))
    with pytest.raises(FastReluError, match=r"hidden\[0\]\.shape=\(6, 4\) and hidden\[1\]\.shape=\(3, 5\)"):
        Network([a, b])
    with pytest.raises(FastReluError, match=r"output\.shape=\(3, 5\) after hidden\[0\]\.shape=\(6, 4\)"):
        Network([a], b)
    with pytest.raises(FastReluError, match="non-empty sequence of fastrelu.ReLULayer"):
        Network([])
    assert Network(a).depth == 1


# --------------------------------------------------------------------- .npz


@pytest.mark.parametrize("last_linear", [True, False])
def test_npz_round_trip(tmp_path, last_linear):
    rng = np.random.default_rng(8)
    net = _random_network(rng, (6, 9, 7, 4), last_linear)
    path = tmp_path / "net.npz"
    net.save_npz(path)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["bias_0", "bias_1", "bias_2", "linear_output", "weight_0", "weight_1", "weight_2"]
        assert bool(archive["linear_output"]) is last_linear
    loaded = Network.load(path)
    assert loaded.widths == net.widths and (loaded.output is None) == (net.output is None)
    X = rng.standard_normal((20, 6))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))
    # the keyword overrides the marker
    assert Network.from_npz(path, last_linear=not last_linear).depth == (3 if last_linear else 2)


def test_npz_hand_written_subtracted_bias_float32(tmp_path):
    rng = np.random.default_rng(9)
    W0, W1 = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((2, 5)).astype(np.float32)
    a0, a1 = rng.standard_normal(5).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    np.savez(tmp_path / "net.npz", weight_0=W0, bias_0=a0, weight_1=W1, bias_1=a1)
    net = Network.from_npz(tmp_path / "net.npz")
    assert net.output is None and net.hidden[0].weight.dtype == np.float64
    X = rng.standard_normal((4, 3))
    expected = np.maximum(np.maximum(X @ W0.T.astype(float) - a0, 0) @ W1.T.astype(float) - a1, 0)
    np.testing.assert_allclose(net.forward(X), expected, rtol=0, atol=TOL)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_bad_files(tmp_path):
    rng = np.random.default_rng(10)
    W0, W1, W2 = rng.standard_normal((5, 3)), rng.standard_normal((4, 5)), rng.standard_normal((2, 4))
    b0, b1, b2 = np.zeros(5), np.zeros(4), np.zeros(2)
    path = _write_npz(tmp_path / "missing.npz", weight_0=W0, bias_0=b0, weight_1=W1)
    with pytest.raises(FastReluError, match="must hold 'bias_1' for 'weight_1'"):
        Network.load(path)
    path = _write_npz(tmp_path / "gap.npz", weight_0=W0, bias_0=b0, weight_2=W2, bias_2=b2)
    with pytest.raises(FastReluError, match="without gaps. Got 'weight_2' but no 'weight_1'"):
        Network.load(path)
    path = _write_npz(tmp_path / "orphan.npz", weight_0=W0, bias_0=b0, bias_1=b1)
    with pytest.raises(FastReluError, match="Got 'bias_1' but no 'weight_1'"):
        Network.load(path)
    path = _write_npz(tmp_path / "chain.npz", weight_0=W0, bias_0=b0, weight_1=W2, bias_1=b2)
    with pytest.raises(FastReluError, match=r"'weight_1' array .* must have 5 columns.*Got weight_1\.shape=\(2, 4\) after weight_0\.shape=\(5, 3\)"):
        Network.load(path)
    path = _write_npz(tmp_path / "bias.npz", weight_0=W0, bias_0=b1)
    with pytest.raises(FastReluError, match=r"'bias_0' array .* must have shape \(5,\) to match weight_0\.shape=\(5, 3\)\. Got bias_0\.shape=\(4,\)"):
        Network.load(path)
    path = _write_npz(tmp_path / "extra.npz", weight_0=W0, bias_0=b0, layer_1=W1)
    with pytest.raises(FastReluError, match=r"unexpected keys \['layer_1'\]"):
        Network.load(path)
    path = _write_npz(tmp_path / "marker.npz", weight_0=W0, bias_0=b0, weight_1=W1, bias_1=b1, linear_output=np.array([1.0, 2.0]))
    with pytest.raises(FastReluError, match="'linear_output' array .* must be a boolean scalar"):
        Network.load(path)
    path = _write_npz(tmp_path / "single.npz", weight_0=W0, bias_0=b0, linear_output=np.array(True))
    with pytest.raises(FastReluError, match="at least one hidden"):
        Network.load(path)
    path = _write_npz(tmp_path / "nan.npz", weight_0=np.full((2, 2), np.nan), bias_0=np.zeros(2))
    with pytest.raises(FastReluError, match="'weight_0' parameter must contain only finite numbers"):
        Network.load(path)
    path = _write_npz(tmp_path / "text.npz", weight_0=np.array([["a", "b"]]), bias_0=np.zeros(1))
    with pytest.raises(FastReluError, match="'weight_0' array .* must hold real numbers"):
        Network.load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(FastReluError, match="could not be read as a .npz archive"):
        Network.load(tmp_path / "junk.npz")


def test_load_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "net.h5").write_bytes(b"")
    with pytest.raises(FastReluError, match=r"must end in \.npz, \.safetensors, \.pt, \.pth, \.joblib, \.pkl, \.onnx\. Got .*net\.h5"):
        Network.load(tmp_path / "net.h5")
    with pytest.raises(FastReluError, match="must exist and be readable.*absent.npz"):
        Network.load(tmp_path / "absent.npz")
    with pytest.raises(FastReluError, match="must exist"):
        Network.from_safetensors(tmp_path / "absent.safetensors")
    with pytest.raises(FastReluError, match="'last_linear' parameter must be True, False or None"):
        Network.from_torch({}, last_linear="yes")


def test_load_pickled_sklearn_model(tmp_path, classifier, digits):
    X, _ = digits
    expected = Network.from_sklearn(classifier).forward(X)
    joblib = pytest.importorskip("joblib")
    joblib.dump(classifier, tmp_path / "model.joblib")
    with open(tmp_path / "model.pkl", "wb") as stream:
        pickle.dump(classifier, stream)
    for name in ("model.joblib", "model.pkl"):
        np.testing.assert_array_equal(Network.load(tmp_path / name).forward(X), expected)
    with pytest.raises(FastReluError, match="'last_linear' parameter must be None for a scikit-learn model"):
        Network.load(tmp_path / "model.pkl", last_linear=True)
    (tmp_path / "junk.pkl").write_bytes(b"junk")
    with pytest.raises(FastReluError, match="could not be unpickled"):
        Network.load(tmp_path / "junk.pkl")


# --------------------------------------------------------------------- safetensors


def _torch_style_arrays(rng, widths, indices, dtype=np.float64):
    arrays, weights, biases = {}, [], []
    for index, n, m in zip(indices, widths, widths[1:]):
        W, b = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal(m).astype(dtype)
        arrays[f"{index}.weight"], arrays[f"{index}.bias"] = W, b
        weights.append(W.astype(np.float64))
        biases.append(b.astype(np.float64))
    return arrays, weights, biases


def test_safetensors_torch_state_dict_names(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    rng = np.random.default_rng(11)
    # indices 2 and 10: the layers are ordered by number, not by name
    arrays, weights, biases = _torch_style_arrays(rng, (6, 8, 5, 3), (0, 2, 10))
    save_file(arrays, str(tmp_path / "net.safetensors"))
    X = rng.standard_normal((15, 6))
    net = Network.load(tmp_path / "net.safetensors")
    assert net.widths == (6, 8, 5, 3) and net.output is not None
    np.testing.assert_allclose(net.forward(X), _affine_forward(weights, biases, X, True), rtol=0, atol=TOL)
    np.testing.assert_array_equal(net.hidden[0].bias, -biases[0])
    relu_last = Network.from_safetensors(tmp_path / "net.safetensors", last_linear=False)
    assert relu_last.output is None and relu_last.depth == 3
    np.testing.assert_allclose(relu_last.forward(X), _affine_forward(weights, biases, X, False), rtol=0, atol=TOL)


def test_safetensors_prefixed_float32_and_no_bias(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    rng = np.random.default_rng(12)
    arrays, weights, biases = _torch_style_arrays(rng, (4, 6, 2), (0, 2), dtype=np.float32)
    arrays = {f"net.{key}": value for key, value in arrays.items() if key != "2.bias"}
    save_file(arrays, str(tmp_path / "net.safetensors"))
    net = Network.load(tmp_path / "net.safetensors")
    assert net.output.weight.dtype == np.float64
    X = rng.standard_normal((5, 4))
    np.testing.assert_allclose(net.forward(X), _affine_forward(weights, [biases[0], np.zeros(2)], X, True), rtol=0, atol=TOL)


def test_safetensors_npz_layout(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    rng = np.random.default_rng(13)
    net = _random_network(rng, (3, 7, 2), last_linear=True)
    arrays = {f"weight_{k}": layer.weight for k, layer in enumerate(net.hidden + (net.output,))}
    arrays.update({f"bias_{k}": layer.bias for k, layer in enumerate(net.hidden + (net.output,))})
    arrays["linear_output"] = np.array(True)
    save_file(arrays, str(tmp_path / "net.safetensors"))
    loaded = Network.load(tmp_path / "net.safetensors")
    X = rng.standard_normal((6, 3))
    np.testing.assert_array_equal(loaded.forward(X), net.forward(X))


def test_safetensors_bad_files(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    rng = np.random.default_rng(14)
    arrays, _, _ = _torch_style_arrays(rng, (4, 6, 2), (0, 2))
    bad = dict(arrays)
    del bad["2.weight"]
    save_file(bad, str(tmp_path / "missing.safetensors"))
    with pytest.raises(FastReluError, match="must hold '2.weight' for '2.bias'"):
        Network.load(tmp_path / "missing.safetensors")
    bad = dict(arrays, **{"2.weight": rng.standard_normal((2, 5))})
    save_file(bad, str(tmp_path / "chain.safetensors"))
    with pytest.raises(FastReluError, match=r"Got 2\.weight\.shape=\(2, 5\) after 0\.weight\.shape=\(6, 4\)"):
        Network.load(tmp_path / "chain.safetensors")
    save_file(dict(arrays, **{"1.running_mean": np.zeros(6)}), str(tmp_path / "norm.safetensors"))
    with pytest.raises(FastReluError, match="Got '1.running_mean' instead"):
        Network.load(tmp_path / "norm.safetensors")
    save_file(dict(arrays, **{"head.4.weight": np.zeros((1, 2))}), str(tmp_path / "prefix.safetensors"))
    with pytest.raises(FastReluError, match=r"one prefix.*\['', 'head\.'\]"):
        Network.load(tmp_path / "prefix.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(FastReluError, match="could not be read as a .safetensors file"):
        Network.load(tmp_path / "junk.safetensors")


# --------------------------------------------------------------------- PyTorch


def test_missing_torch_is_explained(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(FastReluError, match=r'pip install "fastrelu\[torch\]"'):
        Network.from_torch(object())
    (tmp_path / "net.pt").write_bytes(b"")
    with pytest.raises(FastReluError, match=r'pip install "fastrelu\[torch\]"'):
        Network.load(tmp_path / "net.pt")


def test_state_dict_of_arrays_needs_no_torch():
    rng = np.random.default_rng(15)
    arrays, weights, biases = _torch_style_arrays(rng, (3, 5, 4), ("fc1", "fc2"))
    X = rng.standard_normal((4, 3))
    net = Network.from_torch(arrays)
    np.testing.assert_allclose(net.forward(X), _affine_forward(weights, biases, X, True), rtol=0, atol=TOL)
    with pytest.raises(FastReluError, match="at least one hidden"):
        Network.from_torch({"weight": np.ones((2, 3))})
    assert Network.from_torch({"weight": np.ones((2, 3))}, last_linear=False).widths == (3, 2)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_forward(torch, model, X):
    with torch.no_grad():
        return model(torch.from_numpy(X)).numpy()


def test_torch_sequential_matches_torch(torch, tmp_path):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 12), nn.ReLU(),
                          nn.Identity(), nn.Linear(12, 3)).double().eval()
    X = np.random.default_rng(16).standard_normal((50, 10))
    expected = _torch_forward(torch, model, X)
    net = Network.from_torch(model)
    assert net.widths == (10, 16, 12, 3) and net.output is not None
    np.testing.assert_allclose(net.forward(X), expected, rtol=0, atol=TOL)
    # the same through the state_dict, in memory and from a .pt file
    np.testing.assert_allclose(Network.from_torch(model.state_dict()).forward(X), expected, rtol=0, atol=TOL)
    torch.save(model.state_dict(), tmp_path / "net.pt")
    np.testing.assert_allclose(Network.load(tmp_path / "net.pt").forward(X), expected, rtol=0, atol=TOL)
    # and through safetensors as PyTorch writes it
    st_torch = pytest.importorskip("safetensors.torch")
    st_torch.save_file(model.state_dict(), str(tmp_path / "net.safetensors"))
    np.testing.assert_allclose(Network.load(tmp_path / "net.safetensors").forward(X), expected, rtol=0, atol=TOL)


def test_torch_relu_last_nested_no_bias_and_float32(torch):
    nn = torch.nn
    torch.manual_seed(1)
    model = nn.Sequential(nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU()), nn.Linear(8, 6), nn.ReLU(inplace=True))
    X = np.random.default_rng(17).standard_normal((20, 5))
    net = Network.from_torch(model.double())
    assert net.output is None and net.widths == (5, 8, 6)
    np.testing.assert_array_equal(net.hidden[0].bias, np.zeros(8))
    np.testing.assert_allclose(net.forward(X), _torch_forward(torch, model, X), rtol=0, atol=TOL)
    # a float32 model is reproduced to float32 accuracy
    model32 = model.float()
    expected32 = _torch_forward(torch, model32, X.astype(np.float32))
    np.testing.assert_allclose(Network.from_torch(model32).forward(X), expected32, rtol=1e-5, atol=1e-5)


def test_torch_bad_modules(torch, tmp_path):
    nn = torch.nn
    with pytest.raises(FastReluError, match=r"Got Tanh\(\) at index 3 instead; fastrelu analyses ReLU networks only"):
        Network.from_torch(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 1)))
    with pytest.raises(FastReluError, match="Got LeakyReLU"):
        Network.from_torch(nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU()))
    with pytest.raises(FastReluError, match="the Linear at index 0 followed by the Linear at index 1"):
        Network.from_torch(nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 1)))
    with pytest.raises(FastReluError, match=r"ReLU\(\) at index 0 before any Linear"):
        Network.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(4, 5)))
    with pytest.raises(FastReluError, match=r"'2\.weight' array of the Sequential must have 5 columns.*Got 2\.weight\.shape=\(1, 6\) after 0\.weight\.shape=\(5, 4\)"):
        Network.from_torch(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(6, 1)))
    with pytest.raises(FastReluError, match=r"Flatten\(start_dim=0"):
        Network.from_torch(nn.Sequential(nn.Flatten(0), nn.Linear(4, 5), nn.ReLU()))
    with pytest.raises(FastReluError, match="Got a Linear, whose forward fastrelu cannot read"):
        Network.from_torch(nn.Linear(4, 5))
    with pytest.raises(FastReluError, match="'last_linear' parameter must be None for a torch.nn.Sequential"):
        Network.from_torch(nn.Sequential(nn.Linear(4, 5), nn.ReLU()), last_linear=False)
    with pytest.raises(FastReluError, match="Linear layers .* Got 'running_mean' instead"):
        Network.from_torch(nn.BatchNorm1d(4).state_dict())
    # a whole pickled module is not a state_dict: weights_only refuses it
    torch.save(nn.Sequential(nn.Linear(4, 5), nn.ReLU()), tmp_path / "module.pt")
    with pytest.raises(FastReluError, match="must hold a state_dict: .* Save model.state_dict"):
        Network.load(tmp_path / "module.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(FastReluError, match="could not be read as a PyTorch state_dict"):
        Network.load(tmp_path / "junk.pt")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(FastReluError, match="must hold a state_dict .* Got list instead"):
        Network.load(tmp_path / "list.pt")


# --------------------------------------------------------------------------- never-active neurons, classes


def test_npz_bias_plus_inf_is_a_never_active_neuron(tmp_path):
    rng = np.random.default_rng(12)
    W0, W1 = rng.standard_normal((5, 3)), rng.standard_normal((2, 5))
    alpha = rng.normal(0, 0.2, 5)
    alpha[3] = np.inf  # as mcbe reports for a row no sample constrained
    np.savez(tmp_path / "net.npz", weight_0=W0, bias_0=alpha, weight_1=W1, bias_1=np.zeros(2),
             linear_output=True)
    net = Network.load(tmp_path / "net.npz")
    assert net.hidden[0].bias[3] == np.inf
    X = rng.standard_normal((30, 3))
    H = net.hidden_outputs(X)[0]
    assert not H[:, 3].any() and np.isfinite(net.forward(X)).all()
    np.testing.assert_array_equal(net.forward(X), np.maximum(X @ W0.T - alpha, 0) @ W1.T)


def test_safetensors_bias_minus_inf_is_a_never_active_neuron(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(13)
    b = rng.normal(0, 0.2, 4)
    b[1] = -np.inf  # PyTorch's convention ReLU(W x + b)
    tensors = {"0.weight": rng.standard_normal((4, 3)), "0.bias": b,
               "2.weight": rng.standard_normal((2, 4)), "2.bias": np.zeros(2)}
    safetensors_numpy.save_file(tensors, str(tmp_path / "net.safetensors"))
    net = Network.load(tmp_path / "net.safetensors")
    assert net.hidden[0].bias[1] == np.inf and np.isfinite(net.output.bias).all()
    b[0] = np.inf  # always active with an infinite output: refused
    safetensors_numpy.save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(FastReluError, match=r"'0.bias' parameter must contain only real numbers or -inf .* Got \+inf at index 0"):
        Network.load(tmp_path / "bad.safetensors")


def test_output_layer_bias_must_be_finite(tmp_path):
    rng = np.random.default_rng(14)
    hidden = ReLULayer(rng.standard_normal((4, 3)))
    with pytest.raises(FastReluError, match=r"'output' parameter must have a finite bias: the output layer is affine .* output unit\(s\) 1\."):
        Network([hidden], ReLULayer(rng.standard_normal((2, 4)), [0.0, np.inf]))
    np.savez(tmp_path / "net.npz", weight_0=rng.standard_normal((4, 3)), bias_0=np.zeros(4),
             weight_1=rng.standard_normal((2, 4)), bias_1=[0.0, np.inf], linear_output=True)
    with pytest.raises(FastReluError, match="'bias_1' parameter must contain only finite numbers"):
        Network.load(tmp_path / "net.npz")
    # without the affine output, bias_1 is a hidden layer's and +inf is allowed there
    assert Network.load(tmp_path / "net.npz", last_linear=False).output is None


def test_classes_are_a_private_copy():
    rng = np.random.default_rng(15)
    classes = np.array([3, 7])
    net = Network([ReLULayer(rng.standard_normal((4, 3)))], ReLULayer(rng.standard_normal((2, 4))),
                  classes=classes)
    classes[0] = 99
    assert net.classes.tolist() == [3, 7]
    with pytest.raises(ValueError):
        net.classes[0] = 5
