"""The ReLU layer ``C_alpha(x) = ReLU(W x - alpha)`` (THEORY §1)."""

import numpy as np

from fastrelu._core.validation import as_bias, as_matrix


def _private(array, source):
    """``array`` (validated from ``source``) as an array that only the layer holds.

    NumPy's conversions return the caller's own array, a view of it or (for some
    array-likes) of their memory when no conversion is needed; a fresh array is made
    only from lists and tuples, or when a NumPy input had to change dtype or layout.
    Anything else is copied, so that the layer never aliases or freezes caller data.
    """
    fresh = array is not source and array.flags.owndata and isinstance(source, (np.ndarray, list, tuple))
    private = array if fresh else array.copy()
    private.flags.writeable = False
    return private


class ReLULayer:
    """A ReLU layer ``x -> ReLU(W x - bias)``.

    fastrelu follows [HEB]'s convention: the bias ``alpha`` is *subtracted*. For the
    deep-learning convention ``ReLU(W x + b)`` use :meth:`from_affine`.

    The layer keeps private read-only copies of its weight and bias: the caller's
    arrays are never modified, frozen or aliased, and changing them afterwards does not
    change the layer.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The rows ``w_i`` are the frame vectors (``m`` neurons, input dimension ``n``).
        Finite.
    bias : array_like, shape (m,), scalar or None, default=None
        The subtracted bias ``alpha`` (``None``: zero). ``alpha_i = +inf`` is a neuron
        that is never active (its pre-activation is ``-inf`` and its output 0 for every
        input), as :func:`mcbe` reports for the rows no sample constrained. NaN and
        ``-inf`` (always active with an infinite output) are refused.

    Raises
    ------
    FastReluError
        For a weight that is not a finite, non-empty 2-D array of real numbers, or a
        bias of the wrong shape or with NaN or ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> layer = fr.ReLULayer([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], bias=0.5)
    >>> layer
    ReLULayer(m=3, n=2)
    >>> layer(np.array([2.0, 1.0]))
    array([1.5, 0.5, 0. ])
    >>> layer.active_mask(np.array([2.0, 1.0]))
    array([ True,  True, False])
    """

    def __init__(self, weight, bias=None):
        self._weight = _private(as_matrix(weight, "weight"), weight)
        m = self._weight.shape[0]
        if bias is None:
            self._bias = np.zeros(m)
            self._bias.flags.writeable = False
        else:
            self._bias = _private(as_bias(bias, "bias", length=m), bias)

    @classmethod
    def from_affine(cls, weight, b):
        """Layer ``ReLU(W x + b)`` of the deep-learning convention (``alpha = -b``).

        ``b_i = -inf`` is a neuron that is never active; NaN and ``+inf`` are refused.

        Parameters
        ----------
        weight : array_like, shape (m, n)
            The weight ``W``; finite.
        b : array_like, shape (m,) or scalar
            The added bias ``b``.

        Returns
        -------
        ReLULayer
            The layer with ``alpha = -b``.

        Raises
        ------
        FastReluError
            For a weight that is not a finite 2-D array, or a ``b`` of the wrong shape
            or with NaN or ``+inf``.

        Examples
        --------
        >>> import fastrelu as fr
        >>> fr.ReLULayer.from_affine([[1.0, 2.0]], [0.5]).bias
        array([-0.5])
        """
        W = as_matrix(weight, "weight")
        return cls(weight, -as_bias(b, "b", length=W.shape[0], never_active=-np.inf))

    @property
    def weight(self):
        """The weight matrix ``W``, shape ``(m, n)`` (read-only)."""
        return self._weight

    @property
    def bias(self):
        """The subtracted bias ``alpha``, shape ``(m,)`` (read-only; ``+inf`` marks a
        neuron that is never active)."""
        return self._bias

    @property
    def shape(self):
        """``(m, n)``: number of neurons, input dimension."""
        return self._weight.shape

    def pre_activation(self, X):
        """The pre-activations ``W x - alpha`` for each row ``x`` of ``X``.

        Parameters
        ----------
        X : array_like, shape (N, n)
            The inputs, one per row; finite.

        Returns
        -------
        ndarray, shape (N, m)
            ``W x - alpha`` per input; ``-inf`` for the neurons with ``alpha_i = +inf``.

        Raises
        ------
        FastReluError
            For inputs that are not a finite, non-empty 2-D array with ``n`` columns.
        """
        X = as_matrix(X, "X", ncols=self._weight.shape[1])
        return X @ self._weight.T - self._bias

    def __call__(self, X):
        """``ReLU(W x - alpha)`` for each row of ``X``; a 1-D ``x`` gives a 1-D output.

        Parameters
        ----------
        X : array_like, shape (N, n) or (n,)
            The inputs; finite.

        Returns
        -------
        ndarray, shape (N, m) or (m,)
            The outputs, nonnegative.

        Raises
        ------
        FastReluError
            For inputs that are not finite real numbers with ``n`` entries per input.
        """
        single = np.ndim(X) == 1
        X2 = np.atleast_2d(X) if single else X
        out = np.maximum(self.pre_activation(X2), 0.0)
        return out[0] if single else out

    def active_mask(self, X):
        """The active sets ``I(x) = {i : <x, w_i> >= alpha_i}`` as a boolean mask.

        Parameters
        ----------
        X : array_like, shape (N, n) or (n,)
            The inputs; finite.

        Returns
        -------
        ndarray of bool, shape (N, m) or (m,)
            ``True`` where a neuron is active (never for a neuron with
            ``alpha_i = +inf``).

        Raises
        ------
        FastReluError
            For inputs that are not finite real numbers with ``n`` entries per input.
        """
        single = np.ndim(X) == 1
        X2 = np.atleast_2d(X) if single else X
        mask = self.pre_activation(X2) >= 0.0
        return mask[0] if single else mask

    def __repr__(self):
        m, n = self._weight.shape
        return f"ReLULayer(m={m}, n={n})"
