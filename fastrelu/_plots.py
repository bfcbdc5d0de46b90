"""Figures of a :class:`fastrelu.NetworkReport` (needs the ``plot`` extra: matplotlib)."""

import os

import numpy as np

from ._errors import FastReluError

#: Bars of the injectivity figure: (label, how to read it off a LayerReport).
_BARS = (
    ("data, learned bias", lambda layer: layer.injective_fraction),
    ("held-out, learned bias", lambda layer: layer.heldout_fraction.get("learned", np.nan)),
    ("held-out, data bias", lambda layer: layer.heldout_fraction.get("data", np.nan)),
    ("held-out, enlarged-data bias", lambda layer: layer.heldout_fraction.get("data_enlarged", np.nan)),
    ("held-out, ball bias", lambda layer: layer.heldout_fraction.get("ball", np.nan)),
    ("input recovered", lambda layer: layer.reconstructed_fraction),
)
_HISTOGRAMS = (("sigma_min", "smallest local singular value"),
               ("width", "local Gaussian mean width"),
               ("n_active", "active neurons"))


def _figure_class():
    # Figures are made directly, not through pyplot: the user's backend and pyplot
    # state (an interactive session, a notebook) stay untouched.
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise FastReluError('Plots need matplotlib: pip install "fastrelu[plot]".') from None
    return Figure


def plot_report(report, out_dir):
    """Write the figures of a network report as PNG files into ``out_dir``.

    - ``injectivity.png``: per hidden layer, bars of the fraction of points at which the
      layer is injective (data with the learned bias; held-out points with the learned
      bias and with each estimated bias) and of the points whose input is recovered.
    - ``bias_vs_estimate.png``: per layer, the learned bias of each neuron against its
      estimated maximal bias (enlarged data, else data); neurons above the diagonal break
      the estimate's guarantee.
    - ``metrics.png``: histograms of per-point local metrics per layer, split into
      correctly and incorrectly classified points when labels were given.

    Returns the list of paths written.
    """
    Figure = _figure_class()
    os.makedirs(out_dir, exist_ok=True)
    layers = report.layers
    paths = []

    fig = Figure(figsize=(max(6.0, 1.6 * len(layers) + 3.0), 4.0))
    ax = fig.subplots()
    width = 0.8 / len(_BARS)
    x = np.arange(len(layers))
    for j, (label, value) in enumerate(_BARS):
        ax.bar(x + (j - (len(_BARS) - 1) / 2) * width, [value(layer) for layer in layers],
               width, label=label)
    ax.set_xticks(x, [f"layer {layer.index}\n{layer.shape[0]}x{layer.shape[1]}" for layer in layers])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of points")
    ax.set_title("Injectivity and recovery per hidden layer")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "injectivity.png"))
    fig.savefig(paths[-1], dpi=100)

    fig = Figure(figsize=(4.0 * len(layers), 4.0))
    axes = fig.subplots(1, len(layers), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        name = "data_enlarged" if "data_enlarged" in layer.estimates else "data"
        estimate = layer.estimates.get(name)
        if estimate is None:
            ax.text(0.5, 0.5, "no estimate:\n" + layer.skipped.get(name, ""), ha="center",
                    va="center", wrap=True, fontsize=8, transform=ax.transAxes)
            ax.set_title(f"layer {layer.index}")
            continue
        finite = np.isfinite(estimate)
        above = finite & (layer.bias > estimate)
        ax.scatter(estimate[finite & ~above], layer.bias[finite & ~above], s=8, label="bias <= estimate")
        ax.scatter(estimate[above], layer.bias[above], s=8, color="tab:red", label="bias > estimate")
        if finite.any():
            low = min(estimate[finite].min(), layer.bias.min())
            high = max(estimate[finite].max(), layer.bias.max())
            ax.plot([low, high], [low, high], color="gray", linewidth=1)
        ax.set_xlabel(f"estimated maximal bias ({name})")
        ax.set_ylabel("learned bias")
        ax.set_title(f"layer {layer.index}: {100 * layer.fraction_above.get(name, np.nan):.1f}% above"
                     f"\n({int((~finite).sum())} unconstrained not shown)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "bias_vs_estimate.png"))
    fig.savefig(paths[-1], dpi=100)

    correct = report.samples.get("correct")
    fig = Figure(figsize=(4.0 * len(_HISTOGRAMS), 2.8 * len(layers)))
    axes = fig.subplots(len(layers), len(_HISTOGRAMS), squeeze=False)
    for row, layer in zip(axes, layers):
        for ax, (metric, label) in zip(row, _HISTOGRAMS):
            key = f"layer{layer.index}.{metric}"
            values = np.asarray(report.samples[key], dtype=np.float64)
            bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=30)
            if correct is None:
                ax.hist(values, bins=bins)
            else:
                for subset, label in ((correct, "correct"), (~correct, "incorrect")):
                    if subset.any():  # every point may be classified correctly
                        ax.hist(values[subset], bins=bins, density=True, alpha=0.6, label=label)
                auc = report.auc.get(key)
                if auc is not None:
                    ax.text(0.98, 0.95, f"AUC {auc:.2f}", ha="right", va="top",
                            transform=ax.transAxes, fontsize=8)
                ax.legend(fontsize=7, loc="upper left")
            ax.set_title(f"layer {layer.index}: {label}", fontsize=9)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "metrics.png"))
    fig.savefig(paths[-1], dpi=100)
    return paths
