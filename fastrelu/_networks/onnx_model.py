"""The ReLU layers of an ONNX model (THEORY §10), read with the ``onnx`` package and run
with ``onnxruntime``: ``Relu`` nodes applied to one ``Gemm``, ``MatMul`` (+ ``Add``) or
``Conv`` of one tensor, optionally followed by a ``BatchNormalization`` (folded in), with
``Identity`` and ``Dropout`` allowed in between."""

import contextlib
import math
import os
import sys
import tempfile

import numpy as np

from fastrelu._core.errors import FastReluError, MissingDependencyError, first_line
from fastrelu._core.layer import ReLULayer
from fastrelu._core.memory import memory_limit
from fastrelu._networks.captured import check_capture_memory, flush, stored_inputs, streaming

#: Nodes that pass their first input through unchanged at inference.
THROUGH = ("Identity", "Dropout")
#: Nodes of a pure MLP chain that do not change the values (``Network.from_onnx``).
CHAIN_NEUTRAL = ("Identity", "Dropout", "Flatten", "Reshape", "Cast")
#: Output nodes a classifier chain may end with after its last affine map.
CHAIN_TAIL = ("Softmax", "LogSoftmax", "Sigmoid", "ArgMax", "ArrayFeatureExtractor", "ZipMap",
              "Identity", "Reshape", "Cast")


def import_onnx():
    """``(onnx, onnxruntime)``, or a clear error naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise MissingDependencyError('Reading ONNX models needs onnx and onnxruntime: install them with pip install "fastrelu[onnx]".', name="onnx") from None
    return onnx, onnxruntime


def is_onnx(model):
    """Is ``model`` an ONNX model: a path ending in ``.onnx`` or an ``onnx.ModelProto``?"""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model).lower().endswith(".onnx")
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def load(model):
    """The ``ModelProto`` of a path or of a proto (validated by ``onnx.checker``)."""
    onnx, _ = import_onnx()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FastReluError(f"The 'model' parameter must name an existing .onnx file. Got {path!r}, which does not exist.")
        try:
            model = onnx.load(path)
        except Exception as exc:  # a corrupt file raises protobuf's errors
            raise FastReluError(f"The ONNX file {path!r} could not be read: {type(exc).__name__}: {exc}") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker raises its own ValidationError types
        raise FastReluError(f"The 'model' parameter must be a valid ONNX model. Got one that onnx.checker refuses: {first_line(exc)}") from None
    return model


class Graph:
    """The nodes of an ONNX graph with its constants (initializers and ``Constant``
    nodes) as float64 arrays, and which node produces each tensor."""

    def __init__(self, proto):
        onnx, _ = import_onnx()
        from onnx import numpy_helper

        self.proto = proto
        graph = proto.graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attribute in node.attribute:
                    if attribute.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attribute.t)
        self.nodes = list(graph.node)
        self.producer = {name: node for node in self.nodes for name in node.output}
        self.inputs = [value for value in graph.input if value.name not in self.constants]
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant(self, name):
        """The constant tensor ``name`` as float64 (through ``Identity`` nodes, as an
        exported TorchScript module passes its weights), or ``None``."""
        value = self.constants.get(name)
        node = self.producer.get(name)
        while value is None and node is not None and node.op_type == "Identity":
            value = self.constants.get(node.input[0])
            node = self.producer.get(node.input[0])
        return None if value is None else np.asarray(value, dtype=np.float64)

    def attribute(self, node, name, default=None):
        from onnx import helper

        for attribute in node.attribute:
            if attribute.name == name:
                return helper.get_attribute_value(attribute)
        return default

    def source(self, name):
        """The node producing tensor ``name``, skipping nodes that pass it through."""
        node = self.producer.get(name)
        while node is not None and node.op_type in THROUGH:
            node = self.producer.get(node.input[0])
        return node

    @staticmethod
    def label(node):
        return node.name or f"{node.op_type}:{node.output[0]}"


def _affine_of(graph, node):
    """``(kind, W or conv weights, b, data input name, the node holding the weights)``
    of an affine node (for ``MatMul`` + ``Add``, the ``MatMul``), or a
    reason string when the node is not one affine map of one tensor with constant
    parameters."""
    op = node.op_type
    if op == "Gemm":
        B = graph.constant(node.input[1])
        if B is None or graph.attribute(node, "transA", 0):
            return "a Gemm whose weights are not a constant (or with transA=1)"
        W = graph.attribute(node, "alpha", 1.0) * (B if graph.attribute(node, "transB", 0) else B.T)
        C = graph.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if C is not None and C.size not in (1, W.shape[0]):
            return f"a Gemm whose bias of shape {C.shape} is not one value per output"
        b = np.zeros(W.shape[0]) if C is None else np.broadcast_to(graph.attribute(node, "beta", 1.0) * C.reshape(-1), (W.shape[0],)).copy()
        return "linear", W, b, node.input[0], node
    if op == "MatMul":
        B = graph.constant(node.input[1])
        if B is None or B.ndim != 2:
            return "a MatMul of two non-constant tensors"
        return "linear", B.T.copy(), np.zeros(B.shape[1]), node.input[0], node
    if op == "Add":
        constants = [graph.constant(name) for name in node.input]
        if all(value is None for value in constants):
            return "a sum of two tensors: a residual sum ReLU(W h + b + x) is a ReLU layer of the joint input (h, x) (THEORY §10), which fastrelu does not analyse"
        data_input = node.input[0] if constants[1] is not None else node.input[1]
        bias = constants[1] if constants[1] is not None else constants[0]
        inner = graph.source(data_input)
        if inner is None or inner.op_type != "MatMul":
            return f"an Add of a constant to the output of {inner.op_type if inner is not None else 'the model input'}, not to a MatMul"
        found = _affine_of(graph, inner)
        if isinstance(found, str):
            return found
        kind, W, b, data, weights = found
        if bias.size not in (1, W.shape[0]):
            return f"an Add of a constant of shape {bias.shape} to a MatMul with {W.shape[0]} outputs: not a bias"
        return kind, W, b + np.broadcast_to(bias.reshape(-1), (W.shape[0],)), data, weights
    if op == "Conv":
        weight = graph.constant(node.input[1])
        if weight is None or weight.ndim not in (3, 4):
            return "a Conv whose weights are not a constant 1-D or 2-D kernel"
        has_bias = len(node.input) > 2 and node.input[2]
        bias = graph.constant(node.input[2]) if has_bias else np.zeros(weight.shape[0])
        if bias is None:
            return "a Conv whose bias is not a constant"
        kind = "conv1d" if weight.ndim == 3 else "conv2d"
        return kind, weight, bias, node.input[0], node
    return f"the output of {op} {Graph.label(node)!r}"


def _norm_of(graph, node):
    """``(scale, shift)`` of an inference BatchNormalization (``y = scale x + shift`` per
    channel), or a reason."""
    if graph.attribute(node, "training_mode", 0):
        return f"the BatchNormalization {Graph.label(node)!r} runs in training mode"
    parts = [graph.constant(name) for name in node.input[1:5]]
    if any(part is None for part in parts):
        return f"the BatchNormalization {Graph.label(node)!r} has non-constant parameters"
    gamma, beta, mean, var = parts
    scale = gamma / np.sqrt(var + graph.attribute(node, "epsilon", 1e-5))
    return scale, beta - scale * mean


def sites(graph):
    """Per ``Relu`` node: ``(label, affine node, norm node or None)`` or ``(label,
    reason)``."""
    found = []
    for node in graph.nodes:
        if node.op_type != "Relu":
            continue
        label = Graph.label(node)
        source = graph.source(node.input[0])
        norm = None
        if source is not None and source.op_type == "BatchNormalization":
            norm = source
            source = graph.source(source.input[0])
        if source is None:
            found.append((label, "its input is the model input, not an affine map"))
            continue
        affine = _affine_of(graph, source)
        if isinstance(affine, str):
            where = "a BatchNormalization applied to " if norm is not None else ""
            found.append((label, f"its input is {where}{affine}"))
            continue
        found.append((label, source, norm, affine))
    return found


def conv_dense(weight, input_shape, strides, pads, dilations, group):
    """The dense rows of a zero-padded convolution (THEORY §10): row ``(c, p)`` is the
    kernel of output channel ``c`` placed at position ``p``, truncated at the borders.

    ``weight`` has shape ``(C_out, C_in / group, *kernel)`` (one or two spatial axes);
    ``pads`` are the ``begin`` pads per spatial axis followed by the ``end`` pads.
    Returns ``(W, output spatial shape)``.
    """
    spatial_in = tuple(input_shape[1:])
    dims = len(spatial_in)
    kernel = weight.shape[2:]
    out = tuple((spatial_in[a] + pads[a] + pads[a + dims] - dilations[a] * (kernel[a] - 1) - 1) // strides[a] + 1
                for a in range(dims))
    C_out, C_in_g = weight.shape[:2]
    C_in = input_shape[0]
    if dims == 1:  # a 1-D convolution is a 2-D one of height 1
        weight = weight[:, :, None, :]
        spatial_in, out, kernel = (1, *spatial_in), (1, *out), (1, *kernel)
        strides, dilations = (1, *strides), (1, *dilations)
        pads = (0, pads[0], 0, pads[1])
    H, Wd = spatial_in
    Ho, Wo = out
    dense = np.zeros((C_out, Ho, Wo, C_in, H, Wd))
    per_group = C_out // group
    rows_out, cols_out = np.arange(Ho), np.arange(Wo)
    for a in range(kernel[0]):
        rows = rows_out * strides[0] - pads[0] + a * dilations[0]
        row_ok = (rows >= 0) & (rows < H)
        for b in range(kernel[1]):
            cols = cols_out * strides[1] - pads[1] + b * dilations[1]
            col_ok = (cols >= 0) & (cols < Wd)
            oy, ox = np.ix_(rows_out[row_ok], cols_out[col_ok])
            iy, ix = np.ix_(rows[row_ok], cols[col_ok])
            for c in range(C_out):
                first = (c // per_group) * C_in_g
                for ci in range(C_in_g):
                    dense[c, oy, ox, first + ci, iy, ix] += weight[c, ci, a, b]
    shape_out = out[1:] if dims == 1 else out
    return dense.reshape(C_out * Ho * Wo, C_in * H * Wd), shape_out


def _conv_geometry(graph, node, input_shape):
    """``(strides, pads, dilations, group)`` of a Conv node at an input shape, with
    ``auto_pad`` resolved."""
    weight = graph.constant(node.input[1])
    dims = weight.ndim - 2
    kernel = weight.shape[2:]
    strides = tuple(graph.attribute(node, "strides", [1] * dims))
    dilations = tuple(graph.attribute(node, "dilations", [1] * dims))
    group = int(graph.attribute(node, "group", 1))
    auto_pad = graph.attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = tuple(graph.attribute(node, "pads", [0] * (2 * dims)))
    if auto_pad == "VALID":
        pads = (0,) * (2 * dims)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for a in range(dims):
            size = input_shape[1 + a]
            total = max(0, (math.ceil(size / strides[a]) - 1) * strides[a] + (kernel[a] - 1) * dilations[a] + 1 - size)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        pads = (*begin, *end)
    return strides, pads, dilations, group


def session(proto, outputs=()):
    """An onnxruntime session of the model with the tensors ``outputs`` exposed as extra
    outputs."""
    onnx, onnxruntime = import_onnx()
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    present = {value.name for value in model.graph.output}
    for name in outputs:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            present.add(name)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own error types
        raise FastReluError(f"The 'model' parameter must be an ONNX model that onnxruntime runs on the CPU. Got one it refuses: {first_line(exc)}") from None


def input_array(graph, value, name="data"):
    """``value`` as an array of the model input's dtype."""
    from onnx import helper

    if len(graph.inputs) != 1:
        raise FastReluError(f"The 'model' parameter must be an ONNX model with one input. Got {len(graph.inputs)} inputs: {[value.name for value in graph.inputs]}.")
    elem = graph.inputs[0].type.tensor_type.elem_type
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise FastReluError(f"The '{name}' parameter must be an array of numbers. Got {type(value).__name__} ({exc}) instead.") from None
    if array.ndim < 1 or array.shape[0] == 0:
        raise FastReluError(f"The '{name}' parameter must hold at least one point (a batch along the first axis). Got shape {array.shape} instead.")
    return array


def run(graph, sess, array, names, name="data"):
    """The tensors ``names`` on a batch (the model's own error, if it fails, as ours)."""
    try:
        return sess.run(list(names), {graph.inputs[0].name: array})
    except Exception as exc:  # onnxruntime raises its own error types
        message = " ".join(str(exc).split())
        raise FastReluError(f"The '{name}' parameter must hold inputs the model runs on. Got a batch of shape {array.shape}, on which onnxruntime raised: {message}") from None


def fixed_batch(graph):
    """The batch size the model's input is fixed at (``None``: a dynamic batch axis)."""
    shape = graph.inputs[0].type.tensor_type.shape
    if not shape.dim:
        return None
    first = shape.dim[0]
    return int(first.dim_value) if first.HasField("dim_value") and first.dim_value > 0 else None


def _to_batch(array, size):
    """``array`` with exactly ``size`` points: cut, or padded by repeating its last point
    (the model runs on every point alone, so the padding changes no other point)."""
    if size is None or array.shape[0] == size:
        return array
    if array.shape[0] > size:
        return array[:size]
    return np.concatenate([array, np.repeat(array[-1:], size - array.shape[0], axis=0)])


def relu_layers_onnx(model, example, name="example"):
    """:func:`fastrelu.relu_layers` for an ONNX model (a path or a ``ModelProto``)."""
    from fastrelu._networks.model_layers import DENSE_SHARE, DenseMap, ModelLayer, ReLULayers

    proto = load(model)
    graph = Graph(proto)
    found = sites(graph)
    if not found:
        raise FastReluError("The 'model' parameter must apply at least one Relu. Got an ONNX graph with none (fastrelu analyses ReLU layers).")
    analysable = [site for site in found if len(site) == 4]
    array = _to_batch(input_array(graph, example, name), fixed_batch(graph))
    data_names = [site[3][3] for site in analysable]
    out_names = [site[2].output[0] if site[2] is not None else site[1].output[0] for site in analysable]
    values = run(graph, session(proto, data_names + out_names), array, data_names + out_names, name)
    shapes = {}
    for site, inp, out in zip(analysable, values[:len(analysable)], values[len(analysable):]):
        shapes[id(site)] = (tuple(inp.shape[1:]), tuple(out.shape[1:]))
    layers, others = [], []
    limit, _ = memory_limit()
    for site in found:
        if len(site) == 2:
            others.append(site)
            continue
        label, node, norm_node, (kind, weight, bias, data_name, weight_node) = site
        input_shape, output_shape = shapes[id(site)]
        tokens = 1
        if kind == "linear":
            if norm_node is not None and len(input_shape) != 1:
                others.append((label, f"the BatchNormalization {Graph.label(norm_node)!r} after {Graph.label(weight_node)!r} on inputs of shape {input_shape} normalises along axis 1, not the map's outputs"))
                continue
            tokens = math.prod(input_shape[:-1])
            input_shape, output_shape = input_shape[-1:], output_shape[-1:]
        n, m = math.prod(input_shape), math.prod(output_shape)
        channels = output_shape[0]
        dense_bytes = 8 * m * n
        if limit is not None and dense_bytes > DENSE_SHARE * limit:
            W = None
        elif kind == "linear":
            W = weight
        else:
            strides, pads, dilations, group = _conv_geometry(graph, node, input_shape)
            W, spatial = conv_dense(weight, input_shape, strides, pads, dilations, group)
            if (channels, *spatial) != output_shape:
                raise FastReluError(f"The Conv {Graph.label(node)!r} gives outputs of shape {output_shape}, not the {(channels, *spatial)} its attributes describe.")
        positions = m // channels
        b = np.repeat(bias, positions)
        if norm_node is not None:
            norm = _norm_of(graph, norm_node)
            if isinstance(norm, str):
                others.append((label, norm))
                continue
            scale, shift = np.repeat(norm[0], positions), np.repeat(norm[1], positions)
            W = None if W is None else scale[:, None] * W
            b = scale * b + shift
        alpha = -b
        layers.append(ModelLayer(
            name=Graph.label(weight_node), kind=kind, input_shape=input_shape, output_shape=output_shape,
            layer=None if W is None else ReLULayer(W, alpha), bias=alpha, channels=channels,
            batchnorm=None if norm_node is None else Graph.label(norm_node), layernorm=None,
            relu=label, dense_bytes=dense_bytes, tokens=tokens,
            _map=None if W is None else DenseMap(W, alpha), _tensor=data_name))
    return ReLULayers(layers, others, "onnx")


def capture_onnx(model, data, layers, batch_size, outputs, name="data", out_dir=None):
    """:func:`fastrelu.capture` for an ONNX model: the layers' input tensors exposed as
    outputs of an onnxruntime session (a model whose batch axis is fixed runs on
    batches of that size, the last one padded); with ``out_dir``, streamed batch by
    batch to memory-mapped files as for a PyTorch model."""
    proto = load(model)
    graph = Graph(proto)
    fixed = fixed_batch(graph)
    batch_size = fixed or batch_size
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        array = input_array(graph, data, name)
        check_capture_memory(array.shape[0], layers, out_dir, name)
        batches = (array[start:start + batch_size] for start in range(0, array.shape[0], batch_size))
    elif hasattr(data, "__iter__"):
        batches = (input_array(graph, batch[0] if isinstance(batch, (tuple, list)) else batch, name)
                   for batch in data)
    else:
        raise FastReluError(f"The '{name}' parameter must be an array or an iterable of batches of model inputs. Got {type(data).__name__} instead.")
    if fixed is not None:  # a fixed batch: split, pad, and keep track of the real points
        batches = _fixed_batches(batches, fixed)
    names = [layer._tensor for layer in layers]
    output_name = _score_output(proto)
    sess = session(proto, names)
    parts = {layer.name: [] for layer in layers}
    results, stored = [], []
    with streaming(layers, out_dir):
        for item in batches:
            batch, real = item if fixed is not None else (item, item.shape[0])
            values = run(graph, sess, batch, names + [output_name], name)
            for layer, value in zip(layers, values):
                value = np.asarray(value, dtype=np.float64)[:real]
                if math.prod(value.shape[1:]) != layer.n * layer.tokens:
                    raise FastReluError(f"The '{name}' parameter must give every layer the input shape it had on the example. Got a batch of shape {batch.shape}, on which layer {layer.name!r} received shape {value.shape[1:]}.")
                parts[layer.name].append(value.reshape(-1, layer.n))
            results.append(np.asarray(values[-1], dtype=np.float64)[:real])
            if out_dir is not None:
                stored.append(flush(parts, out_dir))
    inputs = (stored_inputs(stored, layers, out_dir) if out_dir is not None else
              {name: np.concatenate(chunks, axis=0) for name, chunks in parts.items()})
    if outputs:
        return inputs, np.concatenate(results, axis=0)
    return inputs


def _score_output(proto):
    """The graph output that holds one score vector per input: the first float output
    of rank 2 (a classifier exported by skl2onnx outputs its labels first and the
    probabilities next), else the first output."""
    from onnx import TensorProto

    for value in proto.graph.output:
        tensor = value.type.tensor_type
        if tensor.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16) \
                and tensor.HasField("shape") and len(tensor.shape.dim) == 2:
            return value.name
    return proto.graph.output[0].name


def _fixed_batches(batches, size):
    """``(batch of exactly size points, real points in it)`` from batches of any size."""
    for batch in batches:
        for start in range(0, batch.shape[0], size):
            part = batch[start:start + size]
            yield _to_batch(part, size), part.shape[0]


def network_from_onnx(path):
    """``(hidden, output, classes)`` of :meth:`Network.from_onnx`: the chain of affine
    maps and ReLUs of an ONNX MLP."""
    proto = load(path)
    graph = Graph(proto)
    if len(graph.inputs) != 1:
        raise FastReluError(f"The ONNX model must have one input. Got {len(graph.inputs)}.")
    current = graph.inputs[0].name
    hidden, output, where = [], None, f" of the ONNX model {path!r}" if isinstance(path, (str, os.PathLike)) else " of the ONNX model"
    pending = None  # the affine map waiting for a Relu: (W, b, node)
    while True:
        consumers = graph.consumers.get(current, [])
        if not consumers:
            break
        if len(consumers) > 1:
            raise FastReluError(f"The ONNX model must be a chain (each tensor read by one node) for Network.from_onnx. Got tensor {current!r} read by {[Graph.label(node) for node in consumers]}; use fastrelu.relu_layers for general graphs.")
        node = consumers[0]
        op = node.op_type
        if op == "Relu":
            if pending is None:
                raise FastReluError(f"The ONNX model must apply every Relu to an affine map for Network.from_onnx. Got {Graph.label(node)!r} after no Gemm/MatMul.")
            hidden.append(ReLULayer(pending[0], -pending[1]))
            pending = None
        elif op in ("Gemm", "MatMul", "Add"):
            if op == "Add" and pending is not None and pending[2].op_type == "MatMul":
                bias = [graph.constant(name) for name in node.input if name != current]
                if len(bias) != 1 or bias[0] is None:
                    raise FastReluError(f"The ONNX model's Add {Graph.label(node)!r}{where} must add a constant bias. Got a sum of tensors (a residual connection): use fastrelu.relu_layers.")
                pending = (pending[0], pending[1] + bias[0].reshape(-1), node)
            else:
                if pending is not None:
                    raise FastReluError(f"The ONNX model must have a Relu after every affine map but the last. Got {Graph.label(pending[2])!r} followed by {Graph.label(node)!r}.")
                affine = _affine_of(graph, node) if op != "Add" else "an Add that follows no MatMul"
                if isinstance(affine, str) or affine[0] != "linear":
                    raise FastReluError(f"The ONNX node {Graph.label(node)!r}{where} must be a Gemm or MatMul with constant weights. Got {affine if isinstance(affine, str) else affine[0]}.")
                pending = (affine[1], affine[2], node)
        elif op in CHAIN_NEUTRAL:
            if op == "Flatten" and graph.attribute(node, "axis", 1) != 1:
                raise FastReluError(f"The ONNX model must flatten with axis=1 only. Got {Graph.label(node)!r} with axis={graph.attribute(node, 'axis', 1)}.")
        elif pending is not None and op in CHAIN_TAIL:
            break  # the classifier's head after its last affine map
        else:
            raise FastReluError(f"The ONNX model must be a chain of Gemm/MatMul(+Add) and Relu nodes for Network.from_onnx. Got {op} {Graph.label(node)!r}; fastrelu.relu_layers reads general graphs.")
        current = node.output[0]
    if pending is not None:
        output = ReLULayer(pending[0], -pending[1])
    if not hidden:
        raise FastReluError(f"The ONNX model{where} must have at least one Relu layer. Got none.")
    classes = graph.constants.get("classes")
    return hidden, output, None if classes is None or output is None else np.asarray(classes)



def is_torchscript(path):
    """Is the file a TorchScript archive (``torch.jit.save``: a zip with a ``code/``
    folder), rather than a pickled object or a state_dict?"""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@contextlib.contextmanager
def _stdout_silenced():
    """File descriptor 1 sent to a scratch file (the TorchScript exporter prints its graph
    from C++ to the process's standard output when it fails, before raising). The whole
    process's descriptor: the CLI runs one export at a time."""
    flush = getattr(sys.stdout, "flush", None)  # sys.stdout may be None (pythonw)
    if flush is not None:
        flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output to silence
        yield
        return
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def torchscript_to_onnx(path, example):
    """An ONNX ``ModelProto`` of a TorchScript file, exported by PyTorch's TorchScript
    exporter at the example's shape (batch axis dynamic), batch norms kept as nodes."""
    import io
    import warnings

    onnx, _ = import_onnx()
    try:
        import torch
    except ImportError:
        raise MissingDependencyError('Reading TorchScript files needs torch: install it with pip install "fastrelu[torch]".', name="torch") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's own, not the user's
            module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # torch raises its own error types for unreadable archives
        raise FastReluError(f"The TorchScript file {path!r} could not be read with torch.jit.load: {type(exc).__name__}: {first_line(exc)}") from None
    module.eval()
    reference = next(iter(module.parameters()), None)
    dtype = reference.dtype if reference is not None else torch.float32
    sample = torch.from_numpy(np.ascontiguousarray(np.asarray(example))).to(dtype)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _stdout_silenced():
            warnings.simplefilter("ignore")  # the exporter's notes on its own deprecation
            torch.onnx.export(module, (sample,), buffer, dynamo=False, do_constant_folding=False,
                              input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    except Exception as exc:  # the exporter raises many types
        detail = first_line(exc)
        detail = detail if len(detail) <= 240 else detail[:240] + " ..."
        raise FastReluError(f"The TorchScript file {path!r} could not be exported to ONNX at the input shape {tuple(sample.shape)} (one point of the data: do the data have the shape the model takes?): {type(exc).__name__}: {detail}") from None
    return onnx.load_from_string(buffer.getvalue())
