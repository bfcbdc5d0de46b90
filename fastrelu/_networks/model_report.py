"""Layer-by-layer reports on PyTorch models (THEORY §10): every ReLU layer analysed on the
inputs it receives when the model runs on data."""

import dataclasses
import math

import numpy as np

from fastrelu._bias.mcbe import mcbe
from fastrelu._core.domains import Data, Sphere
from fastrelu._core.errors import BudgetError, FastReluError
from fastrelu._core.layer import ReLULayer
from fastrelu._core.memory import format_bytes, memory_limit
from fastrelu._injectivity.pointwise import injectivity_summary
from fastrelu._networks.matrix_free import matrix_free_report
from fastrelu._networks.model_layers import nested_numbers_as_array
from fastrelu._networks.network import _import_torch
from fastrelu._networks.onnx_model import is_onnx, load
from fastrelu._networks.report import (
    DEFAULT_PBE_DIM,
    DEFAULT_POWER_STARTS,
    DEFAULT_WIDTH_DRAWS,
    _Stages,
    heldout_points,
    layer_report,
    listed,
    metric_auc,
    predictions,
    relative_errors,
    settings_of,
)
from fastrelu._networks.results import NetworkReport
from fastrelu._networks.torch_model import DEFAULT_BATCH, _check_model, capture_inputs, find_layers
from fastrelu._reconstruct.driver import reconstruct
from fastrelu._runtime.parallel import Stopwatch
from fastrelu._spectral.width import gaussian_mean_width

#: MCBE samples per layer on the ball (and on a LayerNorm's sphere) by default: fewer than
#: :func:`analyze`'s, as a model's layers are wide.
DEFAULT_MODEL_SAMPLES = 10_000


def _example(data):
    """One batch of model inputs, for discovery."""
    data = nested_numbers_as_array(data)
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        return data[:2]
    try:
        batch = next(iter(data))
    except (TypeError, StopIteration):
        raise FastReluError(f"The 'data' parameter must be a tensor, an array or a non-empty DataLoader of model inputs. Got {type(data).__name__} instead.") from None
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _chosen(found, layers):
    """The discovered layers named in ``layers`` (all for ``None``), in model order."""
    if layers is None:
        return list(found)
    if isinstance(layers, str):
        layers = [layers]
    names = found.names()
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise FastReluError(f"The 'layers' parameter must name ReLU layers of the model: {names}. Got {unknown} instead.")
    return [layer for layer in found if layer.name in set(layers)]


def _own_recovery(layer, kept, Xk, jobs, progress):
    """``recover(k, framed, injective)`` for a model layer: its own input from its
    output, solved at the points where the layer is injective (elsewhere the active rows
    do not span: not stable, condition number ``inf``, not recovered). ``kept``: the
    indices of the layer's nonzero rows."""

    def recover(k, framed, injective):
        N = Xk.shape[0]
        stable, cond = np.zeros(N, dtype=bool), np.full(N, np.inf)
        recovered, error = np.zeros(N, dtype=bool), np.full(N, np.nan)
        if not framed or not injective.any():
            return stable, cond, recovered, error
        W, alpha = layer.weight[kept], layer.bias[kept]
        points = Xk[injective]
        own = reconstruct(ReLULayer(W, alpha), np.maximum(points @ W.T - alpha, 0.0), n_jobs=jobs,
                          progress=progress)
        stable[injective], cond[injective], recovered[injective] = own.spans, own.cond, own.ok
        error[injective] = np.where(own.ok, relative_errors(own.x, points), np.nan)
        return stable, cond, recovered, error
    return recover


def _channel_fields(found_layer, report):
    """Per-channel estimates of a convolution (THEORY §10): the minimum over positions."""
    C, P = found_layer.channels, found_layer.positions
    channel_alpha = found_layer.bias.reshape(C, P)[:, 0]
    estimates = {name: estimate.reshape(C, P).min(axis=1) for name, estimate in report.estimates.items()}
    above = {name: float(np.mean(channel_alpha > estimate)) for name, estimate in estimates.items()}
    return estimates, above


def _sphere_fields(found_layer, Xk, heldout, samples, seed, jobs, progress):
    """The LayerNorm-sphere analysis of THEORY §10: ``(estimate in the layer's
    coordinates, summary dict, skipped reason or None)``."""
    ln = found_layer.layernorm
    W, alpha = found_layer.layer.weight, found_layer.layer.bias
    d = W.shape[1]
    if d < 2:
        return None, None, "a LayerNorm of one feature has a single output"
    Q = ln.basis()
    Ws = (W * ln.gamma) @ Q
    shift = W @ ln.beta
    radius = math.sqrt(d)
    keep = np.linalg.norm(Ws, axis=1) > 0
    estimate = np.full(W.shape[0], np.inf)
    estimate[keep] = mcbe(Ws[keep], Sphere(d - 1, radius=radius), samples, seed=seed, n_jobs=jobs,
                          progress=progress).alpha
    summary = {"shape": (W.shape[0], d - 1), "radius": radius, "samples": samples,
               "fraction_above": float(np.mean(alpha - shift > estimate))}
    if np.all(ln.gamma != 0):
        # The tokens in the LayerNorm's coordinates: v = Q^T (z - beta) / gamma
        V = ((Xk - ln.beta) / ln.gamma) @ Q
        summary["injective_fraction"] = injectivity_summary(ReLULayer(Ws, alpha - shift), V,
                                                            n_jobs=jobs, progress=progress).fraction
        held = V[heldout]
        summary["heldout_fraction"] = (injectivity_summary(ReLULayer(Ws, estimate), held, n_jobs=jobs,
                                                           progress=progress).fraction
                                       if held.shape[0] else float("nan"))
        reason = None
    else:
        reason = "the LayerNorm has zero gains: the tokens' sphere coordinates are not determined by the layer's inputs"
    return estimate + shift, summary, reason


def analyze_model(model, data, *, labels=None, fit_data=None, layers=None,
                  samples=DEFAULT_MODEL_SAMPLES, seed=0, enlarge="kde", enlarge_points=None,
                  bandwidth="scott", noise=0.1, width_draws=DEFAULT_WIDTH_DRAWS,
                  power_starts=DEFAULT_POWER_STARTS, pbe_dim=DEFAULT_PBE_DIM,
                  batch_size=DEFAULT_BATCH, method="auto", n_jobs=None, progress=None):
    """Analyse every ReLU layer of a PyTorch or ONNX model on the inputs it receives.

    The model's ReLU layers are found by :func:`fastrelu.relu_layers` (THEORY §10), the
    model runs on ``data`` in eval mode (:func:`fastrelu.capture`), and each layer is
    analysed as :func:`fastrelu.analyze` analyses a hidden layer, on its own captured
    inputs: frame bounds; the learned bias against the MCBE estimates on the fitting
    inputs, on those inputs enlarged, and on the ball of their radius (PBE for small
    input dimension), with the fraction of neurons above each; pointwise injectivity;
    held-out injectivity under the learned bias and each estimate; stability and
    recovery of **the layer's own input** from its output; ``s_1``; the Gaussian mean
    widths of the inputs and outputs; the local metrics per point. Convolutions also
    get the channel-wise estimates of THEORY §10 (the minimum over a channel's
    positions, since the bias is shared) and the fraction of channels above them; a
    ``Linear`` that reads a ``LayerNorm`` also gets the analysis on the exact set of
    the LayerNorm's outputs (``sphere``).

    A ``Linear`` applied to sequences (inputs of shape ``(T, n)``) is analysed on every
    token: its per-point metrics have ``N T`` entries, and a model input's tokens are
    all fitted or all held out.

    Parameters
    ----------
    model : torch.nn.Module, or str, path-like or onnx.ModelProto
        The model (CPU tensors of float dtype); it is not modified. An ONNX model (a
        ``.onnx`` path or a ``ModelProto``) runs in onnxruntime.
    data : torch.Tensor, array_like or DataLoader
        Model inputs along the first axis (a ``DataLoader`` of tensors or of tuples whose
        first element is the input).
    labels : array_like, shape (N,), or None, default=None
        Class labels: the accuracy (the prediction is the argmax of the model's output)
        and, per layer with one point per model input, the ROC AUC of the per-point
        metrics separating correct from incorrect predictions.
    fit_data : same types as data, or None, default=None
        Model inputs the data-driven estimates are fitted on (then every point of
        ``data`` is held out); ``None``: half of ``data``, chosen by ``seed``.
    layers : sequence of str or None, default=None
        Names of the layers to analyse (:attr:`ModelLayer.name`); ``None``: all.
    samples : int, default=10000
        MCBE samples on the ball (and on a LayerNorm's sphere), per layer.
    seed, enlarge, enlarge_points, bandwidth, noise, width_draws, power_starts, pbe_dim
        As for :func:`fastrelu.analyze`.
    batch_size : int, default=256
        Model inputs per forward pass.
    method : {"auto", "fx", "hooks"}, default="auto"
        How the layers are found (:func:`fastrelu.relu_layers`).
    n_jobs : int or None, default=None
        Worker threads; the report does not depend on it.
    progress : bool or None, default=None
        Progress bars, as for :func:`fastrelu.analyze`.

    Returns
    -------
    NetworkReport
        One :class:`LayerReport` per analysed layer, with ``name``, ``kind`` and
        ``input_shape``; ``index`` is the layer's position in ``parameters["layers"]``
        (the layers chosen, in model order), and the per-point arrays
        ``samples["layer<index>.*"]`` and ``auc`` are keyed by it; ``parameters["not_analysed"]`` names the layers left out (their
        dense matrix over the memory budget, or its analysis over the memory or time
        budget, with the estimate) and ``parameters["other_relus"]`` the ReLUs
        that are not layers of one affine map, each with the reason.

    Raises
    ------
    FastReluError
        For a model that is not a module or applies no ReLU layer, data the model does
        not run on, unknown layer names, labels of the wrong shape, or invalid counts.
    MissingDependencyError
        Without torch (or without onnx and onnxruntime for an ONNX model).

    Examples
    --------
    >>> import torch
    >>> import fastrelu as fr
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3),
    ...                             torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(48, 2))
    >>> report = fr.analyze_model(model, torch.rand(40, 1, 4, 4), samples=200, width_draws=10,
    ...                           power_starts=2, enlarge=None, n_jobs=1)
    >>> [(layer.name, layer.kind, layer.shape) for layer in report.layers]
    [('0', 'conv2d', (48, 16))]
    >>> sorted(report.layers[0].channel_fraction_above)
    ['ball', 'data']
    """
    clock = Stopwatch()
    if is_onnx(model):
        model, was_training = load(model), False  # read once, for discovery and capture
    else:
        _check_model(model, _import_torch())
        was_training = model.training
    settings = settings_of(seed, samples, enlarge, enlarge_points, bandwidth, noise, width_draws,
                           power_starts, pbe_dim, n_jobs, progress)
    seed, samples, width_draws = settings.seed, settings.samples, settings.width_draws
    found = find_layers(model, _example(data), method, "data")
    chosen = _chosen(found, layers)
    limit, source = memory_limit()
    # over the budget: PyTorch layers are analysed matrix-free, ONNX layers (dense rows only) not
    not_analysed = {layer.name: (f"its dense matrix needs {format_bytes(layer.dense_bytes)}, over a "
                                 f"quarter of the memory budget {format_bytes(limit)} ({source}), "
                                 f"and an ONNX layer is computed from its dense rows only: raise "
                                 f"the budget, or analyse the PyTorch model, whose layers over the "
                                 f"budget are analysed matrix-free")
                    for layer in chosen if layer.layer is None and layer._map is None}
    chosen = [layer for layer in chosen if layer.layer is not None or layer._map is not None]
    if not chosen:
        raise FastReluError(f"The 'model' parameter must have a ReLU layer that fastrelu can analyse. Got none: {not_analysed or dict(found.others)}.")
    inputs, outputs = capture_inputs(model, data, chosen, batch_size, None, True, "data")
    N = outputs.shape[0]
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != N:
            raise FastReluError(f"The 'labels' parameter must be a 1-D array of {N} labels (one per model input). Got shape {y.shape} instead.")
    heldout = heldout_points(N, fit_data is not None, seed)
    fit_inputs = (capture_inputs(model, fit_data, chosen, batch_size, None, False, "fit_data")
                  if fit_data is not None else None)
    reports, per_sample = [], {"heldout": heldout}
    total = sum(1 + _Stages.PER_LAYER + (layer.layernorm is not None and layer.layer is not None)
                for layer in chosen)
    with _Stages(len(chosen), progress, total) as stages:
        for k, found_layer in enumerate(chosen):
            held = np.repeat(heldout, found_layer.tokens)
            fit = fit_inputs[found_layer.name] if fit_inputs is not None else None
            try:
                report, samples_k = _layer(k, found_layer, np.asarray(inputs[found_layer.name]), fit,
                                           held, settings, stages)
            except BudgetError as exc:  # this layer's work does not fit: leave it out, go on
                not_analysed[found_layer.name] = str(exc)
                continue
            reports.append(report)
            per_sample.update(samples_k)
    if not reports:
        raise FastReluError(f"The 'model' parameter must have a ReLU layer whose analysis fits the memory and time budget. Got none: {not_analysed}.")
    accuracy, auc = None, {}
    if y is not None:
        accuracy, auc = _model_accuracy(outputs, y, per_sample, chosen)
    from fastrelu._core.version import __version__

    parameters = {"n_points": N, "n_fit": int((~heldout).sum()) if fit_data is None else "fit_data",
                  **settings.recorded(),
                  "fit_data": "given" if fit_data is not None else "half of the data",
                  "model": "onnx" if found.method == "onnx" else type(model).__name__,
                  "discovery": found.method,
                  "model_was_training": was_training,
                  "layers": [layer.name for layer in chosen], "not_analysed": not_analysed,
                  "other_relus": [list(item) for item in found.others], "version": __version__}
    return NetworkReport(layers=tuple(reports), samples=per_sample, auc=auc, accuracy=accuracy,
                         parameters=parameters, elapsed=clock())


def _layer(k, found_layer, Xk, fit, held, settings, stages):
    """``(LayerReport, per-point metrics)`` of one model layer on its captured inputs
    ``Xk`` (``fit``: the fitting inputs, ``None`` for the points not ``held`` out); raises
    ``BudgetError`` when its work does not fit."""
    layer, seed, jobs, progress = found_layer.layer, settings.seed, settings.jobs, settings.progress
    stages(k, "width")
    width_in = gaussian_mean_width(Data(Xk), n_draws=settings.width_draws, seed=seed + k,
                                   n_jobs=jobs, progress=progress)
    if layer is None:  # over the memory budget: products with W and W^T only
        return matrix_free_report(k, found_layer, Xk, held, width_in, settings, stages)
    fit = Xk[~held] if fit is None else fit
    kept = np.flatnonzero(np.linalg.norm(layer.weight, axis=1) > 0)
    report, samples_k, _ = layer_report(
        k, layer, Xk, fit, held, kept, width_in, settings, stages,
        _own_recovery(layer, kept, Xk, jobs, progress), name=found_layer.name,
        kind=found_layer.kind, input_shape=found_layer.input_shape)
    extra = {}
    if found_layer.kind != "linear":
        extra["channel_estimates"], extra["channel_fraction_above"] = _channel_fields(found_layer, report)
    if found_layer.layernorm is not None:
        stages(k, "layernorm sphere")
        sphere_clock = Stopwatch()
        estimate, summary, reason = _sphere_fields(found_layer, Xk, held, settings.samples, seed + k,
                                                   jobs, progress)
        estimates, skipped = dict(report.estimates), dict(report.skipped)
        fraction_above = dict(report.fraction_above)
        if estimate is not None:
            estimates["layernorm_sphere"] = estimate
            fraction_above["layernorm_sphere"] = summary["fraction_above"]
        if reason is not None:
            skipped["layernorm_sphere"] = reason
        extra.update(estimates=estimates, skipped=skipped, fraction_above=fraction_above,
                     sphere=summary,
                     stage_seconds={**report.stage_seconds, "layernorm sphere": sphere_clock()})
    if extra:
        report = dataclasses.replace(report, **extra)
    return report, samples_k


def _model_accuracy(outputs, y, per_sample, chosen):
    """``(accuracy, auc)`` from the model's outputs (argmax over the last axis of a 2-D
    output; a single output unit: positive is class 1)."""
    if outputs.ndim != 2:
        raise FastReluError(f"The 'labels' parameter needs a model whose output is one score vector per input. Got outputs of shape {outputs.shape[1:]} per input (for an ONNX model, its first float output of rank 2, else its first output; a classifier exported by skl2onnx gives its probabilities as such a tensor with options={{'zipmap': False}}).")
    prediction = predictions(outputs)
    units = np.arange(2 if outputs.shape[1] == 1 else outputs.shape[1])
    if not np.isin(y, units).any():
        raise FastReluError(f"The 'labels' parameter must hold output unit indices {listed(units)}. Got labels {listed(np.unique(y))}, none of them an output unit: every prediction would count as wrong.")
    correct = prediction == y
    per_sample["prediction"], per_sample["correct"] = prediction, correct
    # layers of tokens have one metric per token, not one per prediction
    per_input = [k for k, layer in enumerate(chosen)
                 if layer.tokens == 1 and f"layer{k}.n_active" in per_sample]
    return float(correct.mean()), metric_auc(per_sample, correct, per_input)
