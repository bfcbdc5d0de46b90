import numpy as np
import pytest

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu._runtime.seeds import block_generator
from fastrelu._spectral.power import POWER_BLOCK, POWER_STREAM


def relu_objective(W, alpha, X):
    """|ReLU(W x - alpha) - ReLU(-alpha)| for each row of X (THEORY §7 with L = 0)."""
    D = np.maximum(X @ W.T - alpha, 0.0) - np.maximum(-alpha, 0.0)
    return np.linalg.norm(D, axis=1)


def first_block_starts(seed, n, size=POWER_BLOCK):
    X = block_generator(seed, 0, POWER_STREAM).standard_normal((size, n))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def disk_grid(radii, angles):
    r = np.linspace(0.0, 1.0, radii)[:, None]
    t = np.linspace(0.0, 2 * np.pi, angles, endpoint=False)[None, :]
    return np.column_stack([(r * np.cos(t)).ravel(), (r * np.sin(t)).ravel()])


def fibonacci_sphere(count):
    i = np.arange(count) + 0.5
    z = 1 - 2 * i / count
    phi = np.pi * (1 + 5 ** 0.5) * i
    rho = np.sqrt(1 - z * z)
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


@pytest.mark.parametrize("accelerate", [True, False])
def test_power_iteration_never_decreases_the_objective(accelerate):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((60, 8))
    result = fr.relu_power_iteration(W, n_starts=300, seed=1, history=40, accelerate=accelerate)
    steps = np.diff(result.history, axis=1)
    valid = ~np.isnan(steps)
    assert valid.sum() > 200
    # round-off of the images carried along is of order 1e-15 relative
    assert np.all(steps[valid] >= -1e-12 * result.history[:, 1:][valid])
    assert result.method == ("accelerated power" if accelerate else "power")
    assert result.n_converged == 300
    np.testing.assert_allclose(result.values[:40], np.nanmax(result.history, axis=1), rtol=1e-12)


def test_with_a_bias_no_step_decreases_the_objective():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((40, 5))
    alpha = rng.normal(0.0, 0.5, 40)
    result = fr.relu_power_iteration(W, bias=alpha, n_starts=100, seed=2, history=30)
    steps = np.diff(result.history, axis=1)
    valid = ~np.isnan(steps)
    # a step is taken only when it increases q; the exact recomputation every 16
    # iterations moves the carried value by round-off only
    assert np.all(steps[valid] >= -1e-12 * result.history[:, 1:][valid])
    assert np.all(np.nanmax(result.history, axis=1) > result.history[:, 0])
    assert result.method == "accelerated conditional gradient"


def test_kernel_is_the_power_iteration_of_the_theory():
    """The plain kernel reproduces x <- W^T ReLU(W x) / |W^T ReLU(W x)| step by step."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((30, 6))
    result = fr.relu_power_iteration(W, n_starts=8, seed=3, history=8, accelerate=False, max_iter=40)
    X = first_block_starts(3, 6, size=8)
    for s in range(8):
        x = X[s]
        expected = [np.linalg.norm(np.maximum(W @ x, 0.0))]
        for _ in range(result.n_iter[s]):
            g = W.T @ np.maximum(W @ x, 0.0)
            x = g / np.linalg.norm(g)
            expected.append(np.linalg.norm(np.maximum(W @ x, 0.0)))
        got = result.history[s, :len(expected)]
        np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_s1_equals_a_dense_grid_maximum_in_two_dimensions(seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((7, 2))
    for alpha in (np.zeros(7), rng.normal(0.0, 0.7, 7)):
        result = fr.relu_power_iteration(W, bias=alpha, n_starts=400, seed=5)
        grid = disk_grid(400, 3600)
        best = relu_objective(W, alpha, grid).max()
        lipschitz = np.linalg.norm(W, 2)
        spacing = max(1.0 / 399, 2 * np.pi / 3600)
        assert best - 1e-12 <= result.s1 <= best + lipschitz * spacing
        assert result.s1 == pytest.approx(relu_objective(W, alpha, result.x[None])[0], rel=1e-12)
        assert np.linalg.norm(result.x) <= 1 + 1e-12


def test_s1_equals_a_dense_grid_maximum_in_three_dimensions():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((12, 3))
    sphere = fibonacci_sphere(200_000)
    spacing = np.sqrt(4 * np.pi / 200_000)
    lipschitz = np.linalg.norm(W, 2)
    result = fr.relu_power_iteration(W, n_starts=500, seed=6)
    best = relu_objective(W, np.zeros(12), sphere).max()
    assert best - 1e-12 <= result.s1 <= best + lipschitz * spacing
    alpha = rng.normal(0.0, 0.5, 12)
    result = fr.relu_power_iteration(W, bias=alpha, n_starts=500, seed=6)
    ball = np.concatenate([r * sphere[::10] for r in np.linspace(0.0, 1.0, 60)])
    best = relu_objective(W, alpha, ball).max()
    assert best - 1e-12 <= result.s1 <= best + lipschitz * (spacing * np.sqrt(10) + 1.0 / 59)


def test_double_layer_has_s1_equal_to_sigma1():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((50, 10))
    double = fr.double_layer(W)
    result = fr.relu_power_iteration(double.weight, bias=double.bias, n_starts=50, seed=0)
    assert result.s1 == pytest.approx(np.linalg.norm(W, 2), rel=1e-9)


@pytest.mark.parametrize("shape", [(5, 3), (40, 8), (100, 30)])
def test_s1_against_sigma1(shape):
    rng = np.random.default_rng(shape[0])
    W = rng.standard_normal(shape)
    sigma1 = np.linalg.norm(W, 2)
    plus = fr.relu_power_iteration(W, n_starts=200, seed=1).s1
    minus = fr.relu_power_iteration(-W, n_starts=200, seed=1).s1
    assert plus <= sigma1 * (1 + 1e-12) and minus <= sigma1 * (1 + 1e-12)
    assert max(plus, minus) >= sigma1 / np.sqrt(2)


def test_inactive_starts_are_recorded_not_divided_by_zero():
    # one neuron: the starts with <w, x> <= 0 sit at a zero of the objective
    W = np.array([[1.0, 2.0, -2.0]])
    result = fr.relu_power_iteration(W, n_starts=1000, seed=7)
    zero = result.status == 2
    assert 300 < zero.sum() < 700 and result.n_zero == zero.sum()
    np.testing.assert_array_equal(result.values[zero], 0.0)
    np.testing.assert_array_equal(result.n_iter[zero], 0)
    assert result.s1 == pytest.approx(3.0, rel=1e-12)
    np.testing.assert_allclose(result.x, [1 / 3, 2 / 3, -2 / 3], atol=1e-8)
    # a layer that is dead on the whole ball
    dead = fr.relu_power_iteration(W, bias=[10.0], n_starts=300, seed=7)
    assert dead.s1 == 0.0 and dead.n_zero == 300


def test_deterministic_for_any_number_of_threads():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((45, 6))
    alpha = rng.normal(0.0, 0.3, 45)
    for bias in (None, alpha):
        runs = [fr.relu_power_iteration(W, bias=bias, n_starts=3 * POWER_BLOCK + 17, seed=9,
                                        n_jobs=jobs) for jobs in (1, 2, 3)]
        for other in runs[1:]:
            assert other.s1 == runs[0].s1 and other.best_start == runs[0].best_start
            np.testing.assert_array_equal(other.x, runs[0].x)
            np.testing.assert_array_equal(other.values, runs[0].values)
            np.testing.assert_array_equal(other.n_iter, runs[0].n_iter)
            np.testing.assert_array_equal(other.status, runs[0].status)


def test_seeded_runs_extend_and_ties_go_to_the_first_start():
    # n = 1, W = [1; -1]: every start (x = +1 or -1) has the value 1 exactly
    tie = fr.relu_power_iteration([[1.0], [-1.0]], n_starts=600, seed=2)
    assert tie.s1 == 1.0 and tie.best_start == 0 and tie.n_converged == 600
    rng = np.random.default_rng(9)
    W = rng.standard_normal((15, 3))
    result = fr.relu_power_iteration(W, n_starts=600, seed=2)
    # values are square roots of the objective, so two starts whose objectives differ in
    # the last bit can show equal values: the best start attains the largest value, and
    # which of the near-equal starts wins is decided by the objective, not by the roots
    assert result.values[result.best_start] == result.values.max() == result.s1
    small = fr.relu_power_iteration(W, n_starts=300, seed=2)
    np.testing.assert_array_equal(small.values, result.values[:300])


def test_summary_counts_without_per_start_arrays():
    rng = np.random.default_rng(6)
    W = rng.standard_normal((20, 4))
    full = fr.relu_power_iteration(W, n_starts=500, seed=3)
    lean = fr.relu_power_iteration(W, n_starts=500, seed=3, per_start=False)
    assert lean.values is None and lean.status is None and lean.history is None
    assert lean.s1 == full.s1 and lean.n_converged == full.n_converged
    assert lean.mean_iter == pytest.approx(full.n_iter.mean())
    assert full.n_converged + full.n_max_iter + full.n_zero + full.n_stalled == 500


def test_relu_singular_values_on_the_ball_are_bounded_by_sigma():
    rng = np.random.default_rng(7)
    W = rng.standard_normal((24, 6))
    result = fr.relu_singular_values(W, 4, n_starts=500, fit_starts=300, fit_steps=40, seed=1)
    sigma = np.linalg.svd(W, compute_uv=False)[:4]
    np.testing.assert_allclose(result.sigma, sigma)
    np.testing.assert_array_equal(result.upper, result.sigma)
    assert result.kinds == ("lower bound",) + ("upper bound estimate",) * 3
    assert np.all(result.values <= sigma * (1 + 1e-12))
    assert result.values[0] == result.power.s1
    for j, (U, V) in enumerate(result.fits, start=2):
        assert U.shape == (24, j - 1) and V.shape == (j - 1, 6)
    # the supremum of each fitted L is estimated by ascent: it beats dense random sampling
    sphere = rng.standard_normal((20_000, 6))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    for j, (U, V) in enumerate(result.fits, start=2):
        sampled = np.linalg.norm(np.maximum(sphere @ W.T, 0) - np.maximum(sphere @ (U @ V).T, 0), axis=1)
        assert sampled.max() <= result.values[j - 1] * (1 + 1e-9)


def test_relu_singular_values_on_data_are_exact_and_rigorous():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((18, 5))
    alpha = rng.normal(0.0, 0.3, 18)
    X = rng.standard_normal((400, 5))
    result = fr.relu_singular_values(W, 3, bias=alpha, data=fr.Data(X), fit_steps=50, seed=0)
    dist = relu_objective(W, alpha, X)
    assert result.values[0] == pytest.approx(dist.max(), rel=1e-14) and result.argmax == dist.argmax()
    assert result.kinds == ("exact", "upper bound", "upper bound")
    np.testing.assert_array_equal(result.upper, result.values)
    left, sig, right = np.linalg.svd(W, full_matrices=False)
    for j, (U, V) in enumerate(result.fits, start=2):
        fitted = np.linalg.norm(np.maximum(X @ W.T - alpha, 0) - np.maximum(X @ (U @ V).T - alpha, 0), axis=1)
        assert result.values[j - 1] == pytest.approx(fitted.max(), rel=1e-12)
        L = (left[:, :j - 1] * sig[:j - 1]) @ right[:j - 1]
        svd_fit = np.linalg.norm(np.maximum(X @ W.T - alpha, 0) - np.maximum(X @ L.T - alpha, 0), axis=1)
        assert result.values[j - 1] <= svd_fit.max() + 1e-12
    # a plain array works as data too
    again = fr.relu_singular_values(W, 1, bias=alpha, data=X)
    assert again.values[0] == result.values[0]


def test_relu_singular_values_deterministic_for_any_number_of_threads():
    rng = np.random.default_rng(10)
    W = rng.standard_normal((16, 4))
    alpha = rng.normal(0.0, 0.3, 16)
    runs = [fr.relu_singular_values(W, 3, bias=alpha, n_starts=300, fit_starts=300,
                                    fit_steps=20, seed=5, n_jobs=jobs) for jobs in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.values, runs[0].values)
        for (U, V), (U0, V0) in zip(other.fits, runs[0].fits):
            np.testing.assert_array_equal(U, U0)
            np.testing.assert_array_equal(V, V0)


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "'k' parameter must be an integer in \\[1, 4\\]"),
    ({"k": 5}, "'k' parameter must be an integer in \\[1, 4\\].*Got 5 instead"),
    ({"k": 2.5}, "'k' parameter must be an integer"),
    ({"k": True}, "'k' parameter must be an integer"),
    ({"k": 2, "n_starts": 0}, "'n_starts' parameter must be an integer >= 1. Got 0 instead"),
    ({"k": 2, "bias": np.zeros(3)}, "'bias' parameter must have shape \\(9,\\)"),
    ({"k": 2, "data": np.ones((5, 3))}, "'data' parameter must have 4 columns"),
    ({"k": 2, "data": np.full((5, 4), np.nan)}, "'data' parameter must contain only finite numbers"),
    ({"k": 2, "fit_steps": -1}, "'fit_steps' parameter must be an integer >= 0"),
    ({"k": 2, "tol": 1.5}, "'tol' parameter must be a float in \\[0, 1\\)"),
])
def test_relu_singular_values_bad_input(kwargs, match):
    W = np.random.default_rng(0).standard_normal((9, 4))
    with pytest.raises(FastReluError, match=match):
        fr.relu_singular_values(W, **kwargs)


@pytest.mark.parametrize("weight, kwargs, match", [
    (np.ones((3, 2)), {"n_starts": 0}, "'n_starts' parameter must be an integer >= 1"),
    (np.ones((3, 2)), {"n_starts": -5}, "'n_starts' parameter must be an integer >= 1"),
    (np.ones((3, 2)), {"max_iter": 0}, "'max_iter' parameter must be an integer >= 1"),
    (np.ones((3, 2)), {"history": 300}, "'history' parameter must be an integer in \\[0, 256\\]"),
    (np.ones((3, 2)), {"seed": -1}, "'seed' parameter must be a non-negative integer"),
    (np.ones(3), {}, "'weight' parameter must be a 2-D array"),
    (np.array([[1.0, np.inf]]), {}, "'weight' parameter must contain only finite numbers"),
    (np.ones((3, 2)), {"bias": [1.0, np.nan, 0.0]}, r"'bias' parameter must contain only real numbers or \+inf \(a neuron that is never active\). Got NaN at index 1"),
])
def test_power_iteration_bad_input(weight, kwargs, match):
    with pytest.raises(FastReluError, match=match):
        fr.relu_power_iteration(weight, **kwargs)


@pytest.mark.parametrize("max_iter", [3, 1000])
def test_a_start_counts_as_converged_only_where_its_gap_is_below_tol(max_iter):
    # the flag beside the number: a start stopped by max_iter is never called converged,
    # and a converged start's Frank-Wolfe gap at the returned point is below tol
    rng = np.random.default_rng(50)
    W = rng.standard_normal((20, 5))
    for seed in range(6):
        result = fr.relu_power_iteration(W, n_starts=1, seed=seed, max_iter=max_iter, per_start=True)
        G = W.T @ np.maximum(W @ result.x, 0.0)  # ascent direction of |ReLU(W x)|^2 / 2
        gap = (np.linalg.norm(G) - G @ result.x) / np.linalg.norm(G)
        assert result.n_converged + result.n_max_iter == 1
        if result.n_converged:
            assert result.status[0] == 0 and gap <= result.tol * (1 + 1e-6) + 1e-15
        else:
            assert result.status[0] == 1 and result.n_iter[0] == max_iter
    assert (result.n_converged == 1) == (max_iter == 1000)


# --------------------------------------------------------------------------- never-active neurons


def _with_never_active_rows():
    """A 9 x 3 layer whose rows 2, 5 and 6 have bias +inf, and the 6 x 3 layer without them."""
    rng = np.random.default_rng(31)
    W = rng.standard_normal((9, 3))
    alpha = rng.normal(0, 0.3, 9)
    alpha[[2, 5, 6]] = np.inf
    keep = np.isfinite(alpha)
    return W, alpha, W[keep], alpha[keep], keep


def test_power_iteration_with_never_active_neurons_is_that_of_the_layer_without_them():
    W, alpha, W_kept, alpha_kept, _ = _with_never_active_rows()
    bias_before = alpha.copy()
    full = fr.relu_power_iteration(W, bias=alpha, n_starts=200, seed=3, n_jobs=1)
    kept = fr.relu_power_iteration(W_kept, bias=alpha_kept, n_starts=200, seed=3, n_jobs=1)
    assert full.s1 == kept.s1 and np.array_equal(full.x, kept.x)
    assert np.array_equal(full.values, kept.values) and np.isfinite(full.s1)
    np.testing.assert_array_equal(alpha, bias_before)  # the caller's bias is untouched
    # the attained value is the objective of the full layer at x (inf rows give 0 - 0)
    x = full.x
    value = np.linalg.norm(np.maximum(W @ x - alpha, 0) - np.maximum(-alpha, 0))
    assert value == pytest.approx(full.s1, rel=1e-12)


def test_singular_values_with_never_active_neurons_are_those_of_the_layer_without_them():
    W, alpha, W_kept, alpha_kept, keep = _with_never_active_rows()
    X = np.random.default_rng(4).standard_normal((50, 3))
    for data in (None, X):
        full = fr.relu_singular_values(W, 3, bias=alpha, data=data, n_starts=200,
                                       fit_starts=50, fit_steps=5, seed=2, n_jobs=1)
        kept = fr.relu_singular_values(W_kept, 3, bias=alpha_kept, data=data, n_starts=200,
                                       fit_starts=50, fit_steps=5, seed=2, n_jobs=1)
        assert np.array_equal(full.values, kept.values) and np.isfinite(full.values).all()
        assert np.array_equal(full.sigma, kept.sigma) and full.kinds == kept.kinds
        for (U, V), (U_kept, V_kept) in zip(full.fits, kept.fits):
            assert U.shape == (9, V.shape[0])  # one row of L per neuron, as documented
            assert np.array_equal(U[keep], U_kept) and not U[~keep].any()
            assert np.array_equal(V, V_kept)


def test_a_layer_with_no_neuron_that_can_be_active_has_s_equal_to_zero():
    W = np.random.default_rng(5).standard_normal((4, 3))
    result = fr.relu_power_iteration(W, bias=np.inf, n_starts=20, seed=0)
    assert result.s1 == 0.0 and result.n_zero == 20 and result.n_converged == 0
    svals = fr.relu_singular_values(W, 1, bias=np.full(4, np.inf), seed=0)
    assert svals.values[0] == 0.0 and svals.upper[0] == 0.0
    with pytest.raises(FastReluError, match=r"'k' parameter must be an integer in \[1, 1\] \(at most min\(m, n\) over the 0 of 4 neurons"):
        fr.relu_singular_values(W, 2, bias=np.inf)


@pytest.mark.parametrize("bias, message", [
    (np.array([0.0, np.nan, 0.0, 0.0]), "Got NaN at index 1"),
    (np.array([0.0, 0.0, -np.inf, 0.0]), r"Got -inf at index 2, which would make the neuron always active"),
])
def test_spectral_bias_refuses_nan_and_minus_infinity(bias, message):
    W = np.random.default_rng(6).standard_normal((4, 3))
    with pytest.raises(FastReluError, match=message):
        fr.relu_power_iteration(W, bias=bias, n_starts=5)
    with pytest.raises(FastReluError, match=message):
        fr.relu_singular_values(W, 1, bias=bias)


def test_power_iteration_of_a_large_layer_ascends_its_starts_in_groups_alike_on_any_threads():
    # from n = 256 a few starts are ascended in groups (here 16 of 40 starts; of 16
    # starts, 8) so that they keep both cores busy; the groups are fixed by n and
    # n_starts, so the bits do not depend on the threads
    from fastrelu._spectral.power import POWER_GROUP, starts_per_call

    rng = np.random.default_rng(256)
    W = rng.standard_normal((384, 256))
    alpha = rng.normal(0.0, 1.0, 384)
    assert starts_per_call(256, 40) == 16 and starts_per_call(255, 40) == 256
    assert starts_per_call(256, 16) == POWER_GROUP == 8 and starts_per_call(256, 8) == 8
    assert starts_per_call(4096, 64) == 32 and starts_per_call(4096, 10_000) == 256
    runs = [fr.relu_power_iteration(W, bias=alpha, n_starts=40, seed=3, max_iter=60,
                                    history=20, n_jobs=jobs) for jobs in (1, 2)]
    for name in ("s1", "x", "values", "n_iter", "status", "history", "best_start"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
    one = runs[0]
    assert one.s1 == np.max(one.values) and one.values[one.best_start] == one.s1
    # the recorded history rows belong to starts 0..19, across the first two groups
    assert np.isfinite(one.history[:, 0]).all()
    np.testing.assert_allclose(one.history[np.arange(20), one.n_iter[:20]], one.values[:20],
                               rtol=1e-12)


def test_leading_singular_triplets_by_lanczos_equal_the_svds(monkeypatch):
    # forced for small matrices (a low work threshold): values to 1e-13, vectors spanning
    # the same directions (up to sign, the values being distinct), tall and wide
    from fastrelu._core import frames

    monkeypatch.setattr(frames, "LANCZOS_NORM_WORK", 0)
    rng = np.random.default_rng(12)
    for shape in ((300, 60), (50, 240)):
        A = rng.standard_normal(shape) * np.geomspace(1.0, 0.1, shape[1])
        left, values, right = frames.leading_singular(A, 4)
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        np.testing.assert_allclose(values, s[:4], rtol=1e-13)
        np.testing.assert_allclose(np.abs(np.sum(left * U[:, :4], axis=0)), 1.0, atol=1e-9)
        np.testing.assert_allclose(np.abs(np.sum(right * Vt[:4], axis=1)), 1.0, atol=1e-9)
        assert frames.leading_singular(A, min(shape))[1].size == min(shape)  # the SVD's
    for scale in (1e200, 1e-300):  # products with A^T A would overflow or underflow
        A = scale * rng.standard_normal((300, 60))
        np.testing.assert_allclose(frames.leading_singular(A, 3)[1],
                                   np.linalg.svd(A, compute_uv=False)[:3], rtol=1e-13)
    assert not frames.leading_singular(np.zeros((300, 60)), 2)[1].any()


def test_relu_singular_values_on_data_are_the_same_with_lanczos_triplets(monkeypatch):
    # on data the fits start from the truncated SVD: Lanczos' triplets give the same
    # bounds (the fits are deterministic from their start)
    from fastrelu._core import frames

    rng = np.random.default_rng(2)
    W, X = rng.standard_normal((300, 60)), rng.standard_normal((200, 60))
    reference = fr.relu_singular_values(W, 3, data=X, fit_steps=40, seed=0, n_jobs=1)
    monkeypatch.setattr(frames, "LANCZOS_NORM_WORK", 0)
    again = fr.relu_singular_values(W, 3, data=X, fit_steps=40, seed=0, n_jobs=1)
    np.testing.assert_allclose(again.sigma, reference.sigma, rtol=1e-13)
    np.testing.assert_allclose(again.values, reference.values, rtol=1e-10)
