import numpy as np
import pytest

import fastrelu as fr


def test_layer_subtracts_bias():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    layer = fr.ReLULayer(W, [0.5, -1.0, 3.0])
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(layer(x), [0.5, 3.0, 0.0])
    np.testing.assert_array_equal(layer.active_mask(x), [True, True, True])
    np.testing.assert_array_equal(layer.active_mask(np.array([0.0, 0.0])), [False, True, False])


def test_from_affine_uses_deep_learning_sign():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((5, 3)), rng.standard_normal(5)
    X = rng.standard_normal((7, 3))
    layer = fr.ReLULayer.from_affine(W, b)
    np.testing.assert_allclose(layer(X), np.maximum(X @ W.T + b, 0.0))
    np.testing.assert_array_equal(layer.bias, -b)


def test_default_bias_is_zero_and_arrays_are_read_only():
    layer = fr.ReLULayer(np.eye(2))
    assert layer.bias.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        layer.weight[0, 0] = 3.0


def test_layer_validation():
    with pytest.raises(fr.FastReluError, match="2-D"):
        fr.ReLULayer(np.ones(3))
    with pytest.raises(fr.FastReluError, match="finite"):
        fr.ReLULayer(np.array([[1.0, np.nan]]))
    with pytest.raises(fr.FastReluError, match=r"'bias' parameter must have shape \(2,\)"):
        fr.ReLULayer(np.eye(2), [1.0, 2.0, 3.0])
    with pytest.raises(fr.FastReluError, match="2 columns"):
        fr.ReLULayer(np.eye(2)).active_mask(np.ones((4, 3)))
