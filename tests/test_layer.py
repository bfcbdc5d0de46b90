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


# -- the caller's arrays -----------------------------------------------------------------

def _arrays():
    rng = np.random.default_rng(20)
    W = rng.standard_normal((14, 4))
    alpha = rng.normal(-0.3, 0.2, 14)
    X = rng.standard_normal((40, 4))
    Y = np.maximum(X @ W.T - alpha, 0.0)
    return {"W": W, "alpha": alpha, "X": X, "Y": Y, "mask": Y > 0,
            "H": np.maximum(X @ W.T - alpha, 0.0)}


def _layer(a):
    return fr.ReLULayer(a["W"].copy(), a["alpha"].copy())


CALLS = {
    "ReLULayer": lambda a: fr.ReLULayer(a["W"], a["alpha"]),
    "ReLULayer(weight only)": lambda a: fr.ReLULayer(a["W"]),
    "ReLULayer(view)": lambda a: fr.ReLULayer(a["W"][::2], a["alpha"][::2]),
    "ReLULayer.from_affine": lambda a: fr.ReLULayer.from_affine(a["W"], a["alpha"]),
    "layer call": lambda a: _layer(a)(a["X"]),
    "active_mask": lambda a: _layer(a).active_mask(a["X"]),
    "reconstruct": lambda a: fr.reconstruct(_layer(a), a["Y"], active=a["mask"]),
    "reconstruct basis": lambda a: fr.reconstruct(_layer(a), a["Y"], "basis"),
    "invert": lambda a: fr.invert([_layer(a)], a["Y"]),
    "injectivity_summary": lambda a: fr.injectivity_summary(_layer(a), a["X"]),
    "check_bias": lambda a: fr.check_bias(_layer(a), fr.Sphere(4), 500, seed=1),
    "mcbe": lambda a: fr.mcbe(a["W"], fr.Data(a["X"].copy())),
    "estimate_bias pbe": lambda a: fr.estimate_bias(a["W"], fr.Sphere(4), "pbe"),
    "frame_bounds": lambda a: fr.frame_bounds(a["W"]),
    "canonical_dual": lambda a: fr.canonical_dual(a["W"]),
    "frame_operator_inverse": lambda a: fr.frame_operator_inverse(a["W"]),
    "is_frame": lambda a: fr.is_frame(a["W"]),
    "verify_injective": lambda a: fr.verify_injective(a["W"]),
    "relu_power_iteration": lambda a: fr.relu_power_iteration(a["W"], bias=a["alpha"], n_starts=8, seed=0),
    "relu_singular_values": lambda a: fr.relu_singular_values(a["W"], 2, bias=a["alpha"], data=a["X"], seed=0),
    "gaussian_mean_width": lambda a: fr.gaussian_mean_width(a["W"], n_draws=50, seed=0),
    "gaussian_mean_width(layer, data)": lambda a: fr.gaussian_mean_width(_layer(a), data=a["X"], n_draws=50, seed=0),
    "local_metrics": lambda a: fr.local_metrics(_layer(a), a["X"]),
    "harmonic_prune": lambda a: fr.harmonic_prune(a["W"], keep=0.5),
    "double_layer": lambda a: fr.double_layer(a["W"], a["alpha"]),
    "enlarge_data": lambda a: fr.enlarge_data(a["H"], 10, seed=0),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_callers_arrays_stay_writeable_and_unchanged(name):
    arrays = _arrays()
    before = {key: value.copy() for key, value in arrays.items()}
    CALLS[name](arrays)
    for key, value in arrays.items():
        assert value.flags.writeable, key
        np.testing.assert_array_equal(value, before[key])
    arrays["W"][0, 0] = 2.0  # and writing to them works
    arrays["alpha"][0] = 2.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_layer_keeps_private_copies(dtype):
    W = np.ones((3, 2), dtype=dtype)
    bias = np.zeros(3, dtype=dtype)
    layer = fr.ReLULayer(W, bias)
    W[0, 0] = 2.0
    bias[1] = 5.0
    np.testing.assert_array_equal(layer.weight, np.ones((3, 2)))
    np.testing.assert_array_equal(layer.bias, np.zeros(3))
    assert not layer.weight.flags.writeable and not layer.bias.flags.writeable
    affine = fr.ReLULayer.from_affine(W, bias)
    W[1, 1] = 7.0
    assert affine.weight[1, 1] == 1.0 and W.flags.writeable
    base = np.ones((6, 2), dtype=dtype)  # a view is not a private copy either
    strided = fr.ReLULayer(base[::2], base[:3, 0])
    base[0] = 4.0
    np.testing.assert_array_equal(strided.weight, np.ones((3, 2)))
    np.testing.assert_array_equal(strided.bias, np.ones(3))


def test_an_estimate_fed_to_a_layer_stays_the_callers():
    # a result's arrays belong to the caller: building a layer from them copies them
    rng = np.random.default_rng(21)
    W = rng.standard_normal((12, 3))
    estimate = fr.mcbe(W, fr.Data(rng.standard_normal((50, 3))))
    layer = fr.ReLULayer(W, estimate.alpha)
    assert estimate.alpha.flags.writeable
    kept = layer.bias.copy()
    estimate.alpha[:] = 0.0
    np.testing.assert_array_equal(layer.bias, kept)


# -- never-active neurons (bias +inf) ----------------------------------------------------------

def test_an_infinite_bias_is_a_neuron_that_is_never_active():
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    layer = fr.ReLULayer(W, [0.5, np.inf, -1.0])
    X = np.array([[1.0, 2.0], [1e300, 1e300], [-3.0, 0.0]])
    np.testing.assert_array_equal(layer(X), [[0.5, 0.0, 4.0], [1e300, 0.0, 2e300], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(layer.active_mask(X)[:, 1], False)
    assert (layer.pre_activation(X)[:, 1] == -np.inf).all()
    affine = fr.ReLULayer.from_affine(W, [-0.5, -np.inf, 1.0])
    np.testing.assert_array_equal(affine.bias, layer.bias)
    np.testing.assert_array_equal(affine(X), layer(X))
    never = fr.ReLULayer(W, np.inf)  # a scalar is every neuron's bias
    np.testing.assert_array_equal(never(X), 0.0)


def test_nan_and_the_wrong_infinity_in_a_bias_are_refused():
    W = np.eye(3)
    with pytest.raises(fr.FastReluError, match=r"'bias' parameter must contain only real numbers or \+inf .*Got NaN at index 1\."):
        fr.ReLULayer(W, [0.0, np.nan, np.inf])
    with pytest.raises(fr.FastReluError, match=r"'bias' parameter .*Got -inf at indices 0, 2, which would make the neuron always active with an infinite output"):
        fr.ReLULayer(W, [-np.inf, 0.0, -np.inf])
    with pytest.raises(fr.FastReluError, match=r"'b' parameter must contain only real numbers or -inf .*Got \+inf at index 2"):
        fr.ReLULayer.from_affine(W, [0.0, -np.inf, np.inf])
    with pytest.raises(fr.FastReluError, match=r"'bias' parameter .*NaN at indices 0, 1, 2"):
        fr.ReLULayer(W, np.nan)
    with pytest.raises(fr.FastReluError, match="'bias' parameter must hold real numbers"):
        fr.ReLULayer(W, [0j, 1.0, 2.0])
    with pytest.raises(fr.FastReluError, match="finite"):
        fr.ReLULayer(np.array([[1.0, np.inf]]))
