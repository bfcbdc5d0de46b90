"""Data domains enlarged by synthetic points (KDE draws, noisy copies)."""

import numpy as np
import pytest
from scipy import stats

import fastrelu
from fastrelu import Data, FastReluError, enlarge_data, mcbe


def _gaussian_data(rng, N=400, n=4):
    A = rng.standard_normal((n, n))
    return rng.standard_normal((N, n)) @ A.T + 3.0


def test_deterministic_for_a_seed_and_data_first():
    rng = np.random.default_rng(0)
    X = _gaussian_data(rng)
    for method in ("kde", "blowup"):
        first = enlarge_data(X, 500, method=method, seed=7)
        again = enlarge_data(Data(X), 500, method=method, seed=7)
        other = enlarge_data(X, 500, method=method, seed=8)
        assert isinstance(first, Data) and len(first) == 900
        np.testing.assert_array_equal(first.points, again.points)
        assert not np.array_equal(first.points, other.points)
        np.testing.assert_array_equal(first.points[:400], X)
        only = enlarge_data(X, 500, method=method, seed=7, include_data=False)
        np.testing.assert_array_equal(only.points, first.points[400:])


def test_kde_draws_have_the_kernel_density_moments():
    # A Gaussian KDE draw is a data point plus N(0, factor^2 Sigma): mean = data mean,
    # covariance = (1 + factor^2) Sigma (Sigma with ddof=1, as gaussian_kde uses).
    rng = np.random.default_rng(1)
    X = _gaussian_data(rng, N=300, n=3)
    factor = stats.gaussian_kde(X.T).factor
    draws = enlarge_data(X, 400_000, seed=2, include_data=False).points
    sigma = np.cov(X.T)
    np.testing.assert_allclose(draws.mean(axis=0), X.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), (1 + factor**2) * sigma, atol=0.03 * np.abs(sigma).max())


def test_kde_on_degenerate_data_stays_in_the_span():
    rng = np.random.default_rng(2)
    X = np.abs(rng.standard_normal((200, 5)))
    X[:, 1] = 0.0          # a pixel that is never on
    X[:, 3] = X[:, 0] + X[:, 2]  # a dependent coordinate
    draws = enlarge_data(X, 2000, seed=3, include_data=False, nonnegative=False).points
    assert np.abs(draws[:, 1]).max() < 1e-12
    np.testing.assert_allclose(draws[:, 3], draws[:, 0] + draws[:, 2], atol=1e-12)
    # The bandwidth follows the rule for the span's dimension (3)
    assert draws.std(axis=0)[0] > 0


def test_blowup_noise_scale_and_zero_noise():
    rng = np.random.default_rng(3)
    X = _gaussian_data(rng, N=50, n=4)
    copies = enlarge_data(X, 300, method="blowup", noise=0.0, seed=4, include_data=False).points
    assert all((np.abs(X - row).max(axis=1) == 0).any() for row in copies)
    spread = np.sqrt(np.mean(np.sum((X - X.mean(axis=0)) ** 2, axis=1)) / 4)
    tight = enlarge_data(np.zeros((1, 4)) + 5.0, 10, method="blowup", seed=0)  # no spread: copies
    np.testing.assert_array_equal(tight.points, 5.0)
    # With one data point repeated twice the noise is exactly noise * spread per coordinate
    two = np.array([[0.0, 0, 0, 0], [2.0, 0, 0, 0]])  # spread = sqrt(mean |x - m|^2 / n) = 0.5
    noisy = enlarge_data(two, 200_000, method="blowup", noise=0.2, seed=5, include_data=False,
                         nonnegative=False).points
    np.testing.assert_allclose(noisy[:, 1:].std(axis=0), 0.2 * 0.5, rtol=0.01)
    assert spread > 0


def test_nonnegative_data_gives_nonnegative_points_by_default():
    rng = np.random.default_rng(4)
    X = np.maximum(rng.standard_normal((300, 3)), 0.0)
    for method in ("kde", "blowup"):
        clipped = enlarge_data(X, 1000, method=method, seed=1).points
        assert (clipped >= 0).all()
        free = enlarge_data(X, 1000, method=method, seed=1, nonnegative=False).points
        assert (free < 0).any()


def test_mcbe_on_the_enlarged_set_is_at_most_the_data_estimate():
    # More points can only lower each minimum: alpha(enlarged) <= alpha(data) exactly.
    rng = np.random.default_rng(5)
    W = rng.standard_normal((12, 3))
    X = rng.standard_normal((200, 3))
    plain = mcbe(W, Data(X)).alpha
    for method in ("kde", "blowup"):
        enlarged = mcbe(W, enlarge_data(X, 2000, method=method, seed=2)).alpha
        assert (enlarged <= plain).all()
        assert (enlarged < plain).any()


def test_exported():
    assert fastrelu.enlarge_data is enlarge_data


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="gauss"), "'method' parameter must be one of"),
    (dict(n_points=0), "'n_points' parameter"),
    (dict(bandwidth="wide"), "'bandwidth' parameter must be 'scott', 'silverman' or a float"),
    (dict(bandwidth=-1.0), "'bandwidth' parameter"),
    (dict(method="blowup", noise=-0.1), "'noise' parameter"),
    (dict(seed=-1), "'seed' parameter"),
])
def test_bad_parameters(kwargs, match):
    X = np.random.default_rng(0).standard_normal((50, 3))
    arguments = dict(n_points=10, seed=0) | kwargs
    with pytest.raises(FastReluError, match=match):
        enlarge_data(X, **arguments)


def test_bad_data():
    with pytest.raises(FastReluError, match="must not be empty"):
        enlarge_data(np.zeros((0, 3)), 10)
    with pytest.raises(FastReluError, match="'data' parameter"):
        enlarge_data(np.array([1.0, np.nan]), 10)


def test_few_points_and_a_single_point():
    # Three points in R^5 span a plane: the density lives on it.
    X = np.random.default_rng(0).standard_normal((3, 5))
    draws = enlarge_data(X, 50, seed=1, include_data=False, nonnegative=False).points
    normal = np.linalg.svd(X[1:] - X[0])[2][2:]  # directions orthogonal to the plane
    assert np.abs((draws - X[0]) @ normal.T).max() < 1e-12
    single = enlarge_data(np.array([[1.0, 2.0]]), 5, seed=1).points
    np.testing.assert_array_equal(single, np.tile([1.0, 2.0], (6, 1)))
