"""The front door of the bias estimators."""

from fastrelu._bias.mcbe import mcbe
from fastrelu._bias.pbe import pbe
from fastrelu._core.errors import FastReluError

#: Bias estimators by name; each takes ``(weight, domain, **options)`` and returns a
#: :class:`BiasEstimate`.
METHODS = {"mcbe": mcbe, "pbe": pbe}


def estimate_bias(weight, domain, method="mcbe", **options):
    """Estimate a bias under which ``ReLU(W x - alpha)`` is injective on ``domain``.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The layer's weights.
    domain : Sphere, Ball, Shell or Data
        Where injectivity is asked.
    method : {"mcbe", "pbe"}, default="mcbe"
        ``"mcbe"``: :func:`mcbe`, Monte Carlo most correlated bases (any domain; an
        estimate, exact only at its samples). ``"pbe"``: :func:`pbe`, polytope bias
        estimation from the facets of the hull of the unit rows (sphere, ball or shell,
        not nonnegative; omnidirectional weights with ``n <= 8``; a certificate for the
        whole domain, no sampling).
    **options
        Passed to the method.

    Returns
    -------
    BiasEstimate
        Its ``alpha`` is ``+inf`` for rows that nothing constrained (never active);
        ``ReLULayer(weight, estimate.alpha)`` takes it as it is, and copies it (the
        estimate's arrays stay the caller's to modify).

    Raises
    ------
    FastReluError
        For an unknown ``method``, and for whatever the method refuses (see
        :func:`mcbe` and :func:`pbe`).

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> est = fr.estimate_bias(T, fr.Sphere(3), method="pbe")
    >>> est.method, np.round(est.alpha, 3)
    ('pbe', array([-0.577, -0.577, -0.577, -0.577]))
    """
    if method not in METHODS:
        raise FastReluError(f"The 'method' parameter must be one of {sorted(METHODS)}. Got {method!r} instead.")
    return METHODS[method](weight, domain, **options)
