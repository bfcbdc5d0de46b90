import numpy as np
import pytest

import fastrelu as fr
from fastrelu import FastReluError


def conv_matrix(K, N1, N2):
    """The dense matrix of y[o, i, j] = sum_c sum_{a, b} K[o, c, a, b] x[c, (i + a) % N1, (j + b) % N2],
    inputs and outputs flattened in C order (channel, row, column)."""
    c_out, c_in, h, w = K.shape
    A = np.zeros((c_out * N1 * N2, c_in * N1 * N2))
    for o in range(c_out):
        for i in range(N1):
            for j in range(N2):
                row = (o * N1 + i) * N2 + j
                for c in range(c_in):
                    for a in range(h):
                        for b in range(w):
                            A[row, (c * N1 + (i + a) % N1) * N2 + (j + b) % N2] += K[o, c, a, b]
    return A


def test_double_layer_keeps_the_pre_activation():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 3))
    alpha = rng.normal(0.0, 0.5, 7)
    double = fr.double_layer(fr.ReLULayer(W, alpha))
    assert double.shape == (14, 3)
    np.testing.assert_array_equal(double.weight, np.vstack([W, -W]))
    np.testing.assert_array_equal(double.bias, np.concatenate([alpha, -alpha]))
    X = rng.standard_normal((50, 3))
    Y = double(X)
    np.testing.assert_allclose(Y[:, :7] - Y[:, 7:], X @ W.T - alpha, atol=1e-12)
    # injective wherever rank W = n, whatever the bias
    assert fr.pointwise_injectivity(double, X).all()
    explicit = fr.double_layer(fr.ReLULayer(W, alpha), bias2=0.25)
    np.testing.assert_array_equal(explicit.bias[7:], 0.25)
    zero = fr.double_layer(W)
    np.testing.assert_array_equal(zero.bias, 0.0)
    with pytest.raises(FastReluError, match="'bias2' parameter must have shape \\(7,\\)"):
        fr.double_layer(W, bias2=np.ones(3))


def test_dense_pruning_is_the_truncated_svd():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((9, 6))
    sig = np.linalg.svd(W, compute_uv=False)
    result = fr.harmonic_prune(W, keep=0.5)
    assert result.kind == "dense" and result.kept_fraction == 0.5
    np.testing.assert_array_equal(result.kept, [True] * 3 + [False] * 3)
    np.testing.assert_allclose(np.linalg.svd(result.operator, compute_uv=False)[:3], sig[:3])
    assert result.error == pytest.approx(sig[3]) == pytest.approx(np.linalg.norm(W - result.operator, 2))
    by_value = fr.harmonic_prune(W, threshold=sig[2] - 1e-9)
    np.testing.assert_array_equal(by_value.kept, result.kept)
    np.testing.assert_allclose(by_value.operator, result.operator, atol=1e-12)
    full = fr.harmonic_prune(W, keep=1.0)
    assert full.error == 0.0 and full.kept_fraction == 1.0
    np.testing.assert_allclose(full.operator, W, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 2, 3, 3, 5, 4), (2, 3, 2, 3, 4, 6), (2, 2, 1, 1, 3, 3), (1, 1, 2, 2, 4, 4)])
def test_convolution_singular_values_equal_the_dense_operator(shape):
    c_out, c_in, h, w, N1, N2 = shape
    rng = np.random.default_rng(sum(shape))
    K = rng.standard_normal((c_out, c_in, h, w))
    A = conv_matrix(K, N1, N2)
    result = fr.harmonic_prune(K, keep=0.4, input_shape=(N1, N2))
    assert result.kind == "conv2d" and result.input_shape == (N1, N2)
    assert result.singular_values.shape == (N1, N2, min(c_out, c_in))
    dense = np.sort(np.linalg.svd(A, compute_uv=False))[::-1]
    ours = np.sort(result.singular_values.ravel())[::-1]
    np.testing.assert_allclose(dense[:ours.size], ours, atol=1e-12 * dense[0])
    np.testing.assert_allclose(dense[ours.size:], 0.0, atol=1e-12 * dense[0])
    # the pruned kernel is a real N1 x N2 circular kernel whose operator keeps exactly the
    # kept singular values; the operator-norm error is the largest dropped one
    assert result.operator.shape == (c_out, c_in, N1, N2) and result.operator.dtype == np.float64
    pruned = conv_matrix(result.operator, N1, N2)
    dropped = result.singular_values[~result.kept]
    assert result.error == pytest.approx(dropped.max(), rel=1e-12)
    assert np.linalg.norm(A - pruned, 2) == pytest.approx(result.error, rel=1e-10)
    kept = np.sort(result.singular_values[result.kept])[::-1]
    remaining = np.sort(np.linalg.svd(pruned, compute_uv=False))[::-1]
    np.testing.assert_allclose(remaining[:kept.size], kept, atol=1e-11 * dense[0])
    np.testing.assert_allclose(remaining[kept.size:], 0.0, atol=1e-11 * dense[0])
    assert 0.4 <= result.kept_fraction <= 0.4 + 2.0 / result.kept.size
    # conjugate frequencies are kept together
    u, v = np.meshgrid(np.arange(N1), np.arange(N2), indexing="ij")
    np.testing.assert_array_equal(result.kept, result.kept[(-u) % N1, (-v) % N2])


def test_convolution_keep_everything_and_thresholds():
    rng = np.random.default_rng(2)
    K = rng.standard_normal((2, 3, 3, 3))
    full = fr.harmonic_prune(K, keep=1.0, input_shape=(6, 5))
    padded = np.zeros((2, 3, 6, 5))
    padded[:, :, :3, :3] = K
    np.testing.assert_allclose(full.operator, padded, atol=1e-12)
    assert full.error == 0.0
    level = np.median(full.singular_values)
    cut = fr.harmonic_prune(K, threshold=level, input_shape=(6, 5))
    np.testing.assert_array_equal(cut.kept, full.singular_values > level)
    assert cut.error == full.singular_values[full.singular_values <= level].max()
    assert cut.threshold == level


@pytest.mark.parametrize("operator, kwargs, match", [
    (np.ones((2, 2, 2)), {"keep": 0.5}, "'operator' parameter must be a 2-D weight \\(m, n\\) or a 4-D convolution kernel.*ndim=3"),
    (np.ones((1, 2, 2, 2, 2)), {"keep": 0.5}, "ndim=5"),
    (np.ones((2, 2, 3, 3)), {"keep": 0.5}, "'input_shape' parameter must be given for a convolution kernel"),
    (np.ones((2, 2, 3, 3)), {"keep": 0.5, "input_shape": (2, 8)}, "'input_shape' parameter must be two integers \\(N1, N2\\) with N1 >= 3"),
    (np.ones((2, 2, 3, 3)), {"keep": 0.5, "input_shape": (8,)}, "'input_shape' parameter must be two integers"),
    (np.ones((3, 2)), {"keep": 0.5, "input_shape": (4, 4)}, "'input_shape' parameter applies to 4-D convolution kernels only"),
    (np.ones((3, 2)), {"keep": 0.0}, "'keep' parameter must be a float in \\(0, 1\\].*Got 0.0 instead"),
    (np.ones((3, 2)), {"keep": 1.5}, "'keep' parameter must be a float in \\(0, 1\\]"),
    (np.ones((3, 2)), {"threshold": -1.0}, "'threshold' parameter must be a finite real number >= 0"),
    (np.ones((3, 2)), {}, "Exactly one of the 'keep' and 'threshold' parameters"),
    (np.ones((3, 2)), {"keep": 0.5, "threshold": 1.0}, "Exactly one of the 'keep' and 'threshold' parameters"),
    (np.array([[1.0, np.nan]]), {"keep": 0.5}, "'operator' parameter must contain only finite numbers"),
    (np.full((1, 1, 2, 2), np.inf), {"keep": 0.5, "input_shape": (3, 3)}, "'operator' parameter must contain only finite numbers"),
    (np.ones((3, 2)) * 1j, {"keep": 0.5}, "'operator' parameter must hold real numbers"),
])
def test_harmonic_prune_bad_input(operator, kwargs, match):
    with pytest.raises(FastReluError, match=match):
        fr.harmonic_prune(operator, **kwargs)


def test_double_layer_of_a_layer_with_never_active_neurons():
    rng = np.random.default_rng(40)
    W = rng.standard_normal((6, 3))
    alpha = rng.standard_normal(6)
    alpha[[1, 4]] = np.inf
    layer = fr.ReLULayer(W, alpha)
    # the default mirror ReLU(-(W x - alpha)) of a never-active neuron would be +inf
    with pytest.raises(fr.FastReluError, match=r"'layer' parameter must have a finite bias .*neurons \[1, 4\] have alpha = \+inf .*Give 'bias2'"):
        fr.double_layer(layer)
    second = np.where(np.isinf(alpha), np.inf, -alpha)
    doubled = fr.double_layer(layer, second)
    X = rng.standard_normal((50, 3))
    np.testing.assert_array_equal(doubled(X)[:, [1, 4, 7, 10]], 0.0)
    np.testing.assert_array_equal(doubled.bias, np.concatenate([alpha, second]))
    with pytest.raises(fr.FastReluError, match=r"'bias2' parameter .*Got NaN at index 0"):
        fr.double_layer(layer, np.r_[np.nan, second[1:]])
    with pytest.raises(fr.FastReluError, match=r"'bias2' parameter .*Got -inf at index 2"):
        fr.double_layer(W, np.r_[0.0, 0.0, -np.inf, 0.0, 0.0, 0.0])
