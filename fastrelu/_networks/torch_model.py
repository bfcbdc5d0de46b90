"""The ReLU layers of a PyTorch model (THEORY §10): where a ReLU is applied to one affine
map of one tensor (``Linear``, ``Conv1d``, ``Conv2d``, each optionally followed by an
eval-mode ``BatchNorm1d/2d``, folded in), the layer's operator on its flattened input,
and the inputs each layer receives when the model runs on data.

Discovery reads the model's ``torch.fx`` graph when the model traces, and otherwise runs
it once on the example with forward hooks on its modules and a ``TorchFunctionMode``
that sees every functional ReLU (``F.relu``, ``torch.relu``, ``Tensor.relu_``, ...).
"""

import collections
import math
import os

import numpy as np

from fastrelu._core.errors import FastReluError, first_line
from fastrelu._core.layer import ReLULayer
from fastrelu._core.memory import memory_limit
from fastrelu._networks.captured import check_capture_memory, flush, stored_inputs, streaming
from fastrelu._networks.model_layers import (
    DENSE_SHARE,
    LayerNormInput,
    ModelLayer,
    ReLULayers,
    nested_numbers_as_array,
)
from fastrelu._networks.network import _import_torch
from fastrelu._networks.onnx_model import capture_onnx, is_onnx, relu_layers_onnx

#: Basis vectors pushed through a convolution at once when its dense rows are formed.
COLUMN_BATCH = 256
#: Model inputs run through the model at once during capture.
DEFAULT_BATCH = 256
#: Function names that apply a ReLU (``F.relu``, ``torch.relu``, ``Tensor.relu`` and
#: their in-place forms).
RELU_NAMES = frozenset({"relu", "relu_"})


class _TorchMap:
    """A layer's affine map computed by PyTorch in float64 on the CPU: ``affine`` (with
    the bias), ``linear`` (without) and ``adjoint`` (the transpose, by autograd), each
    on rows of flattened inputs."""

    def __init__(self, affine, norm, input_shape):
        self.affine_part, self.norm, self.input_shape = affine, norm, input_shape

    def _run(self, X, torch):
        x = torch.from_numpy(np.ascontiguousarray(X)).reshape(-1, *self.input_shape)
        return _apply(self.affine_part, self.norm, x, torch).reshape(X.shape[0], -1)

    def affine(self, X):
        torch = _import_torch()
        with torch.no_grad():
            return self._run(X, torch).numpy()

    def _linear(self, x, torch):
        z = self.affine_part(x, torch, bias=False)
        return z if self.norm is None else self.norm.linear(z)

    def linear(self, X):
        torch = _import_torch()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(X)).reshape(-1, *self.input_shape)
            return self._linear(x, torch).reshape(X.shape[0], -1).numpy()

    def adjoint(self, U):
        torch = _import_torch()
        n = math.prod(self.input_shape)
        k = U.shape[0]
        u = torch.from_numpy(np.ascontiguousarray(U))
        affine = self.affine_part
        # "same"/"valid" padding: torch's input gradient takes numbers only, so autograd
        direct = affine.linear or (affine.padding_mode == "zeros" and not isinstance(affine.padding, str))
        if direct:  # the transposed map itself: the scaled rows, or the convolution's input gradient
            with torch.no_grad():
                if affine.linear:
                    z = u if self.norm is None else self.norm.linear(u)
                    return (z @ affine.weight).numpy()
                z = u.reshape(k, affine.weight.shape[0], -1)
                z = z if self.norm is None else self.norm.linear(z)
                z = z.reshape(k, affine.weight.shape[0], *self._output_spatial())
                grad = (torch.nn.grad.conv1d_input if affine.dims == 1 else torch.nn.grad.conv2d_input)(
                    (k, *self.input_shape), affine.weight, z, affine.stride, affine.padding,
                    affine.dilation, affine.groups)
                return grad.reshape(k, n).numpy()
        x = torch.zeros((k, n), dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            out = self._linear(x.reshape(k, *self.input_shape), torch).reshape(k, -1)
            # the map acts on each row of the batch alone, so the gradient of sum_j <u_j, A x_j>
            # is the block of adjoints W^T u_j: one backward pass for the whole block
            (grad,) = torch.autograd.grad(out, x, grad_outputs=u)
        return grad.numpy().reshape(k, n)

    def _output_spatial(self):
        """The output's spatial shape (from one forward pass of a zero input, cached)."""
        if not hasattr(self, "_spatial"):
            torch = _import_torch()
            with torch.no_grad():
                out = self.affine_part(torch.zeros((1, *self.input_shape), dtype=torch.float64), torch)
            self._spatial = tuple(out.shape[2:])
        return self._spatial


# --- discovery ------------------------------------------------------------------------------


def _kinds(torch):
    nn = torch.nn
    return {"affine": {nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d"},
            "norm": (nn.BatchNorm1d, nn.BatchNorm2d),
            "through": (nn.Identity, nn.Dropout),
            "layernorm": nn.LayerNorm}


def _first_tensor(args, kwargs, torch):
    """The tensor a module is applied to: its first tensor argument, positional or
    keyword (``self.fc(input=x)``)."""
    for value in (*args, *(kwargs or {}).values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _module_label(module):
    return type(module).__name__


class _Site:
    """A ReLU found by discovery: the affine call it reads (``(path, call)``) with the
    batch norm and LayerNorm around it, or the reason it is not a layer."""

    def __init__(self, relu, affine=None, norm=None, layernorm=None, reason=None):
        self.relu, self.affine, self.norm = relu, affine, norm
        self.layernorm, self.reason = layernorm, reason


def _norm_reason(module, path):
    """Why a batch norm cannot be folded (``None`` when it can); discovery runs the model
    in eval mode, where one with running statistics is affine."""
    if not module.track_running_stats or module.running_mean is None:
        return f"the batch norm {path!r} keeps no running statistics (track_running_stats=False): it normalises by each batch, which is not an affine map"
    return None


def _relu_function_label(node_target, node_op):
    if node_op == "call_method":
        return f"Tensor.{node_target}"
    module = getattr(node_target, "__module__", "") or ""
    name = getattr(node_target, "__name__", str(node_target))
    return f"F.{name}" if "functional" in module else f"torch.{name}"


def _fx_sites(model, torch):
    """The sites from the model's ``torch.fx`` graph (raises what tracing raises)."""
    import torch.fx

    class Tracer(torch.fx.Tracer):
        """Traces into every module with submodules, PyTorch's own included (a
        ``TransformerEncoderLayer`` applies its ReLU inside)."""

        def is_leaf_module(self, module, qualname):
            return next(module.children(), None) is None and module.__module__.startswith("torch.nn")

    graph = Tracer().trace(model)
    modules = dict(model.named_modules())
    kinds = _kinds(torch)
    calls, node_call = collections.Counter(), {}
    for node in graph.nodes:
        if node.op == "call_module":
            node_call[node] = (node.target, calls[node.target])
            calls[node.target] += 1

    def module_of(node):
        return modules.get(node.target) if getattr(node, "op", None) == "call_module" else None

    def describe(node):
        if not hasattr(node, "op"):
            return f"the constant {node!r}"
        module = module_of(node)
        if module is not None:
            return f"the output of {_module_label(module)} {node.target!r}"
        if node.op == "placeholder":
            return "the model input"
        name = getattr(node.target, "__name__", str(node.target))
        return f"the output of {name}"

    def is_relu(node):
        if node.op == "call_module":
            return isinstance(module_of(node), torch.nn.ReLU)
        if node.op == "call_function":
            return getattr(node.target, "__name__", None) in RELU_NAMES and node.target in (
                torch.relu, torch.relu_, torch.nn.functional.relu, torch.nn.functional.relu_)
        return node.op == "call_method" and node.target in RELU_NAMES

    def mutated(node, relu):
        """Is the tensor of ``node`` changed in place by a node other than the ReLU
        (``h.add_(x)``: the ReLU then reads the sum, not the map)?"""
        for user in node.users:
            name = user.target if user.op == "call_method" else getattr(user.target, "__name__", "")
            if user is not relu and isinstance(name, str) and name.endswith("_") and not name.startswith("_") \
                    and user.args and user.args[0] is node:
                return name
        return None

    def through(node, chain):
        """The first node from ``node`` back that is not a pass-through module, every
        node on the way appended to ``chain``."""
        chain.append(node)
        while isinstance(module_of(node), kinds["through"]):
            node = node.args[0]
            chain.append(node)
        return node

    sites = []
    for node in graph.nodes:
        if not is_relu(node):
            continue
        label = node.target if node.op == "call_module" else _relu_function_label(node.target, node.op)
        chain = []  # the nodes between the map and the ReLU, the map's own last
        source = through(node.args[0] if node.args else next(iter(node.kwargs.values()), None), chain)
        norm = None
        if isinstance(module_of(source), kinds["norm"]):
            norm = node_call[source]
            reason = _norm_reason(module_of(source), source.target)
            if reason:
                sites.append(_Site(label, reason=reason))
                continue
            source = through(source.args[0], chain)
        module = module_of(source)
        if type(module) not in kinds["affine"]:
            sites.append(_Site(label, reason=_other_reason(describe(source), norm is not None)))
            continue
        changed = next((name for name in (mutated(link, node) for link in chain) if name), None)
        if changed:
            sites.append(_Site(label, reason=f"its input, computed from {_module_label(module)} {source.target!r}, is changed in place by {changed} before the ReLU: not one affine map"))
            continue
        feed = source.args[0] if source.args else next(iter(source.kwargs.values()), None)
        layernorm = feed.target if isinstance(module_of(feed), kinds["layernorm"]) and not mutated(feed, None) else None
        sites.append(_Site(label, node_call[source], norm, layernorm))
    return sites


def _other_reason(source, after_norm):
    where = "a batch norm applied to " if after_norm else ""
    text = f"its input is {where}{source}, not one Linear/Conv1d/Conv2d (optionally followed by an eval-mode BatchNorm1d/2d)"
    if "add" in source:
        text += ": a residual sum ReLU(W h + b + x) is a ReLU layer of the joint input (h, x) (THEORY §10), which fastrelu does not analyse"
    return text


def _hook_sites(model, example, torch):
    """The sites from one run of the model on the example: forward hooks record which
    module produced each tensor, a TorchFunctionMode which function did and where a ReLU
    was applied."""
    from torch.overrides import TorchFunctionMode

    kinds = _kinds(torch)
    produced = {}  # id(tensor) -> ("module", path, call, input id) or ("function", name)
    alive = []  # every tensor recorded, kept alive so that ids are not reused
    calls = collections.Counter()
    relus = []  # (label, the entry of the tensor it was applied to)
    current = []  # the nn.ReLU modules running

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in RELU_NAMES and args and isinstance(args[0], torch.Tensor):
                owner = getattr(func, "__qualname__", "")
                label = current[-1] if current else (
                    f"Tensor.{name}" if owner.startswith("TensorBase") or owner.startswith("Tensor")
                    else _relu_function_label(func, "call_function"))
                relus.append((label, produced.get(id(args[0]))))
            result = func(*args, **kwargs)
            if isinstance(result, torch.Tensor) and name not in ("__get__", "size", "dim"):
                alive.append(result)
                produced[id(result)] = ("function", name.strip("_") or name)
            return result

    handles = []
    entering = {}  # path -> the entries of the inputs of its running calls

    def before(path):
        def hook(mod, args, kwargs):
            source = _first_tensor(args, kwargs, torch)
            if source is not None:
                alive.append(source)
            # the entry of the module's input as it is now (the module or a later in-place
            # op may change the tensor)
            entering.setdefault(path, []).append(None if source is None else produced.get(id(source)))
        return hook

    def after(path, module):
        def hook(mod, args, kwargs, output):
            call = calls[path]
            calls[path] += 1
            entry = entering[path].pop()
            if not isinstance(output, torch.Tensor):
                return
            alive.append(output)
            if isinstance(mod, kinds["through"]):
                # an identity in eval mode: its output is its input, whatever ran inside
                if entry is not None:
                    produced[id(output)] = entry
                return
            produced[id(output)] = ("module", path, call, entry, mod)
        return hook

    for path, module in model.named_modules():
        if path == "":
            continue
        if isinstance(module, torch.nn.ReLU):
            handles.append(module.register_forward_pre_hook(lambda mod, inputs, path=path: current.append(path)))
            handles.append(module.register_forward_hook(lambda mod, inputs, output: current.pop() and None))
        elif next(module.children(), None) is None:
            # leaf modules only: a container's output is its last module's, already recorded
            handles.append(module.register_forward_pre_hook(before(path), with_kwargs=True))
            handles.append(module.register_forward_hook(after(path, module), with_kwargs=True))
    try:
        with torch.no_grad(), Recorder():
            model(example)
    finally:
        for handle in handles:
            handle.remove()

    def describe(entry):
        if entry is None:
            return "a tensor no module or function recorded produced (the model input or a constant)"
        if entry[0] == "function":
            return f"the output of {entry[1]}"
        return f"the output of {_module_label(entry[4])} {entry[1]!r}"

    sites = []
    for label, entry in relus:
        norm = None
        if entry is not None and entry[0] == "module" and isinstance(entry[4], kinds["norm"]):
            reason = _norm_reason(entry[4], entry[1])
            if reason:
                sites.append(_Site(label, reason=reason))
                continue
            norm = (entry[1], entry[2])
            entry = entry[3]
        if entry is None or entry[0] != "module" or type(entry[4]) not in kinds["affine"]:
            sites.append(_Site(label, reason=_other_reason(describe(entry), norm is not None)))
            continue
        feed = entry[3]
        layernorm = feed[1] if feed is not None and feed[0] == "module" and isinstance(feed[4], kinds["layernorm"]) else None
        sites.append(_Site(label, (entry[1], entry[2]), norm, layernorm))
    return sites


def _check_model(model, torch):
    if isinstance(model, torch.jit.ScriptModule):
        raise FastReluError("The 'model' parameter must be a torch.nn.Module that is not scripted. Got a TorchScript module instead, whose graph fastrelu does not read: pass the nn.Module it was scripted from.")
    if isinstance(model, (str, os.PathLike)):
        raise FastReluError(f"The 'model' parameter must be a torch.nn.Module, or an ONNX model (a path ending in .onnx or an onnx.ModelProto). Got the path {os.fspath(model)!r}; load the module first (a TorchScript file is read by the command line, fastrelu report, through ONNX).")
    if not isinstance(model, torch.nn.Module):
        raise FastReluError(f"The 'model' parameter must be a torch.nn.Module, or an ONNX model (a path ending in .onnx or an onnx.ModelProto). Got {type(model).__name__} instead.")
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.device.type == "meta":
            raise FastReluError(f"The 'model' parameter must hold its parameters' values. Got {name!r} on the meta device (no values) instead: load the weights first.")


def _model_tensor(model, value, torch, name="example"):
    """``value`` as a tensor on the model's device and floating dtype."""
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.from_numpy(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise FastReluError(f"The '{name}' parameter must be a tensor or an array of numbers. Got {type(value).__name__} ({exc}) instead.") from None
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int64, torch.int32)):
        raise FastReluError(f"The '{name}' parameter must hold real numbers. Got dtype {tensor.dtype} instead.")
    # a copy: a model that changes its input in place must not change the caller's data
    return tensor.to(device=device, dtype=dtype, copy=True)


class _EvalMode:
    """Every module in eval mode inside, each module's own mode restored on leaving."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for module, mode in self.modes:
            module.training = mode


def relu_layers(model, example, *, method="auto"):
    """The ReLU layers of a PyTorch or ONNX model (THEORY §10).

    A ReLU layer is a ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``Tensor.relu`` or
    their in-place forms) applied to the output of one affine map of one tensor: an
    ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (any stride, padding, dilation,
    groups; zero or circular, reflect and replicate padding), optionally followed by an
    ``nn.BatchNorm1d/2d`` with running statistics, which is folded in (the model is
    analysed in eval mode), with ``nn.Identity`` and ``nn.Dropout`` (identities in eval
    mode) allowed in between. Every other ReLU (after a residual sum, after pooling,
    after another ReLU) is listed in ``others`` with the reason.

    Parameters
    ----------
    model : torch.nn.Module, or str, path-like or onnx.ModelProto
        The model; it is not modified (its train/eval modes are restored). A path ending
        in ``.onnx`` or an ``onnx.ModelProto`` is read with ``onnx`` (``Relu`` nodes
        after ``Gemm``, ``MatMul`` + ``Add`` or ``Conv``, optionally followed by
        ``BatchNormalization``; ``Identity`` and ``Dropout`` in between) and run with
        ``onnxruntime``; then ``method`` is ``"onnx"``.
    example : torch.Tensor or array_like
        A batch of model inputs (one point is enough): it fixes every layer's input
        shape, which a convolution's operator depends on.
    method : {"auto", "fx", "hooks"}, default="auto"
        ``"fx"``: read the model's ``torch.fx`` graph; ``"hooks"``: run the model on the
        example with forward hooks and a ``TorchFunctionMode`` (for models that do not
        trace: data-dependent control flow, for example; only the ReLUs of the path the
        example takes are found); ``"auto"``: fx, and hooks when the model does not trace.

    Returns
    -------
    ReLULayers
        The layers (:class:`ModelLayer`) in the order they run, with ``others``.

    Raises
    ------
    FastReluError
        For a model that is not a module, an example the model cannot run, or a model
        with no ReLU at all.
    MissingDependencyError
        Without torch.

    Examples
    --------
    >>> import torch
    >>> import fastrelu as fr
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
    ...                             torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> found = fr.relu_layers(model, torch.zeros(1, 1, 4, 4))
    >>> [(layer.name, layer.kind, layer.layer.weight.shape, layer.batchnorm) for layer in found]
    [('0', 'conv2d', (64, 16), '1')]
    """
    return find_layers(model, example, method, "example")


def find_layers(model, example, method, name):
    """:func:`relu_layers`, its errors about the example naming ``name`` (the argument
    it was taken from: ``data`` for :func:`analyze_model`)."""
    if is_onnx(model):
        return relu_layers_onnx(model, example, name)
    torch = _import_torch()
    _check_model(model, torch)
    if method not in ("auto", "fx", "hooks"):
        raise FastReluError(f"The 'method' parameter must be 'auto', 'fx' or 'hooks'. Got {method!r} instead.")
    example = _model_tensor(model, example, torch, name)
    return _discover(model, example, method, name, torch)


def _discover(model, example, method, name, torch):
    with _EvalMode(model):
        shapes = _input_shapes(model, example, torch, name)
        trace_error = None
        if method in ("auto", "fx"):
            try:
                sites = _fx_sites(model, torch)
                used = "fx"
            except Exception as exc:  # tracing raises whatever the model's code raises
                if method == "fx":
                    raise FastReluError(f"The 'model' parameter must trace with torch.fx for method='fx'. Got {type(exc).__name__}: {first_line(exc)} (use method='hooks').") from None
                trace_error = f"{type(exc).__name__}: {first_line(exc)}"
        if method == "hooks" or trace_error is not None:
            sites = _hook_sites(model, example, torch)
            used = "hooks"
    if not sites:
        raise FastReluError(f"The 'model' parameter must apply at least one ReLU. Got a {type(model).__name__} that applies none on the example (fastrelu analyses ReLU layers).")
    modules = dict(model.named_modules())
    layers, others, seen = [], [], {}
    counts = collections.Counter(path for path, _ in shapes)
    for site in sites:
        if site.reason is not None:
            others.append((site.relu, site.reason))
            continue
        if (site.affine, site.norm) in seen:
            others.append((site.relu, f"a second ReLU of the same map as the layer {seen[(site.affine, site.norm)]!r}, which is analysed once"))
            continue
        path, call = site.affine
        if (path, call) not in shapes:
            others.append((site.relu, f"the affine module {path!r} did not run on the example"))
            continue
        name = path if counts[path] == 1 else f"{path}@{call}"
        if site.norm is not None and isinstance(modules[path], torch.nn.Linear) and len(shapes[(path, call)][0]) != 1:
            others.append((site.relu, f"the batch norm {site.norm[0]!r} after the Linear {name!r} on inputs of shape {shapes[(path, call)][0]} normalises along axis 1, not the Linear's features"))
            continue
        layers.append(_model_layer(name, modules[path], site, modules, shapes[(path, call)], torch))
        seen[(site.affine, site.norm)] = name
    return ReLULayers(layers, others, used, trace_error)


def _input_shapes(model, example, torch, name="example"):
    """``{(path, call): (input shape, output shape)}`` of every affine module's calls on
    the example (no batch axis)."""
    kinds = _kinds(torch)
    shapes, calls, handles = {}, collections.Counter(), []

    def hook(path):
        def record(module, args, kwargs, output):
            source = _first_tensor(args, kwargs, torch)
            shapes[(path, calls[path])] = (tuple(source.shape[1:]), tuple(output.shape[1:]))
            calls[path] += 1
        return record

    if example.dim() < 2:
        raise FastReluError(f"The '{name}' parameter must be a batch of model inputs (the batch along the first axis). Got shape {tuple(example.shape)}; add the batch axis, e.g. {name}[None].")
    try:
        for path, module in model.named_modules():
            if type(module) in kinds["affine"]:
                handles.append(module.register_forward_hook(hook(path), with_kwargs=True))
        with torch.no_grad():
            model(example)
    except Exception as exc:  # the model's own code raises whatever it raises
        raise FastReluError(f"The '{name}' parameter must hold inputs the model runs on. Got inputs of shape {tuple(example.shape[1:])} each (tried on a batch of shape {tuple(example.shape)}), on which the model raised {type(exc).__name__}: {first_line(exc)}") from None
    finally:
        for handle in handles:
            handle.remove()
    return shapes


# --- operators -----------------------------------------------------------------------------


def _double(tensor, torch):
    return None if tensor is None else tensor.detach().to(device="cpu", dtype=torch.float64).clone()


class _Affine:
    """A float64 CPU copy of a Linear/Conv module's map (weight, bias and geometry)."""

    def __init__(self, module, torch):
        self.weight = _double(module.weight, torch)
        self.bias = _double(module.bias, torch)
        self.linear = isinstance(module, torch.nn.Linear)
        if not self.linear:
            self.dims = 1 if isinstance(module, torch.nn.Conv1d) else 2
            self.stride, self.dilation, self.groups = module.stride, module.dilation, module.groups
            self.padding, self.padding_mode = module.padding, module.padding_mode
            self.reversed_padding = getattr(module, "_reversed_padding_repeated_twice", None)

    def __call__(self, x, torch, bias=True):
        F = torch.nn.functional
        b = self.bias if bias else None
        if self.linear:
            return F.linear(x, self.weight, b)
        conv = F.conv1d if self.dims == 1 else F.conv2d
        if self.padding_mode == "zeros":
            return conv(x, self.weight, b, self.stride, self.padding, self.dilation, self.groups)
        x = F.pad(x, self.reversed_padding, mode=self.padding_mode)
        return conv(x, self.weight, b, self.stride, 0, self.dilation, self.groups)


class _Norm:
    """A float64 copy of an eval-mode batch norm: ``s (z - mu) + beta`` per channel."""

    def __init__(self, module, torch):
        var = _double(module.running_var, torch)
        self.mean = _double(module.running_mean, torch)
        gamma = _double(module.weight, torch) if module.affine else torch.ones_like(var)
        self.beta = _double(module.bias, torch) if module.affine else torch.zeros_like(var)
        self.scale = gamma / torch.sqrt(var + module.eps)

    def __call__(self, z):
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return (z - self.mean.reshape(shape)) * self.scale.reshape(shape) + self.beta.reshape(shape)

    def linear(self, z):
        """The linear part ``s z`` (no shift)."""
        return z * self.scale.reshape((1, -1) + (1,) * (z.dim() - 2))


def _apply(affine, norm, x, torch):
    z = affine(x, torch)
    return z if norm is None else norm(z)


def _model_layer(name, module, site, modules, shapes, torch):
    input_shape, output_shape = shapes
    kind = _kinds(torch)["affine"][type(module)]
    affine = _Affine(module, torch)
    norm = None
    if site.norm is not None:
        norm_module = modules[site.norm[0]]
        norm = _Norm(norm_module, torch)
    tokens = 1
    if kind == "linear":  # a Linear acts on the last axis: each token (..., n) is a point
        tokens = math.prod(input_shape[:-1])
        input_shape, output_shape = input_shape[-1:], output_shape[-1:]
    channels = output_shape[0]
    n, m = math.prod(input_shape), math.prod(output_shape)
    with torch.no_grad():
        offset = _apply(affine, norm, torch.zeros((1, *input_shape), dtype=torch.float64), torch)
    alpha = -offset.reshape(-1).numpy()
    dense_bytes = 8 * m * n
    limit, _ = memory_limit()
    layer = None
    if limit is None or dense_bytes <= DENSE_SHARE * limit:
        layer = ReLULayer(_dense(affine, norm, input_shape, offset, torch), alpha)
    layernorm = None
    if site.layernorm is not None and kind == "linear":
        ln = modules[site.layernorm]
        d = input_shape[0]
        gamma = _double(ln.weight, torch).numpy() if ln.weight is not None else np.ones(d)
        beta = _double(ln.bias, torch).numpy() if getattr(ln, "bias", None) is not None else np.zeros(d)
        if tuple(ln.normalized_shape) == (d,):
            layernorm = LayerNormInput(site.layernorm, gamma, beta, float(ln.eps))
    return ModelLayer(name=name, kind=kind, input_shape=input_shape, output_shape=output_shape,
                      layer=layer, bias=alpha, channels=channels,
                      batchnorm=None if site.norm is None else site.norm[0], layernorm=layernorm,
                      relu=site.relu, dense_bytes=dense_bytes, tokens=tokens,
                      _map=_TorchMap(affine, norm, input_shape))


def _dense(affine, norm, input_shape, offset, torch):
    """``W`` (m, n): the map applied to the standard basis, in batches of columns."""
    n = math.prod(input_shape)
    if affine.linear and norm is None and len(input_shape) == 1:
        return affine.weight.numpy().copy()
    columns = []
    with torch.no_grad():
        for start in range(0, n, COLUMN_BATCH):
            stop = min(n, start + COLUMN_BATCH)
            basis = torch.zeros((stop - start, n), dtype=torch.float64)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            out = _apply(affine, norm, basis.reshape(-1, *input_shape), torch)
            columns.append((out.reshape(stop - start, -1) - offset.reshape(1, -1)).numpy())
    return np.ascontiguousarray(np.concatenate(columns, axis=0).T)


# --- capture -------------------------------------------------------------------------------


def _batches(data, model, torch, batch_size, name):
    """Model-input batches from a tensor, an array or an iterable of batches (a
    ``DataLoader``: the first element of tuple batches), with the number of points
    when known."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        shape = tuple(data.shape)
        if len(shape) < 1 or shape[0] == 0:
            raise FastReluError(f"The '{name}' parameter must hold at least one point (a batch along the first axis). Got shape {shape} instead.")
        return shape[0], (_model_tensor(model, data[start:start + batch_size], torch, name)
                          for start in range(0, shape[0], batch_size))
    if hasattr(data, "__iter__"):
        count = None
        dataset = getattr(data, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            count = len(dataset)

        def loader():
            for batch in data:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                yield _model_tensor(model, batch, torch, name)
        return count, loader()
    raise FastReluError(f"The '{name}' parameter must be a tensor, an array or a DataLoader of model inputs. Got {type(data).__name__} instead.")


def capture(model, data, layers, *, batch_size=DEFAULT_BATCH, out_dir=None, outputs=False):
    """The flattened inputs each layer receives when the model runs on ``data``.

    The model runs in eval mode (batch norm with its running statistics, dropout off;
    every module's mode is restored afterwards) under ``torch.no_grad``, ``batch_size``
    points at a time.

    Parameters
    ----------
    model : torch.nn.Module, or str, path-like or onnx.ModelProto
        The model the layers were found in.
    data : torch.Tensor, array_like or iterable of batches
        Model inputs along the first axis, or a ``DataLoader`` (of tensors, or of tuples
        whose first element is the input).
    layers : ReLULayers or sequence of ModelLayer
        From :func:`relu_layers` on the same model.
    batch_size : int, default=256
        Points per forward pass for tensors and arrays.
    out_dir : str or path-like or None, default=None
        Write each layer's inputs to ``<out_dir>/<name>.npy`` (memory-mapped: for data
        that does not fit in memory) instead of holding them in RAM; in the file name,
        characters of the layer name other than letters, digits, ``.``, ``_``, ``-``
        and ``@`` are ``_`` (ONNX node names such as ``/0/Gemm`` hold slashes), and
        a name whose file another layer already has gets ``-k``.
    outputs : bool, default=False
        Also return the model's outputs, shape ``(N, ...)``.

    Returns
    -------
    dict of str to ndarray, shape (N T, n) each (float64)
        Keyed by layer name (``numpy.memmap`` with ``out_dir``): one row per point the
        layer sees, ``T = layer.tokens`` rows per model input (1 but for a ``Linear`` on
        token sequences), in input order. With ``outputs``, a pair ``(inputs,
        model_outputs)``.

    Raises
    ------
    FastReluError
        For data of the wrong shape for the model, or inputs that do not fit in memory
        (with the estimate; ``out_dir`` streams them to disk instead).

    Examples
    --------
    >>> import torch
    >>> import fastrelu as fr
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6),
    ...                             torch.nn.ReLU())
    >>> layers = fr.relu_layers(model, torch.zeros(1, 3))
    >>> inputs = fr.capture(model, torch.randn(10, 3), layers)
    >>> {name: values.shape for name, values in inputs.items()}
    {'0': (10, 3), '2': (10, 8)}
    """
    return capture_inputs(model, data, layers, batch_size, out_dir, outputs, "data")


def capture_inputs(model, data, layers, batch_size, out_dir, outputs, name):
    """:func:`capture`, its errors about the data naming ``name``."""
    from fastrelu._core.validation import positive_int

    batch_size = positive_int(batch_size, "batch_size")
    layers = list(layers)
    if not layers or not all(isinstance(layer, ModelLayer) for layer in layers):
        raise FastReluError("The 'layers' parameter must be a non-empty sequence of ModelLayer (from fastrelu.relu_layers). Got " + (f"{type(layers[0]).__name__} items" if layers else "none") + " instead.")
    data = nested_numbers_as_array(data)
    if is_onnx(model):
        if any(layer._tensor is None for layer in layers):
            raise FastReluError("The 'layers' parameter must come from relu_layers of this ONNX model. Got layers of a PyTorch model.")
        return capture_onnx(model, data, layers, batch_size, outputs, name, out_dir)
    torch = _import_torch()
    _check_model(model, torch)
    count, batches = _batches(data, model, torch, batch_size, name)
    wanted = {}
    for layer in layers:
        path, _, call = layer.name.partition("@")
        wanted[(path, int(call) if call else 0)] = layer
    if count is not None:
        check_capture_memory(count, layers, out_dir, name)
    modules = dict(model.named_modules())
    buffers = {layer.name: [] for layer in layers}
    calls, handles, results = collections.Counter(), [], []

    def hook(path):
        def record(module, args, kwargs, output):
            call = calls[path]
            calls[path] += 1
            layer = wanted.get((path, call))
            if layer is not None:
                # a copy: the model may change the tensor in place after this module
                x = _first_tensor(args, kwargs, torch).detach().to(device="cpu", dtype=torch.float64, copy=True)
                buffers[layer.name].append(x.reshape(-1, layer.n).numpy())
        return record

    missing = sorted({key[0] for key in wanted} - set(modules))
    if missing:
        raise FastReluError(f"The 'layers' parameter must come from this model. Got layers {missing}, which the model does not have.")
    outputs_list = []
    try:
        for path in {key[0] for key in wanted}:
            handles.append(modules[path].register_forward_hook(hook(path), with_kwargs=True))
        handles.append(model.register_forward_pre_hook(lambda module, inputs: calls.clear()))
        with streaming(layers, out_dir), _EvalMode(model), torch.no_grad():
            for batch in batches:
                try:
                    out = model(batch)
                except Exception as exc:  # the model's own code raises whatever it raises
                    raise FastReluError(f"The '{name}' parameter must hold inputs the model runs on. Got a batch of shape {tuple(batch.shape)}, on which the model raised {type(exc).__name__}: {first_line(exc)}") from None
                if outputs:
                    outputs_list.append(out.detach().to(device="cpu", dtype=torch.float64).numpy())
                for layer in layers:
                    got = buffers[layer.name][-1] if buffers[layer.name] else None
                    if got is None or got.shape[1] != layer.n:
                        raise FastReluError(f"The '{name}' parameter must give every layer the input shape it had on the example. Got a batch of shape {tuple(batch.shape)}, on which layer {layer.name!r} received {'nothing' if got is None else f'{got.shape[1]} values per point'} instead of {layer.n}.")
                if out_dir is not None:
                    results.append(flush(buffers, out_dir))
    finally:
        for handle in handles:
            handle.remove()
    inputs = stored_inputs(results, layers, out_dir) if out_dir is not None else {
        name: np.concatenate(parts, axis=0) for name, parts in buffers.items()}
    if outputs:
        return inputs, np.concatenate(outputs_list, axis=0)
    return inputs


