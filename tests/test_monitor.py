"""Injectivity while a model trains (THEORY §11): fastrelu.torch.InjectivityMonitor's
estimate, monitoring and enforcement, checked against the definitions computed
independently (relu_layers, capture, mcbe on Data, pointwise_injectivity)."""

import copy
import csv
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu.torch import InjectivityMonitor, MonitorRecord

QUIET = {"n_jobs": 1}


def _mlp(seed=0, widths=(5, 20, 30)):
    torch.manual_seed(seed)
    parts = []
    for a, b in zip(widths[:-1], widths[1:]):
        parts += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*parts, nn.Linear(widths[-1], 2))


class _ConvBN(nn.Module):
    """Conv-BN-ReLU, Conv(no bias)-BN(no affine)-ReLU and Conv-ReLU on 1x6x6 images."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(5, affine=False)
        self.conv3 = nn.Conv2d(5, 6, 3, padding=2, dilation=2, padding_mode="circular")
        self.head = nn.Linear(6 * 36, 2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.head(x.flatten(1))


def _train(model, monitor, steps, *, batch=32, seed=1, inputs=None, optimizer=None):
    """SGD on a toy task, ``monitor.step()`` after every optimiser step; returns the
    batches used."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05)
    batches = []
    for _ in range(steps):
        shape = inputs or (next(model.parameters()).shape[1],)
        X = torch.randn(batch, *shape, generator=generator)
        y = (X.flatten(1)[:, 0] > 0).long()
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
        batches.append(X)
        if monitor is not None:
            monitor.step()
    return batches


def _injective_everywhere(model, window):
    """Per layer: is it injective at every window point, at the inputs it receives now
    (the definition, recomputed from scratch)?"""
    layers = fr.relu_layers(model, window[:1])
    inputs = fr.capture(model, window, layers)
    return {layer.name: bool(fr.pointwise_injectivity(layer.layer, inputs[layer.name]).all())
            for layer in layers}


def _window(monitor):
    return torch.cat(list(monitor._window))


def test_enforcement_makes_every_layer_injective_on_the_window():
    model = _mlp()
    monitor = InjectivityMonitor(model, enforce=True, window=3, points=16, seed=0, **QUIET)
    for _ in range(6):
        _train(model, None, 1, seed=len(monitor.history) + 1)
        records = monitor.step()
        assert [record.layer for record in records] == ["0", "2"]
        assert all(_injective_everywhere(model, _window(monitor)).values())
    assert sum(record.projected for record in monitor.history) > 0  # it had work to do


def test_without_enforcement_the_learned_biases_are_not_injective_and_nothing_changes():
    model = _mlp()
    monitor = InjectivityMonitor(model, window=2, seed=0, **QUIET)
    _train(model, monitor, 2)
    before = copy.deepcopy(model.state_dict())
    _train(model, None, 1, seed=7)
    after_training = copy.deepcopy(model.state_dict())
    monitor.step()
    for key, value in model.state_dict().items():
        assert torch.equal(value, after_training[key]), key
    assert any(not torch.equal(before[key], after_training[key]) for key in before)
    assert all(record.projected == 0 for record in monitor.history)
    assert not all(_injective_everywhere(model, _window(monitor)).values())


def test_records_are_the_definitions_on_the_window_and_the_batch():
    model = _mlp()
    monitor = InjectivityMonitor(model, window=3, seed=0, **QUIET)
    batches = _train(model, monitor, 4)
    window = torch.cat(batches[-3:])
    assert torch.equal(window, _window(monitor))
    layers = fr.relu_layers(model, window[:1])
    inputs = fr.capture(model, window, layers, batch_size=1024)
    batch_inputs = fr.capture(model, batches[-1], layers, batch_size=1024)
    last = monitor.history[-2:]
    for layer, record in zip(layers, last):
        assert record.step == 4 and record.layer == layer.name
        expected = fr.mcbe(layer.layer.weight, fr.Data(inputs[layer.name])).alpha
        # the running estimate is MCBE on the union of the window's points
        np.testing.assert_array_equal(monitor.estimates[layer.name], expected)
        assert record.window_points == 96 and record.batch_points == 32
        injective = fr.pointwise_injectivity(layer.layer, batch_inputs[layer.name])
        assert record.injective_fraction == pytest.approx(injective.mean(), abs=0)
        assert record.fraction_above == pytest.approx(np.mean(layer.layer.bias > expected), abs=0)
        assert record.unconstrained == int(np.isinf(expected).sum())
        assert record.incomplete == 0 and record.seconds >= 0


def test_conv_layers_with_and_without_batchnorm():
    model = _ConvBN()
    with torch.no_grad():  # batch norms that are not the identity
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.running_mean.uniform_(-0.3, 0.3)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn2.running_var.uniform_(0.5, 2.0)
    monitor = InjectivityMonitor(model, enforce=True, window=2, seed=0, **QUIET)
    for step in range(3):
        _train(model, None, 1, inputs=(1, 6, 6), batch=8, seed=step + 3)
        records = monitor.step()
        assert [record.layer for record in records] == ["conv1", "conv2", "conv3"]
        assert all(_injective_everywhere(model, _window(monitor)).values())
    layers = monitor.layers
    assert (layers[0].batchnorm, layers[1].batchnorm, layers[2].batchnorm) == ("bn1", "bn2", None)
    # channel-wise: each written (folded) bias is at most the channel's estimate, the minimum over positions
    found = fr.relu_layers(model, _window(monitor)[:1])
    for layer in found:
        channel_alpha = layer.bias.reshape(layer.channels, -1)
        assert np.all(channel_alpha == channel_alpha[:, :1])
        channel_estimate = monitor.estimates[layer.name].reshape(layer.channels, -1).min(axis=1)
        assert np.all(channel_alpha[:, 0] <= channel_estimate)
    assert {record.layer for record in monitor.history if record.projected}, "nothing to enforce"


def test_running_estimate_uses_the_current_weights_for_old_batches():
    model = _mlp()
    monitor = InjectivityMonitor(model, window=2, seed=0, **QUIET)
    batches = _train(model, monitor, 2)
    layers = fr.relu_layers(model, batches[0][:1])
    inputs = fr.capture(model, torch.cat(batches), layers, batch_size=1024)
    first = layers[0]
    # the union's estimate with the weights after the last step, not a minimum of older estimates
    np.testing.assert_array_equal(monitor.estimates["0"],
                                  fr.mcbe(first.layer.weight, fr.Data(inputs["0"])).alpha)


def test_seeded_monitor_is_deterministic():
    def run():
        model = _mlp(seed=3)
        monitor = InjectivityMonitor(model, enforce=True, window=2, points=8, seed=11, **QUIET)
        _train(model, monitor, 4)
        return model, monitor

    (model_a, monitor_a), (model_b, monitor_b) = run(), run()
    strip = [{**record.as_dict(), "seconds": 0} for record in monitor_a.history]
    assert strip == [{**record.as_dict(), "seconds": 0} for record in monitor_b.history]
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key])
    for name, estimate in monitor_a.estimates.items():
        np.testing.assert_array_equal(estimate, monitor_b.estimates[name])


def test_points_every_and_evaluation_passes():
    model = _mlp()
    monitor = InjectivityMonitor(model, every=3, points=5, seed=0, **QUIET)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    returned = []
    for _ in range(6):
        X = torch.randn(32, 5, generator=generator)
        optimizer.zero_grad()
        model(X).square().mean().backward()
        optimizer.step()
        with torch.no_grad():  # an evaluation pass between steps is not the batch
            model(torch.full((7, 5), 100.0))
        returned.append(monitor.step())
        if len(returned) % 3 == 0:
            assert _window(monitor).shape == (5, 5)
            assert any(torch.equal(row, X[i]) for row in _window(monitor) for i in range(32))
    assert [len(records) for records in returned] == [0, 0, 2, 0, 0, 2]
    assert [record.step for record in monitor.history] == [3, 3, 6, 6]
    assert all(record.batch_points == 5 for record in monitor.history)


def test_optimizer_state_and_graph_untouched_by_enforcement():
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    monitor = InjectivityMonitor(model, enforce=True, seed=0, **QUIET)
    _train(model, monitor, 2, optimizer=optimizer)
    state = copy.deepcopy(optimizer.state_dict())
    ids = [id(parameter) for parameter in model.parameters()]
    X = torch.randn(32, 5)
    optimizer.zero_grad()
    loss = model(X).square().mean()
    loss.backward()
    optimizer.step()
    before = copy.deepcopy(optimizer.state_dict())
    monitor.step()
    after = optimizer.state_dict()
    for key, value in before["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, after["state"][key][name])
    assert [id(parameter) for parameter in model.parameters()] == ids
    assert all(parameter.grad is not None for parameter in model.parameters())
    assert state["param_groups"] == after["param_groups"]


def test_a_layer_with_fewer_neurons_than_inputs_is_reported_incomplete():
    model = _mlp(widths=(6, 3, 12))  # 6 -> 3: injective nowhere
    monitor = InjectivityMonitor(model, enforce=True, seed=0, **QUIET)
    _train(model, monitor, 1)
    narrow = monitor.history[0]
    assert narrow.layer == "0" and narrow.incomplete == 32 and narrow.injective_fraction == 0.0
    assert narrow.projected == 0 and narrow.unconstrained == 3


def test_history_export_and_writer(tmp_path):
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = Writer()
    model = _mlp()
    monitor = InjectivityMonitor(model, seed=0, writer=writer, **QUIET)
    _train(model, monitor, 2)
    assert ("injectivity/0/injective_fraction", monitor.history[0].injective_fraction, 1) in writer.scalars
    assert len(writer.scalars) == 3 * len(monitor.history)
    monitor.to_json(tmp_path / "history.json")
    document = json.loads((tmp_path / "history.json").read_text())
    assert document["history"] == monitor.to_records()
    assert document["settings"]["layers"] == ["0", "2"]
    monitor.to_csv(tmp_path / "history.csv")
    with open(tmp_path / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["layer"] for row in rows] == ["0", "2", "0", "2"]
    assert float(rows[1]["injective_fraction"]) == monitor.history[1].injective_fraction
    assert isinstance(monitor.history[0], MonitorRecord)


def test_closed_monitor_observes_nothing():
    model = _mlp()
    monitor = InjectivityMonitor(model, seed=0, **QUIET)
    monitor.close()
    assert not model._forward_pre_hooks
    with pytest.raises(FastReluError, match="closed"):
        monitor.step()


@pytest.mark.parametrize("kwargs, match", [
    ({"window": 0}, "'window'.*>= 1.*0"),
    ({"every": 0}, "'every'.*>= 1.*0"),
    ({"points": -3}, "'points'.*>= 1"),
    ({"enforce": "yes"}, "'enforce'.*True or False"),
    ({"layers": "0"}, "'layers'.*sequence of layer names"),
    ({"layers": []}, "'layers'.*at least one"),
    ({"writer": object()}, "'writer'.*add_scalar"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(FastReluError, match=match):
        InjectivityMonitor(_mlp(), **kwargs)


def test_bad_models_and_layers():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return F.relu(x + self.fc(x))

    with pytest.raises(FastReluError, match="'model'.*ReLU to one Linear or Conv.*residual"):
        InjectivityMonitor(Residual(), example=torch.zeros(1, 3))
    with pytest.raises(FastReluError, match="'model'.*at least one ReLU"):
        InjectivityMonitor(nn.Linear(3, 4), example=torch.zeros(1, 3))
    with pytest.raises(FastReluError, match=r"'layers'.*\['fc9'\].*\['0', '2'\]"):
        InjectivityMonitor(_mlp(), layers=["fc9"], example=torch.zeros(1, 5))
    with pytest.raises(FastReluError, match="'model'.*meta device.*load the weights"):
        InjectivityMonitor(nn.Sequential(nn.Linear(3, 4, device="meta"), nn.ReLU()))
    with pytest.raises(FastReluError, match="'model'.*torch.nn.Module"):
        InjectivityMonitor(np.eye(3))
    without_bias = nn.Sequential(nn.Linear(3, 8, bias=False), nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(FastReluError, match="'enforce'.*'0' without a bias.*bias=True"):
        InjectivityMonitor(without_bias, enforce=True, example=torch.zeros(1, 3))
    monitor = InjectivityMonitor(_mlp(), layers=["2"], seed=0, example=torch.zeros(1, 5))
    assert monitor.layers.names() == ["2"]


def test_step_without_a_training_pass():
    model = _mlp()
    monitor = InjectivityMonitor(model, seed=0)
    with torch.no_grad():
        model(torch.randn(4, 5))
    with pytest.raises(FastReluError, match="training forward pass.*before a monitored step"):
        monitor.step()
    model = _mlp()
    monitor = InjectivityMonitor(model, every=2, seed=0)
    _train(model, monitor, 1)  # a pass before a call that every skips is not recorded
    with pytest.raises(FastReluError, match="every=2, only the passes after the previous"):
        monitor.step()


def test_a_module_called_twice_is_monitored_but_not_enforced():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.sq, self.mid, self.head = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.head(F.relu(self.sq(F.relu(self.mid(F.relu(self.sq(x)))))))

    torch.manual_seed(0)
    with pytest.raises(FastReluError, match="'enforce'.*'sq@0'.*more than once"):
        InjectivityMonitor(Twice(), enforce=True, example=torch.zeros(1, 6))
    model = Twice()
    monitor = InjectivityMonitor(model, seed=0, **QUIET)
    _train(model, monitor, 1, inputs=(6,))
    assert [record.layer for record in monitor.history] == ["sq@0", "mid", "sq@1"]
    monitor = InjectivityMonitor(model, enforce=True, layers=["mid"], seed=0, **QUIET)
    _train(model, monitor, 1, inputs=(6,))
    assert _injective_everywhere(model, _window(monitor))["mid"]


def test_a_monitored_model_copies_and_saves_without_its_monitor(tmp_path):
    model = _mlp()
    monitor = InjectivityMonitor(model, seed=0, **QUIET)
    _train(model, monitor, 1)
    copied = copy.deepcopy(model)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    for other in (copied, loaded):
        _train(other, None, 1)  # its forward passes reach no monitor
    assert monitor._batch == []
    _train(model, monitor, 1)
    assert [record.step for record in monitor.history] == [1, 1, 2, 2]


def test_enforcement_through_a_batch_norm_with_negative_scale():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight.uniform_(-1.5, -0.5)  # gamma < 0: the folded rows are flipped
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].running_mean.uniform_(-0.2, 0.2)
    monitor = InjectivityMonitor(model, enforce=True, seed=0, **QUIET)
    for step in range(3):
        _train(model, None, 1, inputs=(4,), seed=step)
        monitor.step()
        assert _injective_everywhere(model, _window(monitor))["0"]
    assert sum(record.projected for record in monitor.history) > 0


def test_forward_passes_in_eval_mode_are_not_the_batch():
    model = _mlp()
    monitor = InjectivityMonitor(model, seed=0, **QUIET)
    batches = _train(model, None, 1)
    model.eval()
    model(torch.randn(9, 5)).sum()  # validation with gradients enabled, in eval mode
    model.train()
    monitor.step()
    assert torch.equal(_window(monitor), batches[0])
