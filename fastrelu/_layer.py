"""The ReLU layer ``C_alpha(x) = ReLU(W x - alpha)`` (THEORY §1)."""

import numpy as np

from ._validation import as_matrix, as_vector


class ReLULayer:
    """A ReLU layer ``x -> ReLU(W x - bias)``.

    fastrelu follows [HEB]'s convention: the bias ``alpha`` is *subtracted*. For the
    deep-learning convention ``ReLU(W x + b)`` use :meth:`from_affine`.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The rows ``w_i`` are the frame vectors (``m`` neurons, input dimension ``n``).
    bias : array_like, shape (m,) or scalar, optional
        The subtracted bias ``alpha``; zero by default.
    """

    def __init__(self, weight, bias=None):
        self._weight = as_matrix(weight, "weight")
        self._weight.flags.writeable = False
        m = self._weight.shape[0]
        self._bias = np.zeros(m) if bias is None else as_vector(bias, "bias", length=m)
        self._bias.flags.writeable = False

    @classmethod
    def from_affine(cls, weight, b):
        """Layer ``ReLU(W x + b)`` of the deep-learning convention (``alpha = -b``)."""
        W = as_matrix(weight, "weight")
        return cls(W, -as_vector(b, "b", length=W.shape[0]))

    @property
    def weight(self):
        """The weight matrix ``W``, shape ``(m, n)`` (read-only)."""
        return self._weight

    @property
    def bias(self):
        """The subtracted bias ``alpha``, shape ``(m,)`` (read-only)."""
        return self._bias

    @property
    def shape(self):
        """``(m, n)``: number of neurons, input dimension."""
        return self._weight.shape

    def pre_activation(self, X):
        """``W x - alpha`` for each row ``x`` of ``X`` (shape ``(N, n)`` -> ``(N, m)``)."""
        X = as_matrix(X, "X", ncols=self._weight.shape[1])
        return X @ self._weight.T - self._bias

    def __call__(self, X):
        """``ReLU(W x - alpha)`` for each row of ``X``; a 1-D ``x`` gives a 1-D output."""
        single = np.ndim(X) == 1
        X2 = np.atleast_2d(X) if single else X
        out = np.maximum(self.pre_activation(X2), 0.0)
        return out[0] if single else out

    def active_mask(self, X):
        """Active sets ``I(x) = {i : <x, w_i> >= alpha_i}`` as a boolean ``(N, m)`` mask."""
        single = np.ndim(X) == 1
        X2 = np.atleast_2d(X) if single else X
        mask = self.pre_activation(X2) >= 0.0
        return mask[0] if single else mask

    def __repr__(self):
        m, n = self._weight.shape
        return f"ReLULayer(m={m}, n={n})"
