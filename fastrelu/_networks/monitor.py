"""Injectivity while a PyTorch model trains (THEORY §11): per layer and step, the
data-driven MCBE estimate over a window of recent batches, the fraction of the batch's
points at which the layer with its learned bias is injective, the fraction of neurons
(channels) above the estimate and, with enforcement, the projection of the biases onto
the admissible box."""

import collections
import csv
import dataclasses
import json
import math
import os
import time
import weakref

import numpy as np

from fastrelu._bias.mcbe import mcbe
from fastrelu._core.domains import Data
from fastrelu._core.errors import FastReluError
from fastrelu._core.frames import is_frame
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import positive_int, seed_value
from fastrelu._injectivity.pointwise import pointwise_injectivity
from fastrelu._networks.network import _import_torch
from fastrelu._networks.torch_model import (
    _Affine,
    _apply,
    _check_model,
    _dense,
    _EvalMode,
    _first_tensor,
    _Norm,
    capture_inputs,
    find_layers,
)

#: Model inputs per forward pass when the window is pushed through the model.
WINDOW_BATCH = 1024
#: The projected bias stays this many rounding bounds of ``<w_i, x>`` below the estimate
#: (``ROUNDING_SLACK * n * eps * |w_i| * max |x|``), so that the exact claim of THEORY §3
#: does not rest on how a BLAS happens to round the point that attains the minimum.
ROUNDING_SLACK = 4.0


@dataclasses.dataclass(frozen=True)
class MonitorRecord:
    """One layer at one monitored step.

    Attributes
    ----------
    step : int
        The number of :meth:`InjectivityMonitor.step` calls so far (1 for the first).
    layer : str
        The layer's name (:attr:`fastrelu.ModelLayer.name`).
    window_points : int
        Points the estimate was computed on: the window's model inputs times the layer's
        tokens per input.
    batch_points : int
        Points of the current batch used (the monitor's ``points``, times tokens).
    injective_fraction : float
        Fraction of the current batch's points at which the layer with its learned bias
        (before its own projection) is injective, at the inputs it receives from the
        model as it is after the optimiser's step (with enforcement: after the layers
        before it were projected, the network it now sits in).
    fraction_above : float
        Fraction of neurons (channels for a convolution, whose bias is shared) whose
        learned ``alpha`` exceeds the running estimate, before its own projection.
    projected : int
        Neurons (channels) whose bias the projection lowered (0 without enforcement).
    unconstrained : int
        Neurons that no point of the window constrained (estimate ``+inf``).
    incomplete : int
        Window points whose rows do not reach rank ``n``: no bias makes the layer
        injective there (a layer with fewer live neurons than inputs has all).
    seconds : float
        Wall-clock seconds of this layer's work at this step.
    """

    step: int
    layer: str
    window_points: int
    batch_points: int
    injective_fraction: float
    fraction_above: float
    projected: int
    unconstrained: int
    incomplete: int
    seconds: float

    def as_dict(self):
        """The record as a plain dict (for JSON, CSV or a data frame)."""
        return dataclasses.asdict(self)


#: The record fields that are written to a TensorBoard ``SummaryWriter`` as scalars.
SCALARS = ("injective_fraction", "fraction_above", "projected")


class InjectivityMonitor:
    """Watch, and optionally enforce, the injectivity of a model's ReLU layers while it
    trains (THEORY §11).

    Construct it once on the model; it observes the model's forward passes through a
    forward pre-hook (those in train mode with gradients enabled: the training passes,
    not evaluation). Call :meth:`step` right after each
    ``optimizer.step()``. At every ``every``-th call it

    1. takes ``points`` of the model inputs seen since the previous monitored call (all
       of them by default; a seeded choice otherwise) and appends them to a window of
       the last ``window`` monitored calls;
    2. pushes the window's model inputs through the model as it is now, in eval mode
       (batch norm with its running statistics, dropout off) and without gradients,
       and for each layer, from the first:
    3. computes the data-driven MCBE estimate on the union of the window's points with
       the layer's current weights (folded batch norm included), the fraction of the
       current batch's points at which the learned bias is injective and the fraction
       of neurons above the estimate;
    4. with ``enforce=True``, lowers ``alpha`` (raises PyTorch's bias) to the estimate
       where it exceeds it, before the next layer's inputs are formed.

    After an enforcing call every layer is injective at every point of the window
    whose rows reach rank ``n`` (all of them for any layer that can be injective), at
    the inputs it now receives. The projection is written without gradients into the
    parameters' storage: autograd's graph and the optimiser's state are untouched.
    Without enforcement no parameter or buffer changes.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained. It is called with one input tensor (the first
        positional argument is what the monitor records).
    layers : sequence of str or None, default=None
        Names of the layers to monitor (:attr:`fastrelu.ModelLayer.name`); ``None``:
        every ReLU layer :func:`fastrelu.relu_layers` finds.
    window : int, default=1
        Monitored calls whose points make up the running estimate.
    every : int, default=1
        Monitor every ``every``-th call of :meth:`step` (the others only count).
    points : int or None, default=None
        Model inputs of the current batch used per monitored call; ``None``: all.
    enforce : bool, default=False
        Project the biases onto the admissible box at each monitored call.
    seed : int or None, default=None
        Seed of the choice of ``points`` (``None``: fresh entropy, kept in
        :attr:`seed`). A seeded monitor gives the same history for the same training.
    writer : object or None, default=None
        A TensorBoard ``SummaryWriter`` (anything with ``add_scalar(tag, value,
        step)``): each record's ``injective_fraction``, ``fraction_above`` and
        ``projected`` are written as ``injectivity/<layer>/<field>``.
    example : tensor or array_like or None, default=None
        A batch of model inputs for finding the layers now; ``None``: they are found at
        the first monitored call, on that call's batch.
    n_jobs : int or None, default=None
        Worker threads for fastrelu's kernels (the results do not depend on it).

    Attributes
    ----------
    history : list of MonitorRecord
        One record per layer and monitored call, in order.
    estimates : dict of str to ndarray
        Each layer's latest running estimate per neuron (fastrelu's convention:
        ``ReLU(W x - alpha)`` is injective on the window for ``alpha <= estimate``).
    layers : ReLULayers or None
        The layers monitored (``None`` until they are found).
    seed : int

    Raises
    ------
    FastReluError
        For a model that is not a module (or holds no parameter values), invalid
        ``window``, ``every`` or ``points``; at discovery (construction with
        ``example``, else the first monitored call), for a model without ReLU layers,
        unknown layer names, or (with ``enforce``) a layer without a bias to write or
        whose module the model calls more than once.
    MissingDependencyError
        Without torch.

    Examples
    --------
    >>> import torch
    >>> from fastrelu.torch import InjectivityMonitor
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 12), torch.nn.ReLU(), torch.nn.Linear(12, 1))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> monitor = InjectivityMonitor(model, enforce=True, seed=0, n_jobs=1)
    >>> for _ in range(3):
    ...     optimizer.zero_grad()
    ...     loss = model(torch.randn(32, 3)).square().mean()
    ...     loss.backward()
    ...     optimizer.step()
    ...     records = monitor.step()
    >>> [(record.step, record.layer, record.window_points) for record in monitor.history]
    [(1, '0', 32), (2, '0', 32), (3, '0', 32)]
    >>> all(0 <= record.injective_fraction <= 1 for record in monitor.history)
    True
    """

    def __init__(self, model, *, layers=None, window=1, every=1, points=None, enforce=False,
                 seed=None, writer=None, example=None, n_jobs=None):
        torch = _import_torch()
        _check_model(model, torch)
        self.window = positive_int(window, "window")
        self.every = positive_int(every, "every")
        self.points = None if points is None else positive_int(points, "points")
        if not isinstance(enforce, (bool, np.bool_)):
            raise FastReluError(f"The 'enforce' parameter must be True or False. Got {enforce!r} instead.")
        self.enforce = bool(enforce)
        if layers is not None:
            if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
                raise FastReluError(f"The 'layers' parameter must be a sequence of layer names (str) or None. Got {layers!r} instead.")
            layers = list(layers)
            if not layers:
                raise FastReluError("The 'layers' parameter must name at least one layer, or be None for all. Got an empty sequence.")
        if writer is not None and not callable(getattr(writer, "add_scalar", None)):
            raise FastReluError(f"The 'writer' parameter must have an add_scalar(tag, value, step) method (a TensorBoard SummaryWriter). Got {type(writer).__name__} instead.")
        self.seed = seed_value(seed)
        self.model, self.writer, self.n_jobs = model, writer, n_jobs
        self._names = layers
        self.history, self.estimates, self.layers = [], {}, None
        self._calls, self._batch = 0, []
        self._window = collections.deque(maxlen=self.window)
        self._handle = model.register_forward_pre_hook(_Hook(self), with_kwargs=True)
        if example is not None:
            self._find(example)

    # --- observing -----------------------------------------------------------------------

    def _record(self, module, args, kwargs):
        torch = _import_torch()
        if not (torch.is_grad_enabled() and module.training) or (self._calls + 1) % self.every:
            return  # evaluation, fastrelu's own passes, or a call that is not monitored
        x = _first_tensor(args, kwargs, torch)
        if x is not None:
            self._batch.append(x.detach().to(device="cpu", copy=True))

    def close(self):
        """Remove the monitor's hook from the model (it observes nothing afterwards)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # --- the step --------------------------------------------------------------------------

    def step(self):
        """Monitor (and enforce) after an optimiser step.

        Returns
        -------
        list of MonitorRecord
            This call's records, one per layer (empty for a call that ``every`` skips).

        Raises
        ------
        FastReluError
            When the model ran no training forward pass since the previous monitored
            call (nothing to monitor), or the monitor was closed.
        """
        if self._handle is None:
            raise FastReluError("The monitor must be open to step. Got a closed monitor (close() removed its hook); construct a new one.")
        self._calls += 1
        if self._calls % self.every:
            return []
        torch = _import_torch()
        if not self._batch:
            raise FastReluError(f"The model must run a training forward pass (in train mode, with gradients enabled) before a monitored step(). Got none since {'the monitor was constructed' if self._calls == self.every else f'step {self._calls - self.every}'}" + (f" (with every={self.every}, only the passes after the previous step() count)" if self.every > 1 else "") + ": call monitor.step() right after optimizer.step().")
        batch = torch.cat(self._batch, dim=0) if len(self._batch) > 1 else self._batch[0]
        self._batch = []
        if self.layers is None:
            self._find(batch[:1])
        if self.points is not None and self.points < batch.shape[0]:
            rng = np.random.default_rng((self.seed, self._calls))
            chosen = np.sort(rng.choice(batch.shape[0], size=self.points, replace=False))
            batch = batch[torch.from_numpy(chosen)]
        self._window.append(batch)
        window = torch.cat(list(self._window), dim=0)
        records = self._monitor(window, batch.shape[0])
        self.history.extend(records)
        if self.writer is not None:
            for record in records:
                for field in SCALARS:
                    self.writer.add_scalar(f"injectivity/{record.layer}/{field}",
                                           getattr(record, field), record.step)
        return records

    def _find(self, example):
        found = find_layers(self.model, example, "auto", "example")
        if not len(found):
            raise FastReluError(f"The 'model' parameter must apply a ReLU to one Linear or Conv map (a ReLU layer). Got none; its ReLUs: {dict(found.others)}.")
        chosen = list(found)
        if self._names is not None:
            names = found.names()
            unknown = [name for name in self._names if name not in names]
            if unknown:
                raise FastReluError(f"The 'layers' parameter must name layers of the model. Got {unknown}; its layers are {names}.")
            chosen = [layer for layer in found if layer.name in self._names]
        modules = dict(self.model.named_modules())
        for layer in chosen:
            if layer.layer is None:
                raise FastReluError(f"The 'layers' parameter must name layers whose dense matrix fits the memory budget. Got {layer.name!r}, whose matrix needs {layer.dense_bytes:,} bytes; leave it out with layers=.")
            if self.enforce and "@" in layer.name:
                raise FastReluError(f"The 'enforce' parameter needs layers whose module the model calls once. Got the layer {layer.name!r}, a call of a module the model calls more than once: projecting one call's bias moves the others' and the inputs of every layer between them. Leave its calls out with layers=, or monitor without enforce.")
            if self.enforce and _writable(layer, modules) is None:
                raise FastReluError(f"The 'enforce' parameter needs a bias to write for every layer. Got the layer {layer.name!r} without a bias (nor an affine batch norm after it): construct it with bias=True, or leave it out with layers=.")
        self.layers = type(found)(chosen, found.others, found.method, found.trace_error)

    def _monitor(self, window, batch_size):
        torch = _import_torch()
        model, modules = self.model, dict(self.model.named_modules())
        records = []
        inputs = None
        with _EvalMode(model):
            for k, layer in enumerate(self.layers):
                clock = time.perf_counter()
                if inputs is None:  # the inputs of this layer and the ones after it
                    inputs = capture_inputs(model, window, self.layers[k:], WINDOW_BATCH, None,
                                            False, "window")
                X = inputs.pop(layer.name)
                current = _current_layer(layer, modules, torch)
                batch_rows = batch_size * layer.tokens
                estimate, incomplete = self._estimate(current, X)
                C, P = layer.channels, layer.positions
                alpha = current.bias.reshape(C, P)[:, 0]
                channel_estimate = estimate.reshape(C, P).min(axis=1)
                fraction = float(np.mean(pointwise_injectivity(
                    current, X[X.shape[0] - batch_rows:], n_jobs=self.n_jobs, progress=False)))
                projected = 0
                if self.enforce:
                    goal = (estimate - _rounding_margin(current.weight, X)).reshape(C, P).min(axis=1)
                    projected = _project(layer, modules, goal, torch)
                    if projected:
                        inputs = None  # the later layers' inputs change with this bias
                self.estimates[layer.name] = estimate
                records.append(MonitorRecord(
                    step=self._calls, layer=layer.name, window_points=int(X.shape[0]),
                    batch_points=int(batch_rows), injective_fraction=fraction,
                    fraction_above=float(np.mean(alpha > channel_estimate)), projected=projected,
                    unconstrained=int(np.isinf(estimate).sum()), incomplete=incomplete,
                    seconds=time.perf_counter() - clock))
        return records

    def _estimate(self, layer, X):
        """MCBE on the window's points ``X`` (zero rows: ``+inf``) and the number of
        points whose rows do not reach rank ``n``."""
        W = layer.weight
        m, n = W.shape
        estimate = np.full(m, np.inf)
        kept = np.flatnonzero((W != 0).any(axis=1))
        if kept.size < n:
            return estimate, int(X.shape[0])  # fewer live neurons than inputs: injective nowhere
        try:
            result = mcbe(W[kept], Data(X), n_jobs=self.n_jobs, progress=False)
        except FastReluError:
            if is_frame(W[kept]):
                raise
            return estimate, int(X.shape[0])  # the rows do not span R^n: injective nowhere
        estimate[kept] = result.alpha
        return estimate, int(result.n_incomplete)

    # --- export ----------------------------------------------------------------------------

    def to_records(self):
        """The history as a list of dicts."""
        return [record.as_dict() for record in self.history]

    def to_json(self, path):
        """Write the history (and the monitor's settings) to a JSON file."""
        document = {"settings": {"window": self.window, "every": self.every, "points": self.points,
                                 "enforce": self.enforce, "seed": self.seed,
                                 "layers": None if self.layers is None else self.layers.names()},
                    "history": self.to_records()}
        with open(os.fspath(path), "w") as handle:
            json.dump(document, handle, indent=1)

    def to_csv(self, path):
        """Write the history to a CSV file, one row per record."""
        fields = [field.name for field in dataclasses.fields(MonitorRecord)]
        with open(os.fspath(path), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.to_records())

    def __repr__(self):
        names = None if self.layers is None else self.layers.names()
        return (f"InjectivityMonitor(layers={names}, window={self.window}, every={self.every}, "
                f"points={self.points}, enforce={self.enforce}, steps={self._calls})")


class _Hook:
    """The monitor's forward pre-hook: a weak reference to it, so that the model does
    not keep it alive, and inert in a copy of the model (``copy.deepcopy``,
    ``torch.save``, ``AveragedModel``): a copy is not monitored."""

    def __init__(self, monitor=None):
        self.monitor = None if monitor is None else weakref.ref(monitor)

    def __call__(self, module, args, kwargs):
        monitor = None if self.monitor is None else self.monitor()
        if monitor is not None:
            monitor._record(module, args, kwargs)

    def __reduce__(self):
        return _Hook, ()


def _current_layer(layer, modules, torch):
    """The layer's ``ReLULayer`` from the module's parameters as they are now."""
    path = layer.name.partition("@")[0]
    affine = _Affine(modules[path], torch)
    norm = None if layer.batchnorm is None else _Norm(modules[layer.batchnorm], torch)
    with torch.no_grad():
        offset = _apply(affine, norm, torch.zeros((1, *layer.input_shape), dtype=torch.float64), torch)
    W = _dense(affine, norm, layer.input_shape, offset, torch)
    return ReLULayer(W, -offset.reshape(-1).numpy())


def _rounding_margin(W, X):
    """A bound on the rounding of ``<w_i, x>`` in float64, per row, over the points."""
    n = W.shape[1]
    largest = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X)))) if X.shape[0] else 0.0
    return ROUNDING_SLACK * n * np.finfo(np.float64).eps * np.linalg.norm(W, axis=1) * largest


def _writable(layer, modules):
    """``(parameter, coefficient)``: the parameter a channel's folded bias moves with and
    by how much per unit (``None`` when there is none)."""
    path = layer.name.partition("@")[0]
    module = modules[path]
    if layer.batchnorm is not None:
        norm = modules[layer.batchnorm]
        if norm.affine:
            return norm.bias, None  # the folded bias is beta + s (b - mu): moves 1:1 with beta
        if module.bias is not None:
            return module.bias, norm  # 1:s with the map's own bias, s = 1/sqrt(var + eps) > 0
        return None
    return (module.bias, None) if module.bias is not None else None


def _project(layer, modules, goal, torch):
    """Raise the folded bias of each channel to at least ``-goal`` (``alpha <= goal``);
    returns how many channels moved. The written values are rounded up in the
    parameter's dtype and checked against the layer rebuilt from the parameters."""
    parameter, through_norm = _writable(layer, modules)
    C, P = layer.channels, layer.positions
    moved = np.zeros(C, dtype=bool)
    for _ in range(64):  # each pass moves every channel still short at least one ulp up
        alpha = _current_alpha(layer, modules, torch).reshape(C, P)[:, 0]
        short = alpha > goal
        if not short.any():
            return int(moved.sum())
        moved |= short
        gap = alpha[short] - goal[short]
        if through_norm is not None:  # the map's bias moves the folded one by s = 1/sqrt(var + eps)
            var = through_norm.running_var.detach().to(device="cpu", dtype=torch.float64).numpy()
            gap = gap * np.sqrt(var[short] + through_norm.eps)
        with torch.no_grad():  # computed on the CPU (float64), written on the parameter's device
            index = torch.from_numpy(np.flatnonzero(short))
            old = parameter.detach()[index.to(parameter.device)].to("cpu")
            new = (old.double() + torch.from_numpy(gap)).to(old.dtype)
            new = torch.maximum(new, torch.nextafter(old, torch.full_like(old, math.inf)))
            parameter[index.to(parameter.device)] = new.to(parameter.device)
    raise FastReluError(f"The layer {layer.name!r} could not take its projected bias in {parameter.dtype}: the estimate lies beyond what the parameter's precision resolves near its value.")


def _current_alpha(layer, modules, torch):
    """``alpha`` from the module's parameters now (minus the map applied to zero)."""
    affine = _Affine(modules[layer.name.partition("@")[0]], torch)
    norm = None if layer.batchnorm is None else _Norm(modules[layer.batchnorm], torch)
    with torch.no_grad():
        offset = _apply(affine, norm, torch.zeros((1, *layer.input_shape), dtype=torch.float64), torch)
    return -offset.reshape(-1).numpy()
