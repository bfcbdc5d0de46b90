"""The front door of the bias estimators."""

from fastrelu._core.errors import FastReluError
from fastrelu._bias.mcbe import mcbe
from fastrelu._bias.pbe import pbe

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
    method : str
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
    """
    if method not in METHODS:
        raise FastReluError(f"The 'method' parameter must be one of {sorted(METHODS)}. Got {method!r} instead.")
    return METHODS[method](weight, domain, **options)
