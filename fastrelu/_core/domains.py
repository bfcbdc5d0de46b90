"""Input domains K on which injectivity of a ReLU layer is asked (THEORY §2)."""

from dataclasses import dataclass, field

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.validation import as_matrix, positive_float, positive_int


@dataclass(frozen=True)
class _RoundDomain:
    dim: int
    radius: float = 1.0
    nonnegative: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dim", positive_int(self.dim, "dim"))
        object.__setattr__(self, "radius", positive_float(self.radius, "radius"))
        object.__setattr__(self, "nonnegative", bool(self.nonnegative))

    @property
    def outer_radius(self):
        return self.radius


@dataclass(frozen=True)
class Sphere(_RoundDomain):
    """The sphere ``S_r = {x in R^dim : |x| = radius}``.

    With ``nonnegative=True`` only its part in the nonnegative orthant (inputs that come
    out of an earlier ReLU layer).

    Parameters
    ----------
    dim : int
        Dimension ``n`` of the space (at least 1).
    radius : float, default=1.0
        The radius ``r > 0``.
    nonnegative : bool, default=False
        Only the part in the nonnegative orthant.

    Raises
    ------
    FastReluError
        For a ``dim`` that is not a positive integer or a ``radius`` that is not a
        positive float.

    Examples
    --------
    >>> import fastrelu as fr
    >>> fr.Sphere(3)
    Sphere(dim=3, radius=1.0, nonnegative=False)
    >>> fr.Sphere(3, radius=2.0).outer_radius
    2.0
    """


@dataclass(frozen=True)
class Ball(_RoundDomain):
    """The closed ball ``B_r = {x in R^dim : |x| <= radius}``.

    With ``nonnegative=True`` only its part in the nonnegative orthant.

    Parameters
    ----------
    dim : int
        Dimension ``n`` of the space (at least 1).
    radius : float, default=1.0
        The radius ``r > 0``.
    nonnegative : bool, default=False
        Only the part in the nonnegative orthant.

    Raises
    ------
    FastReluError
        For a ``dim`` that is not a positive integer or a ``radius`` that is not a
        positive float.

    Examples
    --------
    >>> import fastrelu as fr
    >>> fr.Ball(4, radius=3.0, nonnegative=True)
    Ball(dim=4, radius=3.0, nonnegative=True)
    """


@dataclass(frozen=True)
class Shell:
    """The spherical shell ``{x in R^dim : inner <= |x| <= outer}``.

    With ``nonnegative=True`` only its part in the nonnegative orthant. ``inner = 0`` is
    the ball of radius ``outer``.

    Parameters
    ----------
    dim : int
        Dimension ``n`` of the space (at least 1).
    inner : float
        The inner radius, ``0 <= inner <= outer``.
    outer : float
        The outer radius, positive.
    nonnegative : bool, default=False
        Only the part in the nonnegative orthant.

    Raises
    ------
    FastReluError
        For a ``dim`` that is not a positive integer, a negative ``inner``, a
        non-positive ``outer``, or ``inner > outer``.

    Examples
    --------
    >>> import fastrelu as fr
    >>> fr.Shell(3, 0.5, 2.0).outer_radius
    2.0
    """

    dim: int
    inner: float
    outer: float
    nonnegative: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dim", positive_int(self.dim, "dim"))
        inner = positive_float(self.inner, "inner", allow_zero=True)
        outer = positive_float(self.outer, "outer")
        if inner > outer:
            raise FastReluError(f"The 'inner' radius of a Shell must not exceed its 'outer' radius. Got inner={inner!r} > outer={outer!r}.")
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "outer", outer)
        object.__setattr__(self, "nonnegative", bool(self.nonnegative))

    @property
    def outer_radius(self):
        return self.outer


@dataclass(frozen=True, eq=False)
class Data:
    """An empirical domain: the finite set of the rows of ``points`` (shape ``(N, dim)``).

    ``points`` is kept as a private read-only copy: changing the caller's array later
    does not change the domain.

    Parameters
    ----------
    points : array_like, shape (N, dim)
        The points, one per row; finite, at least one.

    Raises
    ------
    FastReluError
        For points that are not a finite, non-empty 2-D array of real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> data = fr.Data(np.zeros((5, 3)))
    >>> data, len(data), data.dim
    (Data(points=<5 x 3>), 5, 3)
    """

    points: np.ndarray = field(repr=False)

    def __post_init__(self):
        given = self.points
        points = as_matrix(given, "points")
        if isinstance(given, np.ndarray) and np.shares_memory(points, given):
            points = points.copy()
        points.flags.writeable = False
        object.__setattr__(self, "points", points)

    @property
    def dim(self):
        return self.points.shape[1]

    def __len__(self):
        return self.points.shape[0]

    def __repr__(self):
        return f"Data(points=<{self.points.shape[0]} x {self.points.shape[1]}>)"


DOMAIN_TYPES = (Sphere, Ball, Shell, Data)


def check_domain(domain, dim):
    """Raise unless ``domain`` is a fastrelu domain of dimension ``dim``."""
    if not isinstance(domain, DOMAIN_TYPES):
        raise FastReluError(f"The 'domain' parameter must be one of fastrelu.Sphere, Ball, Shell or Data. Got {type(domain).__name__} instead.")
    if domain.dim != dim:
        raise FastReluError(f"The 'domain' parameter must have dimension {dim} (the number of columns of the weight). Got a {type(domain).__name__} of dimension {domain.dim}.")
    return domain


def domain_reduction(domain):
    """The constants of THEORY §3's reduction from a unit direction to a constraint value.

    Returns ``(kind, r_pos, r_neg)``: a direction ``u`` with ``c = <u, w_i>`` gives the
    value ``r_pos * c`` when ``c >= 0`` and ``r_neg * c`` otherwise, and ``kind`` is 0 for
    data (the value is ``<x, w_i>`` itself).
    """
    if isinstance(domain, Data):
        return 0, 1.0, 1.0
    if isinstance(domain, Sphere):
        return 1, domain.radius, domain.radius
    if isinstance(domain, Ball):
        # x = t u with 0 < t <= r: the infimum over t of t c is 0 for c >= 0, r c otherwise.
        return 1, 0.0, domain.radius
    return 1, domain.inner, domain.outer
