"""Network reports: every field against the function that defines it, on a trained
digits MLP and on a small random network."""

import dataclasses
import json
import os

import numpy as np
import pytest

from fastrelu import (
    Ball,
    Data,
    FastReluError,
    Network,
    ReLULayer,
    analyze,
    digits_model,
    frame_bounds,
    gaussian_mean_width,
    injectivity_summary,
    invert,
    local_metrics,
    mcbe,
    pbe,
    reconstruct,
    relu_power_iteration,
    save_report,
)
from fastrelu.cli import main

pytest.importorskip("sklearn")

SMALL = dict(samples=4000, width_draws=200, power_starts=8)


@pytest.fixture(scope="module")
def digits():
    # Without weight decay the weights of blank pixels and dead neurons keep their
    # initial size, so both hidden layers are stably injective (docs/reports.md)
    return digits_model(hidden=(96, 128), seed=0, max_iter=100, l2=0.0)


@pytest.fixture(scope="module")
def digits_report(digits):
    return analyze(digits.network, digits.X_test, y=digits.y_test, fit_data=digits.X_train,
                   seed=3, **SMALL)


def _random_network(rng, widths=(3, 9, 20)):
    hidden = [ReLULayer(rng.standard_normal((m, n)), 0.3 * rng.standard_normal(m))
              for n, m in zip(widths[:-1], widths[1:])]
    return Network(hidden, output=ReLULayer(rng.standard_normal((2, widths[-1])), np.zeros(2)))


def test_digits_model_is_accurate(digits):
    assert digits.accuracy > 0.9
    np.testing.assert_array_equal(np.argmax(digits.network.forward(digits.X_test), axis=1),
                                  digits.model.predict(digits.X_test))


def test_report_fields_match_the_functions_called_directly(digits, digits_report):
    network, report = digits.network, digits_report
    inputs = network.layer_inputs(digits.X_test)
    fits = network.layer_inputs(digits.X_train)
    assert len(report.layers) == network.depth
    for k, (layer, entry) in enumerate(zip(network.hidden, report.layers)):
        W, alpha = layer.weight, layer.bias
        m, n = W.shape
        assert entry.shape == (m, n) and entry.redundancy == m / n
        assert entry.frame_bounds == frame_bounds(W)
        np.testing.assert_array_equal(entry.bias, alpha)
        summary = injectivity_summary(layer, inputs[k])
        assert entry.injective_fraction == summary.fraction
        np.testing.assert_array_equal(report.samples[f"layer{k}.injective"], summary.injective)
        assert entry.heldout_fraction["learned"] == summary.fraction  # every test point is held out
        np.testing.assert_array_equal(entry.estimates["data"], mcbe(W, Data(fits[k])).alpha)
        radius = np.linalg.norm(fits[k], axis=1).max()
        ball = mcbe(W, Ball(n, radius, nonnegative=True), SMALL["samples"], seed=3 + k).alpha
        np.testing.assert_array_equal(entry.estimates["ball"], ball)
        for name, estimate in entry.estimates.items():
            assert entry.fraction_above[name] == np.mean(alpha > estimate)
        # The enlarged-data estimate is a minimum over a superset of the data points
        assert (entry.estimates["data_enlarged"] <= entry.estimates["data"]).all()
        assert "pbe" in entry.skipped
        local = local_metrics(layer, inputs[k])
        for metric in ("n_active", "rank", "sigma_min", "sigma_max", "width"):
            np.testing.assert_array_equal(report.samples[f"layer{k}.{metric}"], getattr(local, metric))
        assert entry.s1 == relu_power_iteration(W, bias=alpha, n_starts=8, seed=3 + k).s1
        if k == 0:
            assert entry.width_in == gaussian_mean_width(Data(inputs[0]), n_draws=200, seed=3).value
        else:  # the set entering layer k is the one leaving layer k - 1: one estimate
            assert entry.width_in == report.layers[k - 1].width_out
        assert entry.width_out == gaussian_mean_width(layer, data=inputs[k], n_draws=200, seed=4 + k).value
        assert entry.dead == int((~(inputs[k] @ W.T - alpha >= 0).any(axis=0)).sum())
        inversion = invert(network.hidden[:k + 1], network.hidden_outputs(digits.X_test)[k])
        np.testing.assert_array_equal(report.samples[f"layer{k}.reconstructed"], inversion.ok)
        own = reconstruct(layer, network.hidden_outputs(digits.X_test)[k])
        np.testing.assert_array_equal(report.samples[f"layer{k}.cond"], own.cond)
        assert entry.stable_fraction == np.mean(own.ok)
        assert entry.reconstructed_fraction == np.mean(inversion.ok)


def test_reconstruction_wherever_the_report_says_injective(digits, digits_report):
    # A point injective, with a stable condition number, at every layer up to k is
    # recovered exactly from layer k's output.
    report = digits_report
    injective_so_far = np.ones(digits.X_test.shape[0], dtype=bool)
    checked = 0
    for k in range(len(report.layers)):
        stable = report.samples[f"layer{k}.stable"]
        assert not (stable & ~report.samples[f"layer{k}.injective"]).any()
        injective_so_far &= report.samples[f"layer{k}.injective"] & stable
        reconstructed = report.samples[f"layer{k}.reconstructed"]
        assert reconstructed[injective_so_far].all()
        error = report.samples[f"layer{k}.reconstruction_error"][injective_so_far]
        # Condition numbers reach 1e5 here: the error is round-off amplified by them
        assert (error <= 1e-6).all()
        checked += injective_so_far.sum()
    assert injective_so_far.mean() > 0.5  # recovered from the last hidden layer, too


def test_heldout_fractions_use_the_estimates_as_biases(digits, digits_report):
    inputs = digits.network.layer_inputs(digits.X_test)
    for k, (layer, entry) in enumerate(zip(digits.network.hidden, digits_report.layers)):
        for name, estimate in entry.estimates.items():
            # +inf (unconstrained neuron) means never active: a huge finite bias does the same
            bias = np.where(np.isfinite(estimate), estimate, 1e300)
            expected = injectivity_summary(ReLULayer(layer.weight, bias), inputs[k]).fraction
            assert entry.heldout_fraction[name] == expected


def test_auc_is_the_probability_of_a_correct_point_scoring_higher(digits_report):
    correct = digits_report.samples["correct"]
    assert 0 < correct.sum() < correct.size
    assert digits_report.accuracy == correct.mean()
    for key, value in digits_report.auc.items():
        score = digits_report.samples[key].astype(float)
        good, bad = score[correct], score[~correct]
        good, bad = good[~np.isnan(good)], bad[~np.isnan(bad)]
        pairs = (good[:, None] > bad[None, :]).sum() + 0.5 * (good[:, None] == bad[None, :]).sum()
        assert value == pytest.approx(pairs / (good.size * bad.size), abs=1e-12)


def test_to_dict_is_json_and_save_writes_the_files(digits_report, tmp_path):
    data = json.loads(json.dumps(digits_report.to_dict(), allow_nan=False))
    assert len(data["layers"]) == 2 and data["parameters"]["samples"] == SMALL["samples"]
    assert len(data["samples"]["layer0.width"]) == len(digits_report.samples["correct"])
    paths, note = save_report(digits_report, tmp_path / "out", plots=False)
    assert note is None and all(os.path.exists(p) for p in paths)
    with np.load(paths[1]) as arrays:
        np.testing.assert_array_equal(arrays["layer1.sigma_min"], digits_report.samples["layer1.sigma_min"])
    assert "layer" in digits_report.summary()


def test_plots_are_written(digits_report, tmp_path):
    pytest.importorskip("matplotlib")
    paths, note = save_report(digits_report, tmp_path)
    assert note is None
    for name in ("injectivity.png", "bias_vs_estimate.png", "metrics.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_small_network_pbe_split_and_determinism():
    rng = np.random.default_rng(0)
    network = _random_network(rng)
    X = rng.standard_normal((300, 3))
    report = analyze(network, X, seed=5, enlarge="blowup", n_jobs=1, **SMALL)
    again = analyze(network, X, seed=5, enlarge="blowup", n_jobs=2, **SMALL)
    first, second = report.to_dict(), again.to_dict()
    for entry in (first, second):
        entry.pop("elapsed")
        for layer in entry["layers"]:
            layer.pop("elapsed")
            assert set(layer.pop("stage_seconds")) == {"estimates", "injectivity", "recovery",
                                                        "local metrics", "s_1", "width"}
    assert first == second
    # Half of X fits, the other half is held out
    assert report.samples["heldout"].sum() == 150
    layer0 = report.layers[0]
    fit = X[~report.samples["heldout"]]
    radius = np.linalg.norm(fit, axis=1).max()
    np.testing.assert_array_equal(layer0.estimates["pbe"], pbe(network.hidden[0].weight, Ball(3, radius)).alpha)
    assert "input dimension 9" in report.layers[1].skipped["pbe"]
    assert report.accuracy is None and report.auc == {}


def test_a_layer_that_is_not_a_frame_is_reported_as_such():
    rng = np.random.default_rng(1)
    network = Network([ReLULayer(rng.standard_normal((6, 4))), ReLULayer(rng.standard_normal((3, 6)))])
    report = analyze(network, rng.standard_normal((40, 4)), enlarge=None, **SMALL)
    narrow = report.layers[1]
    assert narrow.frame_bounds is None and narrow.estimates == {}
    assert "do not span" in narrow.skipped["ball"]
    assert narrow.injective_fraction == 0.0 and narrow.reconstructed_fraction == 0.0
    assert report.layers[0].skipped["data_enlarged"] == "enlarge=None"


def test_bad_input():
    rng = np.random.default_rng(2)
    network = _random_network(rng)
    X = rng.standard_normal((20, 3))
    with pytest.raises(FastReluError, match=r"'X' parameter must have 3 columns"):
        analyze(network, rng.standard_normal((20, 4)))
    with pytest.raises(FastReluError, match="'y' parameter must be a 1-D array of 20 labels"):
        analyze(network, X, y=np.zeros(19))
    with pytest.raises(FastReluError, match="'enlarge' parameter"):
        analyze(network, X, enlarge="smooth")
    with pytest.raises(FastReluError, match="'network' parameter must be a fastrelu.Network"):
        analyze(network.hidden[0], X)
    with pytest.raises(FastReluError, match="'samples' parameter"):
        analyze(network, X, samples=0)
    with pytest.raises(FastReluError, match="'bandwidth' parameter"):
        analyze(network, X, bandwidth="scot")
    with pytest.raises(FastReluError, match="'noise' parameter"):
        analyze(network, X, enlarge="blowup", noise=-1)
    with pytest.raises(FastReluError, match="'enlarge_points' parameter"):
        analyze(network, X, enlarge_points=0)
    with pytest.raises(FastReluError, match="'fit_data' parameter must have 3 columns"):
        analyze(network, X, fit_data=np.zeros((5, 2)))
    no_output = Network(list(network.hidden))
    with pytest.raises(FastReluError, match="needs a network with an output layer"):
        analyze(no_output, X, y=np.zeros(20))


def test_cli_report(tmp_path, capsys):
    rng = np.random.default_rng(3)
    network = _random_network(rng)
    model = tmp_path / "net.npz"
    network.save_npz(model)
    X = rng.standard_normal((60, 3))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 60))
    code = main(["report", str(model), "--data", str(tmp_path / "X.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--out", str(tmp_path / "out"), "--samples", "2000",
                 "--no-plots", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["layers"]) == 2 and summary["accuracy"] is not None
    assert os.path.exists(tmp_path / "out" / "report.json")
    assert main(["report", str(model), "--out", str(tmp_path / "o2")]) == 2
    assert "needs --data" in capsys.readouterr().err
    np.save(tmp_path / "wide.npy", rng.standard_normal((5, 4)))
    assert main(["report", str(model), "--data", str(tmp_path / "wide.npy"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 columns" in err
    assert main(["report", "digits", "--data", str(tmp_path / "X.npy"), "--out", str(tmp_path / "o4")]) == 2


def test_labels_that_are_not_output_indices():
    # scikit-learn keeps the labels in classes_; the report maps predictions through them,
    # also for a binary classifier with a single (logistic) output unit.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 3))
    for labels in (np.array([5, 7]), np.array(["cat", "dog", "eel"])):
        y = labels[(X[:, 0] > 0).astype(int) + (len(labels) == 3) * (X[:, 1] > 1)]
        with pytest.warns(ConvergenceWarning):
            model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, y)
        network = Network.from_sklearn(model)
        np.testing.assert_array_equal(network.classes, model.classes_)
        report = analyze(network, X, y=y, enlarge=None, **SMALL)
        np.testing.assert_array_equal(report.samples["prediction"], model.predict(X))
        assert report.accuracy == np.mean(model.predict(X) == y)


def test_classes_are_saved_and_validated(tmp_path):
    rng = np.random.default_rng(5)
    hidden = [ReLULayer(rng.standard_normal((6, 3)))]
    output = ReLULayer(rng.standard_normal((3, 6)), np.zeros(3))
    network = Network(hidden, output, classes=np.array(["a", "b", "c"]))
    network.save_npz(tmp_path / "net.npz")
    np.testing.assert_array_equal(Network.load(tmp_path / "net.npz").classes, ["a", "b", "c"])
    with pytest.raises(FastReluError, match="'classes' parameter must be a 1-D array of 3"):
        Network(hidden, output, classes=[1, 2])
    with pytest.raises(FastReluError, match="'classes' parameter needs an output layer"):
        Network(hidden, classes=[1, 2])


def test_zero_rows_are_left_out_and_never_constrained():
    rng = np.random.default_rng(6)
    W1 = rng.standard_normal((12, 3))
    W1[4] = 0.0  # a pruned neuron: constant output ReLU(-alpha_4)
    alpha1 = 0.2 * rng.standard_normal(12)
    alpha1[4] = -0.7
    W2 = rng.standard_normal((30, 12))
    network = Network([ReLULayer(W1, alpha1), ReLULayer(W2, 0.1 * rng.standard_normal(30))])
    X = rng.standard_normal((200, 3))
    report = analyze(network, X, seed=1, **SMALL)
    first = report.layers[0]
    for estimate in first.estimates.values():
        assert estimate[4] == np.inf
    fit = X[~report.samples["heldout"]]
    np.testing.assert_array_equal(np.delete(first.estimates["data"], 4),
                                  mcbe(np.delete(W1, 4, axis=0), Data(fit)).alpha)
    assert "zero rows" in first.skipped
    # Recovery through both layers where the report says every layer is stably injective
    both = report.samples["layer0.stable"] & report.samples["layer1.stable"]
    assert both.any()
    assert report.samples["layer1.reconstructed"][both].all()
    assert np.nanmax(report.samples["layer1.reconstruction_error"][both]) <= 1e-9


def test_a_single_point():
    rng = np.random.default_rng(7)
    network = _random_network(rng)
    report = analyze(network, rng.standard_normal((1, 3)), **SMALL)
    entry = report.layers[0]
    assert entry.skipped["data"] == "no fitting points" and entry.skipped["ball"] == "no fitting points"
    assert entry.skipped["data_enlarged"] == "no fitting points"
    assert report.samples["heldout"].all()


def test_plots_when_every_point_is_classified_correctly(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(8)
    network = _random_network(rng)
    X = rng.standard_normal((40, 3))
    y = np.argmax(network.forward(X), axis=1)
    report = analyze(network, X, y=y, **SMALL)
    assert report.accuracy == 1.0 and report.auc == {}
    paths, note = save_report(report, tmp_path)
    assert note is None and os.path.getsize(tmp_path / "metrics.png") > 1000


def test_labels_that_match_no_class_are_refused_and_partial_matches_warned():
    rng = np.random.default_rng(9)
    network = _random_network(rng)
    X = rng.standard_normal((20, 3))
    # Without classes, the labels are the output unit indices 0 and 1
    with pytest.raises(FastReluError, match=r"'y' parameter must hold labels among the network's output unit indices .*\[0, 1\]\. Got labels \[7, 8\], none"):
        analyze(network, X, y=np.repeat([7, 8], 10), **SMALL)
    named = Network(network.hidden, network.output, classes=np.array(["cat", "dog"]))
    with pytest.raises(FastReluError, match=r"network's classes \['cat', 'dog'\]\. Got labels \[0, 1\]"):
        analyze(named, X, y=np.repeat([0, 1], 10), **SMALL)
    y = np.where(np.arange(20) < 3, "eel", "cat")
    with pytest.warns(UserWarning, match=r"3 of the 20 labels in 'y' are not among the network's classes \['cat', 'dog'\] \(labels \['eel'\]\)"):
        report = analyze(named, X, y=y, enlarge=None, **SMALL)
    assert not report.samples["correct"][:3].any()
    assert report.accuracy == np.mean(report.samples["prediction"] == y)


def _saved_figures(report, out, monkeypatch):
    """save_report's figures, as the Figure objects it saved, keyed by file name."""
    from matplotlib.figure import Figure

    saved, original = {}, Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        saved[os.path.basename(str(fname))] = self
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    paths, note = save_report(report, out)
    assert note is None and sorted(saved) == ["bias_vs_estimate.png", "injectivity.png", "metrics.png"]
    return saved


def _texts(fig):
    """Every label of the figure that must stay readable: titles, axis labels, the tick
    labels drawn, offset texts and legend entries."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    texts = []
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, ax.xaxis.get_offset_text(),
                  ax.yaxis.get_offset_text()]
        for axis, labels in ((ax.xaxis, ax.get_xticklabels()), (ax.yaxis, ax.get_yticklabels())):
            low, high = sorted(axis.get_view_interval())
            span = high - low
            for label, location in zip(labels, axis.get_majorticklocs()):
                if low - 1e-9 * span <= location <= high + 1e-9 * span:
                    texts.append(label)
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        texts += legend.get_texts()
    texts = [t for t in texts if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts]


def test_report_figures_are_labelled_and_readable(digits_report, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(10)
    samples = dict(digits_report.samples)
    N = samples["correct"].size
    # Small values (as weight decay gives) whose tick labels once ran together, and a
    # metric equal at every point
    samples["layer0.sigma_min"] = 5e-5 + 5e-5 * rng.random(N)
    samples["layer1.sigma_min"] = np.zeros(N)
    report = dataclasses.replace(digits_report, samples=samples)
    figures = _saved_figures(report, tmp_path, monkeypatch)

    metrics = figures["metrics.png"]
    titles = ("smallest local singular value", "local Gaussian mean width", "active neurons")
    xlabels = ("smallest singular value of D_x W", "Gaussian mean width of D_x W B",
               "active neurons |I(x)|")
    keys = ("sigma_min", "width", "n_active")
    assert len(metrics.axes) == 3 * len(report.layers)
    for i, ax in enumerate(metrics.axes):
        k, j = divmod(i, 3)
        auc = report.auc[f"layer{k}.{keys[j]}"]
        assert ax.get_title() == f"layer {k}: {titles[j]} (AUC {auc:.2f})"
        assert ax.get_xlabel() == xlabels[j]
    assert [t.get_text() for t in metrics.axes[3].texts] == [f"all {N} points: 0"]
    assert metrics.axes[3].get_xticks().size == 0  # no scale for a panel with nothing drawn
    legend = [t.get_text() for t in metrics.legends[0].get_texts()]
    assert legend == ["correctly classified points", "incorrectly classified points"]

    bias = figures["bias_vs_estimate.png"]
    for k, ax in enumerate(bias.axes):
        assert ax.get_title().startswith(f"layer {k}: ")
        assert ax.get_xlabel() == "MCBE maximal-bias estimate (enlarged data)"
        assert ax.get_ylabel() == "learned bias"
    bars = figures["injectivity.png"].axes[0]
    assert bars.get_xlabel() == "hidden layer (neurons x inputs)" and bars.get_ylabel() == "fraction of points"

    for name, fig in figures.items():
        width, height = fig.bbox.width, fig.bbox.height
        texts = _texts(fig)
        for text, box in texts:  # nothing cut at the figure's edges
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (name, text)
        for a, (text, box) in enumerate(texts):  # no two labels run together
            for other, other_box in texts[a + 1:]:
                assert not box.overlaps(other_box), (name, text, other)


def test_progress_bars_name_each_stage(capsys):
    # progress=True: the bar over the stages (with the stage running named beside it)
    # and the bars of the computations, on stderr; the report is the same without them
    rng = np.random.default_rng(4)
    network = Network([ReLULayer(rng.standard_normal((9, 3))), ReLULayer(rng.standard_normal((20, 9)))])
    X = rng.standard_normal((30, 3))
    options = {"samples": 300, "width_draws": 16, "power_starts": 2, "n_jobs": 1}
    shown = analyze(network, X, progress=True, **options)
    err = capsys.readouterr().err
    assert "analyze" in err and "layer 1: width" in err and "13/13" in err
    assert "local_metrics" in err and "mcbe" in err
    quiet = analyze(network, X, progress=False, **options)
    assert capsys.readouterr().err == ""
    for a, b in zip(shown.layers, quiet.layers, strict=True):
        assert a.injective_fraction == b.injective_fraction and a.s1 == b.s1
        np.testing.assert_array_equal(a.estimates["data"], b.estimates["data"])
