"""Approach B: polytope bias estimation and the omnidirectionality test (THEORY §4)."""

import math

import numpy as np
from scipy.optimize import linprog, nnls
from scipy.spatial import ConvexHull, QhullError

from fastrelu._bias.mcbe import BiasEstimate
from fastrelu._core.domains import Data, Sphere, check_domain, domain_reduction
from fastrelu._core.errors import FastReluError
from fastrelu._core.rows import DEFAULT_RANK_TOL, repeated_rows, row_exponents
from fastrelu._core.validation import (
    as_frame,
    as_matrix,
    positive_float,
    positive_int,
    rank_tol_value,
)
from fastrelu._runtime.parallel import Stopwatch

#: Largest input dimension PBE accepts by default: the hull of m points in R^n can have
#: of the order of m^(n/2) facets.
DEFAULT_MAX_DIM = 8
#: Largest number of hull facets (simplices) PBE accepts by default. One facet costs up
#: to n small nonnegative least-squares solves (about 20 microseconds each).
DEFAULT_MAX_FACETS = 500_000
#: The origin is interior to the hull of the unit rows when the LP spread ``m t*`` exceeds
#: this (see :func:`is_omnidirectional`).
DEFAULT_OMNI_TOL = 1e-9
#: Facets per vectorised step (bounds the temporaries to a few tens of MB).
_CHUNK = 16_384
#: A pair (facet, row) is skipped only when the facet's lower bound exceeds the row's
#: current value by this much: the bound is computed in floating point.
_SKIP_SLACK = 1e-12
#: Tighter than HiGHS's default 1e-7, so that a rounding-level residual of
#: ``U^T lambda = 0`` cannot pass for a strictly positive combination.
_LP_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def _unit_rows(W):
    """``(unit_rows, exponents, scaled_norms)``: the unit rows of ``W`` and its rows'
    norms as ``2^exponents * scaled_norms``, computed from the rows scaled by powers of
    two (:func:`fastrelu._core.rows.row_exponents`), so that any finite nonzero row works."""
    exponents, scaled = row_exponents(W)
    scaled_norms = np.linalg.norm(scaled, axis=1)
    safe = np.where(scaled_norms > 0, scaled_norms, 1.0)
    return scaled / safe[:, None], exponents, scaled_norms


def _nonzero_rows(weight, name="weight"):
    """Validate a 2-D finite weight matrix without zero rows; returns it and its unit rows."""
    W = as_matrix(weight, name)
    unit_rows, _, scaled_norms = _unit_rows(W)
    zero = np.flatnonzero(scaled_norms == 0.0)
    if zero.size:
        raise FastReluError(f"The '{name}' parameter must have no zero rows (a zero neuron carries no direction). Got zero rows at indices {zero[:10].tolist()}{' ...' if zero.size > 10 else ''}.")
    return W, unit_rows


def _spread(unit_rows):
    """``m t*`` for the LP ``max t  s.t.  U^T lambda = 0, sum(lambda) = 1, lambda_i >= t``.

    Written with ``lambda = t + mu``, ``mu >= 0``, ``t >= 0`` (``n + 1`` equality rows, no
    inequality rows). Returns 0 when the LP is infeasible (0 is not in the hull at all).
    ``m t*`` lies in ``[0, 1]``: it is 1 when the plain mean of the unit rows is 0.
    """
    m, n = unit_rows.shape
    cost = np.zeros(m + 1)
    cost[0] = -1.0
    A_eq = np.empty((n + 1, m + 1))
    A_eq[:n, 0] = unit_rows.sum(axis=0)
    A_eq[:n, 1:] = unit_rows.T
    A_eq[n, 0] = m
    A_eq[n, 1:] = 1.0
    b_eq = np.zeros(n + 1)
    b_eq[n] = 1.0
    result = linprog(cost, A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs",
                     options=_LP_OPTIONS)
    if result.status == 2:
        return 0.0
    if result.status != 0:  # pragma: no cover - HiGHS reports iteration limit or numerical trouble
        raise FastReluError(f"The linear program that decides whether 0 is interior to the hull of the unit rows of 'weight' failed (HiGHS status {result.status}: {result.message}).")
    return float(m * result.x[0])


def is_omnidirectional(weight, *, tol=DEFAULT_OMNI_TOL):
    """Whether the convex hull of the unit rows contains 0 in its interior.

    True iff 0 is interior to the hull of ``u_i = w_i / |w_i|``. Equivalently, every direction ``x != 0`` has ``<x, w_i> > 0`` for some row: no open
    half-space misses all rows. fastrelu decides it by a linear program (HiGHS through
    :func:`scipy.optimize.linprog`): 0 is interior iff ``rank(W) = n`` and 0 is a strictly
    positive convex combination of the unit rows, i.e. the optimum of ::

        max t   subject to   sum_i lambda_i u_i = 0,   sum_i lambda_i = 1,   lambda_i >= t

    is positive. fastrelu fixes the tolerance on the scale-free *spread* ``s = m t*`` in
    ``[0, 1]`` (``s = 1`` when the mean of the unit rows is 0; ``s -> 0`` as 0 approaches
    the boundary of the hull): the answer is ``s > tol``. A direction that is covered
    only weakly (all rows in a closed half-space, some on its boundary) gives ``s = 0`` in
    exact arithmetic and a rounding-level ``s`` (below ``1e-12`` in fastrelu's tests) in
    floating point.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        The rows ``w_i``; no zero rows. Weights that are not a frame (rank below ``n``,
        including ``m < n``) are valid input and are not omnidirectional.
    tol : float, default=1e-9
        Threshold on the spread ``s``.

    Returns
    -------
    bool

    Raises
    ------
    FastReluError
        For a weight that is not a finite 2-D array or that has a zero row.

    Examples
    --------
    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> fr.is_omnidirectional(T), fr.is_omnidirectional(np.eye(3))
    (True, False)
    """
    W, unit_rows = _nonzero_rows(weight)
    tol = positive_float(tol, "tol")
    m, n = W.shape
    if m <= n or int(np.linalg.matrix_rank(unit_rows)) < n:
        return False  # an interior point of the hull needs n + 1 rows and full rank
    return _spread(unit_rows) > tol


def _not_omnidirectional_error(shape, detail=""):
    return FastReluError(
        f"The 'weight' parameter must be omnidirectional for PBE: the convex hull of its unit "
        f"rows must contain 0 in its interior. Got weight.shape={shape} whose rows leave some "
        f"direction x with <x, w_i> <= 0 for every row{detail}, so the cones of the hull's "
        f"facets do not cover all directions and PBE does not apply. Use fastrelu.mcbe "
        f"instead.")


def _hull_simplices(unit_rows, max_facets, shape):
    """The facets of the hull of ``unit_rows`` as rows of ``n`` indices each, and for
    each the index of the hull facet it belongs to.

    Qhull triangulates non-simplicial facets (``Qt``), so every simplex returned has
    exactly ``n`` vertices; their cones cover the cone of the facet they came from, and
    ``n`` vertices of a facet that are not degenerate are linearly independent (they
    are affinely independent in a hyperplane that misses 0). The simplices of one
    facet carry the same hyperplane equation: Qhull writes the merged facet's
    hyperplane into each of them (it merges facets that are coplanar within its own
    roundoff tolerance, relative to the points' scale, here unit vectors). Returns
    ``(simplices, facet_of)`` with ``facet_of`` (f,) numbering the distinct equations,
    compared exactly.
    """
    m, n = unit_rows.shape
    if n == 1:
        # Qhull needs two dimensions. After removing repeats the rows are +1 and -1, and
        # the "facets" of the segment [-1, 1] are its two end points.
        return np.arange(m, dtype=np.int64).reshape(m, 1), np.arange(m, dtype=np.int64)
    try:
        hull = ConvexHull(unit_rows)
    except QhullError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FastReluError(f"The convex hull of the unit rows of 'weight' could not be computed by Qhull ({first_line}). Got weight.shape={shape}; fastrelu.mcbe does not need the hull.") from None
    # Qhull's facet equations are <normal, y> + offset <= 0 inside, with unit normals:
    # -offset is the distance of the facet's hyperplane from 0.
    depth = -float(hull.equations[:, -1].max())
    if depth <= 1e-12:
        raise _not_omnidirectional_error(shape, f" (Qhull: 0 is not inside the hull, signed depth {depth:.3g})")
    facets = hull.simplices.astype(np.int64)
    if facets.shape[0] > max_facets:
        raise FastReluError(f"The 'max_facets' parameter must be at least the number of facets of the hull of the unit rows, {facets.shape[0]}, for PBE. Got max_facets={max_facets} for weight.shape={shape}. Raise max_facets (one facet costs up to {n} small solves) or use fastrelu.mcbe.")
    equations = hull.equations + 0.0  # + 0.0 turns -0.0 into 0.0 for the comparison
    facet_of = np.unique(equations, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    return facets, facet_of


def _facet_geometry(unit_rows, facets, rank_tol):
    """Per facet: the vertex minima, which of them are exact, a lower bound of ``a_F``,
    and whether the facet is degenerate.

    Returns ``vertex_min`` (shape ``(f, n)``: ``min_{j in F} <u_i, u_j>`` for the ``i`` at
    each position of ``F``), ``vertex_exact`` (shape ``(f, n)``), ``lower`` (shape
    ``(f,)``) and ``keep`` (shape ``(f,)``).

    - ``keep``: a facet is degenerate when the smallest singular value of its ``n`` unit
      rows is at most ``rank_tol``; its (numerically) flat cone is covered by the cones of
      the others, and it is dropped.
    - ``vertex_exact``: for a negative vertex minimum ``c = <u_i, u_j>`` (``j`` the
      farthest vertex) the projection of ``-u_i`` onto the ray of ``u_j`` is ``-c u_j``;
      it is the projection onto all of ``cone(F)`` iff the residual ``q = -u_i + c u_j``
      has ``<q, u_l> <= 0`` for every ``l`` in ``F`` (the optimality condition of a
      projection onto a cone, checked in floating point without slack). Then
      ``a_F(i) = -|c u_j| = c`` is the vertex minimum itself and no solve is needed.
    - ``lower``: with ``U_F z = 1`` the facet's hyperplane is ``<y, z> = 1`` at distance
      ``d = 1 / |z|`` from 0, so the spherical simplex ``cone(F) ∩ S^{n-1}`` lies in the
      cap ``<x, z/|z|> >= d``, whose angular radius ``arccos d`` is also each vertex's
      angle to the cap's centre; hence ``a_F(i) >= cos(2 arccos d) = 2 d^2 - 1`` for every
      ``i`` in ``F``.
    """
    f, n = facets.shape
    vertex_min = np.empty((f, n))
    vertex_exact = np.zeros((f, n), dtype=bool)
    lower = np.full(f, np.inf)
    keep = np.ones(f, dtype=bool)
    # |det U_F| = product of the singular values, each <= sqrt(n): a smallest singular
    # value <= rank_tol forces |det| <= rank_tol n^((n-1)/2). Only those facets need an SVD.
    det_limit = rank_tol * n ** (0.5 * (n - 1))
    for start in range(0, f, _CHUNK):
        block = unit_rows[facets[start:start + _CHUNK]]                # (b, n, n)
        stop = start + block.shape[0]
        # gram[b, p, l] = <u_{F[p]}, u_{F[l]}>
        gram = block @ block.transpose(0, 2, 1)
        farthest = gram.argmin(axis=2)                                   # (b, n)
        c = np.take_along_axis(gram, farthest[..., None], axis=2)[..., 0]
        vertex_min[start:stop] = c
        # residual test max_l (-<u_i, u_l> + c <u_j, u_l>) <= 0 with j = farthest vertex
        gram_far = np.take_along_axis(gram, farthest[..., None], axis=1)  # rows of the j's
        vertex_exact[start:stop] = (c < 0.0) & ((c[..., None] * gram_far - gram).max(axis=2) <= 0.0)
        suspicious = np.flatnonzero(np.abs(np.linalg.det(block)) <= det_limit)
        if suspicious.size:
            smallest = np.linalg.svd(block[suspicious], compute_uv=False)[:, -1]
            keep[start + suspicious[smallest <= rank_tol]] = False
        good = np.flatnonzero(keep[start:stop])
        z = np.linalg.solve(block[good], np.ones((good.size, n, 1)))[..., 0]
        distance = 1.0 / np.linalg.norm(z, axis=1)
        lower[start + good] = 2.0 * distance**2 - 1.0
    return vertex_min, vertex_exact, lower, keep


def _cone_minimum(unit_rows, vertices, i):
    """``min <x, u_i>`` over unit ``x`` in the cone of the rows ``vertices`` (any number
    of them, ``i`` among them): the vertex minimum when it is ``>= 0``, else minus the
    length of the projection of ``-u_i`` onto the cone (nonnegative least squares)."""
    generators = unit_rows[vertices]
    vertex_min = float((generators @ unit_rows[i]).min())
    if vertex_min >= 0.0:
        return vertex_min
    coefficients, _ = nnls(generators.T.copy(), -unit_rows[i], maxiter=30 * len(vertices))
    projection = generators.T @ coefficients
    return -math.sqrt(projection @ projection)


def _merged_facet_values(unit_rows, facets, facet_of, values):
    """Lower ``values`` to ``a_F(i)`` over the whole cone of every non-simplicial facet
    ``F`` (several simplices with one equation), for each vertex ``i`` of ``F``.

    Every vertex of ``F`` active on all of ``cone(F)`` makes the layer injective there
    (the vertices span R^n), so ``a_F(i) = min <x, u_i>`` over unit ``x`` in ``cone(F)``
    is a valid per-facet value, as for a simplex; it is at most the value of any
    simplex of ``F`` containing ``i`` (a smaller cone). Taking it for every vertex
    makes the result independent of how Qhull triangulated ``F``: rows that are
    symmetric under a symmetry of the hull get the same value.
    """
    sizes = np.bincount(facet_of)
    for facet in np.flatnonzero(sizes > 1):
        vertices = np.unique(facets[facet_of == facet])
        for i in vertices.tolist():
            value = _cone_minimum(unit_rows, vertices, i)
            if value < values[i]:
                values[i] = value
    return values


def _unit_sphere_values(unit_rows, facets, rank_tol, facet_of=None):
    """``alpha^S_i = min_{F containing i} a_F(i)`` for unit rows (THEORY §4).

    ``facet_of`` (f,) numbers the hull facet of each simplex; the facets made of
    several simplices are then taken whole (:func:`_merged_facet_values`).
    Returns ``(values, counts, facets_used)``; ``values`` is ``+inf`` for rows in no
    facet. Vertex minima that are exact (all of them when nonnegative; a negative one
    when the farthest vertex is the projection, see :func:`_facet_geometry`) enter by one
    vectorised minimum. Each remaining pair ``(F, i)`` needs ``-|Proj_cone(F)(-u_i)|`` by
    nonnegative least squares, unless the facet's lower bound shows that it cannot lower
    the row's value.
    """
    m, n = unit_rows.shape
    vertex_min, vertex_exact, lower, keep = _facet_geometry(unit_rows, facets, rank_tol)
    all_facets = facets
    facets, vertex_min, vertex_exact, lower = facets[keep], vertex_min[keep], vertex_exact[keep], lower[keep]
    counts = np.bincount(facets.ravel(), minlength=m).astype(np.int64)
    # Start from the vertex minima of every pair: exact where flagged above, upper bounds
    # of a_F(i) elsewhere. Processing the other pairs in order of their lower bound and
    # skipping a pair whose lower bound is not below the row's current value leaves
    # exactly min_F a_F(i): a skipped pair has a_F(i) >= that value.
    values = np.full(m, np.inf)
    np.minimum.at(values, facets.ravel(), vertex_min.ravel())
    pair_facet, pair_pos = np.nonzero((vertex_min < 0.0) & ~vertex_exact)
    order = np.argsort(lower[pair_facet], kind="stable")
    pair_facet, pair_pos = pair_facet[order], pair_pos[order]
    pair_row = facets[pair_facet, pair_pos]
    targets = -unit_rows
    for start in range(0, pair_row.size, _CHUNK):
        chunk = slice(start, start + _CHUNK)
        live = np.flatnonzero(lower[pair_facet[chunk]] - _SKIP_SLACK < values[pair_row[chunk]])
        if not live.size:
            continue
        chunk_facets = pair_facet[chunk][live]
        generators = unit_rows[facets[chunk_facets]].transpose(0, 2, 1).copy()  # U_F^T
        for k, (i, bound) in enumerate(zip(pair_row[chunk][live].tolist(), lower[chunk_facets].tolist())):
            if bound - _SKIP_SLACK >= values[i]:
                continue
            # lambda* = argmin_{lambda >= 0} |U_F^T lambda + u_i|; the projection of -u_i
            # onto cone(F) is U_F^T lambda*, and by Moreau's decomposition
            # min_{x in cone(F), |x| = 1} <x, u_i> = -|U_F^T lambda*| when that is negative.
            coefficients, _ = nnls(generators[k], targets[i], maxiter=30 * n)
            projection = generators[k] @ coefficients
            value = -math.sqrt(projection @ projection)
            if value < values[i]:
                values[i] = value
    if facet_of is not None:
        values = _merged_facet_values(unit_rows, all_facets, facet_of, values)
    return values, counts, facets


def pbe(weight, domain=None, *, max_dim=DEFAULT_MAX_DIM, max_facets=DEFAULT_MAX_FACETS,
        rank_tol=DEFAULT_RANK_TOL):
    """Polytope bias estimation (PBE, Approach B of [HEB]): a bias from the hull's facets.

    Let ``u_i = w_i / |w_i|`` and let ``P`` be the convex hull of the unit rows. When 0 is
    interior to ``P`` (:func:`is_omnidirectional`), every direction lies in the cone of
    some facet ``F`` of ``P``, and the ``n`` rows of a facet are a basis. If every row of
    ``F`` is active on the whole cone of ``F``, the layer is injective there. With ::

        a_F(i) = min_{j in F} <u_i, u_j>              if that minimum is >= 0
               = -| Proj_{cone(F)}(-u_i) |            otherwise

    (the minimum of ``<x, u_i>`` over unit ``x`` in ``cone(F)``: a vertex in the first
    case, by Moreau's decomposition the projection of ``-u_i`` onto the cone, a
    nonnegative least-squares problem, in the second), the unit-sphere value is
    ``alpha^S_i = min_{F containing i} a_F(i)`` and the bias is::

        alpha_i = |w_i| * reduce(alpha^S_i)

    with ``reduce(v) = r v`` on the sphere ``S_r``, ``min(r v, 0)`` on the ball ``B_r`` and
    ``r_in v`` for ``v >= 0``, ``r_out v`` for ``v < 0`` on a shell (THEORY §3's reductions:
    the facet structure does not change along the ray ``t x``). For every ``a <= alpha``
    the layer ``ReLU(W x - a)`` is injective on the whole domain: a certificate, not an
    estimate, exact up to floating-point rounding of the inner products and projections
    (about 1e-15) given Qhull's facets. The result scales with positive row scaling
    (``alpha_i`` by the row's factor) and is otherwise independent of it.

    A facet of ``P`` that is not a simplex (Qhull triangulates it; its simplices share
    one hyperplane equation) is also taken whole: each of its vertices gets ``a_F(i)``
    over the cone of all its vertices, which is valid (they span R^n) and makes the
    result independent of the triangulation (the cube ``{+-1}^3`` gives ``-|w_i|/3`` for
    every row).

    PBE and :func:`mcbe` give different sufficient biases; neither bounds the other in
    general. They coincide on symmetric frames with a simplicial hull such as the
    regular tetrahedron (``alpha^S = -1/sqrt(3)``); on the cube, whose faces are
    squares, MCBE's infimum is 0 and PBE's value ``-1/3``.

    Parameters
    ----------
    weight : array_like, shape (m, n)
        Rows ``w_i`` forming an omnidirectional frame for R^n (no zero rows), ``n <=
        max_dim``.
    domain : Sphere, Ball, Shell or None, default=None
        Where injectivity is asked (``None``: ``Sphere(n)``); dimension ``n``. ``Data``
        domains and ``nonnegative=True`` domains are refused: use :func:`mcbe`.
    max_dim : int, default=8
        Largest accepted input dimension ``n``.
    max_facets : int, default=500000
        Largest accepted number of hull facets. Checked after Qhull has built the hull.
    rank_tol : float, default=1e-6
        Rows whose unit direction is within ``rank_tol`` of an earlier row's are repeats
        (as in :func:`mcbe`), and a facet whose unit rows have a singular value at most
        ``rank_tol`` is degenerate.

    Returns
    -------
    BiasEstimate
        ``method="pbe"``; ``alpha`` as above and ``alpha_sampled`` an identical copy
        (nothing is sampled); ``counts[i]`` the number of facets containing row ``i``;
        ``facets`` the ``(f, n)`` int64 array of row indices of the facets used
        (Qhull's triangulation, degenerate simplices dropped; the vertices of a
        non-simplicial facet also get the value of the whole facet, see above); ``n_samples=0``, ``seed=None``,
        ``margin=None`` and ``n_incomplete=0`` because nothing is sampled; ``repeated``
        the repeated rows. Rows in no facet (repeats, and rows Qhull finds not to be
        vertices) are never needed and stay unconstrained: ``alpha = +inf``,
        ``counts = 0``; a repeat's earlier twin is constrained in its place.

    Raises
    ------
    FastReluError
        For weights that are not a frame or not omnidirectional, ``n > max_dim``, more
        than ``max_facets`` facets, a Qhull failure, a domain of the wrong type or
        dimension, a nonnegative or ``Data`` domain, or invalid parameters.

    Examples
    --------
    The regular tetrahedron: every row gets ``alpha_i = -1/sqrt(3)`` from the four
    triangles of its hull, and twice that on the sphere of radius 2:

    >>> import numpy as np
    >>> import fastrelu as fr
    >>> T = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    >>> est = fr.pbe(T)
    >>> est.method, est.facets.shape, np.round(est.alpha, 3)
    ('pbe', (4, 3), array([-0.577, -0.577, -0.577, -0.577]))
    >>> np.round(fr.pbe(T, fr.Sphere(3, radius=2.0)).alpha, 3)
    array([-1.155, -1.155, -1.155, -1.155])
    """
    clock = Stopwatch()
    W = as_frame(weight)
    m, n = W.shape
    max_dim = positive_int(max_dim, "max_dim")
    max_facets = positive_int(max_facets, "max_facets")
    rank_tol = rank_tol_value(rank_tol)
    if n > max_dim:
        raise FastReluError(f"The 'weight' parameter must have at most max_dim={max_dim} columns for PBE: the hull of m points in R^n can have of the order of m^(n/2) facets. Got weight.shape={W.shape}. Use fastrelu.mcbe for this input (or raise max_dim).")
    domain = Sphere(n) if domain is None else domain
    check_domain(domain, n)
    if isinstance(domain, Data):
        raise FastReluError("The 'domain' parameter of PBE must be a Sphere, Ball or Shell: PBE bounds the bias over every direction, not at given points. Got a Data domain; use fastrelu.mcbe(weight, Data(X)) for data.")
    if domain.nonnegative:
        raise FastReluError(f"The 'domain' parameter of PBE must not be restricted to the nonnegative orthant: PBE covers every direction by the cones of the hull's facets, so on the orthant's part it gives a needlessly small bias and refuses frames that are injective there. Got {domain!r}; use fastrelu.mcbe for nonnegative domains.")

    unit_rows, exponents, scaled_norms = _unit_rows(W)
    repeated = repeated_rows(unit_rows, rank_tol, None)
    rows = np.setdiff1d(np.arange(m, dtype=np.int64), repeated)
    distinct = np.ascontiguousarray(unit_rows[rows])
    if distinct.shape[0] <= n or _spread(distinct) <= DEFAULT_OMNI_TOL:
        raise _not_omnidirectional_error(W.shape)
    facets, facet_of = _hull_simplices(distinct, max_facets, W.shape)
    values, counts, facets = _unit_sphere_values(distinct, facets, rank_tol, facet_of)

    _, r_pos, r_neg = domain_reduction(domain)
    unit_values = np.full(m, np.inf)
    unit_values[rows] = values
    constrained = np.isfinite(unit_values)
    # |w_i| alpha^S_i first, then the domain's radii: the bias of a sphere of radius r is
    # exactly r times that of the unit sphere. Computed at the scale of the rows scaled
    # by 2^-e_i and scaled back exactly, so that no |w_i| over- or underflows.
    scaled = unit_values[constrained] * scaled_norms[constrained]
    alpha = np.full(m, np.inf)
    alpha[constrained] = np.ldexp(np.where(scaled >= 0.0, r_pos * scaled, r_neg * scaled),
                                  exponents[constrained])
    all_counts = np.zeros(m, dtype=np.int64)
    all_counts[rows] = counts
    return BiasEstimate(alpha=alpha, counts=all_counts, n_samples=0, seed=None, margin=None,
                        elapsed=clock(), method="pbe", domain=domain,
                        alpha_sampled=alpha.copy(), rank_tol=rank_tol, repeated=repeated,
                        n_incomplete=0, facets=rows[facets])
