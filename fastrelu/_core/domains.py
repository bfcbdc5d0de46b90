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
    """


@dataclass(frozen=True)
class Ball(_RoundDomain):
    """The closed ball ``B_r = {x in R^dim : |x| <= radius}`` (optionally its
    nonnegative part)."""


@dataclass(frozen=True)
class Shell:
    """The spherical shell ``{x in R^dim : inner <= |x| <= outer}`` (optionally its
    nonnegative part). ``inner = 0`` is the ball of radius ``outer``."""

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
