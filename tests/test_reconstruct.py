import numpy as np
import pytest
from conftest import spans

import fastrelu as fr

METHODS = ["dual", "basis", "frame"]


@pytest.fixture(autouse=True, params=["lanes", "blocked"])
def solver_path(request, monkeypatch):
    """Every test runs on both paths of the dual, frame and least-squares solves: the
    SIMD lanes and, one sample at a time, BLAS dsyrk with LAPACK (the path of large n;
    forced here at small n)."""
    import fastrelu._reconstruct.driver as driver

    monkeypatch.setattr(driver, "SOLVE_LANES_MAX_N", 10**9 if request.param == "lanes" else 0)
    return request.param


def _unit(rng, N, n):
    X = rng.standard_normal((N, n))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _relative_error(x, X):
    return np.linalg.norm(x - X, axis=1) / np.linalg.norm(X, axis=1)


@pytest.fixture(scope="module")
def layer_200x50():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((200, 50))
    X = rng.standard_normal((600, 50))
    # the data-domain MCBE bias makes every one of these points injective (THEORY §3);
    # strictly below it, because at the extreme points a basis row sits exactly at its
    # threshold, where its zero output hides it from the reconstruction
    alpha = fr.mcbe(W, fr.Data(X)).alpha - 1e-6
    return fr.ReLULayer(W, alpha), X


@pytest.mark.parametrize("method", METHODS)
def test_exact_recovery_on_data_with_the_mcbe_bias(layer_200x50, method):
    layer, X = layer_200x50
    result = fr.reconstruct(layer, layer(X), method)
    assert result.spans.all()
    # 1e-10 where the system is well conditioned; beyond, the normal equations of the
    # dual and frame methods lose cond^2 * eps, a basis solve cond * eps
    power = 1 if method == "basis" else 2
    scale = np.maximum(1.0, (result.cond / 100.0) ** power)
    error = _relative_error(result.x, X)
    if method == "frame":  # to its tolerance, where it converged within max_iter
        assert result.converged.mean() > 0.75  # the rest hit max_iter (slow rates)
        np.testing.assert_array_equal(result.ok, result.converged)
        assert result.n_failed == np.count_nonzero(~result.converged)
        assert (error[result.ok] <= 1e-9 * scale[result.ok]).all()
    else:
        assert result.ok.all() and result.n_failed == 0
        assert (error <= 1e-10 * scale).all()
        assert np.median(result.cond) < (100 if method == "dual" else 1e4)
    assert np.isfinite(result.cond).all() and (result.cond >= 1).all()
    if method == "frame":
        assert (result.iterations > 0).all()
        np.testing.assert_array_equal(result.converged, result.residual <= result.tol)
    else:
        assert result.iterations is None


@pytest.mark.parametrize("domain", ["sphere", "ball"])
@pytest.mark.parametrize("method", METHODS)
def test_recovery_on_sphere_and_ball_inputs(domain, method):
    rng = np.random.default_rng(1)
    n, m = 8, 64
    W = rng.standard_normal((m, n))
    if domain == "sphere":
        alpha = fr.mcbe(W, fr.Sphere(n), 200_000, seed=2, margin="covering").alpha
        X = _unit(rng, 2000, n)
    else:
        alpha = fr.mcbe(W, fr.Ball(n, 2.0), 200_000, seed=2, margin="covering").alpha
        X = _unit(rng, 2000, n) * 2.0 * rng.random((2000, 1)) ** (1 / n)
    layer = fr.ReLULayer(W, alpha)
    result = fr.reconstruct(layer, layer(X), method)
    assert result.spans.all()
    tol = 1e-10 if method != "frame" else 1e-8
    good = result.ok
    assert good.mean() > 0.99
    assert _relative_error(result.x[good], X[good]).max() <= tol


@pytest.mark.parametrize("method", METHODS)
def test_recovery_with_the_pbe_bias(method):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((24, 4))
    layer = fr.ReLULayer(W, fr.pbe(W).alpha)
    X = _unit(rng, 3000, 4) * rng.uniform(0.5, 1.0, (3000, 1))
    layer = fr.ReLULayer(W, np.minimum(fr.pbe(W, fr.Ball(4)).alpha, 0.0))
    result = fr.reconstruct(layer, layer(X), method)
    assert result.ok.all()
    assert _relative_error(result.x, X).max() <= (1e-10 if method != "frame" else 1e-8)


def test_dual_agrees_with_lstsq_per_sample_including_failures():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((30, 6))
    layer = fr.ReLULayer(W, rng.normal(0.8, 0.3, 30))  # large bias: some points lose rank
    X = rng.standard_normal((800, 6))
    Y = layer(X)
    result = fr.reconstruct(layer, Y, "dual")
    assert 0 < result.n_failed < len(X)
    for s in range(len(X)):
        active = Y[s] > 0
        if not active.any():
            np.testing.assert_array_equal(result.x[s], 0.0)
            continue
        expected = np.linalg.lstsq(W[active], Y[s, active] + layer.bias[active], rcond=None)[0]
        np.testing.assert_allclose(result.x[s], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_ok_flags_match_spanning_on_a_non_injective_layer(method):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((16, 5))
    layer = fr.ReLULayer(W, rng.normal(0.9, 0.2, 16))
    X = rng.standard_normal((1500, 5))
    Y = layer(X)
    result = fr.reconstruct(layer, Y, method, cond="exact")
    rank_ok = spans(W, Y > 0)
    assert 0.05 < rank_ok.mean() < 0.95
    # spanning, with a condition number below 1 / span_tol
    cond = np.array([np.linalg.cond(W[row]) if ok else np.inf for row, ok in zip(Y > 0, rank_ok)])
    if method == "basis":
        np.testing.assert_array_equal(result.spans[~rank_ok], False)
        assert (result.spans == rank_ok).mean() > 0.99
    else:
        np.testing.assert_array_equal(result.spans, rank_ok & (cond < 1e6))
        np.testing.assert_allclose(result.cond[result.spans], cond[result.spans], rtol=1e-8)
    assert not (result.ok & ~result.spans).any()
    good = result.ok
    assert _relative_error(result.x[good], X[good]).max() <= (1e-9 if method != "frame" else 1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_single_vector_and_batch_agree_and_threads_do_not_matter(layer_200x50, method):
    layer, X = layer_200x50
    Y = layer(X[:70])
    batch = fr.reconstruct(layer, Y, method, n_jobs=1)
    for jobs in (2, 3):
        other = fr.reconstruct(layer, Y, method, n_jobs=jobs)
        np.testing.assert_array_equal(batch.x, other.x)
        np.testing.assert_array_equal(batch.cond, other.cond)
    # a sample's bits do not depend on the rest of its batch
    np.testing.assert_array_equal(fr.reconstruct(layer, Y[3:41], method).x, batch.x[3:41])
    single = fr.reconstruct(layer, Y[5], method)
    assert single.x.shape == (50,) and single.ok is True and isinstance(single.cond, float)
    np.testing.assert_array_equal(single.x, batch.x[5])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 9, 17])
def test_dual_agrees_with_lstsq_for_every_tile_shape(n):
    # the Gram tiles are 4 rows by 8 (or 4) columns and the lanes 4 (or 2) samples wide:
    # dimensions and batch sizes that are not multiples of either
    rng = np.random.default_rng(n)
    W = rng.standard_normal((4 * n + 3, n))
    layer = fr.ReLULayer(W, rng.normal(0.3, 0.3, W.shape[0]))
    X = rng.standard_normal((37, n))
    Y = layer(X)
    result = fr.reconstruct(layer, Y, "dual")
    for s in range(len(X)):
        active = Y[s] > 0
        expected = np.linalg.lstsq(W[active], Y[s, active] + layer.bias[active], rcond=None)[0]
        np.testing.assert_allclose(result.x[s], expected, rtol=1e-9, atol=1e-9)
    assert result.ok.any()


@pytest.mark.parametrize("method", ["dual", "frame"])
def test_mostly_active_samples_use_the_downdate(method, monkeypatch):
    # a negative bias keeps most rows active: S_I = S - (inactive rows' Gram matrix)
    import fastrelu._reconstruct.driver as driver

    rng = np.random.default_rng(13)
    W = rng.standard_normal((60, 12))
    layer = fr.ReLULayer(W, np.full(60, -1.0))
    X = rng.standard_normal((300, 12)) * (3.0 / np.sqrt(12))
    Y = layer(X)
    active = (Y > 0).sum(axis=1)
    assert (2 * active > 60).mean() > 0.9 and (2 * active <= 60).any()
    result = fr.reconstruct(layer, Y, method)
    assert result.ok.all()
    assert _relative_error(result.x, X).max() <= (1e-12 if method == "dual" else 1e-9)
    monkeypatch.setattr(driver, "DOWNDATE", False)
    direct = fr.reconstruct(layer, Y, method)
    np.testing.assert_allclose(result.x, direct.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.cond, direct.cond, rtol=1e-10)


def test_too_few_active_rows_get_the_same_least_squares_answer_from_every_method():
    # 3 of 5 rows active (more than half, and heavier: the down-date applies) in R^4: no
    # method can span, and each gives pinv(W_I) (y_I + alpha_I) from S_I summed directly
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 4))
    W[3:] *= 0.5
    mask = np.zeros((6, 5), bool)
    mask[:, :3] = True
    Y = np.abs(rng.standard_normal((6, 5))) * mask
    layer = fr.ReLULayer(W)
    expected = (np.linalg.pinv(W[:3]) @ Y[:, :3].T).T
    results = [fr.reconstruct(layer, Y, method, active=mask) for method in ("dual", "frame", "basis")]
    for result in results:
        assert not result.ok.any()
        np.testing.assert_allclose(result.x, expected, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(results[0].x, results[1].x)
    np.testing.assert_allclose(results[0].residual, results[1].residual, rtol=0, atol=1e-15)


def test_an_ill_conditioned_basis_among_well_conditioned_active_rows_gives_their_least_squares_answer():
    # The most correlated basis (rows 0-2: row 1 within 3e-6 of row 0's direction, kept by
    # the rank tolerance 1e-6) has a condition number above 1 / span_tol, so "basis" does
    # not claim the answer (spans and ok False, cond the basis's); its x is the
    # least-squares answer of all active rows, which span well: the input itself.
    rng = np.random.default_rng(3)
    n = 3
    u = np.array([1.0, 0.0, 0.0])
    W = np.vstack([u, u + 3e-6 * np.array([0.0, 1.0, 0.0]), [0.0, 0.0, 1.0],
                   rng.standard_normal((6, n))])
    x = np.array([1.0, 0.2, 0.3])
    pre = W @ x
    bias = np.concatenate([pre[:3] - 10.0, pre[3:] - rng.uniform(0.1, 1.0, 6)])  # all active
    layer = fr.ReLULayer(W, bias)
    result = fr.reconstruct(layer, layer(x), "basis")
    assert result.spans is False and result.ok is False and result.cond >= 1e6
    np.testing.assert_allclose(result.x, x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(result.x, np.linalg.pinv(W) @ (layer(x) + bias), rtol=0, atol=1e-13)


def test_scratch_that_cannot_be_allocated_in_the_basis_fallback_is_an_error(monkeypatch):
    # the fallback's solver marks an output it could not allocate scratch for with 255;
    # that must reach the caller as MemoryError, never as a quiet ok = False
    from fastrelu._reconstruct import driver

    original = driver._subframe

    def out_of_memory(W, alpha, Y, mask, mode, settings, index, x, ok, *rest, **kwargs):
        original(W, alpha, Y, mask, mode, settings, index, x, ok, *rest, **kwargs)
        ok[index] = 255

    rng = np.random.default_rng(3)  # the layer of the test above
    u = np.array([1.0, 0.0, 0.0])
    W = np.vstack([u, u + 3e-6 * np.array([0.0, 1.0, 0.0]), [0.0, 0.0, 1.0],
                   rng.standard_normal((6, 3))])
    x = np.array([1.0, 0.2, 0.3])
    pre = W @ x
    layer = fr.ReLULayer(W, np.concatenate([pre[:3] - 10.0, pre[3:] - rng.uniform(0.1, 1.0, 6)]))
    assert fr.reconstruct(layer, layer(x), "basis").cond >= 1e6  # the fallback runs
    monkeypatch.setattr(driver, "_subframe", out_of_memory)
    with pytest.raises(MemoryError, match="scratch memory"):
        fr.reconstruct(layer, layer(x), "basis")


@pytest.mark.parametrize("method, cond", [("dual", "estimate"), ("dual", "exact"),
                                          ("frame", "exact")])
@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e3, 1e5])
def test_rank_deficient_active_rows_beside_rows_of_any_size(method, cond, scale):
    # 9 or 11 active rows in a hyperplane: whether S_I is summed directly or down-dated
    # from S (light inactive rows), round-off must not make it look spanning, and the
    # answer is pinv(W_I) (y_I + alpha_I); heavy inactive rows must not spoil either
    for seed in range(20):
        rng = np.random.default_rng(seed)
        W = rng.standard_normal((14, 5))
        hyperplane = 11 if scale < 1 else 9
        W[:hyperplane, 4] = 0.0
        W[hyperplane:] *= scale
        mask = np.zeros(14, bool)
        mask[:hyperplane] = True
        y = np.abs(rng.standard_normal(14)) * mask
        result = fr.reconstruct(fr.ReLULayer(W), y, method, active=mask, cond=cond)
        assert result.ok is False
        expected = np.linalg.pinv(W[mask]) @ y[mask]
        np.testing.assert_allclose(result.x, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        # spanning with the fifth coordinate back: exact whatever the inactive rows weigh
        W = W.copy()
        W[:hyperplane, 4] = rng.standard_normal(hyperplane)
        x = rng.standard_normal(5)
        level = np.abs(rng.standard_normal(14)) + 0.1  # the outputs of the active rows
        layer = fr.ReLULayer(W, np.where(mask, W @ x - level, W @ x + 1.0))
        result = fr.reconstruct(layer, layer(x), method, active=mask, cond=cond)
        assert result.ok is True
        assert np.linalg.norm(result.x - x) <= 1e-12 * np.linalg.norm(x) * result.cond**2


@pytest.mark.parametrize("method, cond", [("dual", "estimate"), ("dual", "exact"),
                                          ("frame", "exact")])
def test_failing_samples_do_not_touch_their_neighbours(method, cond):
    # dual runs several samples in the lanes of one SIMD group; singular ones among them
    rng = np.random.default_rng(12)
    W = rng.standard_normal((16, 5))
    layer = fr.ReLULayer(W, rng.normal(0.9, 0.2, 16))
    Y = layer(rng.standard_normal((60, 5)))
    batch = fr.reconstruct(layer, Y, method, cond=cond)
    assert 0 < batch.n_failed < 60
    for offset in (1, 2, 3):
        part = fr.reconstruct(layer, Y[offset:], method, cond=cond)
        np.testing.assert_array_equal(part.x, batch.x[offset:])
        np.testing.assert_array_equal(part.cond, batch.cond[offset:])
        np.testing.assert_array_equal(part.ok, batch.ok[offset:])
        np.testing.assert_array_equal(part.residual, batch.residual[offset:])
    for s in range(0, 60, 7):
        alone = fr.reconstruct(layer, Y[s], method, cond=cond)
        np.testing.assert_array_equal(alone.x, batch.x[s])
        assert alone.ok == batch.ok[s]


def test_exact_condition_numbers_and_estimates():
    rng = np.random.default_rng(6)
    W = rng.standard_normal((40, 6))
    layer = fr.ReLULayer(W, np.full(40, -0.2))
    X = rng.standard_normal((200, 6))
    Y = layer(X)
    exact = fr.reconstruct(layer, Y, "dual", cond="exact")
    estimate = fr.reconstruct(layer, Y, "dual")
    frame = fr.reconstruct(layer, Y, "frame")
    for s in range(len(X)):
        truth = np.linalg.cond(W[Y[s] > 0])
        assert exact.cond[s] == pytest.approx(truth, rel=1e-8)
        assert frame.cond[s] == pytest.approx(truth, rel=1e-8)
        # the 1-norm estimate of cond(S_I) is within [1/n, n] of the 2-norm value
        assert truth / np.sqrt(6) * 0.999 <= estimate.cond[s] <= truth * np.sqrt(6) * 1.001
    basis = fr.reconstruct(layer, Y, "basis", cond="exact")
    assert (basis.cond >= 1).all()


def test_caller_given_active_mask():
    W = np.vstack([np.eye(2), -np.eye(2), [[1.0, 1.0]]])
    layer = fr.ReLULayer(W)
    x = np.array([1.0, 0.0])  # row 1 and row 3 sit exactly at zero: active
    y = layer(x)
    default = fr.reconstruct(layer, y)
    assert default.ok is True  # rows 0 and 4 are positive and span
    mask = np.array([True, True, False, True, False])
    given = fr.reconstruct(layer, y, active=mask)
    np.testing.assert_allclose(given.x, x, atol=1e-14)


def test_invert_a_stack_of_layers():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 6))
    W1 = rng.standard_normal((30, 6))
    layer1 = fr.ReLULayer(W1, fr.mcbe(W1, fr.Data(X)).alpha - 1e-6)
    H = layer1(X)
    W2 = rng.standard_normal((90, 30))
    layer2 = fr.ReLULayer(W2, fr.mcbe(W2, fr.Data(H)).alpha - 1e-6)
    result = fr.invert([layer1, layer2], layer2(H))
    assert result.ok.all() and (result.failed_at == -1).all()
    assert _relative_error(result.x, X).max() <= 1e-8
    single = fr.invert([layer1, layer2], layer2(H)[0])
    assert single.ok is True and single.failed_at == -1
    # a second layer that loses information at some points
    lossy = fr.ReLULayer(W2, np.full(90, 4.0))
    broken = fr.invert([layer1, lossy], lossy(H))
    assert (~broken.ok).any() and set(np.unique(broken.failed_at)) <= {-1, 0, 1}
    np.testing.assert_array_equal(broken.failed_at == 1, ~broken.layers[1].ok)


def test_invert_never_trusts_round_off_as_activity():
    # Layer 2 barely spans (three of its input directions are scaled by 1e-5, cond(W_I)
    # about 6e5, accepted with span_tol=1e-7): its reconstructed outputs of layer 1
    # carry errors far above 1e-9, and an inactive neuron of layer 1 must not be read as
    # active from them (a threshold of 1e-9 does, and gives errors of order 1).
    rng = np.random.default_rng(11)
    X = rng.standard_normal((300, 6))
    W1 = rng.standard_normal((30, 6))
    layer1 = fr.ReLULayer(W1, fr.mcbe(W1, fr.Data(X)).alpha - 1e-6)
    H = layer1(X)
    W2 = rng.standard_normal((90, 30))
    W2[:, :3] *= 1e-5
    layer2 = fr.ReLULayer(W2, fr.mcbe(W2, fr.Data(H)).alpha - 1e-6)
    result = fr.invert([layer1, layer2], layer2(H), span_tol=1e-7)
    assert result.ok.mean() > 0.9
    assert _relative_error(result.x[result.ok], X[result.ok]).max() <= 1e-7


def test_invert_with_the_frame_algorithm_needs_convergence():
    # All neurons active, cond(W_I) in the hundreds: the frame algorithm cannot reach its
    # tolerance in 200 steps, and then the input is not reported as recovered.
    rng = np.random.default_rng(12)
    X = rng.standard_normal((50, 6))
    W1 = rng.standard_normal((20, 6)) @ np.diag([1, 1, 1, 1, 1, 0.01])
    W2 = rng.standard_normal((40, 20))
    layers = [fr.ReLULayer(W1, np.full(20, -100.0)), fr.ReLULayer(W2, np.full(40, -1000.0))]
    Y = layers[1](layers[0](X))
    slow = fr.invert(layers, Y, "frame", max_iter=200)
    assert not slow.ok.any() and (slow.failed_at >= 0).all()
    assert not slow.layers[slow.failed_at[0]].converged[0]
    dual = fr.invert(layers, Y, "dual")
    assert dual.ok.all() and _relative_error(dual.x, X).max() <= 1e-9


def _gaussian_layer_8x4(seed):
    rng = np.random.default_rng(seed)
    layer = fr.ReLULayer(rng.standard_normal((8, 4)), rng.normal(0.0, 0.5, 8))
    X = rng.standard_normal((3000, 4))
    return layer, X


@pytest.mark.parametrize("seed", [3, 5])
def test_frame_answers_that_missed_their_tolerance_are_not_ok(seed):
    # cond(W_I) up to ~100 with 4 to 8 active rows: some samples need more than
    # max_iter steps. They span but were not recovered; the old flag called them ok
    # with relative errors up to ~0.9.
    layer, X = _gaussian_layer_8x4(seed)
    result = fr.reconstruct(layer, layer(X), "frame")
    error = _relative_error(result.x, X)
    stopped = result.spans & (result.residual > result.tol)
    assert stopped.sum() >= 50 and error[stopped].max() > 0.3
    np.testing.assert_array_equal(result.ok, result.spans & (result.residual <= result.tol))
    np.testing.assert_array_equal(result.converged, result.ok)
    assert not result.ok[stopped].any() and result.n_failed == np.count_nonzero(~result.ok)
    np.testing.assert_array_equal(result.residual_bound, np.where(result.spans, result.tol, np.inf))
    # ok means recovered: the error is at most cond(S_I) * residual (with room for rounding)
    ok = result.ok
    assert (error[ok] <= 4 * result.cond[ok] ** 2 * result.residual[ok] + 1e-13).all()
    text = result.summary()
    assert text.startswith(f"frame: {ok.sum()} of 3000 inputs recovered, {np.count_nonzero(~result.spans)} not determined")
    assert f"{stopped.sum()} determined but not recovered (the frame algorithm did not reach 1e-12)" in text
    # a whole stack: the frame layer that stopped early is where recovery failed
    inversion = fr.invert(layer, layer(X), "frame")
    np.testing.assert_array_equal(inversion.ok, result.ok)
    np.testing.assert_array_equal(inversion.failed_at, np.where(result.ok, -1, 0))
    single = fr.reconstruct(layer, layer(X[np.flatnonzero(stopped)[0]]), "frame")
    assert single.spans is True and single.ok is False and single.converged == False  # noqa: E712


@pytest.mark.parametrize("method", ["dual", "basis"])
def test_direct_answers_are_ok_where_they_span_and_meet_their_residual_bound(method):
    layer, X = _gaussian_layer_8x4(5)
    result = fr.reconstruct(layer, layer(X), method, cond="exact")
    n = 4
    bound = np.maximum(result.tol, 16 * n * np.finfo(float).eps * result.cond**2)
    np.testing.assert_array_equal(result.residual_bound, np.where(result.spans, bound, np.inf))
    np.testing.assert_array_equal(result.ok, result.spans & (result.residual <= result.residual_bound))
    np.testing.assert_array_equal(result.ok, result.spans)  # exact outputs: every solve holds
    cond = result.cond[result.ok]
    assert (_relative_error(result.x[result.ok], X[result.ok]) <= 1e-12 * np.maximum(1.0, cond**2)).all()
    assert result.converged is None and "determined but not" not in result.summary()


def test_basis_answers_contradicted_by_the_other_active_outputs_are_not_ok():
    # outputs that no input gives: the basis rows alone would accept them
    rng = np.random.default_rng(14)
    layer = fr.ReLULayer(rng.standard_normal((30, 4)), -1.0)  # most rows active
    X = rng.standard_normal((200, 4))
    Y = layer(X)
    noisy = np.where(Y > 0, Y + 1e-3 * np.abs(rng.standard_normal(Y.shape)), 0.0)
    result = fr.reconstruct(layer, noisy, "basis")
    assert result.spans.all() and not result.ok.any()
    assert (result.residual > result.residual_bound).all()
    assert fr.reconstruct(layer, Y, "basis").ok.all()


def _with_never_active_rows(seed, never):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((20, 5))
    alpha = rng.normal(-0.2, 0.3, 20)
    alpha[never] = np.inf
    return fr.ReLULayer(W, alpha), rng.standard_normal((400, 5))


@pytest.mark.parametrize("method", METHODS)
def test_neurons_with_an_infinite_bias_are_never_used(method, monkeypatch):
    import fastrelu._reconstruct.driver as driver

    never = [0, 3, 11, 12]
    layer, X = _with_never_active_rows(15, never)
    Y = layer(X)
    assert (Y[:, never] == 0).all()
    result = fr.reconstruct(layer, Y, method)
    assert np.isfinite(result.residual).all() and np.isfinite(result.x).all()
    assert 0.3 < result.spans.mean() < 1
    # the same as without those rows (summing S_I from the active rows, as the layer
    # without them may choose to down-date elsewhere: then the bits are the same)
    monkeypatch.setattr(driver, "DOWNDATE", False)
    result = fr.reconstruct(layer, Y, method)
    keep = np.setdiff1d(np.arange(20), never)
    reduced = fr.reconstruct(fr.ReLULayer(layer.weight[keep], layer.bias[keep]), Y[:, keep], method)
    np.testing.assert_array_equal(result.spans, reduced.spans)
    np.testing.assert_array_equal(result.ok, reduced.ok)
    np.testing.assert_array_equal(result.x, reduced.x)
    assert _relative_error(result.x[result.ok], X[result.ok]).max() <= 1e-8
    assert result.ok.sum() >= 0.9 * result.spans.sum()


def test_inverting_through_layers_with_never_active_neurons(monkeypatch):
    import fastrelu._reconstruct.driver as driver

    monkeypatch.setattr(driver, "DOWNDATE", False)  # S_I summed alike with and without them
    rng = np.random.default_rng(16)
    X = rng.standard_normal((300, 4))
    W1 = rng.standard_normal((24, 4))
    alpha1 = fr.mcbe(W1, fr.Data(X)).alpha - 1e-6
    alpha1[[2, 9]] = np.inf
    layer1 = fr.ReLULayer(W1, alpha1)
    H = layer1(X)
    W2 = rng.standard_normal((60, 24))
    alpha2 = fr.mcbe(W2, fr.Data(H)).alpha - 1e-6
    alpha2[[0, 5, 7]] = np.inf
    layer2 = fr.ReLULayer(W2, alpha2)
    Y = layer2(H)
    result = fr.invert([layer1, layer2], Y)
    assert result.ok.mean() > 0.8
    assert _relative_error(result.x[result.ok], X[result.ok]).max() <= 1e-8
    # as if the never-active neurons were not there: the outputs of layer 1's are known
    # to be 0, so layer 2 is solved for the other 22 coordinates only
    keep1, keep2 = np.setdiff1d(np.arange(24), [2, 9]), np.setdiff1d(np.arange(60), [0, 5, 7])
    reduced = fr.invert([fr.ReLULayer(W1[keep1], alpha1[keep1]),
                         fr.ReLULayer(W2[keep2][:, keep1], alpha2[keep2])], Y[:, keep2])
    np.testing.assert_array_equal(result.ok, reduced.ok)
    np.testing.assert_array_equal(result.x, reduced.x)
    assert (result.layers[1].x[:, [2, 9]] == 0).all()


def test_outputs_and_masks_that_make_a_never_active_neuron_active_are_refused():
    layer, X = _with_never_active_rows(17, [1, 4])
    Y = layer(X[:5])
    bad = Y.copy()
    bad[[0, 3], 4] = 0.5
    with pytest.raises(fr.FastReluError, match=r"'Y' parameter must hold outputs of this layer: neurons 4 have bias \+inf .* rows 0, 3"):
        fr.reconstruct(layer, bad)
    mask = Y > 0
    mask[2, 1] = True
    with pytest.raises(fr.FastReluError, match=r"'active' parameter must not mark neurons whose bias is \+inf .*neurons 1 marked active in rows 2"):
        fr.reconstruct(layer, Y, active=mask)


# -- bad input ------------------------------------------------------------------------

def test_a_build_for_another_kind_of_cpu_is_refused_with_a_clear_error(tmp_path, monkeypatch, capsys):
    import fastrelu._reconstruct.driver as driver
    from fastrelu._core import _frame
    from fastrelu.cli import main

    monkeypatch.setattr(_frame, "simd_build_runs_here", lambda: (True, False))
    monkeypatch.setattr(driver, "_solvers", None)
    W = np.random.default_rng(8).standard_normal((5, 2))
    layer = fr.ReLULayer(W, np.full(5, -10.0))  # every row active
    Y = layer(np.ones((3, 2)))
    with pytest.raises(fr.BuildError, match="compiled for CPUs with AVX2 and FMA .* FASTRELU_PORTABLE=1"):
        fr.reconstruct(layer, Y)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "Y.npy", Y)
    code = main(["reconstruct", str(tmp_path / "W.npy"), "--outputs", str(tmp_path / "Y.npy"),
                 "--out", str(tmp_path / "X.npy")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "FASTRELU_PORTABLE=1" in err
    monkeypatch.setattr(_frame, "simd_build_runs_here", lambda: (False, False))
    assert fr.reconstruct(layer, Y).ok.all()


def test_bad_input():
    W = np.random.default_rng(8).standard_normal((5, 2))
    layer = fr.ReLULayer(W)
    Y = np.abs(np.random.default_rng(9).standard_normal((4, 5)))
    with pytest.raises(fr.FastReluError, match=r"'Y' parameter must have shape \(N, 5\).*Y.shape=\(4, 3\)"):
        fr.reconstruct(layer, Y[:, :3])
    negative = Y.copy()
    negative[[1, 3], 0] = -0.5
    with pytest.raises(fr.FastReluError, match="outputs of a ReLU layer.*negative entries in rows 1, 3"):
        fr.reconstruct(layer, negative)
    nan = Y.copy()
    nan[2, 4] = np.nan
    with pytest.raises(fr.FastReluError, match="finite.*rows 2"):
        fr.reconstruct(layer, nan)
    with pytest.raises(fr.FastReluError, match="'Y' parameter must hold real numbers"):
        fr.reconstruct(layer, Y + 0j)
    with pytest.raises(fr.FastReluError, match="'bias' parameter must have shape \\(5,\\)"):
        fr.ReLULayer(W, np.zeros(4))
    with pytest.raises(fr.FastReluError, match="must be a frame for R\\^3.*rank"):
        fr.reconstruct(fr.ReLULayer(np.ones((6, 3))), np.ones((2, 6)))
    with pytest.raises(fr.FastReluError, match="'method' parameter must be one of"):
        fr.reconstruct(layer, Y, "magic")
    with pytest.raises(fr.FastReluError, match="'cond' parameter"):
        fr.reconstruct(layer, Y, cond="maybe")
    with pytest.raises(fr.FastReluError, match="'active' parameter must have the shape"):
        fr.reconstruct(layer, Y, active=np.ones((4, 4), dtype=bool))
    with pytest.raises(fr.FastReluError, match="'active' parameter must be a boolean"):
        fr.reconstruct(layer, Y, active=np.ones((4, 5)))
    with pytest.raises(fr.FastReluError, match="'layer' parameter must be a fastrelu.ReLULayer"):
        fr.reconstruct(W, Y)
    with pytest.raises(fr.FastReluError, match="'max_iter' parameter"):
        fr.reconstruct(layer, Y, "frame", max_iter=0)
    with pytest.raises(fr.FastReluError, match="must chain"):
        fr.invert([layer, layer], Y)


@pytest.mark.parametrize("method", METHODS)
def test_large_layers_agree_with_the_definition_and_take_the_blocked_path(method, solver_path,
                                                                         monkeypatch):
    # n = 160 is above the lanes' L2 rule for every mode with 512 KiB of L2 per core (on
    # the lanes run, the lanes are forced); a sample mostly active (the down-date) and
    # one with fewer active rows than dimensions (least squares)
    import fastrelu._reconstruct.driver as driver

    n, m = 160, 480
    if solver_path == "blocked":
        monkeypatch.setattr(driver, "SOLVE_LANES_MAX_N", None)
        monkeypatch.setattr(driver, "l2_cache_bytes", lambda: 512 * 1024)
        assert driver.solves_blocked(n, method) and driver.solves_blocked(n, "dual")
    rng = np.random.default_rng(160)
    W = rng.standard_normal((m, n))
    layer = fr.ReLULayer(W, -0.3 * np.linalg.norm(W, axis=1))  # about 62% active
    X = rng.standard_normal((9, n))
    X[7] *= 0.2  # about 93% active: S minus the inactive rows' Gram matrix
    Y = layer(X)
    assert 2 * np.count_nonzero(Y[7]) > m
    Y[8, np.argsort(Y[8])[: m - n // 2]] = 0.0  # 80 active rows: no input is determined
    result = fr.reconstruct(layer, Y, method, cond="exact")
    for s in range(len(X)):
        active = Y[s] > 0
        W_I = W[active]
        expected = np.linalg.lstsq(W_I, Y[s, active] + layer.bias[active], rcond=None)[0]
        if method == "basis" and s < 8:
            np.testing.assert_allclose(result.x[s], X[s], rtol=0, atol=1e-8)
        else:
            np.testing.assert_allclose(result.x[s], expected, rtol=0, atol=1e-8)
        singular = np.linalg.svd(W_I, compute_uv=False)
        if method != "basis" and s < 8:
            np.testing.assert_allclose(result.cond[s], singular[0] / singular[-1], rtol=1e-8)
    assert result.ok[:8].all() and not result.ok[8] and not result.spans[8]


def test_the_frame_algorithm_reports_converged_exactly_when_its_loop_stopped_there():
    """The loop's stopping test and ``converged`` compare the same number with tol: a
    rerun with tol set to a residual reached after k steps stops at k steps at the
    latest and is converged; with the next smaller tol it runs to max_iter = k and is
    not."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((30, 6))
    layer = fr.ReLULayer(W, -np.ones(30))
    X = rng.standard_normal((12, 6))
    Y = layer(X)
    first = fr.reconstruct(layer, Y, "frame", max_iter=7)
    assert np.all(first.iterations == 7) and not first.converged.any()
    for j in range(12):
        reached = float(first.residual[j])
        again = fr.reconstruct(layer, Y[j:j + 1], "frame", tol=reached, max_iter=50)
        assert again.converged[0] and again.iterations[0] <= 7
        below = fr.reconstruct(layer, Y[j:j + 1], "frame", tol=np.nextafter(reached, 0), max_iter=7)
        assert not below.converged[0] and below.iterations[0] == 7
