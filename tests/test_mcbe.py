from fractions import Fraction

import numpy as np
import pytest
from conftest import brute_force_mcbe, close_call_rows, spans

import fastrelu as fr
from fastrelu._runtime.seeds import block_generator


def _exact_repeats(W):
    """Rows that are exactly a positive multiple of an earlier row, decided in rational
    arithmetic (the floats of ``W`` as fractions): ``w_j = c w_i``, ``c > 0``."""
    rows = [[Fraction(float(x)) for x in row] for row in W]
    repeats = []
    for j in range(len(rows)):
        for i in range(j):
            if i in repeats:
                continue
            k = max(range(len(rows[i])), key=lambda a: abs(rows[i][a]))
            c = rows[j][k] / rows[i][k]
            if c > 0 and all(b == c * a for a, b in zip(rows[i], rows[j])):
                repeats.append(j)
                break
    return repeats


def exact_brute_force_mcbe(W, X, **kwargs):
    """:func:`brute_force_mcbe` with exact ties among parallel rows decided as the
    definition decides them, independently of floating-point rounding.

    A row that is exactly a positive multiple of an earlier row has exactly the same
    normalised correlation with every point, so the scan meets the earlier row first
    (ties: smaller index), and the later row is then dependent on the kept ones whenever
    the earlier one is (same unit vector): it never enters a basis. Computing the
    correlations in floating point could break that tie either way by one rounding
    error; the oracle drops such rows instead (``alpha = +inf``, ``counts = 0``) and
    runs the definition on the others, whose scan order they never change.
    """
    m = W.shape[0]
    repeats = _exact_repeats(W)
    keep = np.setdiff1d(np.arange(m), repeats)
    alpha_kept, counts_kept = brute_force_mcbe(W[keep], X, **kwargs)
    alpha = np.full(m, np.inf)
    counts = np.zeros(m, dtype=np.int64)
    alpha[keep], counts[keep] = alpha_kept, counts_kept
    return alpha, counts, repeats


@pytest.mark.parametrize("n_samples", [2_000, 20_000, 200_000])
def test_tetrahedron_converges_to_minus_one_over_sqrt3(tetrahedron, n_samples):
    result = fr.mcbe(tetrahedron, fr.Sphere(3), n_samples, seed=0)
    error = result.alpha + 1 / np.sqrt(3)
    # a sampled minimum never undercuts the infimum over the sphere ...
    assert np.all(error >= -1e-12)
    # ... and approaches it at the scale of the covering radius of the samples
    assert np.all(error <= 2 * fr.covering_radius(n_samples, 3))
    assert result.counts.sum() == 3 * n_samples


def test_icosahedron(icosahedron):
    result = fr.mcbe(icosahedron, fr.Sphere(3), 200_000, seed=1)
    assert np.all(result.alpha >= 1 / np.sqrt(5) - 1e-12)
    assert np.all(result.alpha <= 1 / np.sqrt(5) + 2 * fr.covering_radius(200_000, 3))


@pytest.mark.parametrize("n", [2, 4])
def test_cross_polytope_is_zero(n):
    W = np.vstack([np.eye(n), -np.eye(n)])
    result = fr.mcbe(W, fr.Sphere(n), 100_000, seed=2)
    assert np.all(result.alpha >= 0)
    assert np.all(result.alpha <= 0.02)


def test_radius_scales_sphere_estimate(tetrahedron):
    unit = fr.mcbe(tetrahedron, fr.Sphere(3), 10_000, seed=3)
    big = fr.mcbe(tetrahedron, fr.Sphere(3, radius=2.0), 10_000, seed=3)
    np.testing.assert_array_equal(big.alpha, 2.0 * unit.alpha)
    np.testing.assert_array_equal(big.counts, unit.counts)


def _dependent_frame(rng):
    W = rng.standard_normal((8, 3))
    extra = np.array([2.0 * W[1],          # repeated direction
                      W[2] + W[3],         # dependent, not parallel
                      -W[4],               # antiparallel
                      W[0]])               # exact repeat
    return np.vstack([W, extra])


@pytest.mark.parametrize("dependent", [False, True])
def test_data_domain_equals_brute_force(dependent):
    rng = np.random.default_rng(4)
    W = _dependent_frame(rng) if dependent else rng.standard_normal((9, 3))
    X = rng.standard_normal((400, 3)) * rng.uniform(0.1, 3.0, (400, 1))
    X[17] = 0.0  # the origin: all correlations tie, index order decides
    result = fr.mcbe(W, fr.Data(X))
    alpha, counts, repeats = exact_brute_force_mcbe(W, X)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)
    assert result.n_incomplete == 0
    if dependent:
        assert repeats == [8, 11]  # 2 w_1 and w_0; -w_4 is opposite, not a repeat
        assert set(result.repeated.tolist()) == {8, 11}
        assert result.counts[8] == result.counts[11] == 0


@pytest.mark.parametrize("stored_gram", [True, False])
def test_both_gram_paths_equal_brute_force(monkeypatch, stored_gram):
    """The fast path (first n candidates certified by one Cholesky) and the general scan
    agree with the definition whether the Gram matrix is stored or formed per sample."""
    import fastrelu._core.rows as rows

    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 10_000 if stored_gram else 0)
    rng = np.random.default_rng(14)
    # rows 40-42: multiples of (1, ..., 1), exactly (every entry is the same float), one
    # of them opposite; the positive ones tie exactly with row 40 at every point
    # rows 40-42: positive multiples of (1, ..., 1), exactly (every entry of a row is the
    # same float); their normalised correlations tie exactly at every point
    W = np.vstack([rng.standard_normal((40, 6)),
                   rng.standard_normal((3, 6)).sum(axis=1, keepdims=True) * np.ones((1, 6))])
    X = rng.standard_normal((300, 6))
    result = fr.mcbe(W, fr.Data(X))
    alpha, counts, repeats = exact_brute_force_mcbe(W, X)
    assert repeats == [41, 42]
    assert result.repeated.tolist() == [41, 42]
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)
    assert counts[40] > 0


def test_exact_repeats_tie_with_their_first_row_whatever_the_rounding():
    # Integer multiples 3, 5, 7 of an integer row: exactly parallel, so their normalised
    # correlations tie exactly with the first row's at every point, while the computed
    # ones differ in the last bits (3 <x, b> and <x, 3 b> round differently). The
    # definition (smaller index first) keeps the first row of the group, never a later
    # one; an oracle that compared the computed correlations would break the tie by
    # rounding.
    rng = np.random.default_rng(17)
    base = np.array([3.0, -1.0, 2.0, 5.0])
    W = np.vstack([rng.standard_normal((6, 4)), base, 3.0 * base, 5.0 * base, 7.0 * base])
    parallel = [7, 8, 9]
    X = rng.standard_normal((400, 4))
    X[:60] = base + 0.3 * rng.standard_normal((60, 4))  # the group tops these scans
    keys = (X @ W.T) / np.linalg.norm(W, axis=1)
    assert (keys[:, parallel] != keys[:, [6]]).any()  # rounding does separate the tie
    result = fr.mcbe(W, fr.Data(X))
    alpha, counts, repeats = exact_brute_force_mcbe(W, X)
    assert repeats == parallel
    assert result.repeated.tolist() == parallel
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)
    assert counts[6] >= 60 and (counts[parallel] == 0).all()


def test_exact_ties_go_to_the_smaller_index():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    X = np.array([[1.0, 1.0], [2.0, -1.0]])
    result = fr.mcbe(W, fr.Data(X))
    assert result.counts.tolist() == [2, 2, 0, 0]
    assert result.alpha.tolist() == [1.0, -1.0, np.inf, np.inf]


def test_greedy_skips_dependent_rows_beyond_the_first_n():
    # rows 0 and 1 are parallel to the top direction: the basis must reach row 2
    W = np.array([[1.0, 0.0, 0.0], [1.0, 1e-12, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    X = np.array([[1.0, 0.0, 0.0]])
    result = fr.mcbe(W, fr.Data(X))
    alpha, counts = brute_force_mcbe(W, X)
    np.testing.assert_array_equal(result.counts, counts)
    assert counts.tolist() == [1, 0, 1, 1, 0]  # row 1 is within rank_tol of row 0; 3 beats 4 on the tie


def test_row_scaling_invariance():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((12, 4))
    base = fr.mcbe(W, fr.Sphere(4), 20_000, seed=6)
    powers = 2.0 ** rng.integers(-3, 4, 12)
    scaled = fr.mcbe(W * powers[:, None], fr.Sphere(4), 20_000, seed=6)
    np.testing.assert_array_equal(scaled.counts, base.counts)
    np.testing.assert_array_equal(scaled.alpha, base.alpha * powers)
    factors = rng.uniform(0.1, 10.0, 12)
    scaled = fr.mcbe(W * factors[:, None], fr.Sphere(4), 20_000, seed=6)
    np.testing.assert_array_equal(scaled.counts, base.counts)
    np.testing.assert_allclose(scaled.alpha, base.alpha * factors, rtol=1e-12)


def _directions(seed, n_samples, n, nonnegative=False):
    U = block_generator(seed, 0).standard_normal((n_samples, n))
    if nonnegative:
        U = np.abs(U)
    return U / np.linalg.norm(U, axis=1, keepdims=True)


@pytest.mark.parametrize("domain, values", [
    (fr.Sphere(3, radius=1.5), lambda c: 1.5 * c),
    (fr.Ball(3, radius=2.0), lambda c: np.minimum(2.0 * c, 0.0)),
    (fr.Shell(3, 0.5, 2.0), lambda c: np.where(c >= 0, 0.5 * c, 2.0 * c)),
    (fr.Sphere(3, nonnegative=True), lambda c: c),
    (fr.Ball(3, radius=2.0, nonnegative=True), lambda c: np.minimum(2.0 * c, 0.0)),
    (fr.Shell(3, 1.0, 3.0, nonnegative=True), lambda c: np.where(c >= 0, 1.0 * c, 3.0 * c)),
])
def test_domain_reductions_against_brute_force(domain, values):
    rng = np.random.default_rng(7)
    W = rng.standard_normal((7, 3))
    n_samples = 1500  # one block: the directions are the block's stream
    result = fr.mcbe(W, domain, n_samples, seed=8)
    U = _directions(8, n_samples, 3, domain.nonnegative)
    alpha, counts = brute_force_mcbe(W, U, values=lambda raw, x: values(raw))
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("domain, low, high", [
    (fr.Sphere(3, radius=1.5), 1.5, 1.5),
    (fr.Ball(3, radius=2.0), 0.0, 2.0),
    (fr.Shell(3, 0.5, 2.0), 0.5, 2.0),
    (fr.Sphere(3, nonnegative=True), 1.0, 1.0),
    (fr.Ball(3, radius=2.0, nonnegative=True), 0.0, 2.0),
    (fr.Shell(3, 1.0, 3.0, nonnegative=True), 1.0, 3.0),
])
def test_reductions_against_the_definition_on_points_drawn_from_the_domain(domain, low, high):
    # Points of the domain along the sampled directions, at radii spread over its range
    # and both ends: the definition on those points (brute force) picks the same bases as
    # the reduction (a basis depends on the direction only), and the reduction's value on
    # a ray is the smallest over it, reached at an end of the range.
    rng = np.random.default_rng(15)
    W = rng.standard_normal((8, 3))
    n_samples = 1500
    U = _directions(16, n_samples, 3, domain.nonnegative)
    radii = rng.uniform(low, high, (4, n_samples, 1))
    radii[0], radii[1] = low, high
    radii[2] = np.maximum(radii[2], 1e-3)  # the origin has no direction
    reduced = fr.mcbe(W, domain, n_samples, seed=16)
    lowest = np.full(8, np.inf)
    for r in radii:
        if not np.all(r > 0):
            continue
        alpha, counts = brute_force_mcbe(W, U * r)
        np.testing.assert_array_equal(reduced.counts, counts)
        assert np.all(reduced.alpha <= alpha + 1e-12)
        lowest = np.minimum(lowest, alpha)
    if low > 0:  # both ends are points of the domain
        np.testing.assert_allclose(reduced.alpha, lowest, rtol=1e-12, atol=1e-14)
    else:  # the ball: the far end for negative values, 0 (the origin) for positive ones
        expected = np.where(np.isfinite(lowest), np.minimum(lowest, 0.0), np.inf)
        np.testing.assert_allclose(reduced.alpha, expected, rtol=1e-12, atol=1e-14)


def test_ball_and_shell_estimates_bound_data_drawn_from_them():
    rng = np.random.default_rng(9)
    W = rng.standard_normal((10, 3))
    U = _directions(10, 4000, 3)
    shell_points = U * rng.uniform(0.5, 2.0, (4000, 1))
    shell = fr.mcbe(W, fr.Shell(3, 0.5, 2.0), 4000, seed=10)
    data = fr.mcbe(W, fr.Data(shell_points))
    # same directions: the shell's worst case over each ray lies below the ray's point
    assert np.all(shell.alpha <= data.alpha + 1e-12)
    ball = fr.mcbe(W, fr.Ball(3, 2.0), 4000, seed=10)
    assert np.all(ball.alpha <= np.minimum(shell.alpha, 0.0) + 1e-12)


def test_determinism_across_threads_and_prefix_property():
    rng = np.random.default_rng(11)
    W = rng.standard_normal((40, 6))
    runs = [fr.mcbe(W, fr.Sphere(6), 30_000, seed=12, n_jobs=j) for j in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.alpha, runs[0].alpha)
        np.testing.assert_array_equal(other.counts, runs[0].counts)
    longer = fr.mcbe(W, fr.Sphere(6), 50_000, seed=12, n_jobs=2)
    assert np.all(longer.alpha <= runs[0].alpha)
    assert np.all(longer.counts >= runs[0].counts)
    different = fr.mcbe(W, fr.Sphere(6), 30_000, seed=13)
    assert not np.array_equal(different.alpha, runs[0].alpha)


def test_seed_is_reported_and_reproduces():
    W = np.random.default_rng(14).standard_normal((10, 3))
    first = fr.mcbe(W, fr.Sphere(3), 5000)
    again = fr.mcbe(W, fr.Sphere(3), 5000, seed=first.seed)
    np.testing.assert_array_equal(first.alpha, again.alpha)


def test_layer_is_injective_on_the_samples_themselves():
    rng = np.random.default_rng(15)
    W = rng.standard_normal((12, 4))
    X = rng.standard_normal((300, 4))
    result = fr.mcbe(W, fr.Data(X))
    layer = fr.ReLULayer(W, result.alpha - 1e-12)
    assert spans(W, layer.active_mask(X)).all()


def test_held_out_points_are_injective():
    rng = np.random.default_rng(16)
    W = rng.standard_normal((10, 3))
    fresh = _directions(99, 20_000, 3)
    plain = fr.mcbe(W, fr.Sphere(3), 200_000, seed=17)
    injective = spans(W, fr.ReLULayer(W, plain.alpha).active_mask(fresh))
    assert injective.mean() >= 0.999
    safe = fr.mcbe(W, fr.Sphere(3), 200_000, seed=17, margin="covering")
    assert safe.margin == pytest.approx(fr.covering_radius(200_000, 3))
    np.testing.assert_allclose(safe.alpha, plain.alpha - safe.margin * np.linalg.norm(W, axis=1))
    assert spans(W, fr.ReLULayer(W, safe.alpha).active_mask(fresh)).all()


def test_covering_radius_estimate():
    # on S^2 a cap of Euclidean radius eps holds eps^2 / 4 of the area (Archimedes), so
    # N share eps^2 / 4 = log N + log log N + 4.6
    target = np.log(1e4) + np.log(np.log(1e4)) + 4.6
    assert fr.covering_radius(10_000, 3) == pytest.approx(2 * np.sqrt(target / 1e4), rel=1e-12)
    assert fr.covering_radius(10_000, 3, nonnegative=True) == pytest.approx(np.sqrt(2 * target / 1e4), rel=1e-12)
    assert fr.covering_radius(10**6, 30) < fr.covering_radius(10**4, 30)
    assert fr.covering_radius(10**4, 3, nonnegative=True) < fr.covering_radius(10**4, 3)
    assert fr.covering_radius(1, 3) == 2.0 and fr.covering_radius(5, 30) == 2.0
    assert fr.covering_radius(10**4, 1) == 0.0


def _measured_covering_radius(rng, n_samples, n, nonnegative, n_queries=40_000):
    """Largest Euclidean distance from query points of the domain to the nearest of
    ``n_samples`` uniform samples (a lower estimate of the covering radius); on the
    nonnegative part the queries include points of its faces and its corners, where
    the holes are largest."""
    from scipy.spatial import cKDTree

    def uniform(k):
        X = rng.standard_normal((k, n))
        X = np.abs(X) if nonnegative else X
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    queries = uniform(n_queries)
    if nonnegative:
        faces = np.abs(rng.standard_normal((n_queries // 4, n)))
        faces[rng.random(faces.shape) < 0.5] = 0.0
        faces[:, 0] += 1e-3  # no zero rows
        faces /= np.linalg.norm(faces, axis=1, keepdims=True)
        queries = np.vstack([queries, faces, np.eye(n)])
    return cKDTree(uniform(n_samples)).query(queries)[0].max()


@pytest.mark.parametrize("nonnegative", [False, True])
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_covering_radius_is_not_optimistic_against_measured_radii(n, nonnegative):
    # The leading-order estimate (area / 2^n for the nonnegative part, log N) measured
    # 0.10 against 0.16 for n = 4, N = 2000 on the nonnegative part; the estimate must
    # cover the measured radius, and not by more than a factor 3.
    rng = np.random.default_rng(50 + n)
    n_samples = 2000
    measured = _measured_covering_radius(rng, n_samples, n, nonnegative)
    estimate = fr.covering_radius(n_samples, n, nonnegative=nonnegative)
    assert measured <= estimate <= 3.0 * measured


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
@pytest.mark.parametrize("domain", [fr.Sphere(3), fr.Ball(3, radius=2.0)])
def test_extreme_scales_give_the_scaled_result(tetrahedron, domain, scale):
    # every finite nonzero scale works: the same bases, alpha times the scale (once
    # every row was +inf at 1e300, and 1e-300 was refused as zero rows)
    base = fr.mcbe(tetrahedron, domain, 10_000, seed=24, margin="covering")
    scaled = fr.mcbe(tetrahedron * scale, domain, 10_000, seed=24, margin="covering")
    np.testing.assert_array_equal(scaled.counts, base.counts)
    assert scaled.repeated.size == 0 and np.all(np.isfinite(scaled.alpha))
    np.testing.assert_allclose(scaled.alpha_sampled / scale, base.alpha_sampled, rtol=1e-13)
    np.testing.assert_allclose(scaled.alpha / scale, base.alpha, rtol=1e-13)
    X = np.random.default_rng(25).standard_normal((200, 3))
    data = fr.mcbe(tetrahedron * scale, fr.Data(X))
    np.testing.assert_allclose(data.alpha / scale, fr.mcbe(tetrahedron, fr.Data(X)).alpha, rtol=1e-13)


def test_estimate_bias_front_door(tetrahedron):
    direct = fr.mcbe(tetrahedron, fr.Sphere(3), 3000, seed=1)
    front = fr.estimate_bias(tetrahedron, fr.Sphere(3), method="mcbe", n_samples=3000, seed=1)
    np.testing.assert_array_equal(direct.alpha, front.alpha)
    with pytest.raises(fr.FastReluError, match="'method' parameter must be one of"):
        fr.estimate_bias(tetrahedron, fr.Sphere(3), method="magic")


@pytest.mark.parametrize("weight, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "finite"),
    (np.ones(4), "2-D"),
    (np.ones((2, 3)), "at least as many rows"),
    (np.vstack([np.eye(2), np.zeros((1, 2))]), "zero rows at indices \\[2\\]"),
    (np.ones((5, 3)), r"rank\(weight\) = 1"),
    (np.eye(3) + 1j, "must hold real numbers. Got complex values"),
])
def test_bad_weights(weight, match):
    with pytest.raises(fr.FastReluError, match=match):
        fr.mcbe(weight, fr.Sphere(np.shape(weight)[-1]), 100, seed=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_samples": 0}, "'n_samples' parameter must be an integer >= 1"),
    ({"n_samples": -5}, "'n_samples' parameter must be an integer >= 1"),
    ({"n_samples": 2.5}, "'n_samples' parameter must be an integer"),
    ({"seed": -1}, "'seed' parameter must be a non-negative integer"),
    ({"margin": "wide"}, "'margin' parameter must be None, 'covering'"),
    ({"margin": -0.1}, "'margin' parameter must be a finite real number >= 0"),
    ({"n_jobs": 0}, "'n_jobs' parameter must be an integer >= 1"),
    ({"rank_tol": 0.0}, "'rank_tol' parameter"),
    ({"rank_tol": 1e-9}, r"'rank_tol' parameter must be a float in \[1e-07, 1\)"),
])
def test_bad_parameters(tetrahedron, kwargs, match):
    kwargs = {"n_samples": 100, "seed": 0, **kwargs}
    with pytest.raises(fr.FastReluError, match=match):
        fr.mcbe(tetrahedron, fr.Sphere(3), **kwargs)


def test_bad_domains(tetrahedron):
    with pytest.raises(fr.FastReluError, match="dimension 3"):
        fr.mcbe(tetrahedron, fr.Sphere(4), 100)
    with pytest.raises(fr.FastReluError, match="dimension 3"):
        fr.mcbe(tetrahedron, fr.Data(np.ones((5, 2))))
    with pytest.raises(fr.FastReluError, match="must be one of fastrelu.Sphere"):
        fr.mcbe(tetrahedron, "sphere", 100)
    with pytest.raises(fr.FastReluError, match="'n_samples' parameter must be omitted for a Data domain"):
        fr.mcbe(tetrahedron, fr.Data(np.ones((5, 3))), 100)
    with pytest.raises(fr.FastReluError, match="'margin' parameter must be None for a Data domain"):
        fr.mcbe(tetrahedron, fr.Data(np.ones((5, 3))), margin="covering")


def test_fast_path_keeps_the_first_rows_only_where_the_scan_does():
    # A row at distance rank_tol (+-3%) from the span of the rows before it: the one
    # Cholesky factorisation of the common case must never accept what the incremental
    # scan (the definition) rejects; it leaves such close cases to the scan.
    from fastrelu._core.basis import (
        Rows,
        certified_prefix,
        ice_scratch,
        scan_scratch,
        select_basis,
    )

    rng = np.random.default_rng(0)
    n, m = 6, 8
    for _ in range(20_000):
        U = rng.standard_normal((m, n))
        normal = np.linalg.qr(U[:n - 1].T, mode="complete")[0][:, -1]
        inside = rng.standard_normal(n - 1) @ U[:n - 1]
        inside /= np.linalg.norm(inside)
        d = 1e-6 * (1 + rng.uniform(-0.03, 0.03))
        U[n - 1] = inside * np.sqrt(1 - d * d) + d * normal
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        gram = U @ U.T
        basis = Rows(unit_rows=U, gram=gram, use_gram=True, rank_tol2=1e-12)
        fast = certified_prefix(np.arange(m), n, basis, np.zeros((n, n)), np.zeros((n, n)),
                                ice_scratch(n)) == n
        if fast:
            scan = scan_scratch(m, n)
            count = select_basis(np.arange(m, 0, -1.0), -np.inf, np.arange(m), basis, scan,
                                 np.zeros(3, np.int64))
            assert count == n and (scan.kept == np.arange(n)).all()


def _lane_layout(grams):
    """The Gram matrices ``grams`` (one per lane, ``n x n``) in the lane layout of
    ``fr_spans``: ``(n, stride, lanes)`` with the kernel's row stride."""
    from fastrelu._core import _frame

    n = grams[0].shape[0]
    G = np.zeros((n, _frame.spans_stride(n), len(grams)))
    G[:, :n, :] = np.stack(grams, axis=-1)
    return G


def test_lane_certificate_matches_each_lanes_own_cholesky():
    # fr_spans (C, one sample per SIMD lane) against NumPy on each lane alone: a pivot
    # below the threshold, a singular lane and healthy lanes side by side
    from numba import njit

    from fastrelu._core.basis import SPANS_LANES, _spans, pivot_margin

    @njit
    def certify(G, n, tol2, lanes):
        return _spans(G.ctypes, n, tol2, pivot_margin(n), lanes)

    rng = np.random.default_rng(3)
    lanes = SPANS_LANES
    for n in (1, 2, 3, 5, 8, 13, 30):
        for trial in range(30):
            grams, expected = [], []
            for lane in range(lanes):
                B = rng.standard_normal((n, n))
                kind = (trial + lane) % 3
                if kind == 1 and n > 1:
                    B[-1] = B[0] + 1e-9 * rng.standard_normal(n)  # nearly dependent
                elif kind == 2 and n > 1:
                    B[-1] = B[0]  # dependent: a zero pivot
                B /= np.linalg.norm(B, axis=1, keepdims=True)
                gram = B @ B.T
                grams.append(gram)
                try:
                    pivots = np.diag(np.linalg.cholesky(gram)) ** 2
                    low = np.minimum.accumulate(np.concatenate([[1.0], pivots[:-1]]))
                    expected.append(bool((pivots > 1e-12 + pivot_margin(n) / low).all()))
                except np.linalg.LinAlgError:
                    expected.append(False)
            G = _lane_layout(grams)
            mask = certify(G, n, 1e-12, lanes)
            assert [bool((mask >> lane) & 1) for lane in range(lanes)] == expected
            # a lane's verdict does not depend on its neighbours
            for lane in range(lanes):
                alone = _lane_layout([grams[lane]] * lanes)
                assert bool(certify(alone, n, 1e-12, lanes) & 1) == expected[lane]
    assert certify(np.zeros((2, 2, lanes + 1)), 2, 1e-12, lanes + 1) == -1  # not this kernel


def _near_dependent_rows(rng, n):
    """Unit rows whose distances to the span of the rows before them are O(1), or (half
    of them) a few times rank_tol, and the last one rank_tol (+-30%)."""
    U = np.zeros((n, n))
    v = rng.standard_normal(n)
    U[0] = v / np.linalg.norm(v)
    for k in range(1, n):
        basis = np.linalg.qr(U[:k].T)[0]
        inside = basis @ rng.standard_normal(k)
        inside /= np.linalg.norm(inside)
        normal = rng.standard_normal(n)
        normal -= basis @ (basis.T @ normal)
        normal /= np.linalg.norm(normal)
        if k == n - 1:
            d = 1e-6 * (1 + rng.uniform(-0.3, 0.3))
        elif rng.random() < 0.5:
            d = 1e-6 * np.exp(rng.uniform(0.05, 3))
        else:
            d = rng.uniform(0.05, 1)
        U[k] = inside * np.sqrt(1 - d * d) + d * normal
        U[k] /= np.linalg.norm(U[k])
    return U


def test_certificates_after_nearly_dependent_rows_never_overrule_the_scan():
    # Rounding moves a pivot by more when the rows before it are close to dependent: each
    # certificate (lanes, LAPACK with and without the stored Gram matrix) must still only
    # accept where the scan keeps the first n rows.
    from numba import njit

    from fastrelu._core.basis import (
        SPANS_LANES,
        Rows,
        _spans,
        certified_prefix,
        ice_scratch,
        pivot_margin,
        scan_scratch,
        select_basis,
    )

    @njit
    def certify(G, n, lanes):
        return _spans(G.ctypes, n, 1e-12, pivot_margin(n), lanes)

    def scan(gram, U, use_gram):
        n = U.shape[0]
        scan_ws = scan_scratch(n, n)
        basis = Rows(unit_rows=U, gram=gram, use_gram=use_gram, rank_tol2=1e-12)
        count = select_basis(np.arange(n, 0, -1.0), -np.inf, np.arange(n), basis, scan_ws,
                             np.zeros(3, np.int64))
        return count == n and (scan_ws.kept == np.arange(n)).all()

    rng = np.random.default_rng(11)
    accepted = 0
    for _ in range(4000):
        n = int(rng.choice([3, 4, 6, 10, 20, 30]))
        U = _near_dependent_rows(rng, n)
        gram = U @ U.T
        lanes = _lane_layout([gram] * SPANS_LANES)
        if certify(lanes, n, SPANS_LANES) & 1:
            accepted += 1
            assert scan(gram, U, True)
        for stored in (True, False):
            basis = Rows(unit_rows=U, gram=gram, use_gram=stored, rank_tol2=1e-12)
            if certified_prefix(np.arange(n), n, basis, np.zeros((n, n)),
                                np.zeros((n, n)), ice_scratch(n)) == n:
                assert scan(gram, U, stored)
    assert accepted > 20  # the certificates still settle the clear cases


def test_the_scan_resumed_after_the_certified_rows_keeps_what_the_scan_keeps():
    # After the one-sample certificate stops at its first unclear pivot, the scan goes on
    # from there with LAPACK's factor of the rows before it. Planted: a row dependent on
    # earlier ones (distance 0) and a row at a distance clearly below or above rank_tol
    # (0.5-0.9 or 1.1-2 times it, far outside rounding); the resumed scan must keep
    # exactly the rows the scan from the first row keeps.
    from fastrelu._core.basis import (
        Rows,
        certified_prefix,
        scan_scratch,
        select_basis,
        select_basis_from,
    )

    rng = np.random.default_rng(5)
    resumed = 0
    for trial in range(600):
        n = int(rng.choice([6, 12, 25, 40]))
        m = n + 6
        U = rng.standard_normal((m, n))
        dependent, close = sorted(rng.choice(np.arange(2, n + 3), 2, replace=False))
        U[dependent] = rng.standard_normal(dependent) @ U[:dependent]
        basis_q = np.linalg.qr(U[:close].T, mode="complete")[0]
        inside = U[:close].T @ rng.standard_normal(close)
        inside /= np.linalg.norm(inside)
        d = 1e-6 * (rng.uniform(0.5, 0.9) if trial % 2 else rng.uniform(1.1, 2.0))
        rank_before = np.linalg.matrix_rank(U[:close])
        normal = basis_q[:, rank_before] if rank_before < n else None
        if normal is None:
            continue
        U[close] = inside * np.sqrt(1 - d * d) + d * normal
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        gram = U @ U.T
        keys = np.arange(m, 0, -1.0)  # scan order = index order
        for stored in (True, False):
            basis = Rows(unit_rows=U, gram=gram, use_gram=stored, rank_tol2=1e-12)
            reference = scan_scratch(m, n)
            count = select_basis(keys, -np.inf, np.arange(m), basis, reference,
                                 np.zeros(3, np.int64))
            scan = scan_scratch(m, n)
            start = certified_prefix(np.arange(m), n, basis, scan.chol, scan.rows_buf, scan.ice)
            assert start <= min(dependent, close)  # never certifies past a planted row
            resumed += start > 0
            again = select_basis_from(keys, -np.inf, np.arange(m), basis, scan,
                                      np.zeros(3, np.int64), start)
            assert again == count
            np.testing.assert_array_equal(scan.kept[:count], reference.kept[:count])
    assert resumed > 100  # the resumed scan was exercised


# --------------------------------------------------------------------------- large n


def _large_layer(rng, n, m):
    """Gaussian rows with planted structure: rows 10-12 exact copies of rows 0-2 (exact
    ties, so repeats by the definition too) and rows 20-21 sums of two other rows."""
    W = rng.standard_normal((m, n))
    W[10:13] = W[0:3]
    W[20] = W[3] + W[4]
    W[21] = W[5] - 2.0 * W[6]
    return W


@pytest.mark.parametrize("one_by_one, stored_gram", [(False, True), (True, True), (True, False)])
def test_large_n_mcbe_on_data_equals_brute_force_with_either_certificate(monkeypatch, one_by_one,
                                                                         stored_gram):
    # n = 160: by default the one-sample (LAPACK) certificate; the lanes forced as well;
    # on the one-sample path also without the stored Gram matrix (each sample's by dsyrk,
    # the repeated rows by the projection filter)
    import fastrelu._core.basis as basis
    import fastrelu._core.rows as rows

    monkeypatch.setattr(basis, "LANES_MAX_N", 0 if one_by_one else 10**9)
    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", None if stored_gram else 0)
    rng = np.random.default_rng(51)
    n, m = 160, 400
    W = _large_layer(rng, n, m)
    X = rng.standard_normal((12, n))
    result = fr.mcbe(W, fr.Data(X), n_jobs=2)
    alpha, counts = brute_force_mcbe(W, X)
    np.testing.assert_array_equal(result.counts, counts)
    used = np.isfinite(alpha)
    np.testing.assert_array_equal(np.isfinite(result.alpha), used)
    np.testing.assert_allclose(result.alpha[used], alpha[used], rtol=1e-12, atol=1e-12)
    assert not counts[10:13].any()  # exact copies never enter a basis


def test_repeated_rows_by_projections_equal_those_by_all_inner_products(monkeypatch):
    # Planted exact copies, positive multiples, near copies at 1e-9 to 3e-7 and zero rows;
    # tolerances up to 0.5, where many pairs are close: the projection filter (and its
    # fallback to every inner product when too many pairs pass it) must mark exactly the
    # rows the rule marks from the Gram matrix.
    import fastrelu._core.rows as rows

    rng = np.random.default_rng(8)
    filtered = 0
    for trial in range(300):
        m, n = int(rng.integers(2, 80)), int(rng.integers(1, 7))
        W = rng.standard_normal((m, n))
        for _ in range(int(rng.integers(0, 12))):
            i, j = rng.integers(0, m, 2)
            W[j] = W[i] * rng.uniform(0.1, 3.0) + rng.choice([0.0, 1e-9, 1e-7, 3e-7]) * rng.standard_normal(n)
        if trial % 5 == 0:
            W[rng.integers(0, m)] = 0.0
        _, _, U, _, gram = rows.normalised_rows(W, use_gram=True)
        tol = float(rng.choice([1e-6, 1e-3, 0.1, 0.5]))
        expected = rows.repeated_rows(U, tol, gram)
        filtered += rows._close_pairs(U, tol, 1.0 - 0.5 * tol**2) is not None
        np.testing.assert_array_equal(rows.repeated_rows(U, tol, None), expected)
        monkeypatch.setattr(rows, "REPEAT_CANDIDATES_PER_ROW", 0)  # every inner product
        np.testing.assert_array_equal(rows.repeated_rows(U, tol, None), expected)
        monkeypatch.undo()
    assert filtered > 200  # the filter decided most cases itself


def test_the_gram_matrix_is_stored_only_when_the_run_amortises_it(monkeypatch):
    # one sample at a time (large n): stored from (m / n)^2 samples on; the lanes (small
    # n) and runs of unknown length store it whenever it fits
    from fastrelu._core import basis, budget, rows

    monkeypatch.setenv(budget.MEMORY_ENV, "64G")
    n, m = 2048, 4096
    assert basis.certify_one_by_one(n) and not basis.certify_one_by_one(8)
    assert not rows.stores_gram(m, n, 3) and rows.stores_gram(m, n, 4)
    assert rows.stores_gram(m, n) and rows.stores_gram(m)
    assert rows.stores_gram(64, 8, 1)
    monkeypatch.setenv(budget.MEMORY_ENV, "1G")  # 128 MiB for it: 4096 rows at most
    assert not rows.stores_gram(4097, 2048, 10**6)


@pytest.mark.parametrize("n, m", [(130, 300), (200, 500)])
def test_large_n_certificates_agree_bit_for_bit_on_the_sphere(monkeypatch, n, m):
    import fastrelu._core.basis as basis

    # (the two paths could round a row within rounding of rank_tol differently; Gaussian
    # rows and samples, even with the planted copies and sums, come nowhere near one)
    rng = np.random.default_rng(n)
    W = _large_layer(rng, n, m)
    runs = []
    for limit in (0, 10**9):  # one by one, lanes
        monkeypatch.setattr(basis, "LANES_MAX_N", limit)
        runs.append(fr.mcbe(W, fr.Sphere(n), 600, seed=3, n_jobs=2))
    assert np.array_equal(runs[0].alpha, runs[1].alpha)
    assert np.array_equal(runs[0].counts, runs[1].counts)


def test_close_calls_on_the_one_sample_path_do_not_depend_on_the_samples_before_them(monkeypatch):
    # Rows at 0.97 - 1.03 times rank_tol from the span of earlier ones, where the factor
    # a resumed scan uses and the scan's own could round a decision differently: on the
    # one-sample path the certificate runs for every sample (its running threshold only
    # steers), so the bias is the same for any order of the points, any n_jobs and any
    # split into parts.
    import fastrelu._core.basis as basis

    monkeypatch.setattr(basis, "LANES_MAX_N", 0)
    rng = np.random.default_rng(21)
    n, m = 12, 40
    W = close_call_rows(rng, n, m)
    X = rng.standard_normal((300, n))
    reference = fr.mcbe(W, fr.Data(X), n_jobs=1)
    for order in (np.arange(300)[::-1], rng.permutation(300)):
        for jobs in (1, 2):
            again = fr.mcbe(W, fr.Data(X[order]), n_jobs=jobs)
            np.testing.assert_array_equal(again.alpha, reference.alpha)
            np.testing.assert_array_equal(again.counts, reference.counts)


def _ill_conditioned_with_dependent_rows(rng, n=30, chains=6, length=4, per_chain=7):
    """Chains of nearly parallel rows (each about 1e-3 from the span of the chain before
    it: independent, but their Gram matrix has eigenvalues near 1e-6) and rows that are
    exact combinations of a chain (coefficients of size 0.5 to 2: dependent on it, with
    no close call), then Gaussian rows."""
    rows = []
    for _ in range(chains):
        base = rng.standard_normal(n)
        chain = [base]
        for _ in range(length - 1):
            chain.append(chain[-1] + 1e-3 * np.linalg.norm(base) * rng.standard_normal(n) / np.sqrt(n))
        rows += chain
        for _ in range(per_chain):
            coefficients = rng.choice([-1.0, 1.0], length) * rng.uniform(0.5, 2.0, length)
            rows.append(coefficients @ np.array(chain))
    return np.vstack([np.array(rows), rng.standard_normal((n, n))])


@pytest.mark.parametrize("seed", range(6))
def test_dependent_rows_after_ill_conditioned_ones_follow_the_definition(seed):
    # The Gram matrix's Cholesky puts a dependent row's distance at about eps cond
    # (~1e-10 here, above rank_tol^2 = 1e-12): the scan must not take it for independent.
    rng = np.random.default_rng(seed)
    W = _ill_conditioned_with_dependent_rows(rng)
    X = rng.standard_normal((30, W.shape[1]))
    alpha, counts = brute_force_mcbe(W, X)
    result = fr.mcbe(W, fr.Data(X), n_jobs=1)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12)
    np.testing.assert_array_equal(result.counts, counts)
    # and the pointwise check counts the same rank as the definition
    bias = np.quantile(X @ W.T, 0.3, axis=0)
    active = X @ W.T - bias >= 0
    injective = fr.pointwise_injectivity(fr.ReLULayer(W, bias), X, n_jobs=1)
    np.testing.assert_array_equal(injective, spans(W, active))


def _kahan_rows_then_a_dependent_one(k, seed, extra=5):
    """``k`` unit rows of a Kahan-like triangle (diagonal 0.5, -1 below; every pivot of
    their Gram matrix's Cholesky at least 1e-3, yet its smallest eigenvalue down to
    1e-16), then a row exactly in their span, then Gaussian rows; and a point whose scan
    meets them in that order."""
    rng = np.random.default_rng(seed)
    n = k + extra
    M = np.zeros((k, n))
    for j in range(k):
        M[j, :j] = -1.0
        M[j, j] = 0.5
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    x = np.zeros(n)
    x[:k] = np.linalg.solve(M[:, :k], 1.0 + 0.01 * np.arange(k)[::-1])
    r = np.zeros(n)
    r[:k] = rng.standard_normal(k)
    r /= np.linalg.norm(r)
    if r @ x > 0:
        r = -r
    others = rng.standard_normal((extra, n))
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    x[k:] = np.linalg.solve(others[:, k:], r @ x - 1.0 - np.arange(extra) - others[:, :k] @ x[:k])
    return np.vstack([M, r, others]), x


@pytest.mark.parametrize("k", [12, 16, 20])
@pytest.mark.parametrize("stored", [True, False])
def test_a_dependent_row_after_rows_whose_pivots_hide_their_conditioning(monkeypatch, k, stored):
    # The pivots are no guide to the Gram matrix's smallest eigenvalue here: the
    # one-sample certificate and the scan estimate it (incremental condition
    # estimation) and leave the dependent row to the accurate distances.
    import fastrelu._core.basis as basis
    import fastrelu._core.rows as rows

    monkeypatch.setattr(basis, "LANES_MAX_N", 0)  # the one-sample certificate
    if not stored:
        monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 0)
    for seed in range(5):
        W, x = _kahan_rows_then_a_dependent_one(k, seed)
        result = fr.mcbe(W, fr.Data(x[None]), n_jobs=1)
        assert result.counts[k] == 0, seed  # the dependent row is never in the basis
        alpha, counts = brute_force_mcbe(W, x[None])
        np.testing.assert_array_equal(result.counts, counts)


def test_refinement_kernels_against_numpy():
    from fastrelu._core import basis

    rng = np.random.default_rng(3)
    n, count = 40, 25
    U = rng.standard_normal((60, n))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    kept = np.arange(count, dtype=np.int64)
    B = U[:count]
    L = np.linalg.cholesky(B @ B.T)
    chol = np.zeros((count + 5, count + 5))
    chol[:count, :count] = L
    # the inverse of the factor (dtrtri), lower triangle
    M = np.zeros_like(chol)
    basis.invert_lower(chol, count, M)
    np.testing.assert_allclose(np.tril(M[:count, :count]), np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    # a row's coefficients in the kept rows: c = L^-T l with L l = B u
    u = U[count + 3]
    lvec = np.linalg.solve(L, B @ u)
    c = np.empty(count + 5)
    norm2 = basis.coefficients_norm2(chol, lvec, count, c)
    expected = np.linalg.lstsq(B.T, u, rcond=None)[0]
    np.testing.assert_allclose(c[:count], expected, rtol=1e-10)
    assert norm2 == pytest.approx(expected @ expected, rel=1e-10)
    # its refined squared distance to their span, and a lower bound on it
    coef = np.empty((2, count + 5))
    coef[0, :count] = c[:count]
    lower, refined = basis.refined_distance2(u, U, kept, count, chol, coef, np.empty(n), n)
    exact = np.linalg.norm(u - B.T @ expected) ** 2
    assert refined == pytest.approx(exact, rel=1e-12)
    assert lower <= exact and lower > exact * (1 - 1e-6)


def _close_rows(rng, n, close=(3e-6,), dependent=(1e-8,), extra=4):
    """``n`` Gaussian rows, rows at the given unit distances from the span of a few
    earlier rows (close calls the Gram matrix cannot settle at this ``n``: kept and
    dropped rows within ``1e3`` of rank_tol either way), and a few more Gaussian rows."""
    G = rng.standard_normal((n, n))
    rows = [G]
    for distance in (*close, *dependent):
        picks = rng.choice(n, 6, replace=False)
        combination = rng.uniform(0.5, 1.5, 6) @ (G[picks] / np.linalg.norm(G[picks], axis=1)[:, None])
        basis_q, _ = np.linalg.qr(G[picks].T)
        z = rng.standard_normal(n)
        z -= basis_q @ (basis_q.T @ z)
        row = combination / np.linalg.norm(combination)
        rows.append((row + distance * z / np.linalg.norm(z))[None])
    rows.append(rng.standard_normal((extra, n)))
    return np.vstack(rows)


@pytest.mark.parametrize("seed", range(2))
def test_close_calls_at_large_n_follow_the_definition(seed):
    # At n = 300 the Gram matrix's rounding bound (n^2 eps |v|^2) is far above a squared
    # distance of 1e-11: the scan refines such distances from the rows themselves.
    rng = np.random.default_rng(seed)
    W = _close_rows(rng, 300)
    X = rng.standard_normal((3, 300))
    alpha, counts = brute_force_mcbe(W, X)
    result = fr.mcbe(W, fr.Data(X), n_jobs=1)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result.counts, counts)


def test_every_row_kept_for_square_frames():
    from fastrelu._core.rows import every_row_kept

    rng = np.random.default_rng(5)
    U = rng.standard_normal((40, 40))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    assert every_row_kept(U, 1e-12)
    # a row within 1e-8 of the span of three others: some scan order drops it
    close = U.copy()
    close[7] = U[:3].sum(axis=0) + 1e-8 * U[7]
    close[7] /= np.linalg.norm(close[7])
    assert not every_row_kept(close, 1e-12)
    assert not every_row_kept(U[:, :39], 1e-12)  # not square


@pytest.mark.parametrize("n", [12, 300])
def test_square_frames_take_every_row_and_follow_the_definition(n):
    # lanes path (n = 12) and one-sample path (n = 300); with every row kept in any order
    # the estimate is each row's minimum over the points
    rng = np.random.default_rng(n)
    W = rng.standard_normal((n, n))
    X = rng.standard_normal((5, n))
    result = fr.mcbe(W, fr.Data(X), n_jobs=1)
    np.testing.assert_array_equal(result.counts, np.full(n, 5))
    np.testing.assert_allclose(result.alpha, (X @ W.T).min(axis=0), rtol=1e-13, atol=1e-13)
    if n == 12:
        alpha, counts = brute_force_mcbe(W, X)
        np.testing.assert_array_equal(result.counts, counts)
    bias = np.quantile(X @ W.T, 0.05, axis=0)
    layer = fr.ReLULayer(W, bias)
    summary = fr.injectivity_summary(layer, X, n_jobs=1)
    active = X @ W.T - bias >= 0
    np.testing.assert_array_equal(summary.n_active, active.sum(axis=1))
    np.testing.assert_array_equal(summary.rank, active.sum(axis=1))  # any subset is independent
    np.testing.assert_array_equal(fr.pointwise_injectivity(layer, X, n_jobs=1), spans(W, active))
    # a square layer with a nearly dependent row goes through the scan as before
    W[3] = W[:2].sum(axis=0) + 1e-9 * W[3]
    alpha, counts = brute_force_mcbe(W, X)
    result = fr.mcbe(W, fr.Data(X), n_jobs=1)
    np.testing.assert_array_equal(result.counts, counts)
