import json

import numpy as np
import pytest
import scipy.stats
from conftest import close_call_rows, spans

import fastrelu as fr


def _brute_force_injective(layer, X):
    """THEORY §2 per point: the active rows span R^n (numpy.linalg.matrix_rank)."""
    return spans(layer.weight, layer.active_mask(X))


@pytest.mark.parametrize("shape", [(3, 8), (5, 12), (10, 40), (30, 270)])
def test_agrees_with_matrix_rank(shape):
    n, m = shape
    rng = np.random.default_rng(n)
    W = rng.standard_normal((m, n))
    # a bias that leaves about n rows active on average: both outcomes occur
    level = np.sqrt(n) * scipy.stats.norm.ppf(1 - n / m)
    layer = fr.ReLULayer(W, level + rng.normal(0, 0.1, m))
    X = rng.standard_normal((3000, n))
    result = fr.injectivity_summary(layer, X)
    expected = _brute_force_injective(layer, X)
    assert 0.01 < expected.mean() < 0.99  # both outcomes occur
    np.testing.assert_array_equal(result.injective, expected)
    np.testing.assert_array_equal(result.n_active, layer.active_mask(X).sum(axis=1))
    np.testing.assert_array_equal(fr.pointwise_injectivity(layer, X), expected)
    ranks = [min(n, np.linalg.matrix_rank(W[row])) if row.any() else 0 for row in layer.active_mask(X)]
    np.testing.assert_array_equal(result.rank, ranks)


def test_dependent_and_repeated_rows_and_zero_rows():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 4))
    W = np.vstack([base, 3 * base[0], base[1] + base[2], np.zeros(4), -base[3], base[4]])
    layer = fr.ReLULayer(W, rng.normal(-0.1, 0.5, len(W)))
    X = rng.standard_normal((4000, 4))
    result = fr.injectivity_summary(layer, X)
    np.testing.assert_array_equal(result.injective, _brute_force_injective(layer, X))
    assert 0 < result.fraction < 1


def test_rows_dependent_within_the_tolerance_do_not_count():
    # the fourth row is the first plus a perturbation far below rank_tol
    # the third row leaves the plane of the first two by 1e-5
    W = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 1e-5]])
    layer = fr.ReLULayer(W, -np.ones(3) * 10)  # everything active
    X = np.array([[0.0, 0.0, 1.0]])
    assert fr.pointwise_injectivity(layer, X)[0]
    result = fr.injectivity_summary(layer, X, rank_tol=1e-4)
    assert not result.injective[0] and result.rank[0] == 2


def test_mcbe_bias_makes_its_data_points_injective():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((25, 5))
    X = rng.standard_normal((2000, 5))
    estimate = fr.mcbe(W, fr.Data(X))
    assert fr.pointwise_injectivity(fr.ReLULayer(W, estimate.alpha), X).all()
    # a larger bias loses some points, exactly those of the definition
    larger = fr.ReLULayer(W, np.minimum(estimate.alpha, 5.0) + 0.5)
    broken = fr.injectivity_summary(larger, X)
    assert broken.fraction < 1
    np.testing.assert_array_equal(broken.injective, _brute_force_injective(larger, X))


def test_results_do_not_depend_on_threads():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((60, 8))
    layer = fr.ReLULayer(W, rng.normal(0.2, 0.3, 60))
    X = rng.standard_normal((9000, 8))  # three blocks
    one = fr.injectivity_summary(layer, X, n_jobs=1)
    for jobs in (2, 3):
        other = fr.injectivity_summary(layer, X, n_jobs=jobs)
        np.testing.assert_array_equal(one.rank, other.rank)
        np.testing.assert_array_equal(one.n_active, other.n_active)


def test_summary_reports_failures():
    W = np.vstack([np.eye(2), -np.eye(2)])
    layer = fr.ReLULayer(W, np.full(4, 0.5))
    X = np.array([[1.0, 1.0], [0.1, 0.1], [-2.0, 3.0]])
    result = fr.injectivity_summary(layer, X)
    np.testing.assert_array_equal(result.injective, [True, False, True])
    np.testing.assert_array_equal(result.failures, [1])
    np.testing.assert_array_equal(result.n_active, [2, 0, 2])
    assert "2 of 3 points injective" in result.summary()
    assert "point 1: 0 active rows, rank 0" in result.summary()


def test_a_layer_that_is_not_a_frame_is_injective_nowhere():
    W = np.random.default_rng(4).standard_normal((2, 3))
    result = fr.injectivity_summary(fr.ReLULayer(W), np.ones((5, 3)))
    assert not result.injective.any()


def test_empty_data():
    result = fr.injectivity_summary(fr.ReLULayer(np.eye(2)), np.empty((0, 2)))
    assert result.n_points == 0 and np.isnan(result.fraction)


# -- check_bias ----------------------------------------------------------------------

def test_check_bias_tetrahedron_exact_bias_and_above():
    W = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)
    exact = fr.check_bias(fr.ReLULayer(W, np.full(4, -1 / np.sqrt(3))), fr.Sphere(3), 20_000, seed=0)
    assert exact.n_injective == exact.n_points == 20_000 and exact.n_failed == 0
    assert exact.failed_points.shape == (0, 3)
    above = fr.check_bias(fr.ReLULayer(W, np.full(4, -0.5)), fr.Sphere(3), 20_000, seed=0)
    assert 0 < above.n_failed < 20_000
    assert np.allclose(np.linalg.norm(above.failed_points, axis=1), 1.0)
    # every reported failure is one
    layer = fr.ReLULayer(W, np.full(4, -0.5))
    assert not fr.pointwise_injectivity(layer, above.failed_points).any()
    np.testing.assert_array_equal(above.failed_n_active, layer.active_mask(above.failed_points).sum(1))


@pytest.mark.parametrize("domain", [fr.Sphere(4, 2.0), fr.Ball(4, 2.0), fr.Shell(4, 1.0, 3.0),
                                    fr.Sphere(4, nonnegative=True), fr.Ball(4, nonnegative=True)])
def test_check_bias_draws_from_the_domain(domain, monkeypatch):
    import fastrelu._injectivity.pointwise as pw

    drawn = []
    original = pw._draw

    def spy(domain_, rng, out):
        original(domain_, rng, out)
        drawn.append(out.copy())

    monkeypatch.setattr(pw, "_draw", spy)
    fr.check_bias(fr.ReLULayer(np.eye(4)), domain, 5000, seed=1)
    X = np.concatenate(drawn)
    r = np.linalg.norm(X, axis=1)
    if isinstance(domain, fr.Sphere):
        assert np.allclose(r, domain.radius)
    else:
        inner = 0.0 if isinstance(domain, fr.Ball) else domain.inner
        outer = domain.outer_radius
        assert r.min() >= inner and r.max() <= outer
        # uniform in volume: the median radius splits the volume in half
        median = (inner**4 + 0.5 * (outer**4 - inner**4)) ** 0.25
        assert abs(np.median(r) - median) < 0.05 * outer
    if domain.nonnegative:
        assert (X >= 0).all()


def test_check_bias_is_deterministic_and_never_reuses_mcbe_samples():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((20, 4))
    estimate = fr.mcbe(W, fr.Sphere(4), 4000, seed=7)
    layer = fr.ReLULayer(W, estimate.alpha)
    a = fr.check_bias(layer, fr.Sphere(4), 10_000, seed=7, n_jobs=1)
    b = fr.check_bias(layer, fr.Sphere(4), 10_000, seed=7, n_jobs=3)
    assert a.n_injective == b.n_injective
    np.testing.assert_array_equal(a.failed_points, b.failed_points)
    assert a.seed == 7 and a.n_points == 10_000
    # MCBE's samples are all injective with its own bias; fresh points need not be, and
    # the failures (if any) are genuine
    if a.n_failed:
        assert not fr.pointwise_injectivity(layer, a.failed_points).any()


def test_check_bias_parts_of_a_block_keep_the_failures_in_drawing_order():
    """A few points of a large layer are shared out among the threads in parts of a
    block (tiles of 8 from n = 256): the same count and the same failures, in drawing
    order, as the points checked one by one."""
    import fastrelu._injectivity.pointwise as pw
    from fastrelu._runtime.seeds import CHECK_STREAM, block_generator

    rng = np.random.default_rng(11)
    n, m, N = 260, 560, 61
    layer = fr.ReLULayer(rng.standard_normal((m, n)), np.full(m, 0.09))  # about n active
    runs = [fr.check_bias(layer, fr.Sphere(n), N, seed=3, n_jobs=jobs) for jobs in (1, 2, 3)]
    X = np.empty((N, n))
    pw._draw(fr.Sphere(n), block_generator(3, 0, CHECK_STREAM), X)
    injective = np.array([fr.pointwise_injectivity(layer, x[None], n_jobs=1)[0] for x in X])
    assert 0 < injective.sum() < N  # both kinds of points
    for run in runs:
        assert run.n_injective == injective.sum()
        np.testing.assert_array_equal(run.failed_points, X[~injective][:pw.MAX_FAILED_POINTS])


def test_check_bias_runs_many_blocks_whole(monkeypatch):
    """With enough blocks per thread, check_bias hands run_blocks a range of whole blocks
    (nothing of the run's size is built), and splits only a few blocks into parts; both
    give the count of the points checked one block at a time."""
    import fastrelu._injectivity.pointwise as pw

    seen = []
    original = pw.run_blocks

    def spy(units, *args, **kwargs):
        seen.append(units)
        return original(units, *args, **kwargs)

    monkeypatch.setattr(pw, "run_blocks", spy)
    layer = fr.ReLULayer(np.random.default_rng(2).standard_normal((12, 4)), np.full(12, 0.2))
    many = fr.check_bias(layer, fr.Sphere(4), 4096 * 9, seed=5, n_jobs=2)
    few = fr.check_bias(layer, fr.Sphere(4), 4096 * 3, seed=5, n_jobs=2)
    assert isinstance(seen[0], range) and len(seen[0]) == 9
    assert isinstance(seen[1], list) and len(seen[1]) > 3
    one = fr.check_bias(layer, fr.Sphere(4), 4096 * 9, seed=5, n_jobs=1)
    assert many.n_injective == one.n_injective
    np.testing.assert_array_equal(many.failed_points, one.failed_points)
    first = fr.check_bias(layer, fr.Sphere(4), 4096 * 3, seed=5, n_jobs=1)
    assert few.n_injective == first.n_injective
    np.testing.assert_array_equal(few.failed_points, first.failed_points)


def test_check_bias_on_data_uses_the_points():
    rng = np.random.default_rng(6)
    W = rng.standard_normal((15, 3))
    X = rng.standard_normal((500, 3))
    layer = fr.ReLULayer(W, rng.normal(0.3, 0.3, 15))
    result = fr.check_bias(layer, fr.Data(X))
    assert result.n_points == 500 and result.seed is None
    assert result.n_injective == fr.pointwise_injectivity(layer, X).sum()


def test_mcbe_bias_with_margin_holds_on_fresh_points():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((12, 3))
    estimate = fr.mcbe(W, fr.Sphere(3), 200_000, seed=9, margin="covering")
    result = fr.check_bias(fr.ReLULayer(W, estimate.alpha), fr.Sphere(3), 100_000, seed=9)
    assert result.n_failed == 0


# -- bad input ------------------------------------------------------------------------

def test_bad_input():
    layer = fr.ReLULayer(np.eye(3))
    with pytest.raises(fr.FastReluError, match="'layer' parameter must be a fastrelu.ReLULayer"):
        fr.pointwise_injectivity(np.eye(3), np.ones((2, 3)))
    with pytest.raises(fr.FastReluError, match=r"'X' parameter must have 3 columns.*X.shape=\(2, 4\)"):
        fr.pointwise_injectivity(layer, np.ones((2, 4)))
    with pytest.raises(fr.FastReluError, match="'X' parameter must be a 2-D array"):
        fr.pointwise_injectivity(layer, np.ones(3))
    with pytest.raises(fr.FastReluError, match="'X' parameter must contain only finite"):
        fr.pointwise_injectivity(layer, np.array([[1.0, np.nan, 0.0]]))
    for bad in (-1.0, 1e-9, 1.0):
        with pytest.raises(fr.FastReluError, match="'rank_tol' parameter must be a float in"):
            fr.pointwise_injectivity(layer, np.ones((2, 3)), rank_tol=bad)
    with pytest.raises(fr.FastReluError, match="'n_points' parameter must be an integer >= 1"):
        fr.check_bias(layer, fr.Sphere(3), 0)
    with pytest.raises(fr.FastReluError, match="'n_points' parameter must be omitted for a Data"):
        fr.check_bias(layer, fr.Data(np.ones((4, 3))), 10)
    with pytest.raises(fr.FastReluError, match="dimension"):
        fr.check_bias(layer, fr.Sphere(4), 10)
    with pytest.raises(fr.FastReluError, match="'seed' parameter"):
        fr.check_bias(layer, fr.Sphere(3), 10, seed=-3)


def test_a_points_rank_does_not_depend_on_the_points_beside_it():
    # the first n active rows of several points are certified together in SIMD lanes:
    # each point's rank is that of the point alone, also beside nearly dependent rows
    rng = np.random.default_rng(21)
    n, m = 5, 14
    W = rng.standard_normal((m, n))
    W[6] = W[2] + 1e-7 * rng.standard_normal(n)  # within and near rank_tol of a row
    W[7] = -W[3]
    layer = fr.ReLULayer(W, rng.normal(0.3, 0.4, m))
    X = rng.standard_normal((37, n))
    whole = fr.injectivity_summary(layer, X)
    assert 0 < whole.injective.sum() < len(X)
    for offset in (1, 2, 3):
        part = fr.injectivity_summary(layer, X[offset:])
        np.testing.assert_array_equal(part.rank, whole.rank[offset:])
    alone = [fr.injectivity_summary(layer, x[None]).rank[0] for x in X]
    np.testing.assert_array_equal(whole.rank, alone)


def test_at_large_n_a_points_rank_and_reconstruction_do_not_depend_on_the_points_beside_it():
    # n = 130: one point at a time (LAPACK certificate), with rows planted at close calls;
    # whether the unit rows' Gram matrix is stored must not depend on how many points a
    # call has, or a close call could be decided differently alone and in a batch
    rng = np.random.default_rng(33)
    n, m = 130, 300
    W = close_call_rows(rng, n, m)
    layer = fr.ReLULayer(W, rng.normal(-0.2, 0.3, m))
    X = rng.standard_normal((8, n))
    whole = fr.injectivity_summary(layer, X, n_jobs=2)
    alone = [fr.injectivity_summary(layer, x[None], n_jobs=1).rank[0] for x in X]
    np.testing.assert_array_equal(whole.rank, alone)
    Y = layer(X)
    batch = fr.reconstruct(layer, Y, "basis", n_jobs=2)
    for k in range(len(X)):
        single = fr.reconstruct(layer, Y[k:k + 1], "basis", n_jobs=1)
        np.testing.assert_array_equal(single.x[0], batch.x[k])


def test_the_stored_gram_matrix_of_per_point_results_does_not_depend_on_the_call(monkeypatch):
    # MCBE stores the unit rows' Gram matrix only when its samples amortise it; the
    # pointwise checks and reconstruction, whose results are per point, decide by the rows
    # alone: one point and eight take the same path (which rounds close calls its way)
    import fastrelu._core.basis as basis
    import fastrelu._core.rows as rows
    import fastrelu._injectivity.pointwise as pointwise
    import fastrelu._reconstruct.driver as driver

    monkeypatch.setattr(basis, "LANES_MAX_N", 100)  # n = 130 certified one by one anywhere
    seen = []

    class Recording(rows.RowGeometry):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.use_gram)

    monkeypatch.setattr(pointwise, "RowGeometry", Recording)
    monkeypatch.setattr(driver, "RowGeometry", Recording)
    rng = np.random.default_rng(34)
    n, m = 130, 600  # (m / n)^2 = 21 samples would amortise it
    layer = fr.ReLULayer(rng.standard_normal((m, n)), np.full(m, -0.1))
    X = rng.standard_normal((8, n))
    for points in (X[:1], X):
        fr.injectivity_summary(layer, points)
        fr.check_bias(layer, fr.Data(points))
        fr.reconstruct(layer, layer(points), "basis")
    assert len(seen) == 6 and len(set(seen)) == 1
    assert rows.stores_gram(m, n, 1) != rows.stores_gram(m, n, 10**6)  # MCBE's rule differs


def test_an_mcbe_bias_with_unconstrained_rows_is_checked_as_it_is():
    # on the nonnegative shell some rows are in no sample's most correlated basis: +inf,
    # a neuron that is never active, exactly like any bias above every <x, w_i>
    rng = np.random.default_rng(30)
    W = rng.standard_normal((12, 6))
    domain = fr.Shell(6, 0.5, 2.0, nonnegative=True)
    estimate = fr.mcbe(W, domain, 10_000, seed=0)
    never = np.isinf(estimate.alpha)
    assert never.any() and estimate.alpha.flags.writeable
    layer = fr.ReLULayer(W, estimate.alpha)
    finite = fr.ReLULayer(W, np.where(never, 2.0 * np.linalg.norm(W, axis=1) + 1.0, estimate.alpha))
    check = fr.check_bias(layer, domain, 20_000, seed=4)
    same = fr.check_bias(finite, domain, 20_000, seed=4)
    assert check.n_injective == same.n_injective and check.fraction > 0.99
    np.testing.assert_array_equal(check.failed_points, same.failed_points)
    X = np.abs(rng.standard_normal((500, 6)))
    summary = fr.injectivity_summary(layer, X)
    np.testing.assert_array_equal(summary.injective, fr.injectivity_summary(finite, X).injective)
    np.testing.assert_array_equal(summary.injective, _brute_force_injective(layer, X))
    assert not layer.active_mask(X)[:, never].any()


def test_the_cli_checks_the_bias_it_estimated(tmp_path, capsys):
    from fastrelu.cli import main

    W = np.random.default_rng(0).standard_normal((12, 6))
    np.save(tmp_path / "W.npy", W)
    shell = ["--domain", "shell", "--inner", "0.5", "--outer", "2", "--nonnegative"]
    assert main(["bias", str(tmp_path / "W.npy"), *shell, "--samples", "10000",
                 "--out", str(tmp_path / "a.npy")]) == 0
    alpha = np.load(tmp_path / "a.npy")
    assert np.isinf(alpha).any() and not np.isnan(alpha).any()
    capsys.readouterr()
    assert main(["check", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.npy"), *shell,
                 "--points", "5000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = fr.check_bias(fr.ReLULayer(W, alpha), fr.Shell(6, 0.5, 2.0, nonnegative=True),
                             5000, seed=0)
    assert report["n_injective"] == expected.n_injective and report["n_points"] == 5000


@pytest.mark.parametrize("one_by_one", [False, True])
def test_large_n_ranks_agree_with_matrix_rank_with_either_certificate(monkeypatch, one_by_one):
    import fastrelu._core.basis as basis

    monkeypatch.setattr(basis, "LANES_MAX_N", 0 if one_by_one else 10**9)
    rng = np.random.default_rng(52)
    n, m = 150, 420
    W = rng.standard_normal((m, n))
    W[30:34] = W[0:4]  # repeated rows
    W[40] = W[1] + W[2]  # a dependent row
    level = np.sqrt(n) * scipy.stats.norm.ppf(1 - n / m)
    layer = fr.ReLULayer(W, level + rng.normal(0, 0.1, m))
    X = rng.standard_normal((40, n))
    result = fr.injectivity_summary(layer, X, n_jobs=2)
    mask = layer.active_mask(X)
    ranks = [min(n, np.linalg.matrix_rank(W[row])) if row.any() else 0 for row in mask]
    np.testing.assert_array_equal(result.rank, ranks)
    np.testing.assert_array_equal(result.n_active, mask.sum(axis=1))
    assert 0 < result.injective.sum() < 40  # both outcomes occur


def test_the_gram_matrix_of_many_rows_is_formed_by_panels(monkeypatch):
    """gram_of_rows (panels of GRAM_PANEL rows, not one multi-threaded dsyrk, which
    crashes in OpenBLAS 0.3.31 on AVX-512 machines for outputs of about 16,000 rows):
    symmetric and equal to U U^T to rounding, and a layer's results do not change."""
    from fastrelu._core import rows

    rng = np.random.default_rng(0)
    U = rng.standard_normal((230, 7))
    monkeypatch.setattr(rows, "SYRK_MAX", 100)
    monkeypatch.setattr(rows, "GRAM_PANEL", 64)  # four panels, the last one short
    G = rows.gram_of_rows(U)
    np.testing.assert_array_equal(G, G.T)
    np.testing.assert_allclose(G, U @ U.T, rtol=0, atol=1e-13)
    S = rows.cross_product(U.T)  # (7, 230)^T: 230 columns, by panels
    np.testing.assert_array_equal(S, G)
    W = rng.standard_normal((230, 7))
    X = rng.standard_normal((50, 7))
    panels = fr.pointwise_injectivity(fr.ReLULayer(W, np.full(230, 0.3)), X)
    monkeypatch.setattr(rows, "SYRK_MAX", 8192)
    whole = fr.pointwise_injectivity(fr.ReLULayer(W, np.full(230, 0.3)), X)
    np.testing.assert_array_equal(panels, whole)
