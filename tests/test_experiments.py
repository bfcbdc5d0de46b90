"""The papers' experiments at a reduced size: what the mathematics guarantees about them,
their records, files and command line."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import ndtr

import fastrelu as fr
from fastrelu import FastReluError
from fastrelu._core.io import jsonable
from fastrelu._experiments import experiments as ex
from fastrelu.cli import main

SQRT3 = math.sqrt(3.0)


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle, parse_constant=refuse)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """One quick run of each experiment, written to its own directory."""
    runs = {}
    for name in fr.EXPERIMENTS:
        out = tmp_path_factory.mktemp(name)
        runs[name] = (fr.run_experiment(name, out, quick=True, seed=0), out)
    return runs


def test_registry_names():
    assert set(fr.EXPERIMENTS) == {"tetrahedron", "evolution", "redundancy", "training"}
    for name in fr.EXPERIMENTS:
        params = ex.experiment_parameters(name)
        assert set(params) == set(ex.experiment_parameters(name, quick=True))


def test_record_has_parameters_seed_version_and_time(records):
    for name, (record, _) in records.items():
        assert record["experiment"] == name and record["seed"] == 0 and record["quick"] is True
        assert record["parameters"] == jsonable(ex.experiment_parameters(name, quick=True))
        assert record["fastrelu_version"] == fr.__version__
        assert record["elapsed"] > 0 and record["environment"]["n_jobs"] >= 1


def test_json_round_trip_and_figures(records):
    pytest.importorskip("matplotlib")
    for name, (record, out) in records.items():
        assert _strict_json(out / f"{name}.json") == record
        assert record["figures"] and all(f.startswith(f"{name}_") and f.endswith(".png") for f in record["figures"])
        for figure in record["figures"]:
            assert (out / figure).stat().st_size > 10_000
    assert "redundancy_exact.png" in records["redundancy"][0]["figures"]


def _label_boxes(fig):
    """Titles, axis labels, drawn tick labels and legend entries of a rendered figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for legend in fig.legends for t in legend.get_texts()]
    texts.append(getattr(fig, "_suptitle", None))  # the figure's title, when it has one
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        for axis, labels in ((ax.xaxis, ax.get_xticklabels()), (ax.yaxis, ax.get_yticklabels())):
            low, high = sorted(axis.get_view_interval())
            texts += [label for label, at in zip(labels, axis.get_majorticklocs())
                      if low - 1e-9 * abs(high - low) <= at <= high + 1e-9 * abs(high - low)]
        if ax.get_legend():
            texts += ax.get_legend().get_texts()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts
            if t is not None and t.get_visible() and t.get_text().strip()]


def test_figures_have_labels_that_are_neither_cut_nor_run_together(records, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    saved, original = {}, Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        saved[str(fname)] = self
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    for name, (record, _) in records.items():
        spec = ex._spec(name)
        spec.plot(record["results"], Figure, str(tmp_path / f"{name}_{spec.figure}.png"))
    assert len(saved) == 5
    for path, fig in saved.items():
        for ax in fig.axes:
            assert ax.get_xlabel() or ax.get_ylabel(), (path, ax.get_title())
        boxes = _label_boxes(fig)
        width, height = fig.bbox.width, fig.bbox.height
        for text, box in boxes:
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (path, text)
        for i, (text, box) in enumerate(boxes):
            for other, other_box in boxes[i + 1:]:
                assert not box.overlaps(other_box), (path, text, other)


def test_tetrahedron_errors_are_nonnegative_and_shrink(records):
    record, _ = records["tetrahedron"]
    results = record["results"]
    counts = results["sample_counts"]
    per_rep = np.array(results["per_repetition"])
    # alpha^X is a minimum over points of the sphere: never below the infimum alpha^S
    assert per_rep.min() >= -1e-12
    # a seeded run with more samples extends the smaller one, so alpha^X only decreases
    assert np.all(np.diff(per_rep, axis=1) <= 0)
    assert results["error"]["mean"][-1] < results["error"]["mean"][0] / 10
    assert -1.0 < results["fit"]["rate"] < -0.3
    # the recorded seeds reproduce the runs with mcbe itself
    seed, k = results["repetition_seeds"][1], len(counts) - 1
    alpha = fr.mcbe(ex.TETRAHEDRON, fr.Sphere(3), counts[k], seed=seed).alpha
    assert per_rep[1, k] == pytest.approx(np.max(alpha + 1 / SQRT3), abs=1e-15)


def test_evolution_fractions(records):
    record, _ = records["evolution"]
    results = record["results"]
    counts = results["sample_counts"]
    assert [(s["n"], s["m"]) for s in results["shapes"]] == [tuple(p) for p in record["parameters"]["shapes"]]
    for shape in results["shapes"]:
        plain = np.array(shape["per_repetition"]["without_margin"])
        margin = np.array(shape["per_repetition"]["with_margin"])
        assert plain.min() >= 0 and plain.max() <= 1 and margin.min() >= 0 and margin.max() <= 1
        # without margin the bias only decreases with N and the fresh points stay the
        # same, so the active sets only grow: the fraction never decreases
        assert np.all(np.diff(plain, axis=1) >= 0)
        assert plain[:, -1].mean() > plain[:, 0].mean()
        assert shape["covering_radius"] == [fr.covering_radius(N, shape["n"]) for N in counts]
        # N = 1: the sample constrains the n rows of its basis; the margin is the
        # sphere's diameter 2, so alpha_i - 2|w_i| <= -|w_i| keeps them active everywhere
        # and, independent, they span R^n at every point
        n, m = shape["n"], shape["m"]
        assert counts[0] == 1 and np.all(margin[:, 0] == 1.0)
        assert shape["always_active_with_margin_mean"][0] == pytest.approx(n / m)
        assert shape["unconstrained_rows_mean"][0] == m - n


def test_evolution_bias_of_unconstrained_rows_switches_them_off():
    norms = np.array([1.0, 2.0])
    bias = ex._finite_bias(np.array([0.5, np.inf]), norms)
    assert bias.tolist() == [0.5, 4.0]
    X = np.random.default_rng(0).standard_normal((100, 2))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    layer = fr.ReLULayer(np.array([[1.0, 0.0], [0.0, 2.0]]), bias)
    assert not layer.active_mask(X)[:, 1].any()


def test_redundancy_cells(records):
    record, _ = records["redundancy"]
    results = record["results"]
    params = record["parameters"]
    cells = {(c["n"], c["m"]): c for c in results["cells"]}
    assert set(cells) == {(n, m) for n in params["dims"] for m in params["neurons"] if m >= n}
    for (n, m), cell in cells.items():
        for key in ("with_margin", "without_margin"):
            values = [cell[key]["zero"], cell[key]["layers_zero"], *cell[key]["normal"], *cell[key]["layers_normal"]]
            assert all(0.0 <= v <= 1.0 for v in values)
        # the margin lowers every alpha_i, so it admits less
        assert cell["with_margin"]["zero"] <= cell["without_margin"]["zero"]
        for a, b in zip(cell["with_margin"]["normal"], cell["without_margin"]["normal"]):
            assert a <= b
        if n <= params["verify_max_dim"]:
            assert 0.0 <= cell["exact"]["injective"] <= 1.0
            # zero bias injective => at every x the active rows span and come first in
            # the scan, so B(x) holds only rows with <x, w_i> >= 0 and alpha^X >= 0: the
            # exact verdict never says yes where the sampled bias refuses zero
            assert cell["exact"]["injective"] <= cell["without_margin"]["layers_zero"]
            if m < 2 * n:  # never injective (THEORY §5)
                assert cell["exact"]["injective"] == 0.0
        else:
            assert cell["exact"] is None


def test_redundancy_admission_matches_its_definition(records):
    """Recompute one cell from mcbe and verify_injective; check the expected fraction
    against biases actually drawn."""
    record, _ = records["redundancy"]
    params = record["parameters"]
    n, m = 3, 12
    cell = next(c for c in record["results"]["cells"] if (c["n"], c["m"]) == (n, m))
    alphas, verdicts = [], []
    for layer in range(params["layers"]):
        W = ex._random_weight(ex._generator(0, 3, n, m, layer), m, n, True)
        est = fr.mcbe(W, fr.Sphere(n), params["n_samples"], seed=ex._child_seed(0, 3, n, m, layer),
                      margin="covering")
        alphas.append(est.alpha)
        verdicts.append(fr.verify_injective(W).injective)
    alpha = np.array(alphas)
    assert cell["with_margin"]["zero"] == pytest.approx(np.mean(alpha >= 0))
    assert cell["exact"]["injective"] == pytest.approx(np.mean(verdicts))
    rng = np.random.default_rng(5)
    for s, expected in zip(params["bias_stds"], cell["with_margin"]["normal"]):
        b = rng.normal(0.0, s, size=(20_000,) + alpha.shape)
        assert np.mean(b <= alpha) == pytest.approx(expected, abs=0.01)
        assert expected == pytest.approx(np.mean(ndtr(alpha / s)))


def test_deterministic_for_a_seed_whatever_the_threads():
    one = fr.run_experiment("evolution", quick=True, seed=3, n_jobs=1, shapes=[[3, 10]])
    two = fr.run_experiment("evolution", quick=True, seed=3, n_jobs=2, shapes=[[3, 10]])
    other = fr.run_experiment("evolution", quick=True, seed=4, n_jobs=2, shapes=[[3, 10]])
    assert one["results"] == two["results"]
    assert one["results"] != other["results"]
    assert one["json"] is None and one["figures"] == []


def test_without_matplotlib_json_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "_figure_factory", lambda: None)
    record = fr.run_experiment("tetrahedron", tmp_path, quick=True, repetitions=2,
                               sample_counts=[10, 100])
    assert record["figures"] == [] and (tmp_path / "tetrahedron.json").exists()
    assert not list(tmp_path.glob("*.png"))
    assert "figures skipped" in capsys.readouterr().err


@pytest.mark.parametrize("name, kwargs, match", [
    ("tetra", {}, r"The 'name' parameter must be one of \['evolution', 'redundancy', 'tetrahedron', 'training'\]. Got 'tetra' instead"),
    ("tetrahedron", {"reps": 3}, r"parameters of experiment 'tetrahedron' must be among \['fit_from', 'repetitions', 'sample_counts'\]. Got 'reps'"),
    ("tetrahedron", {"repetitions": 0}, r"'repetitions' parameter must be an integer >= 1. Got 0"),
    ("tetrahedron", {"sample_counts": [100, 10]}, r"'sample_counts' parameter must be strictly increasing"),
    ("tetrahedron", {"sample_counts": [0, 10]}, r"'sample_counts' parameter must be an integer >= 1. Got 0"),
    ("tetrahedron", {"sample_counts": "10"}, r"'sample_counts' parameter must be a non-empty list"),
    ("tetrahedron", {"sample_counts": []}, r"'sample_counts' parameter must be a non-empty list"),
    ("evolution", {"shapes": [[3, 2]]}, r"'shapes' parameter must be a non-empty list of \(n, m\) pairs with m >= n"),
    ("evolution", {"shapes": [3, 6]}, r"'shapes' parameter must be a non-empty list of \(n, m\) pairs"),
    ("evolution", {"fresh_points": 2.5}, r"'fresh_points' parameter must be an integer >= 1. Got 2.5"),
    ("evolution", {"unit_rows": "yes"}, r"'unit_rows' parameter must be True or False. Got 'yes'"),
    ("redundancy", {"margin": "wide"}, r"'margin' parameter must be 'covering' or a float >= 0. Got 'wide'"),
    ("redundancy", {"margin": -0.1}, r"'margin' parameter must be a finite real number >= 0. Got -0.1"),
    ("redundancy", {"bias_stds": [0.1, -1]}, r"'bias_stds' parameter must be a finite real number > 0. Got -1"),
    ("redundancy", {"bias_stds": []}, r"'bias_stds' parameter must be a non-empty list of real numbers > 0"),
    ("redundancy", {"verify_max_dim": -1}, r"'verify_max_dim' parameter must be an integer >= 0. Got -1"),
    ("redundancy", {"n_samples": 0}, r"'n_samples' parameter must be an integer >= 1. Got 0"),
    ("redundancy", {"dims": [3, 2]}, r"'dims' parameter must be strictly increasing"),
    ("redundancy", {"quick": "yes"}, r"'quick' parameter must be True or False. Got 'yes'"),
    ("redundancy", {"seed": -1}, r"'seed' parameter must be a non-negative integer or None. Got -1"),
    ("redundancy", {"n_jobs": 0}, r"'n_jobs' parameter must be an integer >= 1. Got 0"),
    ("redundancy", {"figures": 1}, r"'figures' parameter must be True or False. Got 1"),
])
def test_invalid_parameters(name, kwargs, match):
    kwargs = {"quick": True, **kwargs}
    with pytest.raises(FastReluError, match=match):
        fr.run_experiment(name, **kwargs)


def test_out_must_not_be_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FastReluError, match=r"'out' parameter must be a directory .* an existing file"):
        fr.run_experiment("tetrahedron", path, quick=True)


def test_verify_over_budget_is_reported_not_guessed():
    record = fr.run_experiment("redundancy", quick=True, dims=[2, 12], neurons=[130], layers=1,
                               n_samples=5000, verify_max_dim=12)
    cells = {c["n"]: c for c in record["results"]["cells"]}
    assert 0.0 <= cells[2]["exact"]["injective"] <= 1.0
    assert "max_subsets" in cells[12]["exact"]["refused"]


def test_cli_writes_files_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["experiment", "tetrahedron", "--quick", "--out", str(out), "--seed", "2",
                 "--set", "repetitions=2", "--set", "sample_counts=[10,100,1000]", "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "tetrahedron" in text and "written to" in text
    record = _strict_json(out / "tetrahedron.json")
    assert record["seed"] == 2 and record["parameters"]["repetitions"] == 2
    assert record["parameters"]["sample_counts"] == [10, 100, 1000]
    assert main(["experiment", "redundancy", "--quick", "--json", "--jobs", "1",
                 "--set", "margin=covering", "--set", "dims=[2]"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parameters"]["margin"] == "covering" and printed["results"]["dims"] == [2]


@pytest.mark.parametrize("argv, match", [
    (["experiment", "nope"], "The 'name' parameter must be one of"),
    (["experiment", "evolution", "--quick", "--set", "repetitions"], "'--set' option must be KEY=VALUE"),
    (["experiment", "evolution", "--quick", "--set", "seed=3"], "must not set 'seed': use --seed"),
    (["experiment", "evolution", "--quick", "--set", "repetitions=-2"], "'repetitions' parameter must be an integer >= 1"),
    (["experiment", "evolution", "--quick", "--set", "colour=red"], "parameters of experiment 'evolution' must be among"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


# --------------------------------------------------------------------------- training


def _without_timings(results):
    """The training results without the wall-clock fields."""
    runs = [{k: v for k, v in run.items() if k not in ("seconds", "monitor_seconds")}
            for run in results["runs"]]
    return {**results, "runs": runs}


def test_training_record_structure(records):
    record, out = records["training"]
    params, results = record["parameters"], record["results"]
    assert results["torch_threads"] == 1 and results["torch_version"]
    split = results["split"]
    assert split["train_images"] == params["train_points"] and split["eval_images"] == params["eval_points"]
    runs = results["runs"]
    expected = [("mlp", h, e) for h in params["widths"] for e in (False, True)] + [("cnn", None, False), ("cnn", None, True)]
    assert [(r["model"], r["width"], r["enforce"]) for r in runs] == expected
    for run in runs:
        epochs = run["epochs"] + 1  # before the first epoch and after each
        assert len(run["test_accuracy"]) == len(run["train_loss"]) == epochs
        assert run["train_loss"][0] is None and all(0.0 <= a <= 1.0 for a in run["test_accuracy"])
        assert len(run["layer_names"]) == 2 and set(run["layers"]) == set(run["monitor"]) == set(run["layer_names"])
        for shape in run["layer_shapes"]:
            assert shape["redundancy"] == shape["m"] / shape["n"]
            layer = run["layers"][shape["name"]]
            for field in ("injective_fraction", "recovered_fraction", "ok_fraction", "median_relative_error"):
                assert len(layer[field]) == epochs
            assert all(0.0 <= f <= 1.0 for f in layer["injective_fraction"] + layer["recovered_fraction"])
            assert run["monitor"][shape["name"]]["steps"][1:] == [run["monitor_steps"] // run["epochs"]] * run["epochs"]
    mlp = runs[0]["layer_shapes"]
    assert [(s["n"], s["m"]) for s in mlp] == [(64, params["widths"][0]), (params["widths"][0],) * 2]
    cnn = runs[-1]["layer_shapes"]
    c1, c2 = params["cnn_channels"]
    assert [(s["n"], s["m"]) for s in cnn] == [(64, 64 * c1), (64 * c1, 64 * c2)]
    assert record["figures"] == ["training_curves.png"] and (out / "training_curves.png").exists()


def test_training_enforced_runs_project_and_plain_runs_do_not(records):
    runs = records["training"][0]["results"]["runs"]
    for plain, forced in zip(runs[0::2], runs[1::2]):
        assert not plain["enforce"] and forced["enforce"]
        assert all(sum(m["projected"]) == 0 and sum(m["steps_projecting"]) == 0 for m in plain["monitor"].values())
        assert sum(sum(m["projected"]) for m in forced["monitor"].values()) > 0
        # the same initialisation: the two runs differ only from the first projection on
        assert plain["init_seed"] == forced["init_seed"]
        assert plain["test_accuracy"][0] == forced["test_accuracy"][0]
        assert {k: v["injective_fraction"][0] for k, v in plain["layers"].items()} == \
               {k: v["injective_fraction"][0] for k, v in forced["layers"].items()}


def test_training_deterministic_for_a_seed_whatever_the_threads():
    small = {"models": ["mlp"], "mlp_epochs": 1, "train_points": 96, "eval_points": 24,
             "reconstruct_points": 8, "figures": False}
    one = fr.run_experiment("training", quick=True, seed=5, n_jobs=1, **small)
    two = fr.run_experiment("training", quick=True, seed=5, n_jobs=2, **small)
    other = fr.run_experiment("training", quick=True, seed=6, n_jobs=1, **small)
    assert _without_timings(one["results"]) == _without_timings(two["results"])
    assert _without_timings(one["results"]) != _without_timings(other["results"])


def test_training_without_torch_is_a_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(fr.MissingDependencyError, match=r"training experiment needs torch: .*fastrelu\[torch\]"):
        fr.run_experiment("training", quick=True)


def test_other_experiments_do_not_import_torch(tmp_path):
    code = ("import sys, fastrelu as fr; fr.run_experiment('tetrahedron', quick=True, repetitions=1, "
            "sample_counts=[10]); assert 'torch' not in sys.modules, 'torch imported'")
    # from an empty directory: the installed package, not a source tree beside the tests
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"models": ["rnn"]}, r"'models' parameter must be a non-empty list of distinct names among \['mlp', 'cnn'\]. Got \['rnn'\]"),
    ({"models": []}, r"'models' parameter must be a non-empty list"),
    ({"widths": [64, 32]}, r"'widths' parameter must be a non-empty, strictly increasing list of integers >= 1. Got \[64, 32\]"),
    ({"widths": [0]}, r"'widths' parameter must be an integer >= 1. Got 0"),
    ({"cnn_channels": [8]}, r"'cnn_channels' parameter must be two integers >= 1"),
    ({"mlp_epochs": -1}, r"'mlp_epochs' parameter must be an integer >= 0. Got -1"),
    ({"mlp_lr": 0}, r"'mlp_lr' parameter must be a finite real number > 0. Got 0"),
    ({"test_fraction": 1.0}, r"'test_fraction' parameter must be a real number in \(0, 1\). Got 1.0"),
    ({"train_points": 0}, r"'train_points' parameter must be an integer >= 1. Got 0"),
    ({"train_points": 5000}, r"'train_points' parameter must be at most 1257 .* Got 5000"),
    ({"eval_points": 1000}, r"'eval_points' parameter must be at most 540 .* Got 1000"),
    ({"eval_points": 10, "reconstruct_points": 11}, r"'reconstruct_points' parameter must be at most eval_points=10. Got 11"),
    ({"monitor_window": 0}, r"'monitor_window' parameter must be an integer >= 1. Got 0"),
])
def test_training_invalid_parameters(kwargs, match):
    with pytest.raises(FastReluError, match=match):
        fr.run_experiment("training", quick=True, **kwargs)


def test_training_cli_bad_input_is_one_line_exit_2(capsys):
    assert main(["experiment", "training", "--quick", "--set", "widths=[0]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'widths' parameter must be an integer >= 1. Got 0" in err[0]
