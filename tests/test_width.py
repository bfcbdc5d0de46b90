import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import gammaln

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu._runtime.seeds import block_generator
from fastrelu._spectral.kernels import local_width
from fastrelu._spectral.width import _NODES, _WEIGHTS, WIDTH_BLOCK, WIDTH_STREAM


def ball_width(n):
    """w(unit ball in R^n) = E|g| = sqrt(2) Gamma((n+1)/2) / Gamma(n/2)."""
    return math.sqrt(2.0) * math.exp(gammaln((n + 1) / 2) - gammaln(n / 2))


def draws(seed, n_draws, dim):
    """The Gaussian vectors gaussian_mean_width draws for a seed, block by block."""
    blocks = []
    for b in range(-(-n_draws // WIDTH_BLOCK)):
        size = min(WIDTH_BLOCK, n_draws - b * WIDTH_BLOCK)
        blocks.append(block_generator(seed, b, WIDTH_STREAM).standard_normal((size, dim)))
    return np.concatenate(blocks)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_unit_ball_within_three_standard_errors(n):
    estimate = fr.gaussian_mean_width(np.eye(n), n_draws=20_000, seed=n)
    assert abs(estimate.value - ball_width(n)) <= 3 * estimate.stderr
    assert estimate.per_draw == "exact" and estimate.n_draws == 20_000 and estimate.seed == n


def test_linear_map_against_a_direct_monte_carlo():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((25, 6))
    estimate = fr.gaussian_mean_width(W, n_draws=20_000, seed=1)
    direct = np.linalg.norm(rng.standard_normal((100_000, 25)) @ W, axis=1)
    spread = np.sqrt(estimate.stderr ** 2 + direct.var(ddof=1) / direct.size)
    assert abs(estimate.value - direct.mean()) <= 3 * spread
    # and per draw it is exactly |W^T g| for the documented draws
    G = draws(1, 20_000, 25)
    assert estimate.value == pytest.approx(np.linalg.norm(G @ W, axis=1).mean(), rel=1e-12)


def test_finite_sets_are_exact_per_draw():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((700, 4))
    estimate = fr.gaussian_mean_width(fr.Data(X), n_draws=600, seed=2)
    per_draw = (draws(2, 600, 4) @ X.T).max(axis=1)
    assert estimate.value == pytest.approx(per_draw.mean(), rel=1e-12)
    assert estimate.stderr == pytest.approx(per_draw.std(ddof=1) / np.sqrt(600), rel=1e-9)
    # a layer on data measures the image of the data: the same as Data(layer(X))
    W = rng.standard_normal((9, 4))
    layer = fr.ReLULayer(W, rng.normal(0.0, 0.5, 9))
    image = fr.gaussian_mean_width(layer, data=X, n_draws=600, seed=2)
    direct = fr.gaussian_mean_width(fr.Data(layer(X)), n_draws=600, seed=2)
    assert image.value == pytest.approx(direct.value, rel=1e-12)
    assert image.per_draw == "exact"


def test_layer_on_the_ball_is_a_lower_estimate_close_to_a_grid():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((6, 2))
    alpha = rng.normal(0.0, 0.4, 6)
    layer = fr.ReLULayer(W, alpha)
    estimate = fr.gaussian_mean_width(layer, n_draws=256, seed=3)
    assert estimate.per_draw == "lower estimate"
    r = np.linspace(0.0, 1.0, 201)[:, None]
    t = np.linspace(0.0, 2 * np.pi, 1440, endpoint=False)[None, :]
    grid = np.column_stack([(r * np.cos(t)).ravel(), (r * np.sin(t)).ravel()])
    image = np.maximum(grid @ W.T - alpha, 0.0)
    per_draw = (draws(3, 256, 6) @ image.T).max(axis=1)
    # each per-draw value is attained, so it is at most the supremum; the grid gets close
    lipschitz = np.linalg.norm(W, 2) * np.linalg.norm(draws(3, 256, 6), axis=1).mean()
    slack = lipschitz * (2 * np.pi / 1440 + 1 / 200)
    assert per_draw.mean() * (1 - 2e-3) <= estimate.value <= per_draw.mean() + slack
    thorough = fr.gaussian_mean_width(layer, n_draws=256, seed=3, n_starts=32)
    assert per_draw.mean() - 1e-9 <= thorough.value <= per_draw.mean() + slack


def test_deterministic_for_any_number_of_threads():
    rng = np.random.default_rng(3)
    layer = fr.ReLULayer(rng.standard_normal((12, 3)), rng.normal(0.0, 0.3, 12))
    X = rng.standard_normal((300, 3))
    for obj, kwargs in ((layer, {}), (layer, {"data": X}), (layer.weight, {})):
        values = {fr.gaussian_mean_width(obj, n_draws=3 * WIDTH_BLOCK + 5, seed=4, n_jobs=jobs,
                                         **kwargs).value for jobs in (1, 2, 3)}
        assert len(values) == 1


def quadrature_reference(lam):
    """E sqrt(sum_j lam_j h_j^2) = (1 / (2 sqrt(pi))) int_0^inf (1 - prod_j (1 + 2 lam_j t)^(-1/2))
    t^(-3/2) dt, by scipy.integrate.quad in log t (expm1/log1p for the small t)."""
    def f(v):
        t = np.exp(v)
        return -np.expm1(-0.5 * np.log1p(2 * lam * t).sum()) * t ** -0.5
    return integrate.quad(f, -80, 80, epsabs=0, epsrel=1e-13, limit=500)[0] / (2 * np.sqrt(np.pi))


def test_local_width_quadrature():
    lam = np.array([np.ones(5), [3.0, 1.0, 1e-3, 0, 0], [4.0, 0, 0, 0, 0]])
    out = np.empty(3)
    local_width(lam, _NODES, _WEIGHTS, out)
    assert out[0] == pytest.approx(ball_width(5), rel=1e-12)
    assert out[1] == pytest.approx(quadrature_reference(lam[1]), rel=1e-10)
    assert out[2] == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=1e-12)  # E|2 h|
    tiny = np.empty(1)
    local_width(np.array([[1e-12, 1e-14]]), _NODES, _WEIGHTS, tiny)
    assert tiny[0] == pytest.approx(quadrature_reference(np.array([1.0, 1e-2])) * 1e-6, rel=1e-10)


@pytest.mark.parametrize("outer", [True, False])
def test_local_metrics_against_the_definition(outer, monkeypatch):
    # both ways of summing the active rows' Gram matrices: one GEMM over the rows' outer
    # products (small layers) and, point by point, W_I^T W_I (dsyrk)
    import fastrelu._spectral.width as width

    if not outer:
        monkeypatch.setattr(width, "OUTER_MAX_ENTRIES", 0)
    rng = np.random.default_rng(4)
    W = rng.standard_normal((14, 4))
    alpha = rng.normal(0.6, 0.5, 14)  # leaves some points with few active rows
    layer = fr.ReLULayer(W, alpha)
    X = rng.standard_normal((200, 4))
    result = fr.local_metrics(layer, X, return_all=True)
    mask = layer.active_mask(X)
    np.testing.assert_array_equal(result.n_active, mask.sum(axis=1))
    assert result.tol == pytest.approx(1e-6 * np.linalg.norm(W, 2))
    ranks = []
    for i, row in enumerate(mask):
        sv = np.linalg.svd(W * row[:, None], compute_uv=False)
        sv = np.where(sv > result.tol, sv, 0.0)
        np.testing.assert_allclose(result.singular_values[i], sv, atol=1e-7 * sv[0] + 1e-300, rtol=1e-9)
        ranks.append(np.count_nonzero(sv))
    np.testing.assert_array_equal(result.rank, ranks)
    assert 0 < np.mean(result.rank < 4) < 1  # both full and deficient ranks occur
    np.testing.assert_allclose(result.sigma_max, result.singular_values[:, 0])
    np.testing.assert_array_equal(result.sigma_min, result.singular_values[:, -1])
    full = result.rank == 4
    assert np.all(result.sigma_min[full] > 0) and np.all(result.sigma_min[~full] == 0)
    some = (result.rank > 0) & ~full
    assert np.all(result.sigma_min_nonzero[some] > 0)
    # no active row at all: everything zero, no nonzero singular value
    dead = fr.local_metrics(fr.ReLULayer(W, np.abs(alpha) + 0.1), np.zeros((1, 4)))
    assert dead.n_active[0] == 0 and dead.rank[0] == 0 and np.isnan(dead.sigma_min_nonzero[0])
    assert dead.width[0] == 0 and dead.sigma_max[0] == 0


def test_local_width_against_a_direct_monte_carlo():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((16, 5))
    layer = fr.ReLULayer(W, rng.normal(0.0, 0.5, 16))
    X = rng.standard_normal((4, 5))
    result = fr.local_metrics(layer, X)
    G = rng.standard_normal((100_000, 16))
    for i, row in enumerate(layer.active_mask(X)):
        sample = np.linalg.norm((G * row) @ W, axis=1)
        assert abs(result.width[i] - sample.mean()) <= 3 * sample.std(ddof=1) / np.sqrt(sample.size)
    # D = I, W = I: the unit ball
    identity = fr.local_metrics(fr.ReLULayer(np.eye(6), -np.ones(6)), np.zeros((1, 6)))
    assert identity.width[0] == pytest.approx(ball_width(6), rel=1e-12)
    assert identity.rank[0] == 6 and identity.sigma_min[0] == pytest.approx(1.0)


def test_local_metrics_chunks_and_threads():
    rng = np.random.default_rng(6)
    layer = fr.ReLULayer(rng.standard_normal((30, 8)), rng.normal(0.0, 0.5, 30))
    X = rng.standard_normal((70_000, 8))
    one = fr.local_metrics(layer, X, n_jobs=1)
    two = fr.local_metrics(layer, X, n_jobs=2)
    np.testing.assert_array_equal(one.width, two.width)
    np.testing.assert_array_equal(one.sigma_min, two.sigma_min)
    empty = fr.local_metrics(layer, np.empty((0, 8)))
    assert empty.n_points == 0


@pytest.mark.parametrize("obj, kwargs, match", [
    ("weights", {}, "'obj' parameter must be a fastrelu.Data, a 2-D array"),
    (np.ones(4), {}, "'weight' parameter must be a 2-D array"),
    (np.ones((3, 2)), {"n_draws": 0}, "'n_draws' parameter must be an integer >= 1. Got 0 instead"),
    (np.ones((3, 2)), {"data": np.ones((4, 2))}, "'data' parameter applies to a ReLULayer only"),
    (np.array([[1.0, np.nan]]), {}, "'weight' parameter must contain only finite numbers"),
    (fr.ReLULayer(np.ones((3, 2))), {"data": np.ones((4, 3))}, "'data' parameter must have 2 columns"),
    (fr.ReLULayer(np.ones((3, 2))), {"data": np.full((4, 2), np.inf)}, "'data' parameter must contain only finite"),
    (fr.ReLULayer(np.ones((3, 2))), {"n_starts": 0}, "'n_starts' parameter must be an integer >= 1"),
])
def test_gaussian_mean_width_bad_input(obj, kwargs, match):
    with pytest.raises(FastReluError, match=match):
        fr.gaussian_mean_width(obj, **kwargs)


@pytest.mark.parametrize("layer, X, kwargs, match", [
    (np.ones((3, 2)), np.ones((2, 2)), {}, "'layer' parameter must be a fastrelu.ReLULayer"),
    (fr.ReLULayer(np.ones((3, 2))), np.ones((2, 3)), {}, "'X' parameter must have 2 columns"),
    (fr.ReLULayer(np.ones((3, 2))), [[0.0, np.nan]], {}, "'X' parameter must contain only finite"),
    (fr.ReLULayer(np.ones((3, 2))), np.ones((2, 2)), {"rtol": 1e-9}, "'rtol' parameter must be a float in \\[1e-07, 1\\)"),
])
def test_local_metrics_bad_input(layer, X, kwargs, match):
    with pytest.raises(FastReluError, match=match):
        fr.local_metrics(layer, X, **kwargs)
