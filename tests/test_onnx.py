"""ONNX models: Network.from_onnx for MLP chains, relu_layers and capture for general
graphs (read with onnx, run with onnxruntime), and the same report as the PyTorch route."""

import math
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch_models import randomise_batchnorm, seeded

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu._networks.onnx_model import conv_dense

SMALL = {"samples": 300, "width_draws": 20, "power_starts": 2, "n_jobs": 1, "enlarge": None}


def _export(model, example, path):
    """The model exported by PyTorch's TorchScript-based exporter, batch norms kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, do_constant_folding=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}})
    return str(path)


def _ort(path_or_proto, X, names):
    """Tensors of the graph computed by onnxruntime itself (exposed as outputs)."""
    model = onnx.load(path_or_proto) if isinstance(path_or_proto, str) else path_or_proto
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for name in names:
        copy.graph.output.append(onnx.ValueInfoProto(name=name))
    session = onnxruntime.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, {session.get_inputs()[0].name: X})


def _digits_mlp():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    digits = fr.digits_model(hidden=(40, 50), seed=0, max_iter=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier((40, 50), max_iter=40, random_state=0).fit(digits.X_train, digits.y_train)
    return digits, model


def test_digits_mlp_exported_by_skl2onnx_reads_back(tmp_path):
    from skl2onnx import to_onnx

    digits, model = _digits_mlp()
    proto = to_onnx(model, digits.X_train[:1].astype(np.float32), options={"zipmap": False})
    path = tmp_path / "digits.onnx"
    path.write_bytes(proto.SerializeToString())
    from_onnx = fr.Network.from_onnx(str(path))
    from_sklearn = fr.Network.from_sklearn(model)
    assert from_onnx.widths == from_sklearn.widths
    for a, b in zip(from_onnx.hidden + (from_onnx.output,), from_sklearn.hidden + (from_sklearn.output,)):
        # skl2onnx stores float32 weights
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a.bias, b.bias, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(from_onnx.classes, model.classes_)
    assert fr.Network.load(str(path)).widths == from_sklearn.widths
    # the forward pass equals onnxruntime's on the same inputs
    X = digits.X_test[:50].astype(np.float32)
    (probabilities,) = _ort(str(path), X, ["probabilities"])
    logits = from_onnx.forward(X.astype(np.float64))
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), probabilities, atol=1e-5)
    # relu_layers reads the same graph's layers
    found = fr.relu_layers(str(path), X[:1])
    assert found.method == "onnx" and len(found) == 2
    for layer, hidden in zip(found, from_onnx.hidden):
        np.testing.assert_array_equal(layer.layer.weight, hidden.weight)


def _cnn():
    seeded(11)
    return randomise_batchnorm(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                             nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
                                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24, 10)))


def test_cnn_through_onnx_layers_capture_and_forward_pass(tmp_path):
    model = _cnn().eval()
    X = torch.rand(20, 1, 8, 8)
    path = _export(model, X[:1], tmp_path / "cnn.onnx")
    found = fr.relu_layers(path, X[:1].numpy())
    assert [(layer.kind, layer.input_shape, layer.batchnorm is not None) for layer in found] == [
        ("conv2d", (1, 8, 8), True), ("conv2d", (4, 8, 8), True)]
    by_torch = fr.relu_layers(model, X[:1])
    for a, b in zip(found, by_torch):
        # ONNX stores the batch norms' epsilon in float32
        np.testing.assert_allclose(a.layer.weight, b.layer.weight, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a.layer.bias, b.layer.bias, rtol=1e-9, atol=1e-12)
    inputs, outputs = fr.capture(path, X.numpy(), found, batch_size=6, outputs=True)
    with torch.no_grad():
        expected = model(X).double().numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    # pre_activation equals onnxruntime's own Relu inputs
    graph = onnx.load(path).graph
    relu_inputs = [node.input[0] for node in graph.node if node.op_type == "Relu"]
    seen = _ort(path, X.numpy(), relu_inputs)
    for layer, values in zip(found, seen):
        values = values.reshape(20, -1).astype(np.float64)
        assert np.abs(layer.pre_activation(inputs[layer.name]) - values).max() <= 1e-5 * np.abs(values).max()


def test_onnx_and_torch_routes_give_the_same_report(tmp_path):
    model = _cnn().eval()
    X = torch.rand(40, 1, 8, 8)
    path = _export(model, X[:1], tmp_path / "cnn.onnx")
    by_torch = fr.analyze_model(model, X, **SMALL)
    by_onnx = fr.analyze_model(path, X.numpy(), **SMALL)
    assert by_onnx.parameters["discovery"] == "onnx"
    for a, b in zip(by_torch.layers, by_onnx.layers):
        assert a.shape == b.shape and a.kind == b.kind and a.input_shape == b.input_shape
        # the routes' float32 convolutions round differently: close, not bit-equal
        for name in ("injective_fraction", "stable_fraction", "reconstructed_fraction"):
            assert getattr(a, name) == getattr(b, name), name
        for name in a.estimates:
            np.testing.assert_allclose(a.estimates[name], b.estimates[name], rtol=1e-4, atol=1e-5)
            assert a.fraction_above[name] == b.fraction_above[name]
            np.testing.assert_allclose(a.channel_estimates[name], b.channel_estimates[name], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.s1, b.s1, rtol=1e-4)
        np.testing.assert_allclose(a.width_out, b.width_out, rtol=1e-4)


def _graph(nodes, initializers, shape_in, shape_out, name="g"):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *shape_out])],
        [numpy_helper.from_array(np.asarray(value, dtype=np.float32), key) for key, value in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_hand_built_graph_matmul_add_gemm_residual_and_passthrough():
    rng = np.random.default_rng(0)
    A, a = rng.standard_normal((5, 8)), rng.standard_normal(8)
    B, b = rng.standard_normal((8, 8)), rng.standard_normal(8)
    G, g = rng.standard_normal((3, 8)), rng.standard_normal(3)
    nodes = [helper.make_node("MatMul", ["x", "A"], ["h0"], name="mm"),
             helper.make_node("Add", ["h0", "a"], ["h1"], name="bias"),
             helper.make_node("Dropout", ["h1"], ["h2"], name="drop"),
             helper.make_node("Relu", ["h2"], ["r1"], name="relu1"),
             helper.make_node("Gemm", ["r1", "B", "b"], ["h3"], name="gemm", transB=1, alpha=2.0, beta=0.5),
             helper.make_node("Add", ["h3", "r1"], ["h4"], name="residual"),
             helper.make_node("Relu", ["h4"], ["r2"], name="relu2"),
             helper.make_node("Gemm", ["r2", "G", "g"], ["h5"], name="head", transB=1),
             helper.make_node("Identity", ["h5"], ["h6"], name="id"),
             helper.make_node("Relu", ["h6"], ["y"], name="relu3")]
    proto = _graph(nodes, {"A": A, "a": a, "B": B, "b": b, "G": G, "g": g}, [5], [3])
    X = rng.standard_normal((7, 5)).astype(np.float32)
    found = fr.relu_layers(proto, X)
    assert found.names() == ["mm", "head"]
    np.testing.assert_allclose(found[0].layer.weight, A.T.astype(np.float32), rtol=0)
    np.testing.assert_allclose(found[0].layer.bias, -a.astype(np.float32), rtol=0)
    (where, reason), = found.others
    assert where == "relu2" and "residual sum" in reason
    inputs = fr.capture(proto, X, found)
    (h1, h6) = _ort(proto, X, ["h1", "h6"])
    np.testing.assert_allclose(found[0].pre_activation(inputs["mm"]), h1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(found[1].pre_activation(inputs["head"]), h6, rtol=1e-5, atol=1e-5)
    with pytest.raises(FastReluError, match="Got tensor 'r1' read by \\['gemm', 'residual'\\]"):
        fr.Network.from_onnx(proto)


CONV_CASES = [  # (C_in, C_out, kernel, strides, pads, dilations, group, auto_pad)
    (2, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "NOTSET"),
    (4, 4, (3, 2), (2, 1), (1, 0, 2, 1), (1, 2), 2, "NOTSET"),
    (3, 3, (3, 3), (2, 2), None, (1, 1), 3, "SAME_UPPER"),
    (3, 2, (2, 2), (1, 2), None, (1, 1), 1, "SAME_LOWER"),  # no dilation with SAME in onnxruntime
    (2, 2, (3, 3), (1, 1), None, (1, 1), 1, "VALID"),
    (2, 3, (3,), (2,), (1, 2), (1,), 1, "NOTSET"),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_onnx_conv_and_batchnorm_rows_match_onnxruntime(case):
    C_in, C_out, kernel, strides, pads, dilations, group, auto_pad = case
    rng = np.random.default_rng(1)
    spatial = (7, 6)[:len(kernel)]
    weight = rng.standard_normal((C_out, C_in // group, *kernel)).astype(np.float32)
    bias = rng.standard_normal(C_out).astype(np.float32)
    gamma, beta = rng.standard_normal(C_out), rng.standard_normal(C_out)
    mean, var = rng.standard_normal(C_out), rng.random(C_out) + 0.5
    attributes = {"strides": list(strides), "dilations": list(dilations), "group": group, "auto_pad": auto_pad}
    if pads is not None:
        attributes["pads"] = list(pads)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", **attributes),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"], name="relu")]
    proto = _graph(nodes, {"w": weight, "b": bias, "gamma": gamma, "beta": beta, "mean": mean, "var": var},
                   [C_in, *spatial], [C_out] + ["?"] * len(spatial))
    X = rng.standard_normal((5, C_in, *spatial)).astype(np.float32)
    (layer,) = fr.relu_layers(proto, X[:1])
    assert layer.kind == f"conv{len(kernel)}d" and layer.batchnorm == "bn"
    (pre,) = _ort(proto, X, ["n"])
    assert layer.output_shape == pre.shape[1:]
    flat = X.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(layer.pre_activation(flat), pre.reshape(5, -1), rtol=1e-5, atol=1e-5)
    # the rows are the convolution applied to the basis vectors (onnxruntime's, without the BN)
    conv_only = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attributes)
    plain = _graph([conv_only], {"w": weight, "b": bias}, [C_in, *spatial], [C_out] + ["?"] * len(spatial))
    n = math.prod(X.shape[1:])
    basis = np.eye(n, dtype=np.float32).reshape(n, C_in, *spatial)
    (columns,) = _ort(plain, basis, ["y"])
    (offset,) = _ort(plain, np.zeros((1, C_in, *spatial), dtype=np.float32), ["y"])
    scale = np.float32(gamma) / np.sqrt(np.float32(var) + np.float32(1e-3))
    positions = layer.positions
    expected = ((columns - offset).reshape(n, -1).T) * np.repeat(scale, positions)[:, None]
    np.testing.assert_allclose(layer.layer.weight, expected, rtol=1e-5, atol=1e-6)


def test_conv_dense_equals_torch_on_basis_vectors():
    seeded(12)
    conv = nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2).double()
    shape = (4, 7, 5)
    n = math.prod(shape)
    dense, spatial = conv_dense(conv.weight.detach().numpy(), shape, (2, 1), (1, 2, 1, 2), (2, 1), 2)
    with torch.no_grad():
        columns = (conv(torch.eye(n, dtype=torch.float64).reshape(n, *shape)) - conv.bias.reshape(1, -1, 1, 1))
    assert (6, *spatial) == tuple(columns.shape[1:])
    np.testing.assert_allclose(dense, columns.reshape(n, -1).numpy().T, atol=1e-14)


def test_onnx_bad_input(tmp_path):
    with pytest.raises(FastReluError, match="must name an existing .onnx file"):
        fr.relu_layers(str(tmp_path / "missing.onnx"), np.zeros((1, 3)))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(FastReluError, match="could not be read|valid ONNX model"):
        fr.Network.from_onnx(str(broken))
    no_relu = _graph([helper.make_node("MatMul", ["x", "A"], ["y"])], {"A": np.ones((3, 2))}, [3], [2])
    with pytest.raises(FastReluError, match="at least one Relu"):
        fr.relu_layers(no_relu, np.zeros((1, 3), dtype=np.float32))
    model = _graph([helper.make_node("MatMul", ["x", "A"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                   {"A": np.ones((3, 4))}, [3], [4])
    with pytest.raises(FastReluError, match="'example' parameter must hold inputs the model runs on"):
        fr.relu_layers(model, np.zeros((1, 5), dtype=np.float32))
    found = fr.relu_layers(model, np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(FastReluError, match="'data' parameter must hold inputs the model runs on"):
        fr.capture(model, np.zeros((2, 4), dtype=np.float32), found)


def test_onnx_capture_streams_to_memory_mapped_files(tmp_path, monkeypatch):
    # node names as PyTorch's exporter writes them, with slashes
    model = _graph([helper.make_node("MatMul", ["x", "A"], ["h"], name="/0/MatMul"),
                    helper.make_node("Relu", ["h"], ["y"], name="/1/Relu")],
                   {"A": np.arange(12, dtype=np.float32).reshape(3, 4) / 7}, [3], [4])
    found = fr.relu_layers(model, np.zeros((1, 3), dtype=np.float32))
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    held = fr.capture(model, X, found, batch_size=8)
    streamed = fr.capture(model, X, found, batch_size=8, out_dir=tmp_path)
    (name,) = held
    assert "/" in name and [path.name for path in tmp_path.iterdir()] == [name.replace("/", "_") + ".npy"]
    assert isinstance(streamed[name], np.memmap)
    np.testing.assert_array_equal(streamed[name], held[name])
    assert not list(tmp_path.glob("*.raw"))
    # in memory, inputs over the budget are refused before the run, with the way out
    monkeypatch.setenv("FASTRELU_MEMORY_LIMIT", str(8 * 50 * 3 - 1))
    with pytest.raises(FastReluError, match="'data' parameter must give layer inputs that fit in memory.*Pass out_dir="):
        fr.capture(model, X, found)
    again = fr.capture(model, X, found, out_dir=tmp_path / "again")
    np.testing.assert_array_equal(again[name], held[name])
    # two names that would share a file get the layer's position
    from fastrelu._networks.captured import file_stems

    assert file_stems(["/a/b", "_a_b", "c.d@1", ".."]) == {"/a/b": "_a_b", "_a_b": "_a_b-1",
                                                          "c.d@1": "c.d@1", "..": "layer"}
    stems = file_stems(["a/b", "a_b", "a_b-1", "Conv", "conv", "x" * 300])
    assert len({stem.casefold() for stem in stems.values()}) == 6
    assert len(stems["x" * 300]) <= 100


def test_cli_report_of_onnx_and_torchscript_models(tmp_path, capsys):
    import json

    from fastrelu.cli import main

    model = _cnn().eval()
    X = torch.rand(30, 1, 8, 8)
    y = np.arange(30) % 10
    onnx_path = _export(model, X[:1], tmp_path / "cnn.onnx")
    script_path = tmp_path / "cnn.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation note
        torch.jit.save(torch.jit.script(model), str(script_path))
    np.save(tmp_path / "X.npy", X.numpy())
    np.save(tmp_path / "y.npy", y)
    options = ["--data", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"), "--samples", "200",
               "--enlarge", "none", "--jobs", "1", "--no-plots", "--json"]
    summaries = []
    for path, out in ((onnx_path, "onnx_out"), (str(script_path), "script_out")):
        assert main(["report", path, "--out", str(tmp_path / out), *options]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert [layer["kind"] for layer in summary["layers"]] == ["conv2d", "conv2d"]
        assert summary["accuracy"] is not None and summary["other_relus"] == []
        report = json.loads((tmp_path / out / "report.json").read_text())
        assert report["parameters"]["discovery"] == "onnx"
        summaries.append(summary)
    for a, b in zip(*(summary["layers"] for summary in summaries)):
        assert a["shape"] == b["shape"] and a["injective_fraction"] == b["injective_fraction"]
    # the text summary names each layer and the ReLUs that are not layers
    assert main(["report", onnx_path, "--out", str(tmp_path / "text"), *options[:-1]]) == 0
    assert "/0/Conv" in capsys.readouterr().out
    # bad input: one line on stderr, exit 2
    assert main(["report", onnx_path, "--out", str(tmp_path / "bad")]) == 2
    assert "needs --data" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3), dtype=np.float32))
    assert main(["report", onnx_path, "--data", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "The '--data' file must hold inputs the model runs on" in err
    np.save(tmp_path / "y_short.npy", np.zeros(3, dtype=np.int64))
    assert main(["report", onnx_path, "--data", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y_short.npy"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["report", onnx_path, "--data", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy")[:-4] + "_none.npy",
                 "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_onnx_biases_of_every_broadcast_shape_and_batch_norm_on_tokens():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((5, 4))
    for C in (rng.standard_normal(4), rng.standard_normal((1, 4)), rng.standard_normal(1)):
        nodes = [helper.make_node("Gemm", ["x", "B", "C"], ["h"], name="gemm", beta=0.5),
                 helper.make_node("Relu", ["h"], ["y"])]
        proto = _graph(nodes, {"B": B, "C": C}, [5], [4])
        (layer,) = fr.relu_layers(proto, np.zeros((1, 5), dtype=np.float32))
        X = rng.standard_normal((6, 5)).astype(np.float32)
        (h,) = _ort(proto, X, ["h"])
        np.testing.assert_allclose(layer.pre_activation(X.astype(np.float64)), h, rtol=1e-5, atol=1e-5)
    # a BatchNormalization after a MatMul on tokens normalises the tokens' axis: not folded
    nodes = [helper.make_node("MatMul", ["x", "B"], ["h"], name="mm"),
             helper.make_node("BatchNormalization", ["h", "g", "b", "m", "v"], ["z"], name="bn"),
             helper.make_node("Relu", ["z"], ["y"], name="relu")]
    proto = _graph(nodes, {"B": B, "g": np.ones(3), "b": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)},
                   [3, 5], [3, 4])
    found = fr.relu_layers(proto, np.zeros((1, 3, 5), dtype=np.float32))
    assert len(found) == 0 and "normalises along axis 1" in found.others[0][1]


def test_analyze_model_of_an_skl2onnx_classifier_uses_its_probabilities():
    from skl2onnx import to_onnx

    digits, model = _digits_mlp()
    proto = to_onnx(model, digits.X_train[:1].astype(np.float32), options={"zipmap": False})
    X, y = digits.X_test[:60].astype(np.float32), digits.y_test[:60]
    report = fr.analyze_model(proto, X, labels=y, **SMALL)
    assert report.accuracy == pytest.approx(float(np.mean(model.predict(X) == y)))


def test_an_onnx_model_with_a_fixed_batch_runs_in_batches_of_that_size(tmp_path):
    model = _cnn().eval()
    X = torch.rand(7, 1, 8, 8)
    path = str(tmp_path / "fixed.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (X[:2],), path, dynamo=False, do_constant_folding=False)  # batch fixed at 2
    found = fr.relu_layers(path, X.numpy())
    inputs, outputs = fr.capture(path, X.numpy(), found, outputs=True)
    with torch.no_grad():
        np.testing.assert_allclose(outputs, model(X).double().numpy(), rtol=1e-5, atol=1e-5)
    assert all(values.shape[0] == 7 for values in inputs.values())
    report = fr.analyze_model(path, X.numpy(), **SMALL)
    assert len(report.layers) == 2


def test_an_onnx_conv_over_the_budget_says_what_it_cannot_compute(monkeypatch):
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    proto = _graph(nodes, {"w": weight, "b": bias}, [2, 6, 6], [4, 6, 6])
    X = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    monkeypatch.setenv("FASTRELU_MEMORY_LIMIT", "100000")  # the rows need 8 * 144 * 72 bytes > a quarter
    (layer,) = fr.relu_layers(proto, X[:1])
    assert layer.layer is None
    for call in (lambda: layer.pre_activation(X.reshape(3, -1)), layer.operator):
        with pytest.raises(FastReluError, match="'conv'.*over the memory budget.*FASTRELU_MEMORY_LIMIT"):
            call()
    # analyze_model names it, with the estimate and the alternative
    with pytest.raises(FastReluError, match=r"Got none: \{'conv': 'its dense matrix needs 81 KiB, over a quarter of the memory budget 97.7 KiB .*an ONNX layer is computed from its dense rows only.*analyse the PyTorch model"):
        fr.analyze_model(proto, X, samples=50, width_draws=5, power_starts=1, enlarge=None, n_jobs=1)


def test_a_torchscript_file_that_does_not_export_gives_one_line_and_no_graph_dump(tmp_path, capfd):
    """The TorchScript exporter prints its graph from C++ to standard output when it
    fails; the CLI's answer is still one line on stderr and nothing on stdout."""
    from fastrelu.cli import main

    class Unexportable(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.linalg.svd(torch.relu(self.fc(x)))[0]  # no ONNX operator for it

    path = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation
        torch.jit.save(torch.jit.script(Unexportable()), str(path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((5, 4)).astype(np.float32))
    capfd.readouterr()
    code = main(["report", str(path), "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "out")])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "could not be exported to ONNX" in err and "linalg_svd" in err
