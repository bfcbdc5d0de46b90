"""Figures of a :class:`fastrelu.NetworkReport` (needs the ``plot`` extra: matplotlib)."""

import math
import os

import numpy as np

from fastrelu._core.errors import FastReluError, MissingDependencyError

#: Bars of the injectivity figure: (label, how to read it off a LayerReport).
_BARS = (
    ("data, learned bias", lambda layer: layer.injective_fraction),
    ("held-out, learned bias", lambda layer: layer.heldout_fraction.get("learned", np.nan)),
    ("held-out, data bias", lambda layer: layer.heldout_fraction.get("data", np.nan)),
    ("held-out, enlarged-data bias", lambda layer: layer.heldout_fraction.get("data_enlarged", np.nan)),
    ("held-out, ball bias", lambda layer: layer.heldout_fraction.get("ball", np.nan)),
    ("input recovered", lambda layer: layer.reconstructed_fraction),
)
#: Panels of the metrics figure: (per-point metric, panel title, x-axis label).
_HISTOGRAMS = (("sigma_min", "smallest local singular value", "smallest singular value of D_x W"),
               ("width", "local Gaussian mean width", "Gaussian mean width of D_x W B"),
               ("n_active", "active neurons", "active neurons |I(x)|"))
#: How the bias figure names the estimate on its x axis.
_ESTIMATE_NAMES = {"data_enlarged": "enlarged data", "data": "data"}
_FILES = ("injectivity.png", "bias_vs_estimate.png", "metrics.png")
_DPI = 100



def _label(layer):
    """``layer 1`` for a network's hidden layer; a model's layer by its name and kind."""
    return f"layer {layer.index}" if layer.name is None else f"{layer.name} ({layer.kind})"

def _figure_class():
    # Figures are made directly, not through pyplot: the user's backend and pyplot
    # state (an interactive session, a notebook) stay untouched.
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError('Plots need matplotlib: pip install "fastrelu[plot]".', name="matplotlib") from None
    return Figure


def _plain_ticks(ax, *, integer_x=False):
    """At most five ticks per axis, small or large values written as ``x 10^k`` beside
    the axis (no offsets), so that labels such as 0.00005 never run together."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=integer_x))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.ticklabel_format(style="sci", scilimits=(-2, 4), useOffset=False, useMathText=True)


def _injectivity_figure(Figure, layers):
    fig = Figure(figsize=(max(6.0, 1.6 * len(layers) + 3.0), 4.0))
    ax = fig.subplots()
    width = 0.8 / len(_BARS)
    x = np.arange(len(layers))
    for j, (label, value) in enumerate(_BARS):
        position = x + (j - (len(_BARS) - 1) / 2) * width
        heights = np.array([value(layer) for layer in layers], dtype=np.float64)
        ax.bar(position, np.nan_to_num(heights, nan=0.0), width, label=label)
        for p, h in zip(position, heights):  # a bar of height 0 (or none) is invisible
            if not h >= 0.02:
                ax.text(p, 0.01, "n/a" if math.isnan(h) else f"{h:.2f}", ha="center",
                        va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(x, [f"{_label(layer)}\n{layer.shape[0]}x{layer.shape[1]}" for layer in layers])
    kind = "hidden" if all(layer.name is None for layer in layers) else "ReLU"
    ax.set_xlabel(f"{kind} layer (neurons x inputs)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of points")
    ax.set_title(f"Injectivity and recovery per {kind} layer")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _bias_figure(Figure, layers):
    fig = Figure(figsize=(4.0 * len(layers), 4.0))
    axes = fig.subplots(1, len(layers), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        name = "data_enlarged" if "data_enlarged" in layer.estimates else "data"
        estimate = layer.estimates.get(name)
        if estimate is None:
            ax.text(0.5, 0.5, "no estimate:\n" + layer.skipped.get(name, ""), ha="center",
                    va="center", wrap=True, fontsize=8, transform=ax.transAxes)
            ax.set_title(f"{_label(layer)}: no estimate", fontsize=9)
            ax.set_axis_off()
            continue
        finite = np.isfinite(estimate)
        above = finite & (layer.bias > estimate)
        ax.scatter(estimate[finite & ~above], layer.bias[finite & ~above], s=8, label="bias <= estimate")
        ax.scatter(estimate[above], layer.bias[above], s=8, color="tab:red", label="bias > estimate")
        if finite.any():
            low = min(estimate[finite].min(), layer.bias.min())
            high = max(estimate[finite].max(), layer.bias.max())
            ax.plot([low, high], [low, high], color="gray", linewidth=1, label="bias = estimate")
        ax.set_xlabel(f"MCBE maximal-bias estimate ({_ESTIMATE_NAMES[name]})", fontsize=9)
        ax.set_ylabel("learned bias")
        ax.set_title(f"{_label(layer)}: {100 * layer.fraction_above.get(name, np.nan):.1f}% above"
                     f"\n({int((~finite).sum())} unconstrained not shown)", fontsize=9)
        _plain_ticks(ax)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _histogram_bins(values, metric):
    """Integer-centred bins for neuron counts (equal-width bins of a count leave gaps),
    30 equal bins otherwise."""
    if metric == "n_active":
        low, high = int(values.min()), int(values.max())
        step = max(1, math.ceil((high - low + 1) / 30))
        return np.arange(low, high + step + 1, step) - 0.5
    return np.histogram_bin_edges(values, bins=30)


def _metrics_figure(Figure, report):
    layers = report.layers
    correct = report.samples.get("correct")
    split = correct is not None
    fig = Figure(figsize=(4.2 * len(_HISTOGRAMS), 3.0 * len(layers) + 0.6))
    axes = fig.subplots(len(layers), len(_HISTOGRAMS), squeeze=False)
    colours = {"correct": "tab:blue", "incorrect": "tab:orange"}
    for row, layer in zip(axes, layers):
        for ax, (metric, title, xlabel) in zip(row, _HISTOGRAMS):
            key = f"layer{layer.index}.{metric}"
            values = np.asarray(report.samples[key], dtype=np.float64)
            shown = np.isfinite(values)
            finite = values[shown]
            if finite.size == 0 or finite.min() == finite.max():
                # One value for every point: a histogram would only show one bar
                note = (f"all {finite.size} points: {finite[0]:.4g}" if finite.size else
                        "not computed: the layer was\nanalysed matrix-free" if layer.iterative is not None
                        else "no finite value")
                ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=9)
            else:
                bins = _histogram_bins(finite, metric)
                if not split:
                    ax.hist(finite, bins=bins, color=colours["correct"])
                else:
                    for subset, label in ((correct, "correct"), (~correct, "incorrect")):
                        if (subset & shown).any():  # every point may be classified correctly
                            ax.hist(values[subset & shown], bins=bins, density=True, alpha=0.6,
                                    color=colours[label], label=label)
                ax.set_ylabel("density" if split else "points")
            auc = report.auc.get(key)
            ax.set_title(f"{_label(layer)}: {title}" + ("" if auc is None else f" (AUC {auc:.2f})"),
                         fontsize=9)
            hidden = int((~shown).sum())
            ax.set_xlabel(xlabel + (f" ({hidden} non-finite not shown)" if hidden else ""), fontsize=9)
            if finite.size and finite.min() < finite.max():
                _plain_ticks(ax, integer_x=metric == "n_active")
            else:  # nothing drawn: axes without a scale
                ax.set_xticks([])
                ax.set_yticks([])
    top = 1.0
    if split:
        from matplotlib.patches import Patch

        handles = [Patch(color=colours[label], alpha=0.6, label=f"{label}ly classified points")
                   for label in colours]
        fig.legend(handles=handles, loc="upper center", ncols=2, fontsize=8, frameon=False)
        top = 1.0 - 0.35 / fig.get_figheight()
    fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
    return fig


def report_figures(report):
    """The figures of :func:`plot_report` as ``matplotlib.figure.Figure`` objects, in the
    order of the files, keyed by file name."""
    Figure = _figure_class()
    figures = (_injectivity_figure(Figure, report.layers), _bias_figure(Figure, report.layers),
               _metrics_figure(Figure, report))
    return dict(zip(_FILES, figures))


def check_report(report, kind):
    """The report functions take a :class:`fastrelu.NetworkReport` (from :func:`fastrelu.analyze`)."""
    if not isinstance(report, kind):
        raise FastReluError(f"The 'report' parameter must be a NetworkReport (from fastrelu.analyze). Got {type(report).__name__}.")


def plot_report(report, out_dir):
    """Write the figures of a network report as PNG files into ``out_dir``.

    Needs matplotlib (the ``plot`` extra). The figures are:

    - ``injectivity.png``: per hidden layer, bars of the fraction of points at which the
      layer is injective (data with the learned bias; held-out points with the learned
      bias and with each estimated bias) and of the points whose input is recovered
      (bars too low to see, and missing ones, are labelled with their value or "n/a").
    - ``bias_vs_estimate.png``: per layer, the learned bias of each neuron against its
      estimated maximal bias (enlarged data, else data); neurons above the diagonal break
      the estimate's guarantee.
    - ``metrics.png``: per layer (rows) and per-point local metric (columns: smallest
      singular value of ``D_x W``, Gaussian mean width of ``D_x W B``, number of active
      neurons), a histogram of the metric over the data points; with labels, the
      densities for correctly and incorrectly classified points and the metric's AUC in
      the panel's title. A metric that takes one value at every point is written out
      instead of drawn.

    Parameters
    ----------
    report : NetworkReport
        The report, from :func:`fastrelu.analyze`.
    out_dir : str or path-like
        The directory; created if missing.

    Returns
    -------
    list of str
        The paths written, in the order above.

    Raises
    ------
    FastReluError
        For a ``report`` that is not a :class:`NetworkReport`, or an ``out_dir`` that
        is an existing file or a directory that cannot be created or written to.
    MissingDependencyError
        When matplotlib is not installed.
    """
    from fastrelu._core.io import output_directory
    from fastrelu._networks.results import NetworkReport

    check_report(report, NetworkReport)
    output_directory(out_dir, "out_dir")
    figures = report_figures(report)
    paths = []
    for name, fig in figures.items():
        paths.append(os.path.join(out_dir, name))
        fig.savefig(paths[-1], dpi=_DPI)
    return paths
