import numpy as np
import pytest

import fastrelu as fr
from fastrelu._parallel import block_generator

from conftest import brute_force_mcbe, spans


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
    alpha, counts = brute_force_mcbe(W, X)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)
    assert result.n_incomplete == 0
    if dependent:
        assert set(result.repeated.tolist()) == {8, 11}
        assert result.counts[8] == result.counts[11] == 0


@pytest.mark.parametrize("stored_gram", [True, False])
def test_both_gram_paths_equal_brute_force(monkeypatch, stored_gram):
    """The fast path (first n candidates certified by one Cholesky) and the general scan
    agree with the definition whether the Gram matrix is stored or formed per sample."""
    import fastrelu._mcbe as driver

    monkeypatch.setattr(driver, "GRAM_MAX_ROWS", 10_000 if stored_gram else 0)
    rng = np.random.default_rng(14)
    W = np.vstack([rng.standard_normal((40, 6)), rng.standard_normal((3, 6)) @ np.ones((6, 6))])
    X = rng.standard_normal((300, 6))
    result = fr.mcbe(W, fr.Data(X))
    alpha, counts = brute_force_mcbe(W, X)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.alpha, alpha, rtol=1e-12, atol=1e-14)


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
    # eps = (|S^2| log N / (pi N))^(1/2) = (4 log N / N)^(1/2) on S^2
    assert fr.covering_radius(10_000, 3) == pytest.approx(np.sqrt(4 * np.log(1e4) / 1e4))
    assert fr.covering_radius(10**6, 30) < fr.covering_radius(10**4, 30)
    assert fr.covering_radius(10**4, 3, nonnegative=True) < fr.covering_radius(10**4, 3)
    assert fr.covering_radius(1, 3) == 2.0


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
    from fastrelu._kernels._mcbe import _first_candidates_independent, select_basis

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
        fast = _first_candidates_independent(np.arange(m), n, gram, U, True, 1e-12,
                                             np.zeros((n, n)), np.zeros((n, n)))
        if fast:
            kept = np.zeros(n, np.int64)
            count = select_basis(np.arange(m, 0, -1.0), -np.inf, np.arange(m), gram, U, True,
                                 1e-12, np.zeros(m, np.int64), np.zeros(m), kept,
                                 np.zeros((n, n)), np.zeros(n), np.zeros(n),
                                 np.zeros(3, np.int64))
            assert count == n and (kept == np.arange(n)).all()


def test_lane_certificate_matches_each_lanes_own_cholesky():
    # fr_spans (C, one sample per SIMD lane) against NumPy on each lane alone: a pivot
    # below the threshold, a singular lane and healthy lanes side by side
    from numba import njit

    from fastrelu._kernels._mcbe import SPANS_LANES, _spans, pivot_margin

    @njit
    def certify(G, n, tol2, lanes):
        return _spans(G.ctypes, n, tol2, pivot_margin(n), lanes)

    rng = np.random.default_rng(3)
    lanes = SPANS_LANES
    for n in (1, 2, 3, 5, 8, 13, 30):
        for trial in range(30):
            grams, expected = [], []
            for l in range(lanes):
                B = rng.standard_normal((n, n))
                kind = (trial + l) % 3
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
            G = np.ascontiguousarray(np.stack(grams, axis=-1))
            mask = certify(G, n, 1e-12, lanes)
            assert [bool((mask >> l) & 1) for l in range(lanes)] == expected
            # a lane's verdict does not depend on its neighbours
            for l in range(lanes):
                alone = np.ascontiguousarray(np.stack([grams[l]] * lanes, axis=-1))
                assert bool(certify(alone, n, 1e-12, lanes) & 1) == expected[l]
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

    from fastrelu._kernels._mcbe import (SPANS_LANES, _first_candidates_independent,
                                         _spans, pivot_margin, select_basis)

    @njit
    def certify(G, n, lanes):
        return _spans(G.ctypes, n, 1e-12, pivot_margin(n), lanes)

    def scan(gram, U, use_gram):
        n = U.shape[0]
        kept = np.zeros(n, np.int64)
        count = select_basis(np.arange(n, 0, -1.0), -np.inf, np.arange(n), gram, U, use_gram,
                             1e-12, np.zeros(n, np.int64), np.zeros(n), kept, np.zeros((n, n)),
                             np.zeros(n), np.zeros(n), np.zeros(3, np.int64))
        return count == n and (kept == np.arange(n)).all()

    rng = np.random.default_rng(11)
    accepted = 0
    for _ in range(4000):
        n = int(rng.choice([3, 4, 6, 10, 20, 30]))
        U = _near_dependent_rows(rng, n)
        gram = U @ U.T
        lanes = np.ascontiguousarray(np.stack([gram] * SPANS_LANES, axis=-1))
        if certify(lanes, n, SPANS_LANES) & 1:
            accepted += 1
            assert scan(gram, U, True)
        for stored in (True, False):
            if _first_candidates_independent(np.arange(n), n, gram, U, stored, 1e-12,
                                             np.zeros((n, n)), np.zeros((n, n))):
                assert scan(gram, U, stored)
    assert accepted > 20  # the certificates still settle the clear cases
