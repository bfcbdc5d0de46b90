import itertools

import numpy as np
import pytest
from scipy.spatial import QhullError

import fastrelu as fr
import fastrelu._bias.pbe as pbe_module

SQRT3 = np.sqrt(3.0)


def sphere_points(rng, n_points, n):
    X = rng.standard_normal((n_points, n))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def injective_at(W, alpha, X, rel_tol=1e-9):
    """Does the active subframe at each row of X span R^n?

    Batched over the points: the Gram matrix ``W^T diag(active) W`` of the active rows is
    one matrix product for all points, and the rows span iff its smallest eigenvalue is
    positive. Numerically: larger than ``rel_tol |W|_2^2``; a rank-deficient active set
    gives a rounding-level eigenvalue (~1e-16 |W|_2^2), a spanning set of these random
    rows one many orders of magnitude above the tolerance.
    """
    m, n = W.shape
    active = (X @ W.T >= alpha).astype(float)                       # (N, m)
    outer = (W[:, :, None] * W[:, None, :]).reshape(m, n * n)       # w_i w_i^T per row
    gram = (active @ outer).reshape(-1, n, n)
    return np.linalg.eigvalsh(gram)[:, 0] > rel_tol * np.linalg.norm(W, 2) ** 2


def random_omnidirectional(seed, n):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(8, 21))
    while True:
        W = rng.standard_normal((m, n)) * rng.uniform(0.5, 2.0, (m, 1))
        if fr.is_omnidirectional(W):
            return W


def cone_minimum_by_faces(unit_facet, k):
    """min over unit x in cone(F) of <x, u_k>, u_k = unit_facet[k], by enumerating faces.

    Nonnegative vertex minimum: that minimum. Otherwise the largest projection of -u_k
    onto the span of a face whose projection coefficients are all >= 0 (the projection
    onto the cone is one of them and is the longest), with a minus sign.
    """
    n = unit_facet.shape[0]
    target = -unit_facet[k]
    vertex_min = (unit_facet @ unit_facet[k]).min()
    if vertex_min >= 0:
        return vertex_min
    best = 0.0
    for size in range(1, n + 1):
        for face in itertools.combinations(range(n), size):
            basis = unit_facet[list(face)].T
            coefficients = np.linalg.lstsq(basis, target, rcond=None)[0]
            if np.all(coefficients >= -1e-12):
                best = max(best, np.linalg.norm(basis @ coefficients))
    return -best


def brute_force_omnidirectional(W):
    """0 is interior to the hull of the unit rows iff rank n and no x != 0 has U x <= 0.

    Such an x exists iff the pointed cone {x : U x <= 0} has an extreme ray, which lies
    on the null line of n - 1 linearly independent rows.
    """
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    m, n = U.shape
    if np.linalg.matrix_rank(U) < n:
        return False
    for subset in itertools.combinations(range(m), n - 1):
        rows = U[list(subset)]
        if np.linalg.matrix_rank(rows) < n - 1:
            continue
        v = np.linalg.svd(rows)[2][-1]
        for direction in (v, -v):
            if np.all(U @ direction <= 1e-12):
                return False
    return True


# --- oracles ---------------------------------------------------------------------------

def test_tetrahedron_is_minus_one_over_sqrt3(tetrahedron):
    result = fr.pbe(tetrahedron)
    np.testing.assert_allclose(result.alpha, -1 / SQRT3, rtol=0, atol=1e-12)
    assert result.counts.tolist() == [3, 3, 3, 3]
    assert result.facets.shape == (4, 3) and result.facets.dtype == np.int64


def test_icosahedron_is_one_over_sqrt5(icosahedron):
    result = fr.pbe(icosahedron)
    np.testing.assert_allclose(result.alpha, 1 / np.sqrt(5.0), rtol=0, atol=1e-12)
    assert result.facets.shape == (20, 3)
    assert result.counts.tolist() == [5] * 12


def test_cross_polytope_is_zero():
    W = np.vstack([np.eye(3), -np.eye(3)])
    result = fr.pbe(W)
    np.testing.assert_allclose(result.alpha, 0.0, atol=1e-12)
    assert result.facets.shape == (8, 3)


def test_one_dimension():
    result = fr.pbe(np.array([[2.0], [-3.0], [0.5]]))
    assert result.alpha.tolist() == [2.0, 3.0, np.inf]  # row 2 repeats row 0's direction
    assert result.repeated.tolist() == [2]


def test_result_fields(tetrahedron):
    result = fr.pbe(tetrahedron, fr.Sphere(3))
    assert result.method == "pbe"
    assert result.n_samples == 0 and result.seed is None and result.margin is None
    assert result.n_incomplete == 0 and result.elapsed >= 0
    assert result.domain == fr.Sphere(3)
    np.testing.assert_array_equal(result.alpha_sampled, result.alpha)
    assert not result.unconstrained.any()


@pytest.mark.parametrize("n, seed", [(3, 0), (4, 1), (5, 2)])
def test_values_equal_face_enumeration(n, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3 * n, n))
    while not fr.is_omnidirectional(W):
        W = rng.standard_normal((3 * n, n))
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    result = fr.pbe(W)
    reference = np.full(W.shape[0], np.inf)
    for facet in result.facets:
        for k, i in enumerate(facet):
            reference[i] = min(reference[i], cone_minimum_by_faces(unit[facet], k))
    np.testing.assert_allclose(result.alpha / np.linalg.norm(W, axis=1), reference, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.counts, np.bincount(result.facets.ravel(), minlength=W.shape[0]))


def test_facets_are_hull_facets_whose_cones_cover_the_sphere():
    rng = np.random.default_rng(3)
    W = random_omnidirectional(3, 3)
    unit = W / np.linalg.norm(W, axis=1, keepdims=True)
    facets = fr.pbe(W).facets
    assert facets.shape[0] == 2 * W.shape[0] - 4  # triangulated sphere with m vertices
    # each facet's hyperplane <y, z> = 1 through its rows has every unit row on 0's side
    z = np.linalg.solve(unit[facets], np.ones((facets.shape[0], 3, 1)))[..., 0]
    assert np.all(unit @ z.T <= 1 + 1e-12)
    # every direction has nonnegative coordinates in the rows of some facet
    X = sphere_points(rng, 2000, 3)
    coordinates = np.linalg.solve(unit[facets].transpose(0, 2, 1)[None], X[:, None, :, None])[..., 0]
    assert np.all((coordinates >= -1e-12).all(axis=2).any(axis=1))



@pytest.mark.parametrize("rotated", [False, True])
def test_non_simplicial_facets_are_taken_whole(rotated):
    # The cube's square faces are triangulated by Qhull; a triangle's cone leaves out
    # part of the face, so per triangle four rows got +|w|/3 and four -|w|/3 depending
    # on the diagonals chosen. Over the whole face every row gets the value of the
    # diagonally opposite vertex's side: min <x, u_i> over unit x in cone(face) = -1/3.
    cube = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    if rotated:  # a generic orientation: the faces are coplanar only up to rounding
        cube = cube @ np.linalg.qr(np.random.default_rng(8).standard_normal((3, 3)))[0]
    result = fr.pbe(cube)
    norms = np.linalg.norm(cube, axis=1)
    np.testing.assert_allclose(result.alpha / norms, -1.0 / 3.0, rtol=0, atol=1e-12)
    assert result.facets.shape == (12, 3)
    X = sphere_points(np.random.default_rng(9), 100_000, 3)
    assert injective_at(cube, result.alpha, X).all()


def test_hexagonal_prism_rows_are_symmetric():
    # 12 rows: two hexagons (non-simplicial top and bottom faces, square side faces)
    angles = np.arange(6) * np.pi / 3
    ring = np.c_[np.cos(angles), np.sin(angles)]
    W = np.vstack([np.c_[ring, np.ones(6)], np.c_[ring, -np.ones(6)]])
    result = fr.pbe(W)
    values = result.alpha / np.linalg.norm(W, axis=1)
    np.testing.assert_allclose(values, values[0], rtol=0, atol=1e-12)
    assert injective_at(W, result.alpha, sphere_points(np.random.default_rng(10), 100_000, 3)).all()


def test_pbe_and_mcbe_differ_on_the_cube():
    # Symmetric but not simplicial: MCBE's infimum over the sphere is 0 (a most
    # correlated basis of a direction in a face's cone never needs the vertex opposite
    # the direction's corner), PBE's value over the whole face is -|w|/3.
    cube = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    norms = np.linalg.norm(cube, axis=1)
    sampled = fr.mcbe(cube, fr.Sphere(3), n_samples=100_000, seed=23)
    assert np.all(sampled.alpha >= -1e-12)
    assert np.all(sampled.alpha <= 2 * fr.covering_radius(100_000, 3) * norms)
    np.testing.assert_allclose(fr.pbe(cube).alpha / norms, -1.0 / 3.0, atol=1e-12)


def test_degenerate_facets_are_dropped_and_bounds_hold():
    rng = np.random.default_rng(4)
    unit = sphere_points(rng, 3, 3)
    in_plane = unit[0] + unit[1]
    unit = np.vstack([unit, in_plane / np.linalg.norm(in_plane)])   # row 3 in span(u_0, u_1)
    facets = np.array([[0, 1, 2], [0, 1, 3]])
    vertex_min, vertex_exact, lower, keep = pbe_module._facet_geometry(unit, facets, 1e-6)
    assert keep.tolist() == [True, False]
    np.testing.assert_allclose(vertex_min[0], (unit[:3] @ unit[:3].T).min(axis=1))
    # the cap bound 2 d^2 - 1 lies below every a_F(i) of the facet
    exact = [cone_minimum_by_faces(unit[:3], k) for k in range(3)]
    assert np.all(lower[0] <= np.array(exact) + 1e-12)
    # a vertex minimum flagged exact is the cone minimum
    assert np.allclose(vertex_min[0][vertex_exact[0]], np.array(exact)[vertex_exact[0]])

# --- domains and scaling ---------------------------------------------------------------

def test_radius_ball_and_shell_reductions():
    W = random_omnidirectional(4, 3)
    unit = fr.pbe(W).alpha
    np.testing.assert_array_equal(fr.pbe(W, fr.Sphere(3, radius=2.5)).alpha, 2.5 * unit)
    np.testing.assert_array_equal(fr.pbe(W, fr.Ball(3, radius=2.0)).alpha, np.minimum(2.0 * unit, 0.0))
    shell = fr.pbe(W, fr.Shell(3, 0.5, 2.0)).alpha
    np.testing.assert_array_equal(shell, np.where(unit >= 0, 0.5 * unit, 2.0 * unit))
    assert (unit > 0).any() and (unit < 0).any()  # both branches of the reductions used


def test_ball_and_shell_biases_are_injective_inside():
    rng = np.random.default_rng(5)
    W = random_omnidirectional(5, 3)
    directions = sphere_points(rng, 20_000, 3)
    ball = directions * 2.0 * rng.uniform(0.0, 1.0, (20_000, 1)) ** (1 / 3)
    assert injective_at(W, fr.pbe(W, fr.Ball(3, 2.0)).alpha, ball).all()
    shell = directions * rng.uniform(0.5, 2.0, (20_000, 1))
    assert injective_at(W, fr.pbe(W, fr.Shell(3, 0.5, 2.0)).alpha, shell).all()


def test_row_scaling_invariance():
    rng = np.random.default_rng(6)
    W = random_omnidirectional(6, 4)
    base = fr.pbe(W)
    powers = 2.0 ** rng.integers(-3, 4, W.shape[0])
    scaled = fr.pbe(W * powers[:, None])
    np.testing.assert_array_equal(scaled.facets, base.facets)
    np.testing.assert_array_equal(scaled.counts, base.counts)
    np.testing.assert_array_equal(scaled.alpha, base.alpha * powers)
    factors = rng.uniform(0.1, 10.0, W.shape[0])
    scaled = fr.pbe(W * factors[:, None])
    np.testing.assert_array_equal(scaled.counts, base.counts)
    np.testing.assert_allclose(scaled.alpha, base.alpha * factors, rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_extreme_scales_give_the_scaled_result(tetrahedron, scale):
    # once Qhull failed at 1e300 (the rows' norms overflowed) and 1e-300 was refused
    W = random_omnidirectional(8, 3)
    for weight in (tetrahedron, W):
        assert fr.is_omnidirectional(weight * scale)
        for domain in (fr.Sphere(3), fr.Ball(3, radius=2.0)):
            base = fr.pbe(weight, domain)
            scaled = fr.pbe(weight * scale, domain)
            np.testing.assert_array_equal(scaled.facets, base.facets)
            np.testing.assert_allclose(scaled.alpha / scale, base.alpha, rtol=1e-12)
    np.testing.assert_allclose(fr.pbe(tetrahedron * scale).alpha / scale, -1 / SQRT3, rtol=1e-12)


def test_repeated_rows_stay_unconstrained_and_the_layer_stays_injective():
    rng = np.random.default_rng(7)
    W = random_omnidirectional(7, 3)
    extended = np.vstack([W, 3.0 * W[1], W[0], -W[2]])  # two repeats, one new direction
    result = fr.pbe(extended)
    m = W.shape[0]
    assert result.repeated.tolist() == [m, m + 1]
    assert np.isinf(result.alpha[[m, m + 1]]).all() and result.counts[[m, m + 1]].tolist() == [0, 0]
    assert np.isfinite(np.delete(result.alpha, [m, m + 1])).all()
    assert injective_at(extended, result.alpha, sphere_points(rng, 20_000, 3)).all()


def test_estimate_bias_front_door(tetrahedron):
    direct = fr.pbe(tetrahedron, fr.Ball(3, 2.0))
    front = fr.estimate_bias(tetrahedron, fr.Ball(3, 2.0), method="pbe")
    np.testing.assert_array_equal(front.alpha, direct.alpha)
    assert front.method == "pbe"


# --- validity on fresh points, and PBE against MCBE ------------------------------------

@pytest.mark.parametrize("n, seed", [(3, 10), (3, 11), (3, 12), (4, 13), (4, 14), (4, 15)])
def test_pbe_and_mcbe_biases_are_injective_at_fresh_points(n, seed):
    W = random_omnidirectional(seed, n)
    X = sphere_points(np.random.default_rng(seed + 100), 100_000, n)
    assert injective_at(W, fr.pbe(W).alpha, X).all()
    # MCBE's sample minimum is exact only at its own samples; lowered by the covering
    # radius of the samples it holds at every point of the sphere they cover.
    mcbe = fr.mcbe(W, fr.Sphere(n), n_samples=100_000, seed=seed, margin="covering")
    assert injective_at(W, mcbe.alpha, X).all()


def test_pbe_is_tight_on_the_tetrahedron(tetrahedron):
    # the minimum -1/sqrt(3) is attained at the edge midpoints: raising the bias there
    # leaves only two active rows on a neighbourhood of each midpoint
    X = sphere_points(np.random.default_rng(20), 100_000, 3)
    alpha = fr.pbe(tetrahedron).alpha
    assert injective_at(tetrahedron, alpha, X).all()
    assert not injective_at(tetrahedron, alpha + 0.05, X).all()


@pytest.mark.parametrize("frame", ["tetrahedron", "icosahedron", "cross"])
def test_mcbe_approaches_pbe_from_above_on_symmetric_frames(frame, request):
    W = np.vstack([np.eye(3), -np.eye(3)]) if frame == "cross" else request.getfixturevalue(frame)
    exact = fr.pbe(W).alpha
    sampled = fr.mcbe(W, fr.Sphere(3), n_samples=100_000, seed=21)
    # the sample minimum never undercuts the infimum, which PBE attains on these frames
    assert np.all(sampled.alpha >= exact - 1e-12)
    assert np.all(sampled.alpha <= exact + 2 * fr.covering_radius(100_000, 3))
    covered = fr.mcbe(W, fr.Sphere(3), n_samples=100_000, seed=21, margin="covering")
    assert np.all(covered.alpha < exact)  # the margin makes MCBE the smaller, safer one


def test_neither_bias_bounds_the_other_on_a_random_frame():
    W = random_omnidirectional(0, 3)
    norms = np.linalg.norm(W, axis=1)
    exact = fr.pbe(W).alpha
    sampled = fr.mcbe(W, fr.Sphere(3), n_samples=200_000, seed=22)
    covered = fr.mcbe(W, fr.Sphere(3), n_samples=200_000, seed=22, margin="covering")
    # PBE above MCBE's sample minimum, which lies above MCBE's infimum over the sphere
    assert np.any(exact - sampled.alpha > 0.1 * norms)
    # PBE below MCBE's covering-corrected value (an estimate of a lower bound of the infimum)
    assert np.any(covered.alpha - exact > 0.1 * norms)


# --- omnidirectionality ----------------------------------------------------------------

def test_is_omnidirectional_examples(tetrahedron):
    rng = np.random.default_rng(30)
    assert fr.is_omnidirectional(tetrahedron)
    W = rng.standard_normal((5, 4))
    assert fr.is_omnidirectional(np.vstack([W, -W]))
    assert not fr.is_omnidirectional(np.abs(rng.standard_normal((20, 3))))  # positive orthant
    assert not fr.is_omnidirectional(tetrahedron[:3])                        # m < n + 1
    flat = np.hstack([rng.standard_normal((6, 2)), np.zeros((6, 1))])
    assert not fr.is_omnidirectional(np.vstack([flat, -flat]))               # rank 2 in R^3
    assert fr.is_omnidirectional(np.array([[1.0], [-2.0]]))
    assert not fr.is_omnidirectional(np.array([[1.0], [2.0]]))


def test_weakly_covered_direction_is_not_omnidirectional():
    # x = -e_1 has <x, w_i> = -1 or 0 for every row: covered only by a boundary
    W = np.array([[1.0, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    assert not fr.is_omnidirectional(W)
    assert fr.is_omnidirectional(np.vstack([W, [-1.0, 0.1, 0.1]]))
    # the same in rotated coordinates, where the boundary rows are only nearly on it
    rng = np.random.default_rng(31)
    for _ in range(5):
        Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
        boundary = np.hstack([np.zeros((8, 1)), rng.standard_normal((8, 3))])
        inside = np.abs(rng.standard_normal((6, 4)))
        W = np.vstack([boundary, -boundary, inside]) @ Q.T
        assert not fr.is_omnidirectional(W)
        assert pbe_module._spread(W / np.linalg.norm(W, axis=1, keepdims=True)) < 1e-12


@pytest.mark.parametrize("n", [2, 3, 4])
def test_is_omnidirectional_agrees_with_brute_force(n):
    rng = np.random.default_rng(32 + n)
    answers = []
    for _ in range(40):
        W = rng.standard_normal((int(rng.integers(n + 1, n + 7)), n))
        answer = fr.is_omnidirectional(W)
        assert answer == brute_force_omnidirectional(W)
        answers.append(answer)
    assert any(answers) and not all(answers)


# --- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("weight, match", [
    (np.abs(np.random.default_rng(40).standard_normal((12, 3))), "must be omnidirectional for PBE"),
    (np.array([[1.0, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]), "must be omnidirectional for PBE"),
    (np.random.default_rng(41).standard_normal((30, 9)), "at most max_dim=8 columns.*mcbe"),
    (np.array([[1.0, np.nan], [0.0, 1.0], [-1.0, -1.0]]), "finite"),
    (np.ones(4), "2-D"),
    (np.vstack([np.eye(2), -np.eye(2), np.zeros((1, 2))]), r"zero rows at indices \[4\]"),
    (np.ones((5, 3)), r"rank\(weight\) = 1"),
])
def test_bad_weights(weight, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.pbe(weight)


@pytest.mark.parametrize("domain, match", [
    ("sphere", "must be one of fastrelu.Sphere"),
    (fr.Sphere(4), "dimension 3"),
    (fr.Sphere(3, nonnegative=True), "nonnegative orthant.*mcbe"),
    (fr.Ball(3, nonnegative=True), "nonnegative orthant.*mcbe"),
    (fr.Shell(3, 1.0, 2.0, nonnegative=True), "nonnegative orthant.*mcbe"),
    (fr.Data(np.ones((5, 3))), "Got a Data domain; use fastrelu.mcbe"),
])
def test_bad_domains(tetrahedron, domain, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.pbe(tetrahedron, domain)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_dim": 2}, "at most max_dim=2 columns"),
    ({"max_dim": 0}, "'max_dim' parameter must be an integer >= 1"),
    ({"max_facets": 3}, "'max_facets' parameter must be at least the number of facets.*, 4"),
    ({"max_facets": 1.5}, "'max_facets' parameter must be an integer"),
    ({"rank_tol": -1.0}, "'rank_tol' parameter"),
])
def test_bad_parameters(tetrahedron, kwargs, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.pbe(tetrahedron, **kwargs)


def test_qhull_failure_becomes_a_fastrelu_error(tetrahedron, monkeypatch):
    def failing_hull(points):
        raise QhullError("QH6154 Qhull precision error: initial simplex is flat\nmore details")

    monkeypatch.setattr(pbe_module, "ConvexHull", failing_hull)
    with pytest.raises(fr.FastReluError, match="could not be computed by Qhull \\(QH6154"):
        fr.pbe(tetrahedron)



def test_hull_check_backs_up_the_linear_program(monkeypatch):
    # if the LP were wrong, the hull's facet through (or behind) 0 still stops PBE
    monkeypatch.setattr(pbe_module, "_spread", lambda unit_rows: 1.0)
    W = np.abs(np.random.default_rng(42).standard_normal((12, 3)))
    with pytest.raises(fr.FastReluError, match="must be omnidirectional for PBE.*0 is not inside the hull"):
        fr.pbe(W)

@pytest.mark.parametrize("weight, kwargs, match", [
    (np.array([[np.inf, 0.0], [0.0, 1.0]]), {}, "finite"),
    (np.ones((2, 2, 2)), {}, "2-D"),
    (np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]), {}, r"zero rows at indices \[1\]"),
    (np.eye(2), {"tol": 0.0}, "'tol' parameter must be a finite real number > 0"),
])
def test_is_omnidirectional_bad_input(weight, kwargs, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.is_omnidirectional(weight, **kwargs)
