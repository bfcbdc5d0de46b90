"""Pointwise injectivity from products with W and W^T only (fastrelu.operator_injectivity,
docs/theory.md §10.1), against the definitions computed from the dense rows."""

import numpy as np
import pytest
import scipy.linalg
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import fastrelu as fr
from fastrelu import FastReluError


def _dense_truth(W, alpha, X):
    """Per point: active rows, sigma_min and sigma_max of the active rows (0 and NaN below
    n active rows), by the SVD of the gathered rows."""
    n = W.shape[1]
    active = X @ W.T - alpha >= 0
    smin, smax = np.zeros(len(X)), np.full(len(X), np.nan)
    for j, mask in enumerate(active):
        if mask.sum() >= n:
            s = scipy.linalg.svdvals(W[mask])
            smin[j], smax[j] = s[-1], s[0]
    return active.sum(axis=1), smin, smax


def _counting(W):
    """W as a LinearOperator that counts its products (and never exposes the rows)."""
    calls = {"mat": 0, "rmat": 0}

    def matmat(V):
        calls["mat"] += 1
        return W @ V

    def rmatmat(U):
        calls["rmat"] += 1
        return W.T @ U

    op = LinearOperator(W.shape, matvec=lambda v: W @ v, rmatvec=lambda u: W.T @ u,
                        matmat=matmat, rmatmat=rmatmat, dtype=np.float64)
    return op, calls


@pytest.mark.parametrize("n", [12, 60])  # dense eigh below 5 * block = 40, LOBPCG above
def test_estimates_match_the_svd_of_the_active_rows(n):
    rng = np.random.default_rng(n)
    m = 4 * n
    W = rng.standard_normal((m, n))
    alpha = 0.5 + 0.3 * rng.standard_normal(m)
    X = rng.standard_normal((25, n))
    X[::5] *= 0.01  # near the origin the positive biases leave fewer than n rows active
    W0, alpha0, X0 = W.copy(), alpha.copy(), X.copy()
    op, calls = _counting(W)
    result = fr.operator_injectivity(op, alpha, X, n_jobs=1)
    assert calls["mat"] > 0 and calls["rmat"] > 0
    np.testing.assert_array_equal(W, W0)  # nothing of the caller's is modified
    np.testing.assert_array_equal(alpha, alpha0)
    np.testing.assert_array_equal(X, X0)
    n_active, smin, smax = _dense_truth(W, alpha, X)
    np.testing.assert_array_equal(result.n_active, n_active)
    spans = n_active >= n
    assert spans.any() and (~spans).any()  # both kinds of points occur
    np.testing.assert_allclose(result.sigma_min[spans], smin[spans], rtol=1e-8)
    np.testing.assert_allclose(result.sigma_max[spans], smax[spans], rtol=1e-8)
    # the Ritz value is never below the true sigma_min, the bound never above it
    assert np.all(result.sigma_min[spans] >= smin[spans] * (1 - 1e-12))
    assert np.all(result.sigma_min_lower[spans] <= smin[spans] * (1 + 1e-12))
    assert np.all(result.converged) and np.all(result.residual[spans] <= result.tol)
    # well-conditioned random rows: every point with n active rows is shown injective
    np.testing.assert_array_equal(result.injective, spans)
    np.testing.assert_array_equal(result.undecided, np.zeros(len(X), dtype=bool))
    dense = fr.pointwise_injectivity(fr.ReLULayer(W, alpha), X)
    np.testing.assert_array_equal(result.injective, dense)
    # fewer than n active rows: exact zero, nothing iterated
    assert np.all(result.sigma_min[~spans] == 0) and np.all(np.isnan(result.sigma_max[~spans]))
    assert np.all(result.iterations[~spans] == 0) and np.all(np.isinf(result.cond[~spans]))
    assert result.fraction == pytest.approx(spans.mean())
    text = result.summary(limit=2)
    assert text.startswith(f"{spans.sum()} of 25 points shown injective, 0 undecided, {(~spans).sum()} with fewer")
    assert "active rows" in text.splitlines()[1] and text.splitlines()[-1].startswith("  ... and")
    assert repr(result).startswith("OperatorInjectivity(n_points=25,")


def test_active_rows_in_a_hyperplane_are_never_called_injective():
    """At the points, more than n rows are active but they all lie in the hyperplane
    x_n = 0; the rows that leave it are inactive. sigma_min(W_I) is 0: not injective,
    whatever the iteration does (undecided at worst)."""
    rng = np.random.default_rng(3)
    n = 50
    flat = rng.standard_normal((150, n))
    flat[:, -1] = 0.0
    W = np.vstack([flat, np.eye(n)[-1:], -np.eye(n)[-1:]])
    alpha = np.concatenate([-np.full(150, 1e3), [5.0, 5.0]])  # the flat rows are always active
    X = rng.standard_normal((8, n))
    X[:, -1] = 0.5
    result = fr.operator_injectivity(W, alpha, X, n_jobs=1)
    assert np.all(result.n_active == 150)
    assert not result.injective.any() and result.undecided.all()
    for steps in (1, 2, 5):  # cut short, the Ritz values are far from the eigenvalues
        short = fr.operator_injectivity(W, alpha, X, n_jobs=1, max_iter=steps)
        assert not short.injective.any() and short.undecided.all()
        assert np.all(short.iterations <= steps + 1 + 3)  # max_iter, restarts included
    assert np.all(result.sigma_min < 1e-6 * result.sigma_max)
    assert not fr.pointwise_injectivity(fr.ReLULayer(W, alpha), X).any()


def test_shown_injective_implies_the_dense_definition_on_ill_conditioned_rows():
    """Rows with a spread of scales (condition numbers up to 1e9): a point shown
    injective is injective by the scan of pointwise_injectivity; the others are
    undecided or have fewer than n active rows."""
    rng = np.random.default_rng(5)
    n, m = 45, 135
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    W = (U * np.logspace(0, -9, n)) @ V.T
    alpha = np.zeros(m)
    X = rng.standard_normal((10, n))
    result = fr.operator_injectivity(W, alpha, X, n_jobs=1, max_iter=500)
    dense = fr.pointwise_injectivity(fr.ReLULayer(W, alpha), X)
    assert np.all(dense[result.injective])
    np.testing.assert_array_equal(result.undecided, (result.n_active >= n) & ~result.injective)
    assert result.undecided.any()  # the test is sufficient only: it leaves such points open
    # the bounds bracket the true values; converged means sigma_min is known to tol
    n_active, smin, smax = _dense_truth(W, alpha, X)
    spans = n_active >= n
    assert np.all(result.sigma_min_lower[spans] <= smin[spans] * (1 + 1e-9) + 1e-15)
    assert np.all(result.sigma_min[spans] >= smin[spans] * (1 - 1e-9))
    assert np.all(result.sigma_max_upper[spans] >= smax[spans] * (1 - 1e-12))
    assert not result.converged[spans].all()  # sigma_min about 1e-9: not resolved
    known = spans & result.converged
    np.testing.assert_allclose(result.sigma_min[known], smin[known], rtol=result.tol)


def test_a_small_residual_is_not_taken_for_an_accurate_sigma_min():
    """Kahan's matrix: every pivot far from zero, sigma_min about 1e-9 of sigma_max. The
    residual of the smallest Ritz pair gets small long before the Ritz value is near
    sigma_min: converged stays False, the lower bound 0, and the point undecided."""
    n, c = 60, 0.3
    s = np.sqrt(1 - c**2)
    K = np.triu(-c * np.ones((n, n)), 1) + np.eye(n)
    K = np.diag(s ** np.arange(n)) @ K
    W = np.vstack([K, -K])  # both signs: n rows active at every point with zero bias
    X = np.random.default_rng(0).standard_normal((2, n))
    result = fr.operator_injectivity(W, np.zeros(2 * n), X, n_jobs=1)
    _, smin, _ = _dense_truth(W, np.zeros(2 * n), X)
    assert np.all(smin < 1e-6 * result.sigma_max)
    assert not result.injective.any() and result.undecided.all()
    assert not result.converged.any()
    assert np.all(result.sigma_min_lower <= smin * (1 + 1e-6))


def test_the_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((160, 48))
    alpha = 0.2 * rng.standard_normal(160)
    X = rng.standard_normal((20, 48))
    one = fr.operator_injectivity(aslinearoperator(W), alpha, X, n_jobs=1, seed=4)
    two = fr.operator_injectivity(aslinearoperator(W), alpha, X, n_jobs=2, seed=4)
    for name in ("injective", "n_active", "sigma_min", "sigma_min_lower", "sigma_max", "residual",
                 "iterations"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))


def test_bad_input_names_the_argument():
    W = np.random.default_rng(0).standard_normal((10, 4))
    X = np.zeros((2, 4))
    with pytest.raises(FastReluError, match="'operator' parameter must be an array of shape \\(m, n\\) or a scipy.sparse.linalg.LinearOperator"):
        fr.operator_injectivity("W", np.zeros(10), X)
    with pytest.raises(FastReluError, match="'bias'"):
        fr.operator_injectivity(W, np.zeros(9), X)
    with pytest.raises(FastReluError, match="'bias' parameter must be a 1-D array of 10 real numbers .*Got None"):
        fr.operator_injectivity(W, None, X)
    with pytest.raises(FastReluError, match="'X'"):
        fr.operator_injectivity(W, np.zeros(10), np.zeros((2, 5)))
    with pytest.raises(FastReluError, match="'tol' parameter must be a float in \\(0, 1\\)"):
        fr.operator_injectivity(W, np.zeros(10), X, tol=1.0)
    with pytest.raises(FastReluError, match="'block'"):
        fr.operator_injectivity(W, np.zeros(10), X, block=0)
    with pytest.raises(FastReluError, match="'rank_tol'"):
        fr.operator_injectivity(W, np.zeros(10), X, rank_tol=1e-9)
    forward_only = LinearOperator((10, 4), matvec=lambda v: W @ v, dtype=np.float64)
    with pytest.raises(FastReluError, match=r"'operator' parameter must provide products with W\^T .*Got"):
        fr.operator_injectivity(forward_only, np.zeros(10), X)
    with pytest.raises(FastReluError, match="'operator' parameter must be a real operator"):
        fr.operator_injectivity(aslinearoperator(W.astype(complex)), np.zeros(10), X)
    empty = fr.operator_injectivity(W, np.zeros(10), np.zeros((0, 4)))
    assert empty.n_points == 0 and np.isnan(empty.fraction)
