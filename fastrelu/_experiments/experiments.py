"""The numerical experiments of [HEB], reproducible from a seed (docs/experiments.md).

Four experiments, each a function of its parameters and a seed that returns a
JSON-ready record (every parameter used, the seed, the run time, the library version)
and optionally writes ``NAME.json`` and figures ``NAME_*.png`` to a directory:

- ``tetrahedron``: convergence of MCBE to the maximal bias ``-1/sqrt(3)`` of the regular
  tetrahedron with the number of samples;
- ``evolution``: pointwise injectivity on fresh sphere points of the bias MCBE has found
  after ``N`` samples, as ``N`` grows, with and without the covering-radius margin;
- ``redundancy``: for random layers over a grid of ``(n, m)``, the fraction of neurons
  whose MCBE bias admits a zero, a ``N(0, 0.1^2)`` and a ``N(0, 1)`` bias, beside the
  exact verdict of :func:`verify_injective` for small ``n``;
- ``training`` (needs torch and scikit-learn; module ``training``): digits MLPs and the
  digits CNN trained with and without the injectivity monitor's bias projection.

Only public functions of the library are used (:func:`mcbe`, :func:`check_bias`,
:func:`covering_radius`, :func:`verify_injective`). Randomness comes from
``SeedSequence(seed, spawn_key=(experiment, ...))``: every repetition and every cell has
its own stream, so a result never depends on the thread count, on the order of the work
or on which other cells a grid contains.
"""

import json
import math
import os
import platform
import sys
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from tqdm.auto import tqdm

from fastrelu._bias.mcbe import covering_radius, mcbe
from fastrelu._core.domains import Sphere
from fastrelu._core.errors import FastReluError
from fastrelu._core.io import jsonable, output_directory
from fastrelu._core.layer import ReLULayer
from fastrelu._core.validation import n_jobs_value, positive_float, positive_int, seed_value
from fastrelu._experiments import training
from fastrelu._injectivity.pointwise import check_bias
from fastrelu._injectivity.verify import verify_injective
from fastrelu._runtime.parallel import Stopwatch

#: The regular tetrahedron: four unit rows in R^3 with pairwise inner products -1/3.
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)
#: Its maximal bias on the unit sphere, the same for every row (THEORY §3).
TETRAHEDRON_ALPHA = -1.0 / np.sqrt(3.0)
#: Injectivity threshold m/n of Gaussian zero-bias layers as n -> inf (Maillard et al.
#: 2023, non-rigorous; THEORY §5), drawn on the heat maps.
GAUSSIAN_THRESHOLD = 6.698

# First spawn-key entry of each experiment's random streams.
_TAG = {"tetrahedron": 1, "evolution": 2, "redundancy": 3, "training": training.TAG}


def _log_grid(low, high, per_decade):
    """Distinct integers ``round(10^k)`` for ``k`` from ``low`` to ``high`` in steps of
    ``1 / per_decade``."""
    steps = int(round((high - low) * per_decade)) + 1
    return sorted({int(round(10.0 ** e)) for e in np.linspace(low, high, steps)})


# --------------------------------------------------------------------------- validation


def _int_list(value, name, *, minimum=1, increasing=True):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise FastReluError(f"The '{name}' parameter must be a non-empty list of integers >= {minimum}. Got {value!r} instead.")
    items = [positive_int(v, name, minimum=minimum) for v in value]
    if not items:
        raise FastReluError(f"The '{name}' parameter must be a non-empty list of integers >= {minimum}. Got {value!r} instead.")
    if increasing and any(b <= a for a, b in zip(items, items[1:])):
        raise FastReluError(f"The '{name}' parameter must be strictly increasing. Got {items!r} instead.")
    return items


def _shapes(value, name):
    """A non-empty list of ``(n, m)`` pairs with ``m >= n >= 1``."""
    message = f"The '{name}' parameter must be a non-empty list of (n, m) pairs with m >= n >= 1. Got {value!r} instead."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise FastReluError(message)
    pairs = []
    for pair in value:
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise FastReluError(message)
        n, m = (positive_int(v, name) for v in pair)
        if m < n:
            raise FastReluError(message)
        pairs.append((n, m))
    if not pairs:
        raise FastReluError(message)
    return pairs


def _float_list(value, name):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise FastReluError(f"The '{name}' parameter must be a non-empty list of real numbers > 0. Got {value!r} instead.")
    items = [positive_float(v, name) for v in value]
    if not items:
        raise FastReluError(f"The '{name}' parameter must be a non-empty list of real numbers > 0. Got {value!r} instead.")
    return items


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise FastReluError(f"The '{name}' parameter must be True or False. Got {value!r} instead.")
    return bool(value)


def _margin(value, name):
    if value == "covering":
        return value
    if isinstance(value, str):
        raise FastReluError(f"The '{name}' parameter must be 'covering' or a float >= 0. Got {value!r} instead.")
    return positive_float(value, name, allow_zero=True)


def _count(minimum):
    return lambda value, name: positive_int(value, name, minimum=minimum)


def _nonnegative_int(value, name):
    return positive_int(value, name, minimum=0)


# --------------------------------------------------------------------------- helpers


def _stream(seed, *key):
    return np.random.SeedSequence(seed, spawn_key=key)


def _generator(seed, *key):
    return np.random.default_rng(_stream(seed, *key))


def _child_seed(seed, *key):
    """An integer seed for a library call, derived from ``seed`` and ``key``."""
    return int(_stream(seed, *key).generate_state(1, np.uint64)[0])


def _random_weight(rng, m, n, unit_rows):
    """``m x n`` i.i.d. standard normal entries; with ``unit_rows`` each row divided by
    its norm (then the rows are uniform on the unit sphere)."""
    W = rng.standard_normal((m, n))
    if unit_rows:
        W /= np.linalg.norm(W, axis=1, keepdims=True)
    return W


def _finite_bias(alpha, norms):
    """The bias with ``+inf`` (a row no sample constrained) replaced by ``2 |w_i|``.

    On the unit sphere ``<x, w_i> <= |w_i|``, so any bias above ``|w_i|`` switches the
    row off everywhere, which is what ``+inf`` means there; a layer needs finite numbers.
    """
    return np.where(np.isfinite(alpha), alpha, 2.0 * norms)


def _stats(values, axis=0):
    """Mean, standard deviation, minimum and maximum along ``axis``. A column with a
    ``+inf`` entry has mean and maximum ``+inf`` and standard deviation NaN (written as
    ``null`` in the JSON record); its minimum stays finite unless every entry is
    ``+inf``."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return {"mean": values.mean(axis=axis), "std": values.std(axis=axis),
                "min": values.min(axis=axis), "max": values.max(axis=axis)}


def _progress_bar(total, progress, desc):
    if progress is None:
        return tqdm(total=total, desc=desc, delay=2.0, file=sys.stderr,
                    disable=not sys.stderr.isatty(), leave=False)
    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not progress, leave=False)


# --------------------------------------------------------------------------- tetrahedron


def _run_tetrahedron(p, seed, n_jobs, progress):
    """MCBE on the regular tetrahedron at every sample count, ``repetitions`` times.

    The error of a run is ``max_i (alpha_i - alpha^S)`` with ``alpha^S = -1/sqrt(3)``:
    the worst row. It is never negative (the samples lie on the sphere, so the minimum
    over them is at least the infimum over the sphere) and does not increase with the
    count (a seeded run with more samples extends the one with fewer). The Euclidean
    distance ``|alpha - alpha^S|`` is recorded too.
    """
    counts, reps = p["sample_counts"], p["repetitions"]
    sphere = Sphere(3)
    seeds = [_child_seed(seed, _TAG["tetrahedron"], r) for r in range(reps)]
    worst = np.empty((reps, len(counts)))
    euclid = np.empty((reps, len(counts)))
    unconstrained = np.zeros(len(counts), dtype=np.int64)
    bar = _progress_bar(reps, progress, "tetrahedron")
    try:
        for r, run_seed in enumerate(seeds):
            for k, N in enumerate(counts):
                estimate = mcbe(TETRAHEDRON, sphere, N, seed=run_seed, n_jobs=n_jobs)
                error = estimate.alpha - TETRAHEDRON_ALPHA
                worst[r, k] = error.max()
                euclid[r, k] = np.linalg.norm(error)
                unconstrained[k] += bool(estimate.unconstrained.any())
            bar.update(1)
    finally:
        bar.close()
    stats = _stats(worst)
    fit_counts = np.array(counts, dtype=float)
    keep = (fit_counts >= p["fit_from"]) & np.isfinite(stats["mean"]) & (stats["mean"] > 0)
    if keep.sum() >= 2:
        slope, intercept = np.polyfit(np.log10(fit_counts[keep]), np.log10(stats["mean"][keep]), 1)
        fit = {"rate": float(slope), "constant": float(10.0 ** intercept),
               "counts": fit_counts[keep].astype(int).tolist()}
    else:
        fit = {"rate": None, "constant": None, "counts": fit_counts[keep].astype(int).tolist()}
    euclid_stats = _stats(euclid)
    return {
        "exact_alpha": TETRAHEDRON_ALPHA,
        "sample_counts": counts,
        "error": stats,
        "euclidean": {"mean": euclid_stats["mean"], "std": euclid_stats["std"]},
        "runs_with_unconstrained_rows": unconstrained,
        "fit": fit,
        "predicted_rate": -2.0 / 3.0,
        "repetition_seeds": seeds,
        "per_repetition": worst,
    }


def _describe_tetrahedron(results):
    counts = results["sample_counts"]
    error = results["error"]
    lines = [f"error max_i (alpha_i + 1/sqrt(3)) over {len(results['repetition_seeds'])} repetitions:"]
    for k in sorted({0, len(counts) // 2, len(counts) - 1}):
        mean, std = error["mean"][k], error["std"][k]
        lines.append(f"  N = {counts[k]:>9}: mean {_fmt(mean)}, std {_fmt(std)}, "
                     f"min {_fmt(error['min'][k])}, max {_fmt(error['max'][k])}")
    rate = results["fit"]["rate"]
    lines.append(f"fitted rate (log-log slope from N = {results['fit']['counts'][0] if results['fit']['counts'] else '-'}): "
                 f"{_fmt(rate)} (heuristic prediction {results['predicted_rate']:.3f})")
    return lines


def _plot_tetrahedron(results, plt_figure, path):
    counts = np.array(results["sample_counts"], dtype=float)
    error = {k: np.array(v, dtype=float) for k, v in results["error"].items()}
    fig = plt_figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    ax.fill_between(counts, error["min"], error["max"], color="tab:blue", alpha=0.15,
                    label="min - max over repetitions")
    low = np.maximum(error["mean"] - error["std"], error["min"])
    ax.fill_between(counts, low, error["mean"] + error["std"], color="tab:blue", alpha=0.3,
                    label="mean +- std")
    ax.plot(counts, error["mean"], color="tab:blue", marker="o", markersize=3,
            label=r"mean of $\max_i\,(\alpha_i - \alpha^{S})$")
    euclid = np.array(results["euclidean"]["mean"], dtype=float)
    ax.plot(counts, euclid, color="0.4", linestyle=":", label=r"mean of $\|\alpha - \alpha^{S}\|_2$")
    fit = results["fit"]
    if fit["rate"] is not None:
        grid = np.array(fit["counts"], dtype=float)
        ax.plot(grid, fit["constant"] * grid ** fit["rate"], color="tab:red", linestyle="--",
                label=f"fit: {fit['constant']:.2g} N^{fit['rate']:.3f} (heuristic rate -2/3)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of samples N on the unit sphere")
    ax.set_ylabel(r"error of the MCBE bias ($\alpha^{S} = -1/\sqrt{3}$)")
    ax.set_title(f"MCBE on the regular tetrahedron, {len(results['repetition_seeds'])} repetitions")
    ax.grid(True, which="both", linestyle="--", alpha=0.4)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return [path]


# --------------------------------------------------------------------------- evolution


def _run_evolution(p, seed, n_jobs, progress):
    """Pointwise injectivity on fresh points while MCBE runs.

    For each shape ``(n, m)`` and repetition a random layer is drawn and one seeded MCBE
    run is evaluated after ``N`` samples for every ``N`` of the grid (recomputing with the
    larger count extends the smaller run exactly). Its bias, without margin
    (``alpha_sampled``) and with the covering-radius margin of ``N`` samples
    (``alpha``), is checked on the same ``fresh_points`` uniform points of the sphere at
    every ``N`` (a stream of the seed that MCBE never draws from). Without margin the
    bias only decreases with ``N``, so each repetition's fraction never decreases.
    """
    counts, reps, fresh = p["sample_counts"], p["repetitions"], p["fresh_points"]
    shapes = []
    bar = _progress_bar(len(p["shapes"]) * reps, progress, "evolution")
    try:
        for n, m in p["shapes"]:
            sphere = Sphere(n)
            plain = np.empty((reps, len(counts)))
            margin = np.empty((reps, len(counts)))
            unconstrained = np.empty((reps, len(counts)))
            always_active = np.empty((reps, len(counts)))
            seeds = []
            for r in range(reps):
                W = _random_weight(_generator(seed, _TAG["evolution"], n, m, r), m, n, p["unit_rows"])
                norms = np.linalg.norm(W, axis=1)
                run_seed = _child_seed(seed, _TAG["evolution"], n, m, r)
                seeds.append(run_seed)
                for k, N in enumerate(counts):
                    estimate = mcbe(W, sphere, N, seed=run_seed, margin="covering", n_jobs=n_jobs)
                    unconstrained[r, k] = estimate.unconstrained.sum()
                    # a bias <= -|w_i| keeps row i active on the whole unit sphere
                    always_active[r, k] = np.mean(estimate.alpha <= -norms)
                    for table, alpha in ((plain, estimate.alpha_sampled), (margin, estimate.alpha)):
                        layer = ReLULayer(W, _finite_bias(alpha, norms))
                        table[r, k] = check_bias(layer, sphere, fresh, seed=run_seed, n_jobs=n_jobs).fraction
                bar.update(1)
            shapes.append({
                "n": n, "m": m,
                "covering_radius": [covering_radius(N, n) for N in counts],
                "without_margin": _stats(plain),
                "with_margin": _stats(margin),
                "unconstrained_rows_mean": unconstrained.mean(axis=0),
                "always_active_with_margin_mean": always_active.mean(axis=0),
                "repetition_seeds": seeds,
                "per_repetition": {"without_margin": plain, "with_margin": margin},
            })
    finally:
        bar.close()
    return {"sample_counts": counts, "shapes": shapes}


def _describe_evolution(results):
    counts = results["sample_counts"]
    lines = ["mean fraction of fresh sphere points injective (without margin / with margin):"]
    picks = sorted({0, len(counts) // 2, len(counts) - 1})
    for shape in results["shapes"]:
        cells = ", ".join(f"N={counts[k]}: {_fmt(shape['without_margin']['mean'][k], 3)}"
                          f" / {_fmt(shape['with_margin']['mean'][k], 3)}" for k in picks)
        lines.append(f"  n={shape['n']:>3}, m={shape['m']:>4}: {cells}")
    return lines


def _plot_evolution(results, plt_figure, path):
    counts = np.array(results["sample_counts"], dtype=float)
    dims = sorted({s["n"] for s in results["shapes"]})
    fig = plt_figure(figsize=(6.0 * len(dims), 4.6))
    axes = fig.subplots(1, len(dims), squeeze=False)[0]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, n in zip(axes, dims):
        for j, shape in enumerate(s for s in results["shapes"] if s["n"] == n):
            color = colors[j % len(colors)]
            for key, style, label in (("without_margin", "-", "no margin"),
                                      ("with_margin", "--", "covering margin")):
                stats = {k: np.array(v, dtype=float) for k, v in shape[key].items()}
                ax.plot(counts, stats["mean"], color=color, linestyle=style,
                        label=f"m = {shape['m']}, {label}")
                ax.fill_between(counts, np.clip(stats["mean"] - stats["std"], 0, 1),
                                np.clip(stats["mean"] + stats["std"], 0, 1), color=color,
                                alpha=0.15 if key == "without_margin" else 0.07)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("MCBE samples N")
        ax.set_title(f"n = {n}")
        ax.grid(True, which="both", linestyle="--", alpha=0.4)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("fraction of fresh sphere points injective")
    fig.suptitle("Pointwise injectivity of the MCBE bias while it runs (mean +- std over layers)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return [path]


# --------------------------------------------------------------------------- redundancy


def _admission(alpha, stds):
    """Which biases the MCBE bias ``alpha`` (one row per layer) admits.

    A layer with bias ``alpha`` admits a bias ``b`` (same convention, subtracted) when
    ``b_i <= alpha_i``: then it is injective at the samples too (for ``alpha`` without
    margin) or, as far as the margin estimate holds, on the whole sphere. For
    ``b_i ~ N(0, s^2)`` the probability is ``Phi(alpha_i / s)``; averages of it are
    the expected fractions, with no bias actually drawn.
    """
    alpha = np.asarray(alpha, dtype=float)
    probs = [ndtr(alpha / s) for s in stds]
    return {
        "zero": float(np.mean(alpha >= 0.0)),
        "normal": [float(pr.mean()) for pr in probs],
        "layers_zero": float(np.mean(np.all(alpha >= 0.0, axis=1))),
        "layers_normal": [float(np.mean(np.prod(pr, axis=1))) for pr in probs],
    }


def _run_redundancy(p, seed, n_jobs, progress):
    """MCBE biases of random layers over a grid of input dimensions and widths.

    Each cell ``(n, m)`` with ``m >= n`` draws ``layers`` random layers, runs MCBE with
    ``n_samples`` samples on the unit sphere and the margin, and records which biases
    the result admits (:func:`_admission`) with and without the margin; for
    ``n <= verify_max_dim`` it also decides each layer's zero-bias injectivity on R^n
    exactly with :func:`verify_injective`.

    The exact verdict is the limit of "every neuron admits zero": zero bias is injective
    iff the maximal MCBE bias is ``>= 0`` at every neuron (if the rows with
    ``<x, w_i> >= 0`` span, the scan by decreasing correlation takes its basis among
    them). So an injective layer has ``alpha_sampled >= 0`` everywhere; the other way
    round the samples (or the margin) can be wrong, which ``contradictions_*`` counts.
    """
    dims, widths, stds = p["dims"], p["neurons"], p["bias_stds"]
    cells = []
    todo = [(n, m) for n in dims for m in widths if m >= n]
    bar = _progress_bar(len(todo), progress, "redundancy")
    try:
        for n, m in todo:
            sphere = Sphere(n)
            with_margin, without_margin, unconstrained, eps = [], [], 0, None
            verdicts, min_active, refused = [], [], None
            for layer_index in range(p["layers"]):
                key = (_TAG["redundancy"], n, m, layer_index)
                W = _random_weight(_generator(seed, *key), m, n, p["unit_rows"])
                estimate = mcbe(W, sphere, p["n_samples"], seed=_child_seed(seed, *key),
                                margin=p["margin"], n_jobs=n_jobs)
                with_margin.append(estimate.alpha)
                without_margin.append(estimate.alpha_sampled)
                unconstrained += int(estimate.unconstrained.sum())
                eps = estimate.margin
                if n <= p["verify_max_dim"] and refused is None:
                    try:
                        verdict = verify_injective(W, n_jobs=n_jobs)
                    except FastReluError as exc:  # over the budget: reported, never guessed
                        refused = str(exc)
                    else:
                        verdicts.append(verdict.injective)
                        min_active.append(verdict.min_active)
            cell = {"n": n, "m": m, "covering_radius": eps,
                    "unconstrained_rows": unconstrained,
                    "with_margin": _admission(with_margin, stds),
                    "without_margin": _admission(without_margin, stds),
                    "exact": None}
            if n <= p["verify_max_dim"]:
                if refused is not None:
                    cell["exact"] = {"refused": refused}
                else:
                    verdicts = np.array(verdicts)
                    all_zero = np.all(np.array(with_margin) >= 0.0, axis=1)
                    all_zero_plain = np.all(np.array(without_margin) >= 0.0, axis=1)
                    cell["exact"] = {
                        "injective": float(verdicts.mean()),
                        "min_active_mean": float(np.mean(min_active)),
                        # MCBE says "zero bias is admitted by every neuron" but the layer
                        # is not injective: the margin (or the sampling) was too optimistic.
                        "contradictions_with_margin": int(np.sum(all_zero & ~verdicts)),
                        "contradictions_without_margin": int(np.sum(all_zero_plain & ~verdicts)),
                    }
            cells.append(cell)
            bar.update(1)
    finally:
        bar.close()
    return {"dims": dims, "neurons": widths, "bias_stds": stds, "cells": cells,
            "gaussian_threshold": GAUSSIAN_THRESHOLD}


def _describe_redundancy(results):
    cells = results["cells"]
    stds = results["bias_stds"]
    lines = [f"{len(cells)} cells; fraction of neurons admitting zero / "
             + " / ".join(f"N(0, {s:g}^2)" for s in stds) + " bias (with margin; without margin):"]
    by_n = {}
    for cell in cells:
        by_n.setdefault(cell["n"], []).append(cell)
    for n, row in by_n.items():
        cell = row[-1]
        wm, pm = cell["with_margin"], cell["without_margin"]
        text = (f"  n={n:>3}, m={cell['m']:>4}: " + " / ".join(_fmt(v, 3) for v in [wm["zero"], *wm["normal"]])
                + "; " + " / ".join(_fmt(v, 3) for v in [pm["zero"], *pm["normal"]]))
        if cell["exact"] is not None and "injective" in cell["exact"]:
            text += f"; exactly injective: {_fmt(cell['exact']['injective'], 3)}"
        lines.append(text)
    contradictions = sum(c["exact"]["contradictions_with_margin"] for c in cells
                         if c["exact"] is not None and "injective" in c["exact"])
    lines.append(f"layers where MCBE with margin admits zero bias but the layer is not injective: {contradictions}")
    return lines


def _position(values, x):
    """Position of the value ``x`` on a heat-map axis whose ``k``-th cell shows
    ``values[k]``: piecewise linear between grid values, linear beyond the ends."""
    v = np.asarray(values, dtype=float)
    x = np.asarray(x, dtype=float)
    if v.size == 1:
        return x - v[0]
    k = np.arange(v.size, dtype=float)
    below = (x - v[0]) / (v[1] - v[0])
    above = k[-1] + (x - v[-1]) / (v[-1] - v[-2])
    return np.where(x < v[0], below, np.where(x > v[-1], above, np.interp(x, v, k)))


def _value(values, t):
    """Inverse of :func:`_position`: the value at axis position ``t``."""
    v = np.asarray(values, dtype=float)
    t = np.asarray(t, dtype=float)
    if v.size == 1:
        return v[0] + t
    k = np.arange(v.size, dtype=float)
    below = v[0] + t * (v[1] - v[0])
    above = v[-1] + (t - k[-1]) * (v[-1] - v[-2])
    return np.where(t < 0, below, np.where(t > k[-1], above, np.interp(t, k, v)))


def _grid(results, value):
    """``Z[j, i]`` = ``value(cell)`` for ``m = neurons[j]``, ``n = dims[i]`` (NaN: no cell)."""
    dims, widths = results["dims"], results["neurons"]
    Z = np.full((len(widths), len(dims)), np.nan)
    for cell in results["cells"]:
        v = value(cell)
        if v is not None:
            Z[widths.index(cell["m"]), dims.index(cell["n"])] = v
    return Z


def _heatmap(ax, dims, widths, Z, title, fontsize):
    """One annotated heat map, one equal-sized cell per grid value (the grids are far
    from uniform), with the lines ``m = 2n`` and ``m = 6.698 n`` mapped onto it."""
    image = ax.imshow(np.ma.masked_invalid(Z), origin="lower", aspect="auto", cmap="cividis",
                      vmin=0.0, vmax=1.0, interpolation="nearest")
    for j in range(len(widths)):
        for i in range(len(dims)):
            if np.isfinite(Z[j, i]):
                ax.text(i, j, f"{Z[j, i]:.2f}", ha="center", va="center", fontsize=fontsize,
                        color="black" if Z[j, i] > 0.6 else "white")
    t = np.linspace(-0.5, len(dims) - 0.5, 400)
    for slope, style, label in ((2.0, "--", "m = 2n"),
                                (GAUSSIAN_THRESHOLD, "-", f"m = {GAUSSIAN_THRESHOLD} n")):
        y = _position(widths, slope * _value(dims, t))
        inside = (y >= -0.5) & (y <= len(widths) - 0.5)
        ax.plot(t[inside], y[inside], linestyle=style, color="magenta", linewidth=1.2, label=label)
    ax.set_xlim(-0.5, len(dims) - 0.5)
    ax.set_ylim(-0.5, len(widths) - 0.5)
    ax.set_xticks(range(len(dims)), [str(n) for n in dims])
    ax.set_yticks(range(len(widths)), [str(m) for m in widths])
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("input dimension n")
    return image


def _plot_redundancy(results, plt_figure, path):
    dims, widths, stds = results["dims"], results["neurons"], results["bias_stds"]
    fontsize = 7 if len(dims) * len(widths) <= 80 else 6
    paths = []
    columns = [("zero bias", lambda part: part["zero"])]
    columns += [(f"N(0, {s:g}^2) bias", lambda part, j=j: part["normal"][j]) for j, s in enumerate(stds)]
    fig = plt_figure(figsize=(5.2 * len(columns) + 1.0, 9.0))
    axes = fig.subplots(2, len(columns), squeeze=False)
    for row, key in enumerate(("with_margin", "without_margin")):
        for col, (label, pick) in enumerate(columns):
            ax = axes[row, col]
            Z = _grid(results, lambda cell, pick=pick, key=key: pick(cell[key]))
            mesh = _heatmap(ax, dims, widths, Z, f"{label}, {key.replace('_', ' ')}", fontsize)
            if col == 0:
                ax.set_ylabel("neurons m")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper left", fontsize=8, frameon=False)
    # fixed margins and colorbar axes: a layout engine costs seconds on these grids
    fig.subplots_adjust(left=0.05, right=0.9, bottom=0.06, top=0.92, wspace=0.18, hspace=0.25)
    fig.colorbar(mesh, cax=fig.add_axes([0.92, 0.2, 0.012, 0.6]),
                 label="fraction of neurons whose MCBE bias admits it")
    fig.suptitle("Random layers: which biases the MCBE bias admits (b_i <= alpha_i)")
    fig.savefig(path, dpi=100)
    paths.append(path)

    small = [n for n in dims if any(c["n"] == n and c["exact"] is not None and "injective" in c["exact"]
                                    for c in results["cells"])]
    if small:
        sub = {"dims": small, "neurons": widths,
               "cells": [c for c in results["cells"] if c["n"] in small]}
        panels = [
            ("exactly injective (verify_injective)", lambda c: c["exact"]["injective"]),
            ("all neurons admit zero bias, with margin", lambda c: c["with_margin"]["layers_zero"]),
            ("all neurons admit zero bias, without margin", lambda c: c["without_margin"]["layers_zero"]),
            ("neurons admitting zero bias, with margin", lambda c: c["with_margin"]["zero"]),
        ]
        fig = plt_figure(figsize=(3.4 * len(panels) + 1.5, 6.0))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (label, pick) in zip(axes, panels):
            mesh = _heatmap(ax, small, widths, _grid(sub, pick), label, 7)
        axes[0].set_ylabel("neurons m")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper left", fontsize=8, frameon=False)
        fig.subplots_adjust(left=0.05, right=0.9, bottom=0.09, top=0.88, wspace=0.2)
        fig.colorbar(mesh, cax=fig.add_axes([0.92, 0.2, 0.012, 0.6]),
                     label="fraction of layers (of neurons, last panel)")
        fig.suptitle("Zero bias: exact verdict beside MCBE (fractions over the random layers of each cell)")
        exact_path = path.replace("_heatmaps.png", "_exact.png")
        fig.savefig(exact_path, dpi=100)
        paths.append(exact_path)
    return paths


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Experiment:
    description: str
    defaults: dict
    quick: dict
    checks: dict
    run: object
    describe: object
    plot: object
    figure: str


_EXPERIMENTS = {
    "tetrahedron": _Experiment(
        description="convergence of MCBE to the maximal bias -1/sqrt(3) of the regular tetrahedron",
        defaults={"sample_counts": _log_grid(1, 6, 4), "repetitions": 50, "fit_from": 1000},
        quick={"sample_counts": [10, 100, 1000, 10000], "repetitions": 4, "fit_from": 100},
        checks={"sample_counts": _int_list, "repetitions": _count(1), "fit_from": _count(1)},
        run=_run_tetrahedron, describe=_describe_tetrahedron, plot=_plot_tetrahedron,
        figure="convergence"),
    "evolution": _Experiment(
        description="pointwise injectivity on fresh sphere points while MCBE runs, with and without the covering margin",
        defaults={"shapes": [(3, 6), (3, 10), (3, 27), (30, 60), (30, 100), (30, 270)],
                  "sample_counts": _log_grid(0, 5, 3), "repetitions": 10, "fresh_points": 8192,
                  "unit_rows": True},
        quick={"shapes": [(3, 6), (3, 27), (8, 24)], "sample_counts": [1, 10, 100, 1000],
               "repetitions": 3, "fresh_points": 2000, "unit_rows": True},
        checks={"shapes": _shapes, "sample_counts": _int_list, "repetitions": _count(1),
                "fresh_points": _count(1), "unit_rows": _bool},
        run=_run_evolution, describe=_describe_evolution, plot=_plot_evolution,
        figure="injectivity"),
    "redundancy": _Experiment(
        description="fraction of neurons of random layers whose MCBE bias admits a zero, N(0, 0.1^2) or N(0, 1) bias, "
                    "beside the exact zero-bias verdict for small n",
        defaults={"dims": [2, 3, 4, 5, 6, 8, 10, 15, 20, 30],
                  "neurons": [4, 6, 8, 10, 15, 20, 30, 45, 60, 80, 100, 125, 150],
                  "layers": 3, "n_samples": 500_000, "margin": "covering", "bias_stds": [0.1, 1.0],
                  "verify_max_dim": 5, "unit_rows": True},
        quick={"dims": [2, 3, 5], "neurons": [6, 12, 24], "layers": 2, "n_samples": 20_000,
               "margin": "covering", "bias_stds": [0.1, 1.0], "verify_max_dim": 3, "unit_rows": True},
        checks={"dims": _int_list, "neurons": _int_list, "layers": _count(1), "n_samples": _count(1),
                "margin": _margin, "bias_stds": _float_list, "verify_max_dim": _nonnegative_int,
                "unit_rows": _bool},
        run=_run_redundancy, describe=_describe_redundancy, plot=_plot_redundancy,
        figure="heatmaps"),
    "training": _Experiment(
        description="digits MLPs at several widths and the digits CNN trained with and without the "
                    "InjectivityMonitor's bias projection: accuracy, held-out injectivity and reconstruction per epoch",
        defaults=training.DEFAULTS, quick=training.QUICK, checks=training.CHECKS,
        run=training.run_training, describe=training.describe_training, plot=training.plot_training,
        figure="curves"),
}

#: The experiments by name, each with a one-line description.
EXPERIMENTS = {name: spec.description for name, spec in _EXPERIMENTS.items()}


def experiment_parameters(name, *, quick=False, **overrides):
    """The validated parameters an experiment would run with.

    Parameters
    ----------
    name : str
        One of :data:`EXPERIMENTS`.
    quick : bool, default=False
        Start from the reduced size used by the tests instead of the defaults.
    **overrides
        Parameters to change (see docs/experiments.md for each experiment's list).

    Returns
    -------
    dict
    """
    spec = _spec(name)
    params = dict(spec.quick if _bool(quick, "quick") else spec.defaults)
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        raise FastReluError(f"The parameters of experiment {name!r} must be among {sorted(spec.defaults)}. Got {unknown[0]!r} instead.")
    params.update(overrides)
    return {key: spec.checks[key](value, key) for key, value in params.items()}


def _spec(name):
    if name not in _EXPERIMENTS:
        raise FastReluError(f"The 'name' parameter must be one of {sorted(_EXPERIMENTS)}. Got {name!r} instead.")
    return _EXPERIMENTS[name]


def _figure_factory():
    """``matplotlib.figure.Figure`` (rendered by Agg when saved; pyplot and the global
    backend are never touched), or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def run_experiment(name, out=None, *, seed=0, quick=False, n_jobs=None, progress=False,
                   figures=True, **overrides):
    """Run one of the papers' experiments and return its record.

    Parameters
    ----------
    name : str
        ``"tetrahedron"``, ``"evolution"``, ``"redundancy"`` or ``"training"`` (see :data:`EXPERIMENTS`
        and docs/experiments.md for what each computes).
    out : str, os.PathLike or None, default=None
        Directory to write ``NAME.json`` (the record) and the figures ``NAME_*.png``
        to; created if missing. ``None``: nothing is written.
    seed : int or None, default=0
        Seed of every random draw (``None`` draws fresh entropy, reported). The results
        are identical for a seed whatever ``n_jobs``.
    quick : bool, default=False
        The reduced size used by the tests (seconds instead of minutes).
    n_jobs : int or None, default=None
        Worker threads of the library calls (``None``: all cores).
    progress : bool or None, default=False
        Progress bar on stderr: ``True`` always, ``False`` never, ``None`` on a terminal
        for runs longer than two seconds.
    figures : bool, default=True
        Write the figures (needs matplotlib, the ``plot`` extra; without it the JSON is
        still written and stderr says that the figures were skipped).
    **overrides
        Parameters of the experiment to change from its defaults.

    Returns
    -------
    dict
        JSON-ready: ``experiment``, ``description``, ``parameters`` (all of them, after
        validation), ``seed``, ``quick``, ``results``, ``elapsed`` (seconds),
        ``fastrelu_version``, ``environment`` (Python, NumPy, platform, cores,
        ``n_jobs``), ``figures`` (file names in ``out``) and ``json`` (file name or
        None). Non-finite numbers appear as ``None``.

    Raises
    ------
    FastReluError
        For an unknown experiment, unknown or invalid parameters, or an ``out`` that is
        an existing file.
    MissingDependencyError
        For ``training`` without torch or scikit-learn.
    """
    from fastrelu._core.version import __version__

    clock = Stopwatch()
    spec = _spec(name)
    params = experiment_parameters(name, quick=quick, **overrides)
    seed_used = seed_value(seed)
    jobs = n_jobs_value(n_jobs)
    figures = _bool(figures, "figures")
    if out is not None:
        out = output_directory(out, "out")  # before the run, not after it
    results = spec.run(params, seed_used, jobs, progress)
    record = {
        "experiment": name,
        "description": spec.description,
        "parameters": params,
        "seed": seed_used,
        "quick": bool(quick),
        "results": results,
        "elapsed": clock(),
        "fastrelu_version": __version__,
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "n_jobs": jobs},
        "figures": [],
        "json": None,
    }
    record = jsonable(record)
    if out is not None:
        if figures:
            Figure = _figure_factory()
            if Figure is None:
                print("fastrelu: matplotlib is not installed: figures skipped "
                      "(pip install 'fastrelu[plot]')", file=sys.stderr)
            else:
                path = os.path.join(out, f"{name}_{spec.figure}.png")
                written = spec.plot(record["results"], Figure, path)
                record["figures"] = [os.path.basename(p) for p in written]
        record["json"] = f"{name}.json"
        with open(os.path.join(out, record["json"]), "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, allow_nan=False)
            handle.write("\n")
    return record


def describe_experiment(record):
    """Human-readable lines with the key numbers of a record from :func:`run_experiment`."""
    spec = _spec(record["experiment"])
    head = (f"{record['experiment']}: {spec.description} (seed {record['seed']}, "
            f"{record['elapsed']:.1f} s{', quick' if record['quick'] else ''})")
    return [head, *spec.describe(record["results"])]


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"
