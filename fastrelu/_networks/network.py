"""Stacks of dense ReLU layers, loaded from scikit-learn, PyTorch, ``.npz`` and safetensors.

Every framework stores a dense layer in its own orientation and with its own bias sign;
fastrelu keeps ``ReLU(W x - alpha)`` with ``W`` of shape ``(m, n)`` (THEORY §1):

==========================  ==================  ==================  =======================
source                      stored weight       forward             fastrelu ``(W, alpha)``
==========================  ==================  ==================  =======================
scikit-learn ``coefs_[k]``  ``(n_in, n_out)``   ``h @ C + c``       ``(C.T, -c)``
PyTorch ``Linear``          ``(n_out, n_in)``   ``h @ W.T + b``     ``(W, -b)``
fastrelu ``.npz``           ``(n_out, n_in)``   ``h @ W.T - bias``  ``(W, bias)``
==========================  ==================  ==================  =======================
"""

import os
import pickle
import re
from collections.abc import Mapping

import numpy as np

from fastrelu._core.errors import FastReluError, MissingDependencyError, first_line
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import as_bias, as_matrix, as_vector, check_real

#: Keys of fastrelu's ``.npz`` layout: ``weight_<k>``, ``bias_<k>`` (no leading zeros).
_NPZ_KEY = re.compile(r"^(weight|bias)_(0|[1-9][0-9]*)$")
#: The optional marker of the ``.npz`` layout: the last layer is affine (no ReLU).
_NPZ_MARKER = "linear_output"
#: The optional labels of the output units in the ``.npz`` layout.
_NPZ_CLASSES = "classes"
#: A PyTorch parameter name ``<prefix><index>.weight`` such as ``0.weight``,
#: ``net.2.bias`` or ``fc1.weight``.
_TORCH_KEY = re.compile(r"^(.*?)([0-9]+)\.(weight|bias)$")
_EXTENSIONS = (".npz", ".safetensors", ".pt", ".pth", ".joblib", ".pkl", ".onnx")


class Network:
    """A stack of dense ReLU layers, optionally followed by one affine output layer.

    The network maps an input ``x`` in R^n through the hidden layers ::

        h_0 = x,    h_k = ReLU(W_k h_{k-1} - alpha_k)    (k = 1, ..., L)

    and, when there is an output layer ``(V, beta)``, returns the affine
    ``V h_L - beta`` (no ReLU: the logits of a classifier, before its softmax);
    otherwise it returns ``h_L``.

    Parameters
    ----------
    hidden : sequence of ReLULayer
        The hidden layers, input side first (at least one). Their shapes chain:
        ``hidden[k].shape[0] == hidden[k + 1].shape[1]``.
    output : ReLULayer or None, default=None
        The output layer, of which only the affine map ``V h - beta`` is applied; its
        input dimension equals the last hidden layer's number of neurons (its bias is
        finite). ``None``: the network ends with the last hidden layer.
    classes : array_like, shape (k,), or None, default=None
        For a classifier: the label of each output unit (of the two classes for a
        single output unit, which predicts ``classes[1]`` where its value is positive),
        as scikit-learn's ``classes_``. Labels of :func:`fastrelu.analyze` are compared
        with them.

    Raises
    ------
    FastReluError
        For hidden layers that are not a non-empty sequence of :class:`ReLULayer` or do
        not chain, an output layer of another type, input dimension or with an infinite
        bias, or ``classes`` without an output layer or not one integer or string label
        per output unit.

    Notes
    -----
    Loaders: :meth:`from_sklearn`, :meth:`from_torch`, :meth:`from_npz`,
    :meth:`from_safetensors` and :meth:`load` (by file extension). Every weight is
    converted to float64; a network trained in float32 is then reproduced to float32
    accuracy only (the conversion is exact, the framework's own float32 arithmetic is
    not). See ``docs/networks.md``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> net = fr.Network([fr.ReLULayer(np.eye(2)), fr.ReLULayer([[1.0, -1.0]])])
    >>> net
    Network(widths=(2, 2, 1), linear_output=False)
    >>> net.depth, net.forward(np.array([3.0, 1.0]))
    (2, array([2.]))
    >>> net.hidden_outputs(np.array([[3.0, 1.0], [-1.0, 2.0]]))[0]
    array([[3., 1.],
           [0., 2.]])
    """

    def __init__(self, hidden, output=None, *, classes=None):
        if isinstance(hidden, ReLULayer):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise FastReluError(f"The 'hidden' parameter must be a non-empty sequence of fastrelu.ReLULayer. Got {type(hidden).__name__} instead.") from None
        if not hidden or not all(isinstance(layer, ReLULayer) for layer in hidden):
            found = "an empty sequence" if not hidden else f"items of types {sorted({type(layer).__name__ for layer in hidden})}"
            raise FastReluError(f"The 'hidden' parameter must be a non-empty sequence of fastrelu.ReLULayer. Got {found} instead.")
        for k in range(1, len(hidden)):
            if hidden[k].shape[1] != hidden[k - 1].shape[0]:
                raise FastReluError(f"The 'hidden' parameter must chain (hidden[k].shape[1] == hidden[k-1].shape[0]). Got hidden[{k - 1}].shape={hidden[k - 1].shape} and hidden[{k}].shape={hidden[k].shape} instead.")
        if output is not None:
            if not isinstance(output, ReLULayer):
                raise FastReluError(f"The 'output' parameter must be a fastrelu.ReLULayer or None. Got {type(output).__name__} instead.")
            if output.shape[1] != hidden[-1].shape[0]:
                raise FastReluError(f"The 'output' parameter must take the {hidden[-1].shape[0]} outputs of the last hidden layer as input. Got output.shape={output.shape} after hidden[{len(hidden) - 1}].shape={hidden[-1].shape} instead.")
            infinite = np.flatnonzero(~np.isfinite(output.bias))
            if infinite.size:
                shown = ", ".join(str(int(i)) for i in infinite[:5])
                raise FastReluError(f"The 'output' parameter must have a finite bias: the output layer is affine (V h - beta, no ReLU), so an infinite entry would make that output infinite rather than a neuron that is never active. Got an infinite bias at output unit(s) {shown}" + (f" and {infinite.size - 5} more" if infinite.size > 5 else "") + ".")
        if classes is not None:
            classes = np.array(classes)  # a private copy: the caller's array stays theirs
            if output is None:
                raise FastReluError("The 'classes' parameter needs an output layer (one label per output unit). Got classes for a network that ends with a ReLU layer.")
            expected = 2 if output.shape[0] == 1 else output.shape[0]
            if classes.ndim != 1 or classes.shape[0] != expected or classes.dtype.kind not in "biuU":
                raise FastReluError(f"The 'classes' parameter must be a 1-D array of {expected} integer or string labels (one per output unit; two for a single output unit). Got classes.shape={classes.shape} of dtype {classes.dtype} instead.")
            classes.setflags(write=False)
        self._hidden = hidden
        self._output = output
        self._classes = classes

    # ------------------------------------------------------------------ structure

    @property
    def hidden(self):
        """The hidden layers, input side first (tuple of ReLULayer)."""
        return self._hidden

    @property
    def output(self):
        """The affine output layer (a ReLULayer of which only ``V h - beta`` is used) or None."""
        return self._output

    @property
    def classes(self):
        """The label of each output unit (a classifier's ``classes_``), or None."""
        return self._classes

    @property
    def input_dim(self):
        """``n``, the input dimension."""
        return self._hidden[0].shape[1]

    @property
    def depth(self):
        """``L``, the number of hidden (ReLU) layers."""
        return len(self._hidden)

    @property
    def widths(self):
        """``(n, m_1, ..., m_L)``, followed by the output dimension when there is an output layer."""
        widths = (self.input_dim,) + tuple(layer.shape[0] for layer in self._hidden)
        if self._output is not None:
            widths += (self._output.shape[0],)
        return widths

    def _layers(self):
        return self._hidden + (() if self._output is None else (self._output,))

    # ------------------------------------------------------------------ evaluation

    def _inputs(self, X):
        """Validate ``X`` once: a float64 ``(N, n)`` array and whether it was 1-D."""
        n = self.input_dim
        check_real(X, "X")
        try:
            array = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FastReluError(f"The 'X' parameter must be an array of real numbers of shape (N, {n}) or ({n},). Got {type(X).__name__} ({exc}) instead.") from None
        single = array.ndim == 1
        if single:
            if array.shape[0] != n:
                raise FastReluError(f"The 'X' parameter must have {n} entries (the network's input dimension) for a single sample. Got X.shape={array.shape} instead.")
            array = array[None, :]
        elif array.ndim == 2 and array.shape[1] != n:
            raise FastReluError(f"The 'X' parameter must have {n} columns (the network's input dimension). Got X.shape={array.shape} instead.")
        return as_matrix(array, "X", allow_empty=True), single

    def hidden_outputs(self, X):
        """The activations after each hidden layer.

        Parameters
        ----------
        X : array_like, shape (N, n) or (n,)
            Network inputs (a 1-D ``X`` is one input).

        Returns
        -------
        list of ndarray
            ``[h_1, ..., h_L]`` with ``h_k = ReLU(W_k h_{k-1} - alpha_k)`` of shape
            ``(N, m_k)`` (``(m_k,)`` for a 1-D ``X``).

        Raises
        ------
        FastReluError
            For inputs that are not finite real numbers of shape ``(N, n)`` or ``(n,)``.
        """
        X, single = self._inputs(X)
        outputs = self._propagate(X, len(self._hidden))
        return [h[0] for h in outputs] if single else outputs

    def layer_inputs(self, X):
        """The input each hidden layer sees: ``[X, h_1, ..., h_{L-1}]``.

        Parameters
        ----------
        X : array_like, shape (N, n) or (n,)
            Network inputs (a 1-D ``X`` is one input).

        Returns
        -------
        list of ndarray
            ``L`` arrays; the ``k``-th (0-based) has shape ``(N, hidden[k].shape[1])``
            (1-D for a 1-D ``X``). The first is ``X`` as float64.

        Raises
        ------
        FastReluError
            For inputs that are not finite real numbers of shape ``(N, n)`` or ``(n,)``.
        """
        X, single = self._inputs(X)
        inputs = [X] + self._propagate(X, len(self._hidden) - 1)
        return [h[0] for h in inputs] if single else inputs

    def forward(self, X):
        """The network's output.

        Parameters
        ----------
        X : array_like, shape (N, n) or (n,)
            Network inputs (a 1-D ``X`` is one input).

        Returns
        -------
        ndarray, shape (N, k_out) or (N, m_L) (1-D for a 1-D ``X``)
            ``V h_L - beta`` when there is an output layer -- the pre-activation: a
            classifier's logits, before its softmax or logistic function -- else ``h_L``.

        Raises
        ------
        FastReluError
            For inputs that are not finite real numbers of shape ``(N, n)`` or ``(n,)``.
        """
        X, single = self._inputs(X)
        h = self._propagate(X, len(self._hidden))[-1]
        if self._output is not None:
            h = h @ self._output.weight.T - self._output.bias
        return h[0] if single else h

    def _propagate(self, X, count):
        """``[h_1, ..., h_count]`` for a validated ``X`` (the layers' shapes chain)."""
        outputs = []
        h = X
        for layer in self._hidden[:count]:
            h = np.maximum(h @ layer.weight.T - layer.bias, 0.0)
            outputs.append(h)
        return outputs

    # ------------------------------------------------------------------ loaders

    @classmethod
    def from_sklearn(cls, model):
        """The network of a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``.

        scikit-learn computes ``h @ coefs_[k] + intercepts_[k]`` with ``coefs_[k]`` of
        shape ``(n_in, n_out)``; layer ``k`` becomes ``ReLULayer(coefs_[k].T,
        -intercepts_[k])``. The last layer is the output layer, stored as the affine
        output: :meth:`forward` returns its pre-activation (the logits), to which
        scikit-learn applies ``out_activation_`` (softmax, logistic or identity).

        Parameters
        ----------
        model : MLPClassifier or MLPRegressor
            Fitted, with ``activation="relu"`` and at least one hidden layer.

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For a model that is not a fitted scikit-learn MLP, has another activation or
            no hidden layer.
        """
        name = type(model).__name__
        if not hasattr(model, "hidden_layer_sizes") or not hasattr(model, "activation"):
            raise FastReluError(f"The 'model' parameter must be a fitted scikit-learn MLPClassifier or MLPRegressor. Got {name} instead.")
        if not hasattr(model, "coefs_") or not hasattr(model, "intercepts_"):
            raise FastReluError(f"The 'model' parameter must be a fitted scikit-learn MLPClassifier or MLPRegressor. Got an unfitted {name} (it has no coefs_; call fit first) instead.")
        if model.activation != "relu":
            raise FastReluError(f"The 'model' parameter must have activation='relu'. Got {name} with activation {model.activation!r} in its hidden layers instead; fastrelu analyses ReLU networks only.")
        coefs, intercepts = list(model.coefs_), list(model.intercepts_)
        if len(coefs) < 2:
            raise FastReluError(f"The 'model' parameter must have at least one hidden layer. Got a {name} with hidden_layer_sizes={model.hidden_layer_sizes!r} instead.")
        weights = [np.asarray(C, dtype=np.float64).T for C in coefs]
        names = [(f"coefs_[{k}].T", f"intercepts_[{k}]") for k in range(len(coefs))]
        network = _assemble(weights, intercepts, names, affine=True, last_linear=True, where=f" of the {name}")
        classes = getattr(model, "classes_", None)
        if classes is None or np.asarray(classes).dtype.kind not in "biuU":
            return network  # a regressor, or labels that are not ints or strings
        return Network(network.hidden, network.output, classes=classes)

    @classmethod
    def from_npz(cls, path, *, last_linear=None):
        """Load a network saved in fastrelu's ``.npz`` layout (see :meth:`save_npz`).

        The layout, in **fastrelu's convention** ``ReLU(W x - bias)`` (the bias is
        *subtracted*, as in :class:`ReLULayer`; it is *not* PyTorch's ``b``):

        - ``weight_0, weight_1, ..., weight_{K-1}``: the weights, shape
          ``(n_out, n_in)``, numbered from 0 without gaps;
        - ``bias_0, ..., bias_{K-1}``: the subtracted biases, shape ``(n_out,)``;
        - ``linear_output`` (optional): a boolean scalar; ``True`` means the last
          layer is the affine output layer (no ReLU), absent means ``False``;
        - ``classes`` (optional): the labels of the output units (ints or strings,
          see :class:`Network`).

        No other keys are allowed. Arrays are converted to float64.

        Parameters
        ----------
        path : str or path-like
            The ``.npz`` file.
        last_linear : bool or None, default=None
            Overrides the file's ``linear_output`` when given (``None``: the file
            decides).

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For a missing or unreadable file, keys or arrays that do not follow the
            layout, or shapes that do not chain.
        """
        path = _existing_file(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except Exception as exc:  # numpy raises many types for malformed files
            raise FastReluError(f"The network file {path!r} could not be read as a .npz archive: {exc}") from None
        return _from_npz_layout(arrays, f" in {path!r}", _last_linear_value(last_linear))

    @classmethod
    def from_safetensors(cls, path, *, last_linear=None):
        """Load a network from a ``.safetensors`` file (needs ``safetensors``, not torch).

        Two namings are understood:

        - a PyTorch ``nn.Sequential`` state_dict as written by
          ``safetensors.torch.save_file(model.state_dict(), path)``: ``0.weight``,
          ``0.bias``, ``2.weight``, ... (any common prefix, such as ``net.0.weight``
          or ``fc1.weight``), ordered by the number. These are in **PyTorch's
          convention** ``ReLU(W x + b)``: fastrelu's bias is ``-b``. A missing
          ``<k>.bias`` means a ``Linear(..., bias=False)``. The file does not record
          activations: a ReLU is assumed after every Linear, except after the last
          one when ``last_linear`` is True (the default for this naming);
        - fastrelu's ``.npz`` layout (``weight_0``, ``bias_0``, ..., ``linear_output``;
          see :meth:`from_npz`), with the subtracted bias.

        float32 (or float16) tensors are converted to float64; the forward pass then
        matches the framework's float32 one to float32 accuracy only.

        Parameters
        ----------
        path : str or path-like
            The ``.safetensors`` file.
        last_linear : bool or None, default=None
            Whether the last layer is the affine output layer. ``None``: True for
            PyTorch names, the file's ``linear_output`` (absent: False) for the
            ``.npz`` layout.

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For a missing or unreadable file, or for names, arrays or shapes that do
            not make a network.
        MissingDependencyError
            Without the ``safetensors`` package.
        """
        path = _existing_file(path)
        last_linear = _last_linear_value(last_linear)
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise MissingDependencyError('Reading .safetensors files needs the safetensors package: install it with pip install "fastrelu[safetensors]".', name="safetensors") from None
        try:
            arrays = load_file(path)
        except Exception as exc:  # safetensors raises its own error types
            raise FastReluError(f"The network file {path!r} could not be read as a .safetensors file: {exc}") from None
        where = f" in {path!r}"
        if any(_NPZ_KEY.match(key) for key in arrays) or _NPZ_MARKER in arrays:
            return _from_npz_layout(arrays, where, last_linear)
        return _from_torch_names(arrays, _sorted_torch_modules(arrays, where), where, True if last_linear is None else last_linear)

    @classmethod
    def from_torch(cls, model, *, last_linear=None):
        """The network of a PyTorch ``nn.Sequential`` or of a state_dict (needs torch).

        ``nn.Linear`` stores ``W`` of shape ``(n_out, n_in)`` and computes
        ``h @ W.T + b``: it becomes ``ReLULayer(W, -b)``. Tensors are converted to
        float64 (a float32 model is then reproduced to float32 accuracy only).

        Parameters
        ----------
        model : torch.nn.Sequential or mapping of str to tensor
            - A ``Sequential`` of ``Linear`` and ``ReLU`` modules (nested
              ``Sequential`` are read in order). ``Identity``, ``Dropout`` (as in
              evaluation mode) and ``Flatten(1, -1)`` (a no-op on the ``(N, n)``
              batches fastrelu evaluates) are skipped. Each ``Linear`` but the last
              must be followed by a ``ReLU``; a final ``Linear`` with no ``ReLU`` after
              it becomes the affine output layer. Any other module is an error.
            - A state_dict: the keys are ``<module>.weight`` and ``<module>.bias`` of
              Linear layers, in the order of the model (as ``model.state_dict()``
              returns them). A state_dict does not record activations: a ReLU is
              assumed after every Linear, except after the last when ``last_linear``.
        last_linear : bool or None, default=None
            For a state_dict: whether the last Linear is the affine output layer
            (``None`` means True). Must be None for a ``Sequential``, whose modules say it.

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For another kind of model or module, a ``last_linear`` given for a
            ``Sequential``, or tensors that do not make a network.
        MissingDependencyError
            Without torch (for a ``Sequential``).
        """
        if isinstance(model, Mapping):
            last_linear = _last_linear_value(last_linear)
            return _from_state_dict(model, "", True if last_linear is None else last_linear)
        torch = _import_torch()
        if not isinstance(model, torch.nn.Module):
            raise FastReluError(f"The 'model' parameter must be a torch.nn.Sequential or a state_dict (a mapping of names to tensors). Got {type(model).__name__} instead.")
        if type(model) is not torch.nn.Sequential:
            raise FastReluError(f"The 'model' parameter must be a torch.nn.Sequential, whose modules show the network. Got a {type(model).__name__}, whose forward fastrelu cannot read, instead; if it is Linear layers with a ReLU after each but the last, pass model.state_dict().")
        if last_linear is not None:
            raise FastReluError(f"The 'last_linear' parameter must be None for a torch.nn.Sequential (its modules show whether the last Linear is followed by a ReLU). Got last_linear={last_linear!r} instead.")
        return _from_sequential(model, torch)

    @classmethod
    def from_onnx(cls, path):
        """Read an MLP from an ONNX file: a chain of ``Gemm`` or ``MatMul`` (+ ``Add``)
        nodes with constant weights, each but the last followed by ``Relu``.

        ``Identity``, ``Dropout``, ``Flatten`` (``axis=1``), ``Reshape`` and ``Cast``
        nodes are passed over, and a classifier's head after the last affine map
        (``Softmax``, ``ArgMax``, ...: the export of a scikit-learn ``MLPClassifier`` by
        ``skl2onnx``, for example) ends the chain; its ``classes`` constant, when there
        is one, becomes the network's classes. General graphs (convolutions, residual
        sums) are read by :func:`fastrelu.relu_layers`.

        Parameters
        ----------
        path : str, path-like or onnx.ModelProto

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For a missing or invalid file, or a graph that is not such a chain (the
            message names the node).
        MissingDependencyError
            Without onnx and onnxruntime.
        """
        from fastrelu._networks.onnx_model import network_from_onnx

        hidden, output, classes = network_from_onnx(path)
        return cls(hidden, output, classes=classes)

    @classmethod
    def load(cls, path, *, last_linear=None):
        """Load a network from a file, by its extension.

        ========================  ==================================================
        extension                 read as
        ========================  ==================================================
        ``.npz``                  fastrelu's layout (:meth:`from_npz`)
        ``.safetensors``          :meth:`from_safetensors`
        ``.pt``, ``.pth``         a PyTorch state_dict, by ``torch.load(path,
                                  weights_only=True)`` (:meth:`from_torch`); save
                                  ``model.state_dict()``, not the model
        ``.joblib``, ``.pkl``     a fitted scikit-learn MLP (:meth:`from_sklearn`)
        ``.onnx``                 an ONNX MLP chain (:meth:`from_onnx`)
        ========================  ==================================================

        Unpickling (``.joblib``, ``.pkl``) runs code stored in the file: load only
        files you trust. ``.pt`` files are read with ``weights_only=True``, which does not.

        Parameters
        ----------
        path : str or path-like
            The file; its extension chooses the loader.
        last_linear : bool or None, default=None
            Passed to the loader (see each); must be None for scikit-learn models,
            whose last layer is always the output layer.

        Returns
        -------
        Network

        Raises
        ------
        FastReluError
            For a missing file, an unknown extension, and whatever the loader refuses.
        """
        path = _existing_file(path)
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npz":
            return cls.from_npz(path, last_linear=last_linear)
        if ext == ".safetensors":
            return cls.from_safetensors(path, last_linear=last_linear)
        if ext in (".pt", ".pth"):
            last_linear = _last_linear_value(last_linear)
            torch = _import_torch()
            try:
                state_dict = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                # weights_only refuses anything but tensors and containers of them
                raise FastReluError(f"The network file {path!r} must hold a state_dict: torch.load(weights_only=True) refused it, so it holds other objects (a pickled model?). Save model.state_dict() for a stack of Linear and ReLU layers; for any other model, save it with torch.jit.save or torch.onnx.export and run fastrelu report on that file.") from None
            except Exception as exc:  # torch raises many types for unreadable files
                raise FastReluError(f"The network file {path!r} could not be read as a PyTorch state_dict with torch.load(weights_only=True): {type(exc).__name__}: {first_line(exc)}") from None
            if not isinstance(state_dict, Mapping):
                raise FastReluError(f"The network file {path!r} must hold a state_dict (a mapping of names to tensors). Got {type(state_dict).__name__} instead.")
            return _from_state_dict(state_dict, f" in {path!r}", True if last_linear is None else last_linear)
        if ext in (".joblib", ".pkl"):
            if last_linear is not None:
                raise FastReluError(f"The 'last_linear' parameter must be None for a scikit-learn model (its last layer is always the output layer). Got last_linear={last_linear!r} instead.")
            return cls.from_sklearn(_unpickle(path, ext))
        if ext == ".onnx":
            if last_linear is not None:
                raise FastReluError(f"The 'last_linear' parameter must be None for an ONNX model (a chain ending in an affine map has an output layer). Got last_linear={last_linear!r} instead.")
            return cls.from_onnx(path)
        raise FastReluError(f"The network file must end in {', '.join(_EXTENSIONS)}. Got {path!r} instead.")

    def save_npz(self, path):
        """Save the network in fastrelu's ``.npz`` layout (see :meth:`from_npz`).

        Writes ``weight_k``, ``bias_k`` (the subtracted bias) for every layer, the
        output layer last, and ``linear_output``. NumPy appends ``.npz`` to a path
        without it.

        Parameters
        ----------
        path : str or path-like
            Where to write.

        Raises
        ------
        FastReluError
            When the file cannot be written.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import fastrelu as fr
        >>> net = fr.Network([fr.ReLULayer(np.eye(2))], fr.ReLULayer([[1.0, 1.0]]))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "net.npz")
        ...     net.save_npz(path)
        ...     fr.Network.load(path)
        Network(widths=(2, 2, 1), linear_output=True)
        """
        arrays = {}
        for k, layer in enumerate(self._layers()):
            arrays[f"weight_{k}"] = layer.weight
            arrays[f"bias_{k}"] = layer.bias
        arrays[_NPZ_MARKER] = np.array(self._output is not None)
        if self._classes is not None:
            arrays[_NPZ_CLASSES] = self._classes
        try:
            np.savez(path, **arrays)
        except OSError as exc:
            raise FastReluError(f"The network file {os.fspath(path)!r} could not be written: {exc}") from None

    def __repr__(self):
        return f"Network(widths={self.widths}, linear_output={self._output is not None})"


# ---------------------------------------------------------------------- helpers


def _assemble(weights, biases, names, *, affine, last_linear, where):
    """Check shapes and build the Network.

    ``weights[k]`` has shape ``(n_out, n_in)``; ``biases[k]`` is ``b`` of
    ``W h + b`` when ``affine`` else the subtracted bias (None: zero); ``names[k]``
    is ``(weight name, bias name)`` as the source calls them.
    """
    if last_linear and len(weights) == 1:
        wname = names[0][0]
        raise FastReluError(f"The network{where} must have at least one hidden (ReLU) layer. Got the single layer {wname!r} with last_linear=True (an affine map only) instead.")
    layers = []
    for k, (weight, bias, (wname, bname)) in enumerate(zip(weights, biases, names)):
        weight = np.asarray(weight)
        if weight.ndim != 2 or weight.size == 0:
            raise FastReluError(f"The '{wname}' array{where} must be a non-empty 2-D weight matrix. Got {wname}.shape={weight.shape} instead.")
        if k and weight.shape[1] != weights[k - 1].shape[0]:
            pname = names[k - 1][0]
            raise FastReluError(f"The '{wname}' array{where} must have {weights[k - 1].shape[0]} columns, the outputs of the layer before it. Got {wname}.shape={weight.shape} after {pname}.shape={np.shape(weights[k - 1])} instead.")
        m = weight.shape[0]
        if bias is None:
            bias = np.zeros(m)
        elif np.shape(bias) != (m,):
            raise FastReluError(f"The '{bname}' array{where} must have shape ({m},) to match {wname}.shape={weight.shape}. Got {bname}.shape={np.shape(bias)} instead.")
        weight = as_matrix(weight, wname)
        if last_linear and k == len(weights) - 1:
            bias = as_vector(bias, bname, length=m)  # the affine output: finite
        else:  # a neuron that is never active: b = -inf (affine sources), alpha = +inf
            bias = as_bias(bias, bname, length=m, never_active=-np.inf if affine else np.inf)
        layers.append(ReLULayer(weight, -bias if affine else bias))
    if last_linear:
        return Network(layers[:-1], layers[-1])
    return Network(layers)


def _last_linear_value(value):
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    raise FastReluError(f"The 'last_linear' parameter must be True, False or None. Got {value!r} instead.")


def _existing_file(path):
    try:
        path = os.fspath(path)
    except TypeError:
        raise FastReluError(f"The 'path' parameter must be a file path. Got {type(path).__name__} instead.") from None
    if not os.path.isfile(path):
        raise FastReluError(f"The network file must exist and be readable. Got {path!r}, which is not a file.")
    return path


def _from_npz_layout(arrays, where, last_linear):
    """fastrelu's layout: ``weight_k``, ``bias_k`` (subtracted), optional ``linear_output``."""
    unexpected = sorted(key for key in arrays
                        if key not in (_NPZ_MARKER, _NPZ_CLASSES) and not _NPZ_KEY.match(key))
    if unexpected:
        raise FastReluError(f"The network file{where} must hold only weight_<k>, bias_<k> and the optional {_NPZ_MARKER} and {_NPZ_CLASSES}. Got unexpected keys {unexpected} instead (see docs/networks.md).")
    indices = {"weight": set(), "bias": set()}
    for key in arrays:
        match = _NPZ_KEY.match(key)
        if match:
            indices[match.group(1)].add(int(match.group(2)))
    count = len(indices["weight"])
    if count == 0:
        raise FastReluError(f"The network file{where} must hold weight_0, bias_0, weight_1, ... Got keys {sorted(arrays)} instead.")
    for k in range(count):
        if k not in indices["weight"]:
            beyond = min(i for i in indices["weight"] if i > k)
            raise FastReluError(f"The network file{where} must number its layers 0, 1, 2, ... without gaps. Got 'weight_{beyond}' but no 'weight_{k}' instead.")
        if k not in indices["bias"]:
            raise FastReluError(f"The network file{where} must hold 'bias_{k}' for 'weight_{k}'. Got no 'bias_{k}' instead.")
    extra = sorted(indices["bias"] - indices["weight"])
    if extra:
        raise FastReluError(f"The network file{where} must hold a weight for every bias. Got 'bias_{extra[0]}' but no 'weight_{extra[0]}' instead.")
    if last_linear is None:
        last_linear = False
        if _NPZ_MARKER in arrays:
            marker = np.asarray(arrays[_NPZ_MARKER])
            if marker.shape != () or marker.dtype.kind not in "bi" or marker.item() not in (0, 1):
                raise FastReluError(f"The '{_NPZ_MARKER}' array{where} must be a boolean scalar. Got dtype {marker.dtype}, shape {marker.shape} instead.")
            last_linear = bool(marker.item())
    weights = [_to_numpy(arrays[f"weight_{k}"], f"weight_{k}", where) for k in range(count)]
    biases = [_to_numpy(arrays[f"bias_{k}"], f"bias_{k}", where) for k in range(count)]
    names = [(f"weight_{k}", f"bias_{k}") for k in range(count)]
    network = _assemble(weights, biases, names, affine=False, last_linear=last_linear, where=where)
    if _NPZ_CLASSES in arrays:
        network = Network(network.hidden, network.output, classes=np.asarray(arrays[_NPZ_CLASSES]))
    return network


def _sorted_torch_modules(arrays, where):
    """Module names of PyTorch-named tensors, ordered by their number (files keep no order)."""
    modules = {}
    for key in arrays:
        match = _TORCH_KEY.match(key)
        if not match:
            raise FastReluError(f"The network file{where} must name its tensors like a torch.nn.Sequential state_dict ('0.weight', '0.bias', '2.weight', ...) or in fastrelu's layout ('weight_0', 'bias_0', ...). Got {key!r} instead.")
        modules[key.rsplit(".", 1)[0]] = (match.group(1), int(match.group(2)))
    prefixes = sorted({prefix for prefix, _ in modules.values()})
    if len(prefixes) > 1:
        raise FastReluError(f"The network file{where} must number its layers under one prefix (such as '0.weight', '2.weight' or 'net.0.weight', 'net.2.weight'). Got the prefixes {prefixes} instead.")
    ordered = sorted(modules, key=lambda module: modules[module][1])
    for first, second in zip(ordered, ordered[1:]):
        if modules[first][1] == modules[second][1]:
            raise FastReluError(f"The network file{where} must give each layer its own number. Got {first!r} and {second!r} instead.")
    return ordered


def _from_state_dict(state_dict, where, last_linear):
    """A state_dict in the model's order: ``<module>.weight``, ``<module>.bias``."""
    modules = []
    for key in state_dict:
        if not isinstance(key, str) or key.rsplit(".", 1)[-1] not in ("weight", "bias"):
            raise FastReluError(f"The state_dict{where} must hold only the weights and biases of Linear layers ('<module>.weight', '<module>.bias'). Got {key!r} instead.")
        module = key.rsplit(".", 1)[0] if "." in key else ""
        if module not in modules:
            modules.append(module)
    if not modules:
        raise FastReluError(f"The state_dict{where} must hold the weights of at least one Linear layer. Got an empty mapping instead.")
    return _from_torch_names(state_dict, modules, where, last_linear)


def _from_torch_names(tensors, modules, where, last_linear):
    """Layers ``<module>.weight`` (n_out, n_in) and ``<module>.bias`` (``b`` of ``W h + b``)."""
    weights, biases, names = [], [], []
    for module in modules:
        wname = f"{module}.weight" if module else "weight"
        bname = f"{module}.bias" if module else "bias"
        if wname not in tensors:
            raise FastReluError(f"The network{where} must hold '{wname}' for '{bname}'. Got no '{wname}' instead.")
        weights.append(_to_numpy(tensors[wname], wname, where))
        biases.append(_to_numpy(tensors[bname], bname, where) if bname in tensors else None)
        names.append((wname, bname))
    return _assemble(weights, biases, names, affine=True, last_linear=last_linear, where=where)


def _to_numpy(value, name, where):
    """A float64 NumPy copy of a tensor or array (any device or float dtype)."""
    try:
        if hasattr(value, "detach"):
            return value.detach().cpu().double().numpy()
        return np.asarray(value, dtype=np.float64)
    except Exception as exc:  # tensors and arrays raise many types on conversion
        raise FastReluError(f"The '{name}' array{where} must hold real numbers. Got {type(value).__name__} ({exc}) instead.") from None


def _import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError('Reading PyTorch models needs torch: install it with pip install "fastrelu[torch]".', name="torch") from None
    return torch


def _sequential_children(sequential, torch, prefix=""):
    """``(index, module)`` in forward order, nested Sequentials flattened (``"1.0"``)."""
    for name, module in sequential.named_children():
        index = f"{prefix}{name}"
        if type(module) is torch.nn.Sequential:
            yield from _sequential_children(module, torch, prefix=f"{index}.")
        else:
            yield index, module


def _from_sequential(model, torch):
    nn = torch.nn
    skipped = (nn.Identity, nn.Dropout)
    linears = []  # (index, module, followed by a ReLU)
    for index, module in _sequential_children(model, torch):
        kind = type(module)
        if kind in skipped:
            continue
        if kind is nn.Flatten:
            if (module.start_dim, module.end_dim) != (1, -1):
                raise FastReluError(f"The 'model' parameter must flatten only with Flatten(start_dim=1, end_dim=-1), a no-op on (N, n) batches. Got {module!r} at index {index} instead.")
            continue
        if kind is nn.Linear:
            if linears and not linears[-1][2]:
                raise FastReluError(f"The 'model' parameter must have a ReLU after every Linear but the last. Got the Linear at index {linears[-1][0]} followed by the Linear at index {index} instead.")
            linears.append([index, module, False])
        elif kind is nn.ReLU:
            if not linears:
                raise FastReluError(f"The 'model' parameter must start with a Linear. Got ReLU() at index {index} before any Linear instead.")
            linears[-1][2] = True
        else:
            raise FastReluError(f"The 'model' parameter must be a torch.nn.Sequential of Linear and ReLU modules. Got {module!r} at index {index} instead; fastrelu analyses ReLU networks only.")
    if not linears:
        raise FastReluError("The 'model' parameter must hold at least one Linear module. Got none instead.")
    weights, biases, names = [], [], []
    where = " of the Sequential"
    for index, module, _ in linears:
        weights.append(_to_numpy(module.weight, f"{index}.weight", where))
        biases.append(None if module.bias is None else _to_numpy(module.bias, f"{index}.bias", where))
        names.append((f"{index}.weight", f"{index}.bias"))
    return _assemble(weights, biases, names, affine=True, last_linear=not linears[-1][2], where=where)


def _unpickle(path, ext):
    """The object in a ``.joblib`` or ``.pkl`` file (runs the file's code: trusted files only)."""
    try:
        if ext == ".joblib":
            try:
                import joblib
            except ImportError:
                raise MissingDependencyError("Reading .joblib files needs joblib (installed with scikit-learn): pip install scikit-learn.", name="joblib") from None
            return joblib.load(path)
        with open(path, "rb") as stream:
            return pickle.load(stream)
    except FastReluError:
        raise
    except Exception as exc:  # unpickling raises whatever the stored code raises
        raise FastReluError(f"The network file {path!r} could not be unpickled: {type(exc).__name__}: {exc}") from None
