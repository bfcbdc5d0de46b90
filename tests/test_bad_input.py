"""The bad-input contract of the whole public API and of every CLI command, in one place.

API: bad input raises ``FastReluError`` (a ``ValueError``) whose message names the
argument; the caller's arrays are unchanged afterwards and still writeable; nothing is
written. CLI: exit code 2, exactly one non-empty line on stderr that names the offending
option or file, no traceback, nothing on stdout, and no file written or left behind (the
directory holds exactly the inputs it held before).

``+inf`` in a bias is a legal bias (a neuron that is never active), so it never appears
here as bad input; NaN and ``-inf`` biases do.
"""

import functools
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu.cli import main

#: An error message that carries an estimate of the memory or the time asked for.
ESTIMATE = r"(?i)\d[\d.,]*\s*(KiB|MiB|GiB|TiB|PiB|EiB|ZiB|YiB|KB|MB|GB|TB|PB|EB|bytes|s\b|seconds?|minutes?|hours?|days?|years?)"
HUGE = 10**15
#: Seconds a child process may take to refuse an infeasible request.
REFUSAL_TIMEOUT = 25


# --------------------------------------------------------------------------- helpers


def _tree(folder):
    """Every path under ``folder`` with the SHA-256 of its bytes (None for directories)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _arrays_in(value, found):
    if isinstance(value, np.ndarray):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _arrays_in(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _arrays_in(item, found)
    return found


def _same(array, copy):
    if array.dtype != copy.dtype or array.shape != copy.shape:
        return False
    if array.dtype == object:
        return [repr(v) for v in array.ravel()] == [repr(v) for v in copy.ravel()]
    return array.tobytes() == copy.tobytes()


def _gauss(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _W(m=9, n=3, seed=0):
    return _gauss((m, n), seed)


def _X(N=5, n=3, seed=1):
    return _gauss((N, n), seed)


def _layer(m=9, n=3, bias=None):
    return fr.ReLULayer(_W(m, n), bias)


def _Y(m=9, N=4):
    layer = _layer(m)
    return np.maximum(_X(N) @ layer.weight.T, 0.0)


def _with(array, index, value):
    array = np.array(array, dtype=np.result_type(array, type(value)))
    array[index] = value
    return array


def _strings(array):
    return np.asarray(array).astype(str)


def _objects(array):
    out = np.asarray(array).astype(object)
    out.flat[0] = None
    return out


TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)


@functools.cache
def _tiny_network():
    rng = np.random.default_rng(1)
    return fr.Network([fr.ReLULayer(rng.standard_normal((8, 3)), np.full(8, -0.5))],
                      fr.ReLULayer(rng.standard_normal((2, 8)), np.zeros(2)))


@functools.cache
def _tiny_report():
    return fr.analyze(_tiny_network(), _X(20), samples=500, width_draws=20, power_starts=2,
                      enlarge=None, n_jobs=1)


def _write(path, data):
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return str(path)


GARBAGE = b"garbage bytes that are no array\x00\xff\xfe" * 4


# --------------------------------------------------------------------------- API cases
#
# Each case: (builder, match) or (builder, match, forbid). The builder gets the test's
# temporary directory and returns (function, args, kwargs); ``match`` must be found in
# the message (the argument's name), ``forbid`` must not be.


def P(name):
    return f"'{re.escape(name)}'"


NET_FILE = r"network file|'path'"
#: The weight of a layer argument ('layer.weight' or 'weight').
LAYER_WEIGHT = r"'(layer\.)?weights?'"

API_CASES = {
    # ReLULayer and from_affine
    "layer-weight-1d": (lambda t: (fr.ReLULayer, (_W()[:, 0],), {}), P("weight")),
    "layer-weight-3d": (lambda t: (fr.ReLULayer, (np.ones((2, 3, 3)),), {}), P("weight")),
    "layer-weight-empty": (lambda t: (fr.ReLULayer, (np.zeros((0, 3)),), {}), P("weight")),
    "layer-weight-nan": (lambda t: (fr.ReLULayer, (_with(_W(), (2, 1), np.nan),), {}), P("weight")),
    "layer-weight-inf": (lambda t: (fr.ReLULayer, (_with(_W(), (0, 0), np.inf),), {}), P("weight")),
    "layer-weight-complex": (lambda t: (fr.ReLULayer, (_W() + 1j,), {}), P("weight")),
    "layer-weight-numeric-strings": (lambda t: (fr.ReLULayer, (_strings(_W()),), {}), P("weight")),
    "layer-weight-object": (lambda t: (fr.ReLULayer, (_objects(_W()),), {}), P("weight")),
    "layer-weight-none": (lambda t: (fr.ReLULayer, (None,), {}), P("weight")),
    "layer-weight-nested-ragged": (lambda t: (fr.ReLULayer, ([[1.0, 2.0], [3.0]],), {}), P("weight")),
    "layer-bias-short": (lambda t: (fr.ReLULayer, (_W(), np.zeros(4)), {}), P("bias")),
    "layer-bias-2d": (lambda t: (fr.ReLULayer, (_W(), np.zeros((9, 2))), {}), P("bias")),
    "layer-bias-nan": (lambda t: (fr.ReLULayer, (_W(), _with(np.zeros(9), 3, np.nan)), {}), P("bias")),
    "layer-bias-minus-inf": (lambda t: (fr.ReLULayer, (_W(), _with(np.zeros(9), 0, -np.inf)), {}), P("bias")),
    "layer-bias-complex": (lambda t: (fr.ReLULayer, (_W(), np.zeros(9) + 1j), {}), P("bias")),
    "layer-bias-strings": (lambda t: (fr.ReLULayer, (_W(), _strings(np.zeros(9))), {}), P("bias")),
    "layer-bias-text": (lambda t: (fr.ReLULayer, (_W(), "0.5"), {}), P("bias")),
    "affine-b-short": (lambda t: (fr.ReLULayer.from_affine, (_W(), np.zeros(8)), {}), P("b")),
    "affine-b-nan": (lambda t: (fr.ReLULayer.from_affine, (_W(), np.full(9, np.nan)), {}), P("b")),
    # b = +inf is alpha = -inf: a neuron active everywhere with infinite output
    "affine-b-plus-inf": (lambda t: (fr.ReLULayer.from_affine, (_W(), _with(np.zeros(9), 1, np.inf)), {}), P("b")),
    "affine-weight-1d": (lambda t: (fr.ReLULayer.from_affine, (np.ones(3), np.zeros(3)), {}), P("weight")),
    "layer-call-wrong-columns": (lambda t: (_layer(), (_X(4, 4),), {}), P("X")),
    "layer-active-mask-nan": (lambda t: (_layer().active_mask, (_with(_X(), (1, 1), np.nan),), {}), P("X")),
    # domains
    "sphere-dim-zero": (lambda t: (fr.Sphere, (0,), {}), P("dim")),
    "sphere-dim-fraction": (lambda t: (fr.Sphere, (2.5,), {}), P("dim")),
    "sphere-dim-bool": (lambda t: (fr.Sphere, (True,), {}), P("dim")),
    "sphere-dim-string": (lambda t: (fr.Sphere, ("3",), {}), P("dim")),
    "sphere-radius-zero": (lambda t: (fr.Sphere, (3, 0.0), {}), P("radius")),
    "sphere-radius-nan": (lambda t: (fr.Sphere, (3, np.nan), {}), P("radius")),
    "ball-radius-negative": (lambda t: (fr.Ball, (3, -1.0), {}), P("radius")),
    "ball-radius-inf": (lambda t: (fr.Ball, (3, np.inf), {}), P("radius")),
    "ball-dim-none": (lambda t: (fr.Ball, (None,), {}), P("dim")),
    "shell-inner-above-outer": (lambda t: (fr.Shell, (3, 2.0, 1.0), {}), P("inner")),
    "shell-inner-negative": (lambda t: (fr.Shell, (3, -0.5, 1.0), {}), P("inner")),
    "shell-outer-inf": (lambda t: (fr.Shell, (3, 0.5, np.inf), {}), P("outer")),
    "shell-outer-zero": (lambda t: (fr.Shell, (3, 0.0, 0.0), {}), P("outer")),
    "shell-dim-negative": (lambda t: (fr.Shell, (-2, 0.5, 1.0), {}), P("dim")),
    "data-1d": (lambda t: (fr.Data, (_X()[:, 0],), {}), P("points")),
    "data-empty": (lambda t: (fr.Data, (np.zeros((0, 3)),), {}), P("points")),
    "data-nan": (lambda t: (fr.Data, (_with(_X(), (4, 2), np.nan),), {}), P("points")),
    "data-strings": (lambda t: (fr.Data, (_strings(_X()),), {}), P("points")),
    "data-complex": (lambda t: (fr.Data, (_X() * 1j,), {}), P("points")),
    "data-object": (lambda t: (fr.Data, (_objects(_X()),), {}), P("points")),
    # mcbe
    "mcbe-weight-rank-deficient": (lambda t: (fr.mcbe, (np.ones((6, 3)), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-weight-zero-row": (lambda t: (fr.mcbe, (_with(_W(), 4, 0.0), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-weight-fewer-rows-than-columns": (lambda t: (fr.mcbe, (_W(2, 3), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-weight-strings": (lambda t: (fr.mcbe, (_strings(_W()), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-weight-complex": (lambda t: (fr.mcbe, (_W() * (1 + 1j), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-weight-minus-inf": (lambda t: (fr.mcbe, (_with(_W(), (1, 2), -np.inf), fr.Sphere(3), 100), {"seed": 0}), P("weight")),
    "mcbe-domain-dimension": (lambda t: (fr.mcbe, (_W(), fr.Sphere(4), 100), {"seed": 0}), P("domain")),
    "mcbe-domain-name": (lambda t: (fr.mcbe, (_W(), "sphere", 100), {"seed": 0}), P("domain")),
    "mcbe-domain-none": (lambda t: (fr.mcbe, (_W(), None, 100), {"seed": 0}), P("domain")),
    "mcbe-samples-zero": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 0), {"seed": 0}), P("n_samples")),
    "mcbe-samples-negative": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), -5), {"seed": 0}), P("n_samples")),
    "mcbe-samples-fraction": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 10.5), {"seed": 0}), P("n_samples")),
    "mcbe-samples-bool": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), True), {"seed": 0}), P("n_samples")),
    "mcbe-samples-string": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), "100"), {"seed": 0}), P("n_samples")),
    "mcbe-samples-with-data": (lambda t: (fr.mcbe, (_W(), fr.Data(_X()), 5), {}), P("n_samples")),
    "mcbe-seed-negative": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": -1}), P("seed")),
    "mcbe-seed-fraction": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 1.5}), P("seed")),
    "mcbe-seed-bool": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": True}), P("seed")),
    "mcbe-rank-tol-zero": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "rank_tol": 0.0}), P("rank_tol")),
    "mcbe-rank-tol-one": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "rank_tol": 1.0}), P("rank_tol")),
    "mcbe-rank-tol-nan": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "rank_tol": np.nan}), P("rank_tol")),
    "mcbe-margin-negative": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "margin": -0.1}), P("margin")),
    "mcbe-margin-word": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "margin": "wide"}), P("margin")),
    "mcbe-margin-nan": (lambda t: (fr.mcbe, (_W(), fr.Ball(3), 100), {"seed": 0, "margin": np.nan}), P("margin")),
    "mcbe-margin-with-data": (lambda t: (fr.mcbe, (_W(), fr.Data(_X())), {"margin": "covering"}), P("margin")),
    "mcbe-jobs-zero": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "n_jobs": 0}), P("n_jobs")),
    "mcbe-jobs-minus-two": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "n_jobs": -2}), P("n_jobs")),
    "mcbe-jobs-fraction": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "n_jobs": 1.5}), P("n_jobs")),
    "mcbe-jobs-bool": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "n_jobs": True}), P("n_jobs")),
    "mcbe-checkpoint-interval-negative": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "checkpoint_interval": -1.0}), P("checkpoint_interval")),
    "mcbe-checkpoint-missing-directory": (lambda t: (fr.mcbe, (_W(), fr.Sphere(3), 100), {"seed": 0, "checkpoint": str(t / "nowhere" / "c.npz")}), P("checkpoint")),
    # pbe and estimate_bias
    "pbe-nonnegative-domain": (lambda t: (fr.pbe, (TETRAHEDRON.copy(), fr.Sphere(3, nonnegative=True)), {}), P("domain")),
    "pbe-data-domain": (lambda t: (fr.pbe, (TETRAHEDRON.copy(), fr.Data(_X())), {}), P("domain")),
    "pbe-domain-name": (lambda t: (fr.pbe, (TETRAHEDRON.copy(), "ball"), {}), P("domain")),
    "pbe-dimension-too-large": (lambda t: (fr.pbe, (_W(30, 9),), {}), P("weight")),
    "pbe-not-omnidirectional": (lambda t: (fr.pbe, (np.abs(_W()),), {}), P("weight")),
    "pbe-max-facets-below-hull": (lambda t: (fr.pbe, (TETRAHEDRON.copy(),), {"max_facets": 2}), P("max_facets")),
    "pbe-max-facets-zero": (lambda t: (fr.pbe, (TETRAHEDRON.copy(),), {"max_facets": 0}), P("max_facets")),
    "pbe-max-dim-zero": (lambda t: (fr.pbe, (TETRAHEDRON.copy(),), {"max_dim": 0}), P("max_dim")),
    "pbe-rank-tol-zero": (lambda t: (fr.pbe, (TETRAHEDRON.copy(),), {"rank_tol": 0.0}), P("rank_tol")),
    "pbe-rank-tol-above-one": (lambda t: (fr.pbe, (TETRAHEDRON.copy(),), {"rank_tol": 5.0}), P("rank_tol")),
    "estimate-method-unknown": (lambda t: (fr.estimate_bias, (_W(), fr.Sphere(3), "svd"), {}), P("method")),
    "estimate-method-none": (lambda t: (fr.estimate_bias, (_W(), fr.Sphere(3), None), {}), P("method")),
    "estimate-mcbe-option": (lambda t: (fr.estimate_bias, (_W(), fr.Sphere(3), "mcbe"), {"n_samples": -1}), P("n_samples")),
    # covering_radius
    "covering-samples-negative": (lambda t: (fr.covering_radius, (-5, 3), {}), P("n_samples")),
    "covering-samples-fraction": (lambda t: (fr.covering_radius, (2.5, 3), {}), P("n_samples")),
    "covering-samples-string": (lambda t: (fr.covering_radius, ("100", 3), {}), P("n_samples")),
    "covering-dim-zero": (lambda t: (fr.covering_radius, (100, 0), {}), P("dim")),
    # check_bias, injectivity_summary, pointwise_injectivity
    "check-layer-array": (lambda t: (fr.check_bias, (_W(), fr.Sphere(3), 10), {"seed": 0}), P("layer")),
    "check-domain-dimension": (lambda t: (fr.check_bias, (_layer(), fr.Ball(2), 10), {"seed": 0}), P("domain")),
    "check-domain-name": (lambda t: (fr.check_bias, (_layer(), "sphere", 10), {"seed": 0}), P("domain")),
    "check-points-zero": (lambda t: (fr.check_bias, (_layer(), fr.Sphere(3), 0), {"seed": 0}), P("n_points")),
    "check-points-fraction": (lambda t: (fr.check_bias, (_layer(), fr.Sphere(3), 2.5), {"seed": 0}), P("n_points")),
    "check-points-bool": (lambda t: (fr.check_bias, (_layer(), fr.Sphere(3), True), {"seed": 0}), P("n_points")),
    "check-points-with-data": (lambda t: (fr.check_bias, (_layer(), fr.Data(_X()), 3), {}), P("n_points")),
    "check-seed-negative": (lambda t: (fr.check_bias, (_layer(), fr.Sphere(3), 10), {"seed": -3}), P("seed")),
    "check-rank-tol-below-resolution": (lambda t: (fr.check_bias, (_layer(), fr.Sphere(3), 10), {"seed": 0, "rank_tol": 1e-9}), P("rank_tol")),
    "check-jobs-zero": (lambda t: (fr.check_bias, (_layer(), fr.Shell(3, 0.5, 1.0), 10), {"seed": 0, "n_jobs": 0}), P("n_jobs")),
    "summary-layer-array": (lambda t: (fr.injectivity_summary, (_W(), _X()), {}), P("layer")),
    "summary-X-wrong-columns": (lambda t: (fr.injectivity_summary, (_layer(), _X(5, 2)), {}), P("X")),
    "summary-X-1d": (lambda t: (fr.injectivity_summary, (_layer(), _X()[0]), {}), P("X")),
    "summary-X-nan": (lambda t: (fr.injectivity_summary, (_layer(), _with(_X(), (3, 0), np.nan)), {}), P("X")),
    "summary-X-strings": (lambda t: (fr.injectivity_summary, (_layer(), _strings(_X())), {}), P("X")),
    "summary-X-complex": (lambda t: (fr.injectivity_summary, (_layer(), _X() + 0j), {}), P("X")),
    "summary-X-object": (lambda t: (fr.injectivity_summary, (_layer(), _objects(_X())), {}), P("X")),
    "summary-X-none": (lambda t: (fr.injectivity_summary, (_layer(), None), {}), P("X")),
    "summary-rank-tol-word": (lambda t: (fr.injectivity_summary, (_layer(), _X()), {"rank_tol": "big"}), P("rank_tol")),
    "pointwise-X-inf": (lambda t: (fr.pointwise_injectivity, (_layer(), _with(_X(), (0, 1), np.inf)), {}), P("X")),
    "pointwise-X-3d": (lambda t: (fr.pointwise_injectivity, (_layer(), np.ones((2, 2, 3))), {}), P("X")),
    "pointwise-jobs-zero": (lambda t: (fr.pointwise_injectivity, (_layer(), _X()), {"n_jobs": 0}), P("n_jobs")),
    # verify_injective
    "verify-rank-deficient": (lambda t: (fr.verify_injective, (np.ones((8, 3)),), {}), P("weight")),
    "verify-zero-row": (lambda t: (fr.verify_injective, (_with(_W(), 0, 0.0),), {}), P("weight")),
    "verify-nan": (lambda t: (fr.verify_injective, (_with(_W(), (5, 1), np.nan),), {}), P("weight")),
    "verify-1d": (lambda t: (fr.verify_injective, (_W()[0],), {}), P("weight")),
    "verify-max-subsets-zero": (lambda t: (fr.verify_injective, (_W(),), {"max_subsets": 0}), P("max_subsets")),
    "verify-max-subsets-fraction": (lambda t: (fr.verify_injective, (_W(),), {"max_subsets": 1.5}), P("max_subsets")),
    "verify-too-many-subsets": (lambda t: (fr.verify_injective, (_W(200, 12),), {}), P("max_subsets")),
    "verify-jobs-zero": (lambda t: (fr.verify_injective, (_W(),), {"n_jobs": 0}), P("n_jobs")),
    # reconstruct and invert
    "reconstruct-Y-wrong-width": (lambda t: (fr.reconstruct, (_layer(), np.ones((4, 5))), {}), P("Y")),
    "reconstruct-Y-3d": (lambda t: (fr.reconstruct, (_layer(), np.ones((2, 2, 9))), {}), P("Y")),
    "reconstruct-Y-nan": (lambda t: (fr.reconstruct, (_layer(), _with(_Y(), (1, 2), np.nan)), {}), P("Y")),
    "reconstruct-Y-negative": (lambda t: (fr.reconstruct, (_layer(), _with(_Y(), (0, 0), -0.25)), {}), P("Y")),
    "reconstruct-Y-strings": (lambda t: (fr.reconstruct, (_layer(), _strings(_Y())), {}), P("Y")),
    "reconstruct-Y-object": (lambda t: (fr.reconstruct, (_layer(), _objects(_Y())), {}), P("Y")),
    "reconstruct-Y-none": (lambda t: (fr.reconstruct, (_layer(), None), {}), P("Y")),
    "reconstruct-method-unknown": (lambda t: (fr.reconstruct, (_layer(), _Y(), "newton"), {}), P("method")),
    "reconstruct-tol-zero": (lambda t: (fr.reconstruct, (_layer(), _Y(), "frame"), {"tol": 0.0}), P("tol")),
    "reconstruct-tol-nan": (lambda t: (fr.reconstruct, (_layer(), _Y(), "frame"), {"tol": np.nan}), P("tol")),
    "reconstruct-max-iter-zero": (lambda t: (fr.reconstruct, (_layer(), _Y(), "frame"), {"max_iter": 0}), P("max_iter")),
    "reconstruct-max-iter-fraction": (lambda t: (fr.reconstruct, (_layer(), _Y(), "frame"), {"max_iter": 2.5}), P("max_iter")),
    "reconstruct-span-tol-above-one": (lambda t: (fr.reconstruct, (_layer(), _Y()), {"span_tol": 2.0}), P("span_tol")),
    "reconstruct-cond-unknown": (lambda t: (fr.reconstruct, (_layer(), _Y()), {"cond": "approx"}), P("cond")),
    "reconstruct-layer-not-a-frame": (lambda t: (fr.reconstruct, (fr.ReLULayer(np.ones((9, 3))), _Y()), {}), LAYER_WEIGHT),
    "reconstruct-layer-too-few-rows": (lambda t: (fr.reconstruct, (fr.ReLULayer(_W(2, 3)), np.ones((4, 2))), {}), LAYER_WEIGHT),
    "reconstruct-active-integers": (lambda t: (fr.reconstruct, (_layer(), _Y()), {"active": (_Y() > 0).astype(int)}), P("active")),
    "reconstruct-active-wrong-shape": (lambda t: (fr.reconstruct, (_layer(), _Y()), {"active": np.ones((3, 9), dtype=bool)}), P("active")),
    "reconstruct-jobs-negative": (lambda t: (fr.reconstruct, (_layer(), _Y()), {"n_jobs": -3}), P("n_jobs")),
    "invert-empty": (lambda t: (fr.invert, ([], _Y()), {}), P("layers")),
    "invert-arrays": (lambda t: (fr.invert, ([_W()], _Y()), {}), P("layers")),
    "invert-not-chaining": (lambda t: (fr.invert, ([_layer(), _layer(12, 4)], np.ones((2, 12))), {}), P("layers")),
    "invert-zero-tol-negative": (lambda t: (fr.invert, ([_layer()], _Y()), {"zero_tol": -1.0}), P("zero_tol")),
    "invert-Y-wrong-width": (lambda t: (fr.invert, ([_layer()], np.ones((4, 8))), {}), P("Y")),
    # relu_power_iteration and relu_singular_values
    "power-weight-1d": (lambda t: (fr.relu_power_iteration, (_W()[0],), {"n_starts": 4, "seed": 0}), P("weight")),
    "power-weight-empty": (lambda t: (fr.relu_power_iteration, (np.zeros((0, 3)),), {"n_starts": 4, "seed": 0}), P("weight")),
    "power-weight-strings": (lambda t: (fr.relu_power_iteration, (_strings(_W()),), {"n_starts": 4, "seed": 0}), P("weight")),
    "power-bias-short": (lambda t: (fr.relu_power_iteration, (_W(),), {"bias": np.zeros(3), "n_starts": 4, "seed": 0}), P("bias")),
    "power-bias-nan": (lambda t: (fr.relu_power_iteration, (_W(),), {"bias": np.full(9, np.nan), "n_starts": 4, "seed": 0}), P("bias")),
    "power-starts-zero": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 0, "seed": 0}), P("n_starts")),
    "power-starts-fraction": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 2.5, "seed": 0}), P("n_starts")),
    "power-max-iter-zero": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "max_iter": 0, "seed": 0}), P("max_iter")),
    "power-tol-one": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "tol": 1.0, "seed": 0}), P("tol")),
    "power-tol-negative": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "tol": -0.1, "seed": 0}), P("tol")),
    "power-history-negative": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "history": -1, "seed": 0}), P("history")),
    "power-history-above-starts": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 2, "history": 5, "seed": 0}), P("history")),
    "power-seed-negative": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "seed": -1}), P("seed")),
    "power-jobs-zero": (lambda t: (fr.relu_power_iteration, (_W(),), {"n_starts": 4, "seed": 0, "n_jobs": 0}), P("n_jobs")),
    "svals-k-zero": (lambda t: (fr.relu_singular_values, (_W(), 0), {"seed": 0}), P("k")),
    "svals-k-above-min": (lambda t: (fr.relu_singular_values, (_W(), 4), {"seed": 0}), P("k")),
    "svals-k-float": (lambda t: (fr.relu_singular_values, (_W(), 1.0), {"seed": 0}), P("k")),
    "svals-k-bool": (lambda t: (fr.relu_singular_values, (_W(), True), {"seed": 0}), P("k")),
    "svals-k-none": (lambda t: (fr.relu_singular_values, (_W(), None), {"seed": 0}), P("k")),
    "svals-data-wrong-columns": (lambda t: (fr.relu_singular_values, (_W(), 1), {"data": _X(5, 4), "seed": 0}), P("data")),
    "svals-data-nan": (lambda t: (fr.relu_singular_values, (_W(), 1), {"data": _with(_X(), (0, 0), np.nan), "seed": 0}), P("data")),
    "svals-fit-steps-negative": (lambda t: (fr.relu_singular_values, (_W(), 2), {"fit_steps": -1, "seed": 0}), P("fit_steps")),
    "svals-fit-starts-zero": (lambda t: (fr.relu_singular_values, (_W(), 2), {"fit_starts": 0, "seed": 0}), P("fit_starts")),
    "svals-starts-negative": (lambda t: (fr.relu_singular_values, (_W(), 1), {"n_starts": -1, "seed": 0}), P("n_starts")),
    "svals-tol-two": (lambda t: (fr.relu_singular_values, (_W(), 1), {"tol": 2.0, "seed": 0}), P("tol")),
    "svals-checkpoint-with-data": (lambda t: (fr.relu_singular_values, (_W(), 1), {"data": _X(), "checkpoint": str(t / "c.npz"), "seed": 0}), P("checkpoint")),
    # gaussian_mean_width and local_metrics
    "width-empty-array": (lambda t: (fr.gaussian_mean_width, (np.zeros((0, 3)),), {"n_draws": 10, "seed": 0}), r"empty", r"'obj'"),
    "width-not-a-set": (lambda t: (fr.gaussian_mean_width, ("abc",), {"n_draws": 10, "seed": 0}), r"'(obj|weight)'"),
    "width-draws-zero": (lambda t: (fr.gaussian_mean_width, (_W(),), {"n_draws": 0, "seed": 0}), P("n_draws")),
    "width-draws-fraction": (lambda t: (fr.gaussian_mean_width, (_W(),), {"n_draws": 1.5, "seed": 0}), P("n_draws")),
    "width-starts-zero": (lambda t: (fr.gaussian_mean_width, (_layer(),), {"n_draws": 10, "n_starts": 0, "seed": 0}), P("n_starts")),
    "width-max-iter-zero": (lambda t: (fr.gaussian_mean_width, (_layer(),), {"n_draws": 10, "max_iter": 0, "seed": 0}), P("max_iter")),
    "width-tol-above-one": (lambda t: (fr.gaussian_mean_width, (_layer(),), {"n_draws": 10, "tol": 1.5, "seed": 0}), P("tol")),
    "width-data-with-array": (lambda t: (fr.gaussian_mean_width, (_W(),), {"data": _X(), "n_draws": 10, "seed": 0}), P("data")),
    "width-data-wrong-columns": (lambda t: (fr.gaussian_mean_width, (_layer(),), {"data": _X(5, 2), "n_draws": 10, "seed": 0}), P("data")),
    "width-seed-fraction": (lambda t: (fr.gaussian_mean_width, (_W(),), {"n_draws": 10, "seed": 0.5}), P("seed")),
    "local-layer-array": (lambda t: (fr.local_metrics, (_W(), _X()), {}), P("layer")),
    "local-X-wrong-columns": (lambda t: (fr.local_metrics, (_layer(), _X(5, 4)), {}), P("X")),
    "local-X-nan": (lambda t: (fr.local_metrics, (_layer(), _with(_X(), (2, 2), np.nan)), {}), P("X")),
    "local-X-strings": (lambda t: (fr.local_metrics, (_layer(), _strings(_X())), {}), P("X")),
    "local-rtol-zero": (lambda t: (fr.local_metrics, (_layer(), _X()), {"rtol": 0.0}), P("rtol")),
    "local-rtol-one": (lambda t: (fr.local_metrics, (_layer(), _X()), {"rtol": 1.0}), P("rtol")),
    "local-jobs-zero": (lambda t: (fr.local_metrics, (_layer(), _X()), {"n_jobs": 0}), P("n_jobs")),
    # double_layer and harmonic_prune
    "double-layer-1d": (lambda t: (fr.double_layer, (_W()[:, 0],), {}), P("layer")),
    "double-layer-text": (lambda t: (fr.double_layer, ("abc",), {}), P("layer")),
    "double-bias2-nan": (lambda t: (fr.double_layer, (_layer(),), {"bias2": np.full(9, np.nan)}), P("bias2")),
    "double-bias2-minus-inf": (lambda t: (fr.double_layer, (_layer(),), {"bias2": _with(np.zeros(9), 2, -np.inf)}), P("bias2")),
    "prune-neither-keep-nor-threshold": (lambda t: (fr.harmonic_prune, (_W(),), {}), P("keep")),
    "prune-keep-and-threshold": (lambda t: (fr.harmonic_prune, (_W(),), {"keep": 0.5, "threshold": 0.1}), P("threshold")),
    "prune-keep-zero": (lambda t: (fr.harmonic_prune, (_W(),), {"keep": 0.0}), P("keep")),
    "prune-keep-above-one": (lambda t: (fr.harmonic_prune, (_W(),), {"keep": 1.5}), P("keep")),
    "prune-keep-bool": (lambda t: (fr.harmonic_prune, (_W(),), {"keep": True}), P("keep")),
    "prune-threshold-negative": (lambda t: (fr.harmonic_prune, (_W(),), {"threshold": -1.0}), P("threshold")),
    "prune-threshold-nan": (lambda t: (fr.harmonic_prune, (_W(),), {"threshold": np.nan}), P("threshold")),
    "prune-operator-3d": (lambda t: (fr.harmonic_prune, (np.ones((2, 3, 3)),), {"keep": 0.5}), P("operator")),
    "prune-operator-empty": (lambda t: (fr.harmonic_prune, (np.zeros((0, 3)),), {"keep": 0.5}), P("operator")),
    "prune-operator-complex": (lambda t: (fr.harmonic_prune, (_W() * 1j,), {"keep": 0.5}), P("operator")),
    "prune-operator-strings": (lambda t: (fr.harmonic_prune, (_strings(_W()),), {"keep": 0.5}), P("operator")),
    "prune-kernel-nan": (lambda t: (fr.harmonic_prune, (_with(np.ones((2, 2, 3, 3)), (0, 0, 0, 0), np.nan),), {"keep": 0.5, "input_shape": (4, 4)}), P("operator")),
    "prune-kernel-without-input-shape": (lambda t: (fr.harmonic_prune, (np.ones((2, 2, 3, 3)),), {"keep": 0.5}), P("input_shape")),
    "prune-kernel-input-shape-too-small": (lambda t: (fr.harmonic_prune, (np.ones((2, 2, 3, 3)),), {"keep": 0.5, "input_shape": (2, 2)}), P("input_shape")),
    "prune-kernel-input-shape-fraction": (lambda t: (fr.harmonic_prune, (np.ones((2, 2, 3, 3)),), {"keep": 0.5, "input_shape": (4.5, 4)}), P("input_shape")),
    "prune-dense-with-input-shape": (lambda t: (fr.harmonic_prune, (_W(),), {"keep": 0.5, "input_shape": (4, 4)}), P("input_shape")),
    # frames
    "frame-bounds-rank-deficient": (lambda t: (fr.frame_bounds, (np.ones((5, 3)),), {}), P("weight")),
    "frame-bounds-too-few-rows": (lambda t: (fr.frame_bounds, (_W(2, 3),), {}), P("weight")),
    "canonical-dual-nan": (lambda t: (fr.canonical_dual, (_with(_W(), (8, 2), np.nan),), {}), P("weight")),
    "canonical-dual-1d": (lambda t: (fr.canonical_dual, (_W()[0],), {}), P("weight")),
    "frame-inverse-empty": (lambda t: (fr.frame_operator_inverse, (np.zeros((0, 3)),), {}), P("weight")),
    "frame-inverse-complex": (lambda t: (fr.frame_operator_inverse, (_W() - 2j,), {}), P("weight")),
    "is-frame-strings": (lambda t: (fr.is_frame, (_strings(_W()),), {}), P("weight")),
    "is-frame-none": (lambda t: (fr.is_frame, (None,), {}), P("weight")),
    "is-frame-3d": (lambda t: (fr.is_frame, (np.ones((3, 3, 3)),), {}), P("weight")),
    # enlarge_data
    "enlarge-points-zero": (lambda t: (fr.enlarge_data, (_X(), 0), {"seed": 0}), P("n_points")),
    "enlarge-points-bool": (lambda t: (fr.enlarge_data, (_X(), True), {"seed": 0}), P("n_points")),
    "enlarge-method-unknown": (lambda t: (fr.enlarge_data, (_X(), 10), {"method": "smote", "seed": 0}), P("method")),
    "enlarge-bandwidth-word": (lambda t: (fr.enlarge_data, (_X(), 10), {"bandwidth": "wide", "seed": 0}), P("bandwidth")),
    "enlarge-bandwidth-zero": (lambda t: (fr.enlarge_data, (_X(), 10), {"bandwidth": 0.0, "seed": 0}), P("bandwidth")),
    "enlarge-noise-negative": (lambda t: (fr.enlarge_data, (_X(), 10), {"method": "blowup", "noise": -1.0, "seed": 0}), P("noise")),
    "enlarge-data-nan": (lambda t: (fr.enlarge_data, (_with(_X(), (0, 0), np.nan), 10), {"seed": 0}), P("data")),
    "enlarge-data-1d": (lambda t: (fr.enlarge_data, (_X()[0], 10), {"seed": 0}), P("data")),
    "enlarge-seed-negative": (lambda t: (fr.enlarge_data, (_X(), 10), {"seed": -1}), P("seed")),
    # Network constructors, evaluation and loaders
    "network-empty": (lambda t: (fr.Network, ([],), {}), P("hidden")),
    "network-arrays": (lambda t: (fr.Network, ([_W()],), {}), P("hidden")),
    "network-number": (lambda t: (fr.Network, (3,), {}), P("hidden")),
    "network-output-array": (lambda t: (fr.Network, (_layer(),), {"output": "x"}), P("output")),
    "network-output-mismatch": (lambda t: (fr.Network, (_layer(),), {"output": _layer(2, 5)}), P("output")),
    "network-classes-wrong-length": (lambda t: (fr.Network, (_layer(),), {"output": _layer(2, 9), "classes": np.arange(3)}), P("classes")),
    "network-classes-without-output": (lambda t: (fr.Network, (_layer(),), {"classes": np.arange(2)}), P("classes")),
    "network-forward-wrong-columns": (lambda t: (_tiny_network().forward, (_X(4, 5),), {}), P("X")),
    "network-forward-strings": (lambda t: (_tiny_network().forward, (_strings(_X()),), {}), P("X")),
    "network-hidden-outputs-nan": (lambda t: (_tiny_network().hidden_outputs, (_with(_X(), (1, 1), np.nan),), {}), P("X")),
    "network-from-sklearn-text": (lambda t: (fr.Network.from_sklearn, ("model",), {}), P("model")),
    "network-from-torch-number": (lambda t: (fr.Network.from_torch, (42,), {}), P("model")),
    "network-from-npz-missing": (lambda t: (fr.Network.from_npz, (str(t / "absent.npz"),), {}), NET_FILE),
    "network-from-npz-garbage": (lambda t: (fr.Network.from_npz, (_write(t / "garbage.npz", GARBAGE),), {}), NET_FILE),
    "network-from-npz-nan-weight": (lambda t: (fr.Network.from_npz, (_savez(t / "nan.npz", weight_0=_with(_W(), (0, 0), np.nan), bias_0=np.zeros(9)),), {}), P("weight_0")),
    "network-from-npz-1d-weight": (lambda t: (fr.Network.from_npz, (_savez(t / "flat.npz", weight_0=np.ones(3), bias_0=np.zeros(1)),), {}), P("weight_0")),
    "network-from-npz-last-linear-word": (lambda t: (fr.Network.from_npz, (_saved_network(t),), {"last_linear": "yes"}), P("last_linear")),
    "network-from-safetensors-garbage": (lambda t: (fr.Network.from_safetensors, (_write(t / "net.safetensors", GARBAGE),), {}), NET_FILE),
    "network-load-directory": (lambda t: (fr.Network.load, (str(t),), {}), NET_FILE),
    "network-load-number": (lambda t: (fr.Network.load, (123,), {}), P("path")),
    "network-load-unknown-suffix": (lambda t: (fr.Network.load, (_write(t / "net.h5", b"HDF"),), {}), NET_FILE),
    "network-load-garbage-pt": (lambda t: (fr.Network.load, (_write(t / "net.pt", GARBAGE),), {}), NET_FILE),
    "network-load-garbage-pkl": (lambda t: (fr.Network.load, (_write(t / "net.pkl", GARBAGE),), {}), NET_FILE),
    # analyze, save_report, plot_report
    "analyze-network-text": (lambda t: (fr.analyze, ("net", _X()), {}), P("network")),
    "analyze-X-wrong-columns": (lambda t: (fr.analyze, (_tiny_network(), _X(20, 4)), {}), P("X")),
    "analyze-X-nan": (lambda t: (fr.analyze, (_tiny_network(), _with(_X(20), (3, 1), np.nan)), {}), P("X")),
    "analyze-X-empty": (lambda t: (fr.analyze, (_tiny_network(), np.zeros((0, 3))), {}), P("X")),
    "analyze-X-strings": (lambda t: (fr.analyze, (_tiny_network(), _strings(_X(20))), {"samples": 500, "width_draws": 20, "power_starts": 2, "enlarge": None}), P("X")),
    "analyze-samples-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"samples": 0}), P("samples")),
    "analyze-seed-negative": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"seed": -1}), P("seed")),
    "analyze-y-wrong-length": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"y": np.zeros(7, dtype=int)}), P("y")),
    "analyze-enlarge-unknown": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"enlarge": "smote"}), P("enlarge")),
    "analyze-enlarge-points-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"enlarge_points": 0}), P("enlarge_points")),
    "analyze-width-draws-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"width_draws": 0}), P("width_draws")),
    "analyze-power-starts-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"power_starts": 0}), P("power_starts")),
    "analyze-pbe-dim-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"pbe_dim": 0}), P("pbe_dim")),
    "analyze-fit-data-wrong-columns": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"fit_data": _X(10, 2)}), P("fit_data")),
    "analyze-jobs-zero": (lambda t: (fr.analyze, (_tiny_network(), _X(20)), {"n_jobs": 0, "samples": 500, "width_draws": 20, "power_starts": 2, "enlarge": None}), P("n_jobs")),
    "save-report-none": (lambda t: (fr.save_report, (None, str(t / "out")), {}), P("report")),
    "save-report-into-a-file": (lambda t: (fr.save_report, (_tiny_report(), _write(t / "plain", "x")), {}), P("out_dir")),
    "save-report-under-a-file": (lambda t: (fr.save_report, (_tiny_report(), os.path.join(_write(t / "plain", "x"), "sub")), {}), P("out_dir")),
    "plot-report-none": (lambda t: (fr.plot_report, (None, str(t / "out")), {}), P("report")),
    "plot-report-into-a-file": (lambda t: (fr.plot_report, (_tiny_report(), _write(t / "plain", "x")), {}), P("out_dir")),
    # run_experiment
    "experiment-unknown": (lambda t: (fr.run_experiment, ("nope", str(t / "out")), {}), P("name")),
    "experiment-repetitions-zero": (lambda t: (fr.run_experiment, ("tetrahedron", str(t / "out")), {"quick": True, "repetitions": 0}), P("repetitions")),
    "experiment-sample-counts-decreasing": (lambda t: (fr.run_experiment, ("tetrahedron",), {"quick": True, "sample_counts": [10, 5]}), P("sample_counts")),
    "experiment-seed-negative": (lambda t: (fr.run_experiment, ("tetrahedron", str(t / "out")), {"quick": True, "seed": -1}), P("seed")),
    "experiment-jobs-zero": (lambda t: (fr.run_experiment, ("tetrahedron", str(t / "out")), {"quick": True, "n_jobs": 0}), P("n_jobs")),
    "experiment-quick-word": (lambda t: (fr.run_experiment, ("tetrahedron",), {"quick": "yes"}), P("quick")),
    "experiment-figures-word": (lambda t: (fr.run_experiment, ("tetrahedron", str(t / "out")), {"quick": True, "figures": "no"}), P("figures")),
    "experiment-unknown-parameter": (lambda t: (fr.run_experiment, ("tetrahedron",), {"quick": True, "unknown_param": 1}), P("unknown_param")),
    "experiment-margin-word": (lambda t: (fr.run_experiment, ("redundancy",), {"quick": True, "margin": "wide"}), P("margin")),
    "experiment-shapes-too-few-rows": (lambda t: (fr.run_experiment, ("evolution",), {"quick": True, "shapes": [(3, 2)]}), P("shapes")),
    "experiment-bias-stds-negative": (lambda t: (fr.run_experiment, ("redundancy",), {"quick": True, "bias_stds": [-1.0]}), P("bias_stds")),
    "experiment-out-under-a-file": (lambda t: (fr.run_experiment, ("tetrahedron", os.path.join(_write(t / "plain", "x"), "sub")), {"quick": True}), P("out")),
}


def _savez(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _saved_network(folder):
    path = str(folder / "net.npz")
    _tiny_network().save_npz(path)
    return path


@pytest.mark.parametrize("case", list(API_CASES), ids=list(API_CASES))
def test_api_bad_input_raises_naming_the_argument(case, tmp_path, monkeypatch):
    build, match, *rest = API_CASES[case]
    forbid = rest[0] if rest else None
    monkeypatch.chdir(tmp_path)
    func, args, kwargs = build(tmp_path)
    arrays = _arrays_in([args, kwargs], [])
    copies = [a.copy() for a in arrays]
    writeable = [a.flags.writeable for a in arrays]
    before = _tree(tmp_path)
    with pytest.raises(FastReluError) as caught:
        func(*args, **kwargs)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert re.search(match, message), message
    if forbid is not None:
        assert not re.search(forbid, message), message
    for array, copy, flag in zip(arrays, copies, writeable):
        assert _same(array, copy), "the caller's array was modified"
        assert array.flags.writeable == flag, "the caller's array was made read-only"
    assert _tree(tmp_path) == before, "something was written"


# --------------------------------------------------------------------------- infeasible sizes (API)
#
# Run in a child process: an infeasible request that is not refused up front would run
# for years or exhaust memory. The child's address space is capped so that a failed
# refusal cannot take the machine's memory.

_CHILD = f"""
import json, sys
import numpy as np
import fastrelu as fr
rng = np.random.default_rng(0)
case = sys.argv[1]
try:
    if case == "mcbe":
        fr.mcbe(rng.standard_normal((9, 3)), fr.Sphere(3), {HUGE}, seed=0, n_jobs=1)
    elif case == "check_bias":
        fr.check_bias(fr.ReLULayer(rng.standard_normal((60, 30))), fr.Sphere(30), {HUGE}, seed=0, n_jobs=1)
    elif case == "power":
        fr.relu_power_iteration(rng.standard_normal((9, 3)), n_starts={HUGE}, seed=0, n_jobs=1)
    elif case == "width":
        fr.gaussian_mean_width(fr.ReLULayer(rng.standard_normal((9, 3))), n_draws={HUGE}, seed=0, n_jobs=1)
    print(json.dumps({{"type": None, "message": "no error"}}))
except BaseException as exc:
    print(json.dumps({{"type": type(exc).__name__, "fastrelu": isinstance(exc, fr.FastReluError), "message": str(exc)}}))
"""


def _child_env():
    """The environment of a child process, without settings that lift the limits on a
    run's time or memory (the defaults are what is tested)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FASTRELU_MAX")}


def _limit_memory():
    import resource

    cap = 6 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@pytest.mark.parametrize("case, name", [("mcbe", "n_samples"), ("check_bias", "n_points"),
                                        ("power", "n_starts"), ("width", "n_draws")])
def test_api_infeasible_sizes_are_refused_up_front(case, name, tmp_path):
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, case], capture_output=True,
                              text=True, cwd=tmp_path, timeout=REFUSAL_TIMEOUT,
                              preexec_fn=_limit_memory, env=_child_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"not refused within {REFUSAL_TIMEOUT} s: the run started")
    assert proc.stdout.strip(), proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["type"] is not None and result.get("fastrelu"), result
    assert re.search(P(name), result["message"]), result["message"]
    assert re.search(ESTIMATE, result["message"]), result["message"]
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- CLI


def _cli_files(tmp):
    """The input files of the CLI cases (created before the directory is recorded)."""
    W = _W()
    X = _X()
    files = {}

    def save(name, array, **kw):
        files[name] = str(tmp / f"{name}.npy")
        np.save(files[name], array, **kw)

    save("W", W)
    save("W9", _W(30, 9))
    save("WBIG", _W(200, 12))
    save("RANK", np.ones((6, 3)))
    save("ZEROROW", _with(W, 4, 0.0))
    save("INFW", _with(W, (1, 1), np.inf))
    save("STRW", _strings(W))
    save("OBJW", _objects(W), allow_pickle=True)
    save("W3D", np.ones((2, 9, 3)))
    save("X", X)
    save("XWIDE", _X(5, 4))
    save("XNAN", _with(X, (2, 2), np.nan))
    save("B", np.zeros(9))
    save("BSHORT", np.zeros(4))
    save("BNAN", _with(np.zeros(9), 3, np.nan))
    save("BNEGINF", _with(np.zeros(9), 0, -np.inf))
    save("BPOSINF", _with(np.zeros(9), 0, np.inf))
    save("B2D", np.zeros((9, 2)))
    save("Y", np.maximum(X @ W.T, 0.0))
    save("YWIDE", np.ones((5, 4)))
    save("YNAN", _with(np.maximum(X @ W.T, 0.0), (1, 1), np.nan))
    save("LABELS", np.zeros(7, dtype=int))
    files["GARBAGE"] = _write(tmp / "garbage.npy", GARBAGE)
    files["TEXTCSV"] = _write(tmp / "text.csv", "1,2,x\na,b,c\n")
    files["EMPTYTXT"] = _write(tmp / "empty.txt", "")
    files["NPZ2"] = str(tmp / "two.npz")
    np.savez(files["NPZ2"], a=W, b=W)
    files["BNPZ2"] = str(tmp / "biases.npz")
    np.savez(files["BNPZ2"], a=np.zeros(9), b=np.ones(9))
    files["NPZW"] = str(tmp / "layers.npz")
    np.savez(files["NPZW"], hidden=W)
    files["NET"] = _saved_network(tmp)
    files["NETGARB"] = _write(tmp / "broken.npz", GARBAGE)
    files["H5"] = _write(tmp / "net.h5", b"HDF")
    (tmp / "adir").mkdir()
    files["DIR"] = str(tmp / "adir")
    files["PLAIN"] = _write(tmp / "plain", "a file, not a directory")
    files["UNDERFILE"] = os.path.join(files["PLAIN"], "sub")
    files["MISSING"] = str(tmp / "absent.npy")
    files["OUT"] = str(tmp / "out.npy")
    files["OUTNPZ"] = str(tmp / "out.npz")
    files["OUTDIR"] = str(tmp / "results")
    files["NODIR"] = str(tmp / "missing" / "out.npy")
    files["CKPT"] = str(tmp / "run.ckpt.npz")
    return files


def _opt(*names):
    """A regex for a line that names one of ``names`` (options like --data, or quoted
    parameter and file names)."""
    parts = []
    for name in names:
        if name.startswith("-"):
            parts.append(re.escape(name) + r"(?![-\w])")
        else:
            parts.append(P(name))
    return "(" + "|".join(parts) + ")"


def _both(first, second):
    """A regex for a line that names both (an option and the mode it does not apply to)."""
    return rf"(?=.*{first})(?=.*{second})"


# Each case: (argv, match) or (argv, match, forbid); {NAME} are the files above.
CLI_CASES = {
    # bias: files
    "bias-weights-missing": (["bias", "{MISSING}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-directory": (["bias", "{DIR}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-garbage-npy": (["bias", "{GARBAGE}", "--out", "{OUT}"], _opt("weights"), r"pickled"),
    "bias-weights-text-csv": (["bias", "{TEXTCSV}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-empty-txt": (["bias", "{EMPTYTXT}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-npz-wrong-key": (["bias", "{NPZW}", "--key", "nope", "--out", "{OUT}"], _opt("weights", "--key")),
    "bias-weights-npz-two-arrays": (["bias", "{NPZ2}", "--out", "{OUT}"], _opt("--key")),
    "bias-weights-numeric-strings": (["bias", "{STRW}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-object-array": (["bias", "{OBJW}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-3d": (["bias", "{W3D}", "--out", "{OUT}"], _opt("weights")),
    "bias-weights-inf": (["bias", "{INFW}", "--out", "{OUT}"], _opt("weights", "weight")),
    "bias-weights-rank-deficient": (["bias", "{RANK}", "--out", "{OUT}"], _opt("weights", "weight")),
    "bias-data-missing": (["bias", "{W}", "--domain", "data", "--data", "{MISSING}", "--out", "{OUT}"], _opt("data", "--data")),
    "bias-data-empty-txt": (["bias", "{W}", "--domain", "data", "--data", "{EMPTYTXT}", "--out", "{OUT}"], _opt("data", "--data")),
    "bias-data-text-csv": (["bias", "{W}", "--domain", "data", "--data", "{TEXTCSV}", "--out", "{OUT}"], _opt("data", "--data")),
    "bias-data-nan": (["bias", "{W}", "--domain", "data", "--data", "{XNAN}", "--out", "{OUT}"], _opt("data", "--data", "points")),
    "bias-data-npz-wrong-key": (["bias", "{W}", "--domain", "data", "--data", "{NPZ2}", "--data-key", "c", "--out", "{OUT}"], _opt("data", "--data-key")),
    # bias: values
    "bias-samples-negative": (["bias", "{W}", "--samples", "-3", "--out", "{OUT}"], _opt("--samples", "n_samples")),
    "bias-samples-fraction": (["bias", "{W}", "--samples", "1.5", "--out", "{OUT}"], _opt("--samples")),
    "bias-seed-negative": (["bias", "{W}", "--samples", "100", "--seed", "-1", "--out", "{OUT}"], _opt("--seed", "seed")),
    "bias-jobs-zero": (["bias", "{W}", "--samples", "100", "--jobs", "0", "--out", "{OUT}"], _opt("--jobs", "n_jobs")),
    "bias-method-unknown": (["bias", "{W}", "--method", "svd", "--out", "{OUT}"], _opt("--method")),
    "bias-radius-zero": (["bias", "{W}", "--radius", "0", "--out", "{OUT}"], _opt("--radius", "radius")),
    "bias-radius-nan": (["bias", "{W}", "--domain", "ball", "--radius", "nan", "--out", "{OUT}"], _opt("--radius", "radius")),
    "bias-inner-negative": (["bias", "{W}", "--domain", "shell", "--inner", "-1", "--outer", "2", "--out", "{OUT}"], _opt("--inner", "inner")),
    "bias-outer-inf": (["bias", "{W}", "--domain", "shell", "--inner", "1", "--outer", "inf", "--out", "{OUT}"], _opt("--outer", "outer")),
    "bias-margin-negative": (["bias", "{W}", "--samples", "100", "--margin", "-0.5", "--out", "{OUT}"], _opt("--margin", "margin")),
    "bias-margin-nan": (["bias", "{W}", "--samples", "100", "--margin", "nan", "--out", "{OUT}"], _opt("--margin", "margin")),
    "bias-pbe-dimension-too-large": (["bias", "{W9}", "--method", "pbe", "--out", "{OUT}"], _opt("weights", "weight")),
    "bias-pbe-data-domain": (["bias", "{W}", "--method", "pbe", "--domain", "data", "--data", "{X}", "--out", "{OUT}"], _opt("--domain", "domain")),
    "bias-pbe-nonnegative": (["bias", "{W}", "--method", "pbe", "--nonnegative", "--out", "{OUT}"], r"nonnegative"),
    "bias-pbe-seed": (["bias", "{W}", "--method", "pbe", "--seed", "1", "--out", "{OUT}"], _opt("--seed")),
    "bias-local-cluster-zero": (["bias", "{W}", "--samples", "100", "--local-cluster", "0", "--out", "{OUT}"], _opt("--local-cluster")),
    "bias-scheduler-timeout-zero": (["bias", "{W}", "--samples", "100", "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "0", "--out", "{OUT}"], _opt("--scheduler-timeout")),
    "bias-checkpoint-interval-negative": (["bias", "{W}", "--samples", "100", "--checkpoint", "{CKPT}", "--checkpoint-interval", "-1", "--out", "{OUT}"], _opt("--checkpoint-interval", "checkpoint_interval")),
    "bias-checkpoint-missing-directory": (["bias", "{W}", "--samples", "100", "--checkpoint", "{NODIR}", "--out", "{OUT}"], _opt("--checkpoint", "checkpoint")),
    "bias-out-under-a-file": (["bias", "{W}", "--samples", "100", "--out", "{UNDERFILE}"], _opt("--out")),
    # bias: options that do not apply to the chosen mode (both are named)
    "bias-data-without-domain-data": (["bias", "{W}", "--data", "{X}", "--samples", "100", "--out", "{OUT}"], _both(r"--data(?![-\w])", r"--domain")),
    "bias-inner-with-sphere": (["bias", "{W}", "--domain", "sphere", "--inner", "0.5", "--samples", "100", "--out", "{OUT}"], _both("--inner", "sphere")),
    "bias-outer-with-ball": (["bias", "{W}", "--domain", "ball", "--outer", "2", "--samples", "100", "--out", "{OUT}"], _both("--outer", "ball")),
    "bias-radius-with-shell": (["bias", "{W}", "--domain", "shell", "--inner", "0.5", "--outer", "2", "--radius", "3", "--samples", "100", "--out", "{OUT}"], _both("--radius", "shell")),
    "bias-radius-with-data": (["bias", "{W}", "--domain", "data", "--data", "{X}", "--radius", "2", "--out", "{OUT}"], _both("--radius", "data")),
    "bias-nonnegative-with-data": (["bias", "{W}", "--domain", "data", "--data", "{X}", "--nonnegative", "--out", "{OUT}"], _both("--nonnegative", "data")),
    "bias-key-with-npy": (["bias", "{W}", "--key", "hidden", "--samples", "100", "--out", "{OUT}"], _both("--key", r"\.npy")),
    "bias-data-key-without-data": (["bias", "{W}", "--data-key", "a", "--samples", "100", "--out", "{OUT}"], _both("--data-key", r"--data(?![-\w])")),
    "bias-margin-with-data": (["bias", "{W}", "--domain", "data", "--data", "{X}", "--margin", "covering", "--out", "{OUT}"], _opt("--margin", "margin")),
    # check
    "check-bias-missing": (["check", "{W}", "--bias", "{MISSING}"], _opt("bias", "--bias")),
    "check-bias-garbage-npy": (["check", "{W}", "--bias", "{GARBAGE}"], _opt("bias", "--bias"), r"pickled"),
    "check-bias-nan": (["check", "{W}", "--bias", "{BNAN}"], _opt("bias", "--bias")),
    "check-bias-minus-inf": (["check", "{W}", "--bias", "{BNEGINF}"], _opt("bias", "--bias")),
    "check-bias-2d": (["check", "{W}", "--bias", "{B2D}"], _opt("bias", "--bias")),
    "check-bias-npz-two-arrays": (["check", "{W}", "--bias", "{BNPZ2}"], _opt("--bias-key")),
    "check-affine-bias-short": (["check", "{W}", "--affine-bias", "{BSHORT}"], _opt("b", "affine-bias", "--affine-bias")),
    "check-affine-bias-plus-inf": (["check", "{W}", "--affine-bias", "{BPOSINF}"], _opt("b", "affine-bias", "--affine-bias")),
    "check-data-text-csv": (["check", "{W}", "--data", "{TEXTCSV}", "--out", "{OUT}"], _opt("data", "--data")),
    "check-data-nan": (["check", "{W}", "--data", "{XNAN}", "--out", "{OUT}"], _opt("data", "--data", "X")),
    "check-data-directory": (["check", "{W}", "--data", "{DIR}", "--out", "{OUT}"], _opt("data", "--data")),
    "check-out-directory": (["check", "{W}", "--data", "{X}", "--out", "{DIR}"], _opt("--out")),
    "check-points-fraction": (["check", "{W}", "--points", "2.5"], _opt("--points")),
    "check-points-negative": (["check", "{W}", "--points", "-1"], _opt("--points", "n_points")),
    "check-rank-tol-one": (["check", "{W}", "--points", "10", "--rank-tol", "1"], _opt("--rank-tol", "rank_tol")),
    "check-rank-tol-nan": (["check", "{W}", "--points", "10", "--rank-tol", "nan"], _opt("--rank-tol", "rank_tol")),
    "check-seed-negative": (["check", "{W}", "--points", "10", "--seed", "-2"], _opt("--seed", "seed")),
    "check-domain-data": (["check", "{W}", "--domain", "data"], _opt("--domain")),
    "check-jobs-zero": (["check", "{W}", "--points", "10", "--jobs", "0"], _opt("--jobs", "n_jobs")),
    "check-weights-3d": (["check", "{W3D}", "--points", "10"], _opt("weights")),
    "check-bias-key-with-npy": (["check", "{W}", "--bias", "{B}", "--bias-key", "a", "--points", "10"], _both("--bias-key", r"\.npy")),
    "check-nonnegative-with-data": (["check", "{W}", "--data", "{X}", "--nonnegative"], _both("--nonnegative", r"--data(?![-\w])")),
    # reconstruct
    "reconstruct-without-outputs": (["reconstruct", "{W}", "--out", "{OUT}"], _opt("--outputs")),
    "reconstruct-outputs-missing": (["reconstruct", "{W}", "--outputs", "{MISSING}", "--out", "{OUT}"], _opt("outputs", "--outputs")),
    "reconstruct-outputs-text-csv": (["reconstruct", "{W}", "--outputs", "{TEXTCSV}", "--out", "{OUT}"], _opt("outputs", "--outputs")),
    "reconstruct-outputs-wrong-width": (["reconstruct", "{W}", "--outputs", "{YWIDE}", "--out", "{OUT}"], _opt("outputs", "--outputs", "Y")),
    "reconstruct-outputs-nan": (["reconstruct", "{W}", "--outputs", "{YNAN}", "--out", "{OUT}"], _opt("outputs", "--outputs", "Y")),
    "reconstruct-out-missing-directory": (["reconstruct", "{W}", "--outputs", "{Y}", "--out", "{NODIR}"], _opt("--out")),
    "reconstruct-method-unknown": (["reconstruct", "{W}", "--outputs", "{Y}", "--method", "newton", "--out", "{OUT}"], _opt("--method")),
    "reconstruct-cond-unknown": (["reconstruct", "{W}", "--outputs", "{Y}", "--cond", "approx", "--out", "{OUT}"], _opt("--cond")),
    "reconstruct-tol-zero": (["reconstruct", "{W}", "--outputs", "{Y}", "--method", "frame", "--tol", "0", "--out", "{OUT}"], _opt("--tol", "tol")),
    "reconstruct-max-iter-zero": (["reconstruct", "{W}", "--outputs", "{Y}", "--method", "frame", "--max-iter", "0", "--out", "{OUT}"], _opt("--max-iter", "max_iter")),
    "reconstruct-weights-rank-deficient": (["reconstruct", "{RANK}", "--outputs", "{YWIDE}", "--out", "{OUT}"], LAYER_WEIGHT + "|" + _opt("Y", "outputs")),
    "reconstruct-bias-short": (["reconstruct", "{W}", "--bias", "{BSHORT}", "--outputs", "{Y}", "--out", "{OUT}"], _opt("bias", "--bias")),
    "reconstruct-outputs-key-with-npy": (["reconstruct", "{W}", "--outputs", "{Y}", "--outputs-key", "a", "--out", "{OUT}"], _both("--outputs-key", r"\.npy")),
    # verify
    "verify-max-subsets-zero": (["verify", "{W}", "--max-subsets", "0"], _opt("--max-subsets", "max_subsets")),
    "verify-too-many-subsets": (["verify", "{WBIG}"], _opt("--max-subsets", "max_subsets")),
    "verify-weights-garbage-npy": (["verify", "{GARBAGE}"], _opt("weights"), r"pickled"),
    "verify-weights-zero-row": (["verify", "{ZEROROW}"], _opt("weights", "weight")),
    "verify-jobs-zero": (["verify", "{W}", "--jobs", "0"], _opt("--jobs", "n_jobs")),
    "verify-checkpoint-missing-directory": (["verify", "{W}", "--checkpoint", "{NODIR}"], _opt("--checkpoint", "checkpoint")),
    # svals
    "svals-without-k": (["svals", "{W}"], _opt("-k")),
    "svals-k-zero": (["svals", "{W}", "-k", "0"], _opt("-k", "k")),
    "svals-k-fraction": (["svals", "{W}", "-k", "1.5"], _opt("-k")),
    "svals-fit-steps-negative": (["svals", "{W}", "-k", "2", "--fit-steps", "-1"], _opt("--fit-steps", "fit_steps")),
    "svals-bias-short": (["svals", "{W}", "-k", "1", "--bias", "{BSHORT}"], _opt("bias", "--bias")),
    "svals-data-nan": (["svals", "{W}", "-k", "1", "--data", "{XNAN}"], _opt("data", "--data")),
    "svals-checkpoint-with-data": (["svals", "{W}", "-k", "1", "--data", "{X}", "--checkpoint", "{CKPT}"], _opt("--checkpoint", "checkpoint")),
    "svals-bias-key-with-npy": (["svals", "{W}", "-k", "1", "--bias", "{B}", "--bias-key", "a", "--starts", "10"], _both("--bias-key", r"\.npy")),
    # width
    "width-draws-negative": (["width", "{W}", "--draws", "-1"], _opt("--draws", "n_draws")),
    "width-starts-zero": (["width", "{W}", "--draws", "10", "--starts", "0"], _opt("--starts", "n_starts")),
    "width-linear-and-local": (["width", "{W}", "--linear", "--local", "--data", "{X}"], _opt("--linear", "--local")),
    "width-local-checkpoint": (["width", "{W}", "--local", "--data", "{X}", "--checkpoint", "{CKPT}"], _opt("--checkpoint")),
    "width-linear-with-bias": (["width", "{W}", "--linear", "--bias", "{B}", "--draws", "10"], _opt("--linear", "--bias")),
    "width-data-wrong-columns": (["width", "{W}", "--data", "{XWIDE}", "--draws", "10"], _opt("data", "--data")),
    "width-local-out-directory": (["width", "{W}", "--local", "--data", "{X}", "--out", "{DIR}"], _opt("--out")),
    "width-data-key-with-npy": (["width", "{W}", "--data", "{X}", "--data-key", "a", "--draws", "10"], _both("--data-key", r"\.npy")),
    # report
    "report-model-missing": (["report", "{MISSING}", "--data", "{X}", "--out", "{OUTDIR}"], _opt("model", "path") + "|network file"),
    "report-model-garbage-npz": (["report", "{NETGARB}", "--data", "{X}", "--out", "{OUTDIR}"], r"network file|'model'"),
    "report-model-unknown-suffix": (["report", "{H5}", "--data", "{X}", "--out", "{OUTDIR}"], r"network file|'model'"),
    "report-without-data": (["report", "{NET}", "--out", "{OUTDIR}"], _opt("--data")),
    "report-digits-with-data": (["report", "digits", "--data", "{X}", "--out", "{OUTDIR}"], _opt("--data")),
    "report-data-wrong-columns": (["report", "{NET}", "--data", "{XWIDE}", "--out", "{OUTDIR}"], _opt("data", "--data", "X")),
    "report-labels-wrong-length": (["report", "{NET}", "--data", "{X}", "--labels", "{LABELS}", "--out", "{OUTDIR}"], _opt("labels", "--labels", "y")),
    "report-samples-zero": (["report", "{NET}", "--data", "{X}", "--samples", "0", "--out", "{OUTDIR}"], _opt("--samples", "samples")),
    "report-fit-data-wrong-columns": (["report", "{NET}", "--data", "{X}", "--fit-data", "{XWIDE}", "--out", "{OUTDIR}"], _opt("fit-data", "--fit-data", "fit_data")),
    "report-out-under-a-file": (["report", "{NET}", "--data", "{X}", "--out", "{UNDERFILE}"], _opt("--out")),
    "report-enlarge-unknown": (["report", "{NET}", "--data", "{X}", "--enlarge", "smote", "--out", "{OUTDIR}"], _opt("--enlarge")),
    "report-data-key-with-npy": (["report", "{NET}", "--data", "{X}", "--data-key", "a", "--out", "{OUTDIR}"], _both("--data-key", r"\.npy")),
    # experiment
    "experiment-unknown": (["experiment", "nope", "--out", "{OUTDIR}"], _opt("name", "NAME") + "|nope"),
    "experiment-repetitions-zero": (["experiment", "tetrahedron", "--quick", "--set", "repetitions=0", "--out", "{OUTDIR}"], _opt("repetitions")),
    "experiment-set-seed": (["experiment", "tetrahedron", "--quick", "--set", "seed=3", "--out", "{OUTDIR}"], _opt("--set", "--seed")),
    "experiment-set-without-value": (["experiment", "tetrahedron", "--quick", "--set", "repetitions", "--out", "{OUTDIR}"], _opt("--set")),
    "experiment-set-unknown-key": (["experiment", "tetrahedron", "--quick", "--set", "bogus=1", "--out", "{OUTDIR}"], _opt("bogus")),
    "experiment-jobs-zero": (["experiment", "tetrahedron", "--quick", "--jobs", "0", "--out", "{OUTDIR}"], _opt("--jobs", "n_jobs")),
    "experiment-seed-negative": (["experiment", "tetrahedron", "--quick", "--seed", "-1", "--out", "{OUTDIR}"], _opt("--seed", "seed")),
    "experiment-out-under-a-file": (["experiment", "tetrahedron", "--quick", "--out", "{UNDERFILE}"], _opt("--out", "out")),
    # demo
    "demo-samples-zero": (["demo", "--samples", "0"], _opt("--samples", "n_samples")),
    "demo-samples-word": (["demo", "--samples", "many"], _opt("--samples")),
    "demo-seed-negative": (["demo", "--samples", "100", "--seed", "-1"], _opt("--seed", "seed")),
    "demo-jobs-zero": (["demo", "--samples", "100", "--jobs", "0"], _opt("--jobs", "n_jobs")),
    "demo-unknown-option": (["demo", "--bogus"], _opt("--bogus")),
}


def _run_cli(argv, tmp_path, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code, out, err, match, forbid=None):
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr must be one line: {err!r}"
    assert lines[0].startswith("fastrelu"), lines[0]
    assert re.search(match, lines[0]), lines[0]
    if forbid is not None:
        assert not re.search(forbid, lines[0]), lines[0]
    assert out == "", f"stdout must be empty: {out!r}"


@pytest.mark.parametrize("case", list(CLI_CASES), ids=list(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys, monkeypatch):
    argv, match, *rest = CLI_CASES[case]
    monkeypatch.chdir(tmp_path)
    files = _cli_files(tmp_path)
    argv = [a.format(**files) for a in argv]
    before = _tree(tmp_path)
    code, out, err = _run_cli(argv, tmp_path, capsys)
    _assert_one_line_error(code, out, err, match, rest[0] if rest else None)
    assert _tree(tmp_path) == before, "something was written"
    assert not os.path.exists(files["OUT"]) and not os.path.exists(files["OUTDIR"])


# --------------------------------------------------------------------------- batch specs

BATCH_CASES = {
    "garbage-bytes": (GARBAGE, _opt("SPEC")),
    "empty-file": ("", _opt("SPEC")),
    "top-level-array": ("job = [1, 2]\n", _opt("job")),
    "weights-a-number": ("[[job]]\nweights = 3\n", _opt("weights")),
    "samples-negative-in-grid": ("[[grid]]\nweights = \"W.npy\"\nsamples = [100, -1]\n", _opt("samples")),
    "samples-a-string": ("[[job]]\nweights = \"W.npy\"\nsamples = \"100\"\n", _opt("samples")),
    "seed-a-string": ("[[job]]\nweights = \"W.npy\"\nseed = \"abc\"\n", _opt("seed")),
    "rank-tol-a-boolean": ("[[job]]\nweights = \"W.npy\"\nrank_tol = true\n", _opt("rank_tol")),
    "rank-tol-zero": ("[[job]]\nweights = \"W.npy\"\nrank_tol = 0.0\n", _opt("rank_tol")),
    "radius-nan": ("[[job]]\nweights = \"W.npy\"\ndomain = \"sphere\"\nradius = nan\n", _opt("radius")),
    "outer-inf": ("[[job]]\nweights = \"W.npy\"\ndomain = \"shell\"\ninner = 0.5\nouter = inf\n", _opt("outer")),
    "shell-without-outer": ("[[job]]\nweights = \"W.npy\"\ndomain = \"shell\"\ninner = 0.5\n", _opt("outer")),
    "margin-nan": ("[[job]]\nweights = \"W.npy\"\nmargin = nan\n", _opt("margin")),
    "random-n-zero": ("[[job]]\nweights = {random = \"sphere\", m = 5, n = 0}\n", _opt("n")),
    "random-seed-negative": ("[[job]]\nweights = {random = \"gaussian\", m = 5, n = 2, seed = -4}\n", _opt("seed")),
    "weights-a-directory": ("[[job]]\nweights = \"adir\"\n", _opt("weights")),
}


@pytest.mark.parametrize("case", list(BATCH_CASES), ids=list(BATCH_CASES))
def test_cli_batch_bad_spec_is_one_line_exit_2_nothing_written(case, tmp_path, capsys, monkeypatch):
    text, match = BATCH_CASES[case]
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "W.npy", _W())
    (tmp_path / "adir").mkdir()
    spec = _write(tmp_path / "spec.toml", text)
    out = tmp_path / "results"
    before = _tree(tmp_path)
    code, stdout, err = _run_cli(["batch", spec, "--out", str(out), "--no-progress"], tmp_path, capsys)
    _assert_one_line_error(code, stdout, err, match)
    assert _tree(tmp_path) == before, "something was written"
    assert not out.exists()


# --------------------------------------------------------------------------- CLI in a child process
#
# Infeasible sizes (a failed refusal would run for years or exhaust memory) and an
# unreachable scheduler (whose clean-up could print after main returns) run as the
# console command does, in a child process.

CHILD_CLI_CASES = {
    "bias-samples-infeasible": (["bias", "{W}", "--samples", str(HUGE), "--jobs", "1", "--out", "{OUT}"], _opt("--samples", "n_samples"), True),
    "check-points-infeasible": (["check", "{W30}", "--points", str(HUGE), "--jobs", "1"], _opt("--points", "n_points"), True),
    "svals-starts-infeasible": (["svals", "{W}", "-k", "1", "--starts", str(HUGE), "--jobs", "1"], _opt("--starts", "n_starts"), True),
    "width-draws-infeasible": (["width", "{W}", "--draws", str(HUGE), "--jobs", "1"], _opt("--draws", "n_draws"), True),
    # a random layer's size is a value of the spec: refused before any job runs, with
    # the estimate, rather than failing in its turn
    "batch-random-layer-too-large": (["batch", "{SPEC_BIG}", "--out", "{OUTDIR}", "--jobs", "1"], _opt("weights", "weight", "m"), True),
    "bias-scheduler-unreachable": (["bias", "{W}", "--samples", "100", "--scheduler", "notanaddress", "--scheduler-timeout", "2", "--out", "{OUT}"], r"--scheduler|notanaddress", False),
}


@pytest.mark.parametrize("case", list(CHILD_CLI_CASES), ids=list(CHILD_CLI_CASES))
def test_cli_in_a_child_process_one_line_exit_2(case, tmp_path):
    argv, match, infeasible = CHILD_CLI_CASES[case]
    if "--scheduler" in argv:
        pytest.importorskip("distributed")
    files = {"W": str(tmp_path / "W.npy"), "W30": str(tmp_path / "W30.npy"), "OUT": str(tmp_path / "alpha.npy"),
             "OUTDIR": str(tmp_path / "results"),
             "SPEC_BIG": _write(tmp_path / "big.toml", "[[job]]\nname = \"big\"\nweights = {random = \"gaussian\", m = 10_000_000, n = 100_000}\n")}
    np.save(files["W"], _W())
    np.save(files["W30"], _W(60, 30))
    before = _tree(tmp_path)
    command = [sys.executable, "-m", "fastrelu"] + [a.format(**files) for a in argv]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                              timeout=REFUSAL_TIMEOUT if infeasible else 60,
                              preexec_fn=_limit_memory if infeasible else None,
                              env=_child_env())
    except subprocess.TimeoutExpired:
        pytest.fail("no answer in time: the run started instead of being refused")
    _assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, match)
    assert "Exception ignored" not in proc.stderr
    if infeasible:
        assert re.search(ESTIMATE, proc.stderr), proc.stderr
    assert _tree(tmp_path) == before, "something was written"
