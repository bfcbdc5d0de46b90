"""The ReLU layers found in a model (PyTorch or ONNX): :class:`ModelLayer`, the
:class:`ReLULayers` that hold them, the LayerNorm a layer reads, and the dense form of a
layer's map."""

import math
from dataclasses import dataclass, field

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.layer import ReLULayer

#: Share of the memory budget a layer's dense operator may take (the analyses need room
#: for their own work beside it).
DENSE_SHARE = 0.25

@dataclass(frozen=True)
class LayerNormInput:
    """The ``LayerNorm`` whose output a layer reads (THEORY §10): every input the layer
    can receive is ``gamma * u + beta`` with ``u`` on the sphere of radius ``sqrt(d)`` in
    the hyperplane ``sum(u) = 0`` (radius ``sqrt(d var / (var + eps))`` exactly, just
    below ``sqrt(d)``).

    Attributes
    ----------
    name : str
        The LayerNorm's module path.
    gamma, beta : ndarray, shape (d,)
        Its elementwise affine parameters (ones and zeros without them).
    eps : float
    """

    name: str
    gamma: np.ndarray = field(repr=False)
    beta: np.ndarray = field(repr=False)
    eps: float

    def basis(self):
        """``Q``, shape ``(d, d - 1)``: an orthonormal basis of the hyperplane
        ``sum(u) = 0``, the last ``d - 1`` columns of a Householder reflection that maps
        ``e_1`` to the unit vector along ``(1, ..., 1)``."""
        d = self.gamma.shape[0]
        v = np.full(d, 1.0 / math.sqrt(d))
        v[0] -= 1.0
        # H = I - 2 v v^T / |v|^2 maps e_1 to (1,...,1)/sqrt(d); its other columns span the rest
        H = np.eye(d) - 2.0 * np.outer(v, v) / (v @ v)
        return H[:, 1:]


@dataclass(frozen=True, eq=False)
class ModelLayer:
    """One ReLU layer of a model: ``ReLU(A(x))`` with ``A`` one affine map (``Linear``,
    ``Conv1d`` or ``Conv2d``, optionally followed by a folded eval-mode batch norm) of
    one tensor ``x``, flattened in PyTorch's memory order (``(C, H, W)`` row-major).

    Attributes
    ----------
    name : str
        The affine module's path in the model (``"layer2.0.conv1"``), with ``"@k"``
        appended for its ``k``-th call (from 0) when the model calls it more than once.
    kind : str
        ``"linear"``, ``"conv1d"`` or ``"conv2d"``.
    input_shape, output_shape : tuple of int
        The shape of one input of the affine map and of its output (no batch axis).
    layer : ReLULayer or None
        The layer in fastrelu's convention ``ReLU(W x - alpha)`` on the flattened input,
        ``alpha = -b`` (batch norm folded); ``None`` when its dense matrix does not fit
        the memory budget (``dense_bytes`` says how much it needs): then
        :meth:`operator` computes ``W`` matrix-free, and :func:`fastrelu.analyze_model`
        and :func:`fastrelu.operator_injectivity` analyse the layer from it (THEORY
        §10.1).
    bias : ndarray, shape (m,)
        ``alpha`` per output (shared by the positions of a channel for convolutions).
    channels : int
        Output channels (for ``Linear``, the outputs: one position each).
    batchnorm : str or None
        The path of the batch norm folded into the map.
    layernorm : LayerNormInput or None
        The LayerNorm whose output the map reads, when it reads one directly.
    relu : str
        What applies the ReLU: the ``nn.ReLU`` module's path, or the function
        (``"F.relu"``, ``"torch.relu"``, ``"Tensor.relu_"``, ...).
    dense_bytes : int
        Bytes of the dense matrix ``W``.
    tokens : int
        Points per model input: a ``Linear`` applied to inputs of shape ``(T, n)`` (the
        tokens of a sequence) is the layer on each of the ``T`` tokens; 1 otherwise.
    """

    name: str
    kind: str
    input_shape: tuple
    output_shape: tuple
    layer: ReLULayer | None = field(repr=False)
    bias: np.ndarray = field(repr=False)
    channels: int
    batchnorm: str | None
    layernorm: LayerNormInput | None
    relu: str
    dense_bytes: int = field(repr=False)
    tokens: int = 1
    _map: object = field(repr=False, default=None)
    _tensor: str | None = field(repr=False, default=None)  # ONNX: the input tensor's name

    @property
    def n(self):
        """Input dimension (the flattened input's length)."""
        return math.prod(self.input_shape)

    @property
    def m(self):
        """Output dimension (neurons: channels times positions)."""
        return math.prod(self.output_shape)

    @property
    def positions(self):
        """Positions per channel (1 for ``Linear``)."""
        return self.m // self.channels

    def pre_activation(self, X):
        """The values the ReLU receives, ``A(x)``, computed in float64 from the model's
        parameters (by PyTorch for a PyTorch model, from the dense rows for ONNX).

        Parameters
        ----------
        X : array_like, shape (N, n)
            Flattened inputs of the affine map.

        Returns
        -------
        ndarray, shape (N, m)
            ``W x - alpha`` per row, flattened in the framework's order.

        Raises
        ------
        FastReluError
            For inputs that are not finite with ``n`` columns.
        """
        from fastrelu._core.validation import as_matrix

        self._require_map("pre_activation")
        X = as_matrix(X, "X", ncols=self.n, allow_empty=True)
        return self._map.affine(np.array(X, dtype=np.float64))

    def _require_map(self, what):
        if self._map is None:
            raise FastReluError(f"The layer {self.name!r} must have its map for {what}(). Got an ONNX layer whose dense matrix ({self.dense_bytes:,} bytes) is over the memory budget, and ONNX layers are computed from their dense rows only: raise the budget (FASTRELU_MEMORY_LIMIT) or run the model in PyTorch, whose layers compute the convolution matrix-free.")

    def operator(self):
        """``W`` as a ``scipy.sparse.linalg.LinearOperator`` (matrix-free for PyTorch
        layers: products with the convolution and its transpose, never forming ``W``).

        Returns
        -------
        scipy.sparse.linalg.LinearOperator
            Shape ``(m, n)``, float64.
        """
        from scipy.sparse.linalg import LinearOperator

        self._require_map("operator")

        def matmat(V):
            return self._map.linear(np.asarray(V, dtype=np.float64).T).T

        def rmatmat(U):
            return self._map.adjoint(np.asarray(U, dtype=np.float64).T).T

        def matvec(v):
            return matmat(np.reshape(v, (self.n, 1)))[:, 0]

        def rmatvec(u):
            return rmatmat(np.reshape(u, (self.m, 1)))[:, 0]

        return LinearOperator((self.m, self.n), matvec=matvec, rmatvec=rmatvec,
                              matmat=matmat, rmatmat=rmatmat, dtype=np.float64)


def nested_numbers_as_array(data):
    """``data`` as an array when it is a (nested) list or tuple of plain numbers, such as
    ``[[1.0, 2.0], [3.0, 4.0]]`` (points, not an iterable of batches); else ``data``."""
    import numbers

    probe = data
    while isinstance(probe, (list, tuple)) and probe:
        probe = probe[0]
    if probe is not data and isinstance(probe, numbers.Real) and not isinstance(probe, bool):
        try:
            return np.asarray(data, dtype=np.float64)
        except ValueError:  # ragged: left to the caller's own message
            return data
    return data


class DenseMap:
    """A layer's affine map from its dense rows: ``x -> W x - alpha``."""

    def __init__(self, W, alpha):
        self.W, self.alpha = W, alpha

    def affine(self, X):
        return X @ self.W.T - self.alpha

    def linear(self, X):
        return X @ self.W.T

    def adjoint(self, U):
        return U @ self.W


class ReLULayers(tuple):
    """The ReLU layers found in a model (a tuple of :class:`ModelLayer`, in the order
    the model applies them), with the ReLUs that are not layers of one affine map.

    Attributes
    ----------
    others : tuple of (str, str)
        ``(where, reason)`` for every ReLU that is not applied to one affine map of one
        tensor: after a residual sum, pooling, another ReLU, ...
    method : str
        ``"fx"`` (the model's ``torch.fx`` graph), ``"hooks"`` (a run of the model on
        the example: it does not trace) or ``"onnx"`` (an ONNX graph).
    trace_error : str or None
        Why ``torch.fx`` did not trace the model (with ``method="hooks"``).
    """

    def __new__(cls, layers, others, method, trace_error=None):
        self = super().__new__(cls, layers)
        self.others = tuple(others)
        self.method = method
        self.trace_error = trace_error
        return self

    def names(self):
        """The layers' names, in order."""
        return [layer.name for layer in self]

    def __repr__(self):
        return f"ReLULayers({list(self)!r}, others={list(self.others)!r}, method={self.method!r})"
