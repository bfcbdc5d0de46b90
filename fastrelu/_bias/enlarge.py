"""Data domains enlarged by synthetic points near the data (THEORY §3, data-driven MCBE).

A bias estimated on the training points alone is only known to keep those points
injective; points near the data (test points, slightly perturbed inputs) may still fall
outside. Enlarging the data set with synthetic points drawn close to it makes the
estimate cover a neighbourhood of the data, at the price of a smaller bias.
"""

import numpy as np

from fastrelu._core.domains import Data
from fastrelu._core.errors import FastReluError
from fastrelu._core.validation import as_matrix, positive_float, positive_int, seed_value
from fastrelu._runtime.seeds import ENLARGE_STREAM, block_generator

METHODS = ("kde", "blowup")
#: Principal directions of the data whose variance is below this fraction of the largest
#: are treated as absent: the density estimate lives in the data's affine span.
SPAN_RTOL = 1e-10
#: Synthetic points whose kernel noise is drawn at once (bounds the ``(chunk, N)`` draws).
KDE_CHUNK = 1024


def _points_of(data):
    if isinstance(data, Data):
        return data.points
    return as_matrix(data, "data")


def bandwidth_value(bandwidth):
    if isinstance(bandwidth, str):
        if bandwidth not in ("scott", "silverman"):
            raise FastReluError(f"The 'bandwidth' parameter must be 'scott', 'silverman' or a float > 0. Got {bandwidth!r} instead.")
        return bandwidth
    return positive_float(bandwidth, "bandwidth")


def _kde_factor(bandwidth, N, dim):
    """The kernel's bandwidth factor: SciPy ``gaussian_kde``'s rules of Scott
    (``N^(-1/(d+4))``) and Silverman (``(N (d+2) / 4)^(-1/(d+4))``) for equal weights, or
    the given number."""
    if bandwidth == "scott":
        return N ** (-1.0 / (dim + 4))
    if bandwidth == "silverman":
        return (N * (dim + 2) / 4.0) ** (-1.0 / (dim + 4))
    return float(bandwidth)


def _kde_points(X, count, bandwidth, rng):
    """``count`` draws from a Gaussian kernel density estimate of the rows of ``X``.

    The density is SciPy's ``gaussian_kde`` (a data point chosen uniformly plus Gaussian
    noise of covariance ``factor^2`` times the data covariance), with ``factor`` from the
    rule for the dimension of the data's affine span, so that data confined to a
    subspace (dead pixels, neurons that never fire) still have a density. The noise is
    drawn as ``factor Z X_c / sqrt(N - 1)`` with ``Z`` standard normal and ``X_c`` the
    centred data: exactly that covariance, with no factorisation of it, so the draws
    are continuous in the data (inputs that differ by rounding give synthetic points
    that differ by rounding, whatever the machine's BLAS).
    """
    N = X.shape[0]
    mean = X.mean(axis=0)
    centred = X - mean
    s = np.linalg.svd(centred, compute_uv=False)
    rank = int(np.sum(s > (s[0] * np.sqrt(SPAN_RTOL) if s.size and s[0] > 0 else np.inf)))
    if rank == 0:  # all points equal: the estimate is a point mass
        return np.repeat(mean[None, :], count, axis=0), 0.0, 0
    factor = _kde_factor(bandwidth, N, rank)
    chosen = rng.integers(0, N, size=count)
    points = X[chosen]
    scale = factor / np.sqrt(N - 1)
    for start in range(0, count, KDE_CHUNK):
        stop = min(count, start + KDE_CHUNK)
        points[start:stop] += scale * (rng.standard_normal((stop - start, N)) @ centred)
    return points, float(factor), rank


def enlarge_data(data, n_points, *, method="kde", bandwidth="scott", noise=0.1, seed=None,
                 include_data=True, nonnegative=None):
    """A :class:`Data` domain holding the data and synthetic points near it.

    THEORY §3's data-driven estimation: a maximal bias estimated on the enlarged set
    (:func:`fastrelu.mcbe` on the returned domain) keeps a neighbourhood of the data
    injective, not only the data points themselves.

    Parameters
    ----------
    data : Data or array_like, shape (N, n)
        The data points.
    n_points : int
        Number of synthetic points to draw.
    method : {"kde", "blowup"}, default="kde"
        ``"kde"``: draws from a Gaussian kernel density estimate of the data
        (``scipy.stats.gaussian_kde``: a data point plus Gaussian noise with covariance
        ``factor^2 Sigma``, ``Sigma`` the data covariance), fitted in the affine span of
        the data so that degenerate data (constant coordinates) are allowed; the points
        stay in that span. ``"blowup"``: noisy copies ``x_j + sigma z`` of data points
        chosen uniformly, ``z ~ N(0, I_n)``, in all ``n`` directions.
    bandwidth : "scott", "silverman" or float, default="scott"
        For ``"kde"``: SciPy's bandwidth rule or the factor itself (Scott's rule is
        ``N^(-1/(r+4))`` with ``r`` the dimension of the data's span).
    noise : float, default=0.1
        For ``"blowup"``: ``sigma`` relative to the data's spread, ``sigma = noise *
        sqrt(mean_j |x_j - mean|^2 / n)`` (the root-mean-square deviation per
        coordinate).
    seed : int or None, default=None
        Seed of the draws (stream 5 of the seed; ``None``: fresh entropy).
    include_data : bool, default=True
        Put the data points themselves first; otherwise only the synthetic points are
        returned.
    nonnegative : bool or None, default=None
        Clip synthetic points to the nonnegative orthant. ``None`` does so when every
        data coordinate is nonnegative (outputs of a ReLU layer, pixel intensities),
        so that no synthetic point lies where no input can be.

    Returns
    -------
    Data
        ``N + n_points`` points (or ``n_points``), data first.

    Raises
    ------
    FastReluError
        For data that are not a finite 2-D array, an ``n_points`` that is not a positive
        integer, an unknown ``method`` or ``bandwidth`` rule, a negative ``noise`` or an
        invalid ``seed``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> X = np.random.default_rng(0).standard_normal((20, 3))
    >>> enlarged = fr.enlarge_data(X, 30, seed=0)
    >>> len(enlarged), enlarged.dim, bool(np.array_equal(enlarged.points[:20], X))
    (50, 3, True)
    """
    X = _points_of(data)
    n_points = positive_int(n_points, "n_points")
    if method not in METHODS:
        raise FastReluError(f"The 'method' parameter must be one of {list(METHODS)}. Got {method!r} instead.")
    rng = block_generator(seed_value(seed), 0, ENLARGE_STREAM)
    if method == "kde":
        synthetic = _kde_points(X, n_points, bandwidth_value(bandwidth), rng)[0]
    else:
        noise = positive_float(noise, "noise", allow_zero=True)
        spread = float(np.sqrt(np.mean(np.sum((X - X.mean(axis=0)) ** 2, axis=1)) / X.shape[1]))
        chosen = rng.integers(0, X.shape[0], size=n_points)
        synthetic = X[chosen] + (noise * spread) * rng.standard_normal((n_points, X.shape[1]))
    if nonnegative is None:
        nonnegative = bool((X >= 0).all())
    if nonnegative:
        np.maximum(synthetic, 0.0, out=synthetic)
    points = np.concatenate([X, synthetic]) if include_data else synthetic
    return Data(np.ascontiguousarray(points))
