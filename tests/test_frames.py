import numpy as np
import pytest

import fastrelu as fr
from fastrelu._core import _frame


def test_frame_bounds_match_eigenvalues():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((40, 7))
    A, B = fr.frame_bounds(W)
    eig = np.linalg.eigvalsh(W.T @ W)
    assert A == pytest.approx(eig[0], rel=1e-12)
    assert B == pytest.approx(eig[-1], rel=1e-12)


def test_tight_frame_bounds():
    # the tetrahedron is a tight frame with bound m / n = 4 / 3
    W = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)
    A, B = fr.frame_bounds(W)
    assert A == pytest.approx(4 / 3, rel=1e-13) and B == pytest.approx(4 / 3, rel=1e-13)


def test_canonical_dual_reconstructs():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((25, 6))
    dual = fr.canonical_dual(W)
    np.testing.assert_allclose(dual, np.linalg.pinv(W).T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dual.T @ W, np.eye(6), atol=1e-12)
    x = rng.standard_normal(6)
    np.testing.assert_allclose(dual.T @ (W @ x), x, rtol=1e-12)


def test_frame_operator_inverse():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((12, 4))
    np.testing.assert_allclose(fr.frame_operator_inverse(W), np.linalg.inv(W.T @ W), rtol=1e-10)


def test_is_frame():
    assert fr.is_frame(np.eye(3))
    assert not fr.is_frame(np.ones((5, 3)))
    assert not fr.is_frame(np.eye(3)[:2])


@pytest.mark.parametrize("function", [fr.frame_bounds, fr.canonical_dual, fr.frame_operator_inverse])
def test_not_a_frame_names_the_rank(function):
    W = np.ones((6, 3))
    with pytest.raises(fr.FastReluError, match=r"rank\(weight\) = 1"):
        function(W)


@pytest.mark.parametrize("function", [fr.frame_bounds, fr.canonical_dual, fr.frame_operator_inverse])
def test_too_few_rows(function):
    with pytest.raises(fr.FastReluError, match="frame for R\\^3"):
        function(np.eye(3)[:2])


@pytest.mark.parametrize("function", [fr.frame_bounds, fr.canonical_dual, fr.frame_operator_inverse])
def test_rank_deficient_weights_are_never_taken_for_frames(function):
    # rounding often leaves S = W^T W a tiny positive pivot, so a Cholesky factorisation
    # that succeeds proves nothing; the rank decides
    rng = np.random.default_rng(4)
    for _ in range(60):
        W = rng.standard_normal((12, 3)) * rng.uniform(0.1, 1e3)
        W[:, 2] = W[:, 0] + W[:, 1]
        assert not fr.is_frame(W)
        with pytest.raises(fr.FastReluError, match=r"rank\(weight\) = 2"):
            function(W)


def _with_singular_values(values, m, seed):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, len(values))))
    V, _ = np.linalg.qr(rng.standard_normal((len(values), len(values))))
    return U @ np.diag(values) @ V.T, V


def test_ill_conditioned_frames_get_accurate_answers():
    # cond(W) = 1e9: cond(S) = 1e18 is beyond double precision, the SVD of W is not
    W, V = _with_singular_values([1.0, 1.0, 1e-9], 12, 5)
    assert fr.is_frame(W)
    A, B = fr.frame_bounds(W)
    assert A == pytest.approx(1e-18, rel=1e-5) and B == pytest.approx(1.0, rel=1e-12)
    dual = fr.canonical_dual(W)
    np.testing.assert_allclose(dual.T @ W, np.eye(3), atol=1e-5)
    inverse = fr.frame_operator_inverse(W)
    expected = V @ np.diag([1.0, 1.0, 1e18]) @ V.T
    np.testing.assert_allclose(inverse, expected, rtol=1e-5, atol=1e-5 * 1e18)


@pytest.mark.parametrize("condition", [0.5e4, 2e4])
def test_cholesky_and_svd_answers_agree_at_the_switch(condition, monkeypatch):
    # cond(S) = condition^2 on either side of CHOLESKY_MAX_CONDITION = 1e8
    from fastrelu._core import frames as _frames
    W, _ = _with_singular_values([2.0, 1.0, 1.0 / condition], 9, 6)
    answers = []
    for limit in (np.inf, 0.0):  # all Cholesky, all SVD
        monkeypatch.setattr(_frames, "CHOLESKY_MAX_CONDITION", limit)
        answers.append((fr.frame_bounds(W), fr.canonical_dual(W), fr.frame_operator_inverse(W)))
    (bounds_c, dual_c, inv_c), (bounds_s, dual_s, inv_s) = answers
    np.testing.assert_allclose(bounds_c, bounds_s, rtol=1e-6)
    np.testing.assert_allclose(dual_c, dual_s, rtol=1e-6, atol=1e-6 * np.abs(dual_s).max())
    np.testing.assert_allclose(inv_c, inv_s, rtol=1e-6, atol=1e-6 * np.abs(inv_s).max())


def test_compiled_twins_report_failure_as_data():
    S = np.array([[1.0, 2.0], [2.0, 1.0]])  # indefinite
    L, info = _frame.cholesky(S)
    assert info == 2
    L, info = _frame.cholesky(np.array([[4.0, 2.0], [2.0, 3.0]]))
    assert info == 0
    np.testing.assert_allclose(L @ L.T, [[4.0, 2.0], [2.0, 3.0]])
    assert np.all(np.triu(L, 1) == 0)
    values, info = _frame.symmetric_eigenvalues(np.diag([3.0, 1.0, 2.0]))
    assert info == 0 and values.tolist() == [1.0, 2.0, 3.0]
    _, info = _frame.frame_operator_inverse(np.ones((4, 2)))
    assert info != 0


def test_large_frames_take_their_singular_values_from_the_gram_matrix_when_it_settles_them(monkeypatch):
    # Above GRAM_SINGULAR_WORK the eigenvalues of W^T W stand for the SVD when
    # cond(S) <= CHOLESKY_MAX_CONDITION; an ill-conditioned or rank-deficient W still
    # gets the SVD's answer
    from fastrelu._core import frames

    rng = np.random.default_rng(9)
    W = rng.standard_normal((60, 20))
    svd = np.linalg.svd(W, compute_uv=False)
    monkeypatch.setattr(frames, "GRAM_SINGULAR_WORK", 0)
    s, rank = frames._singular_values(W)
    assert rank == 20
    np.testing.assert_allclose(s, svd, rtol=1e-12)
    bad = W.copy()
    bad[:, 0] = 1e-6 * bad[:, 0]  # cond(S) about 1e13: the SVD decides
    s_bad, rank_bad = frames._singular_values(bad)
    np.testing.assert_array_equal(s_bad, np.linalg.svd(bad, compute_uv=False))
    assert rank_bad == 20
    deficient = W.copy()
    deficient[:, 1] = deficient[:, 0]
    assert frames._singular_values(deficient)[1] == 19 and not fr.is_frame(deficient)
    A, B = fr.frame_bounds(W)
    np.testing.assert_allclose((A, B), (svd[-1] ** 2, svd[0] ** 2), rtol=1e-12)


@pytest.mark.parametrize("shape", [(1500, 700), (400, 1800)])
def test_spectral_norm_by_lanczos_equals_the_svds(monkeypatch, shape):
    # the iteration (forced here by a low work threshold) on tall and wide matrices, with
    # a clustered top of the spectrum (Gaussian) and with decaying columns
    from fastrelu._core import frames

    monkeypatch.setattr(frames, "LANCZOS_NORM_WORK", 0)
    rng = np.random.default_rng(5)
    for W in (rng.standard_normal(shape), rng.standard_normal(shape) * np.geomspace(1, 1e-4, shape[1]),
              1e200 * rng.standard_normal(shape)):
        exact = np.linalg.svd(W, compute_uv=False)[0]
        assert abs(frames.spectral_norm(W) - exact) <= 1e-13 * exact
    assert frames.spectral_norm(np.zeros(shape)) == 0.0


def test_the_frame_operator_of_many_columns_is_formed_by_panels():
    """Above SYRK_MAX_N columns the frame operator is panels of dgemm (one multi-threaded
    dsyrk of that size crashes in OpenBLAS 0.3.31 on AVX-512 machines): the same matrix,
    symmetric."""
    n = _frame.SYRK_MAX_N + 1
    W = np.random.default_rng(0).standard_normal((20, n))
    S = _frame.frame_operator(W)
    assert np.array_equal(S, S.T)
    np.testing.assert_allclose(S, W.T @ W, rtol=0, atol=1e-12)
