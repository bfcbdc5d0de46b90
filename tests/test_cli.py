import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastrelu.cli import main


@pytest.fixture
def weights(tmp_path):
    W = np.random.default_rng(0).standard_normal((9, 3))
    path = tmp_path / "W.npy"
    np.save(path, W)
    return W, path


def test_bias_json_and_out(weights, tmp_path, capsys):
    W, path = weights
    out = tmp_path / "alpha.npy"
    assert main(["bias", str(path), "--samples", "5000", "--seed", "3", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_samples"] == 5000 and report["seed"] == 3
    alpha = np.load(out)
    np.testing.assert_allclose(alpha, np.array(report["alpha"], dtype=float))


def test_bias_domains_and_formats(weights, tmp_path, capsys):
    W, _ = weights
    csv = tmp_path / "W.csv"
    np.savetxt(csv, W, delimiter=",")
    npz = tmp_path / "W.npz"
    np.savez(npz, hidden=W, other=W[:3])
    X = tmp_path / "X.txt"
    np.savetxt(X, np.random.default_rng(1).standard_normal((50, 3)))
    assert main(["bias", str(csv), "--domain", "shell", "--inner", "0.5", "--outer", "2", "--samples", "2000", "--json"]) == 0
    assert main(["bias", str(npz), "--key", "hidden", "--domain", "ball", "--radius", "2", "--nonnegative", "--samples", "2000", "--json"]) == 0
    assert main(["bias", str(npz), "--key", "hidden", "--domain", "data", "--data", str(X), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["n_samples"] == 50


@pytest.mark.parametrize("argv, match", [
    (["bias", "missing.npy"], "not a file"),
    (["bias", "{W}", "--samples", "0"], "'n_samples' parameter must be an integer >= 1"),
    (["bias", "{W}", "--domain", "sphere", "--radius", "-1"], "'radius' parameter must be a finite real number > 0"),
    (["bias", "{W}", "--domain", "shell", "--inner", "3", "--outer", "1"], "must not exceed"),
    (["bias", "{W}", "--domain", "shell", "--inner", "1"], "needs both --inner and --outer"),
    (["bias", "{W}", "--domain", "data"], "needs --data"),
    (["bias", "{W}", "--domain", "data", "--data", "{BAD}"], "must have dimension 3"),
    (["bias", "{NPZ}"], "choose one with --key"),
    (["bias", "{NPZ}", "--key", "nope"], "has no array 'nope'"),
    (["bias", "{GARBAGE}"], "could not be read"),
    (["bias", "{W}", "--margin", "wide"], "'--margin' option must be 'covering' or a number"),
    (["bias", "{NAN}"], "must contain only finite numbers. Got NaN or inf at (2, 1)"),
    (["bias", "{ONE_D}"], "must hold a 2-D array"),
    (["bias", "{FEW}"], "at least as many rows"),
    (["bias", "{ZERO}"], "no zero rows"),
    (["bias", "{COMPLEX}"], "must hold real numbers. Got an array of dtype complex128"),
    (["bias", "{EMPTY}"], "could not be read as a .txt array"),
    (["bias", "{W}", "--domain", "data", "--data", "{NPZ}"], "choose one with --data-key"),
    (["bias", "{W}", "--out", "{DIR}"], "which is a directory"),
    (["bias", "{W}", "--out", "{NODIR}"], "does not exist"),
    (["check", "{W}", "--data", "{X}", "--out", "{NODIR}"], "does not exist"),
    (["reconstruct", "{W}", "--outputs", "{X}", "--out", "{DIR}"], "which is a directory"),
    (["width", "{W}", "--local", "--data", "{X}", "--out", "{NODIR}"], "does not exist"),
    (["report", "{W}", "--data", "{X}", "--out", "{W}"], "an existing file"),
    (["experiment", "tetrahedron", "--out", "{W}"], "an existing file"),
])
def test_bad_input_is_one_line_exit_2(weights, tmp_path, capsys, argv, match):
    W, path = weights
    files = {"W": path, "DIR": tmp_path, "NODIR": tmp_path / "missing" / "out.npy"}
    for name, value in {"BAD": np.ones((4, 2)), "X": np.ones((5, 3)), "ONE_D": W[:, 0],
                        "FEW": W[:2], "ZERO": np.vstack([W, np.zeros(3)]),
                        "NAN": np.where(np.arange(27).reshape(9, 3) == 7, np.nan, W),
                        "COMPLEX": W + 1j}.items():
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], value)
    files["NPZ"] = tmp_path / "two.npz"
    np.savez(files["NPZ"], a=np.eye(2), b=np.eye(2))
    files["GARBAGE"] = tmp_path / "garbage.csv"
    files["GARBAGE"].write_text("1,2,x\n3,4\n")
    files["EMPTY"] = tmp_path / "empty.txt"
    files["EMPTY"].write_text("")
    argv = [a.format(**files) for a in argv]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrelu: error: ") and err.count("\n") == 1
    assert match in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("argv", [["bias", "W.npy", "--domain", "torus"],
                                  ["bias", "W.npy", "--samples", "abc"], ["frobnicate"], []])
def test_usage_errors_are_one_line_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "--help" in err


def test_demo_runs(capsys):
    assert main(["demo", "--samples", "2000", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["layer"].startswith("tetrahedron")
    assert rows[0]["alpha_min"] >= rows[0]["exact"] - 1e-12


def test_console_entry_point_has_no_traceback(tmp_path):
    bad = tmp_path / "W.npy"
    np.save(bad, np.ones((5, 3)))
    script = Path(sys.executable).parent / "fastrelu"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fastrelu"]
    # run outside the checkout so that the installed package is the one imported
    proc = subprocess.run(command + ["bias", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "rank(weight) = 1" in proc.stderr


def test_bias_with_pbe(tmp_path, capsys):
    W = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)
    path = tmp_path / "tetra.npy"
    np.save(path, W)
    assert main(["bias", str(path), "--method", "pbe", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "pbe" and report["n_facets"] == 4
    np.testing.assert_allclose(report["alpha"], -1 / np.sqrt(3), atol=1e-12)
    assert main(["bias", str(path), "--method", "pbe"]) == 0
    assert "PBE on Sphere" in capsys.readouterr().out
    assert main(["bias", str(path), "--method", "pbe", "--samples", "100"]) == 2
    assert "--samples applies only to --method mcbe; got --method pbe" in capsys.readouterr().err


def test_check_on_data_and_on_a_domain(tmp_path, capsys):
    W = np.vstack([np.eye(2), -np.eye(2)])
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "alpha.npy", np.full(4, 0.5))
    np.save(tmp_path / "X.npy", np.array([[1.0, 1.0], [0.1, 0.1], [-2.0, 3.0]]))
    base = ["check", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "alpha.npy")]
    mask = tmp_path / "mask.npy"
    assert main(base + ["--data", str(tmp_path / "X.npy"), "--json", "--out", str(mask)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_injective"] == 2 and report["failures"] == [1] and report["failed_n_active"] == [0]
    np.testing.assert_array_equal(np.load(mask), [True, False, True])
    assert main(base + ["--data", str(tmp_path / "X.npy"), "--strict"]) == 1
    text = capsys.readouterr().out
    assert "2 of 3 points injective" in text and "point 1 (0 active rows, rank 0)" in text
    # the affine convention: b = -alpha
    np.save(tmp_path / "b.npy", np.full(4, -0.5))
    assert main(["check", str(tmp_path / "W.npy"), "--affine-bias", str(tmp_path / "b.npy"),
                 "--data", str(tmp_path / "X.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_injective"] == 2
    # fresh sphere points: the cross-polytope with zero bias is injective everywhere
    assert main(["check", str(tmp_path / "W.npy"), "--points", "5000", "--seed", "1", "--json", "--strict"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_points"] == 5000 and report["n_injective"] == 5000 and report["seed"] == 1


@pytest.mark.parametrize("args, message", [
    (["--bias", "B", "--affine-bias", "B"], "either --bias"),
    (["--data", "X", "--points", "10"], "--points applies only without --data; got --data "),
    (["--out", "m.npy"], "--out applies only with --data; got no --data"),
    (["--bias", "short"], "'bias' parameter must have shape \\(4,\\)"),
    (["--data", "wide"], "'X' parameter must have 2 columns"),
    (["--points", "0"], "'n_points' parameter must be an integer >= 1"),
    (["--rank-tol", "0"], "'rank_tol' parameter must be a float in"),
])
def test_check_bad_input(tmp_path, capsys, args, message):
    np.save(tmp_path / "W.npy", np.vstack([np.eye(2), -np.eye(2)]))
    np.save(tmp_path / "B.npy", np.zeros(4))
    np.save(tmp_path / "short.npy", np.zeros(3))
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    np.save(tmp_path / "wide.npy", np.ones((3, 5)))
    files = {"B": "B.npy", "short": "short.npy", "X": "X.npy", "wide": "wide.npy", "m.npy": "m.npy"}
    args = [str(tmp_path / files[a]) if a in files else a for a in args]
    assert main(["check", str(tmp_path / "W.npy")] + args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message.replace("\\", "") in err or __import__("re").search(message, err)


def test_reconstruct_command(tmp_path, capsys):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((12, 3))
    alpha = np.full(12, -0.2)
    X = rng.standard_normal((40, 3))
    Y = np.maximum(X @ W.T - alpha, 0)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "a.npy", alpha)
    np.save(tmp_path / "Y.npy", Y)
    out = tmp_path / "X.npy"
    base = ["reconstruct", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.npy"),
            "--outputs", str(tmp_path / "Y.npy"), "--out", str(out)]
    assert main(base + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_outputs"] == 40 and report["method"] == "dual"
    good = np.ones(40, dtype=bool)
    good[report["failed"]] = False
    np.testing.assert_allclose(np.load(out)[good], X[good], atol=1e-10)
    assert main(base + ["--method", "frame"]) == 0
    assert "frame algorithm" in capsys.readouterr().out
    Y[4, 2] = -1.0
    np.save(tmp_path / "Y.npy", Y)
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "negative entries in rows 4" in err and err.count("\n") == 1


def test_svals_command_on_the_ball_and_on_data(tmp_path, capsys):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((10, 3))
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "X.npy", rng.standard_normal((60, 3)))
    np.save(tmp_path / "a.npy", np.full(10, 0.1))
    assert main(["svals", str(tmp_path / "W.npy"), "-k", "2", "--starts", "300",
                 "--fit-steps", "10", "--seed", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sigma = np.linalg.svd(W, compute_uv=False)
    assert report["kinds"] == ["lower bound", "upper bound estimate"] and report["seed"] == 1
    np.testing.assert_allclose(report["sigma"], sigma[:2])
    assert report["values"][0] <= sigma[0] and report["values"][1] <= sigma[1] * (1 + 1e-12)
    assert main(["svals", str(tmp_path / "W.npy"), "-k", "2", "--data", str(tmp_path / "X.npy"),
                 "--bias", str(tmp_path / "a.npy"), "--fit-steps", "10"]) == 0
    text = capsys.readouterr().out
    assert "Data(points=<60 x 3>)" in text and "exact" in text and "upper bound" in text


def test_width_command_variants(tmp_path, capsys):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "W.npy", rng.standard_normal((8, 3)))
    np.save(tmp_path / "X.npy", rng.standard_normal((40, 3)))
    W, X = str(tmp_path / "W.npy"), str(tmp_path / "X.npy")
    assert main(["width", W, "--linear", "--draws", "500", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_draw"] == "exact" and report["n_draws"] == 500 and report["stderr"] > 0
    assert main(["width", W, "--draws", "300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_draw"] == "lower estimate"
    assert main(["width", W, "--data", X, "--draws", "300"]) == 0
    assert "image of 40 data points" in capsys.readouterr().out
    out = tmp_path / "local.npz"
    assert main(["width", W, "--local", "--data", X, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_points"] == 40
    with np.load(out) as saved:
        assert saved["width"].shape == (40,) and saved["rank"].shape == (40,)


@pytest.mark.parametrize("argv, message", [
    (["svals", "{W}", "-k", "4"], "'k' parameter must be an integer in [1, 3]"),
    (["svals", "{W}", "-k", "1", "--starts", "0"], "'n_starts' parameter must be an integer >= 1"),
    (["svals", "{W}", "-k", "1", "--data", "{WIDE}"], "'data' parameter must have 3 columns"),
    (["width", "{W}", "--local"], "'--local' option needs --data"),
    (["width", "{W}", "--draws", "0"], "'n_draws' parameter must be an integer >= 1"),
])
def test_svals_and_width_bad_input(tmp_path, capsys, argv, message):
    np.save(tmp_path / "W.npy", np.random.default_rng(0).standard_normal((6, 3)))
    np.save(tmp_path / "X.npy", np.ones((4, 3)))
    np.save(tmp_path / "wide.npy", np.ones((4, 5)))
    files = {"W": tmp_path / "W.npy", "X": tmp_path / "X.npy", "WIDE": tmp_path / "wide.npy"}
    assert main([a.format(**files) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrelu: error: ") and err.count("\n") == 1
    assert message in err


def test_verify_command(tmp_path, capsys):
    rng = np.random.default_rng(11)
    W = rng.standard_normal((5, 3))  # m < 2n: never injective
    np.save(tmp_path / "W.npy", W)
    assert main(["verify", str(tmp_path / "W.npy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["injective"] is False and report["min_active"] < 3
    x = np.array(report["witness"])
    active = W @ x >= 0
    assert np.linalg.matrix_rank(W[active]) < 3
    assert main(["verify", str(tmp_path / "W.npy"), "--strict"]) == 1
    assert "NOT injective" in capsys.readouterr().out
    np.save(tmp_path / "D.npy", np.vstack([np.eye(3), -np.eye(3)]))
    assert main(["verify", str(tmp_path / "D.npy")]) == 0
    assert "is injective" in capsys.readouterr().out
    np.save(tmp_path / "W8.npy", np.random.default_rng(1).standard_normal((8, 3)))  # m >= 2n
    assert main(["verify", str(tmp_path / "W8.npy"), "--max-subsets", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- options that do not apply


@pytest.fixture
def inputs(tmp_path):
    """Input files for every command: W (9 x 3), an .npz of it, data X (40 x 3), outputs
    Y of the zero-bias layer, labels and a batch spec."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((9, 3))
    np.save(tmp_path / "W.npy", W)
    np.savez(tmp_path / "W.npz", hidden=W)
    X = rng.standard_normal((40, 3))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", np.maximum(X @ W.T, 0))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 40))
    (tmp_path / "spec.toml").write_text('[[job]]\nweights = "W.npy"\nsamples = 1000\n')
    return tmp_path


def _fill(argv, folder):
    return [a.format(dir=folder) for a in argv]


W_ = "{dir}/W.npy"
X_ = "{dir}/X.npy"

REFUSED = [
    # bias: the domain decides which radii, data and orthant options apply
    (["bias", W_, "--data", X_, "--out", "{dir}/a.npy"], "--data", "--domain sphere"),
    (["bias", W_, "--domain", "sphere", "--inner", "0.5", "--out", "{dir}/a.npy"], "--inner", "--domain sphere"),
    (["bias", W_, "--domain", "ball", "--outer", "2"], "--outer", "--domain ball"),
    (["bias", W_, "--domain", "shell", "--inner", "0.5", "--outer", "2", "--radius", "1"], "--radius", "--domain shell"),
    (["bias", W_, "--domain", "data", "--data", X_, "--radius", "1"], "--radius", "--domain data"),
    (["bias", W_, "--domain", "data", "--data", X_, "--nonnegative"], "--nonnegative", "--domain data"),
    (["bias", W_, "--domain", "data", "--data", X_, "--samples", "10"], "--samples", "--domain data"),
    (["bias", W_, "--domain", "data", "--data", X_, "--seed", "0"], "--seed", "--domain data"),
    (["bias", W_, "--domain", "data", "--data", X_, "--margin", "covering"], "--margin", "--domain data"),
    # array names apply to .npz files only
    (["bias", W_, "--key", "hidden", "--out", "{dir}/a.npy"], "--key", "weights {dir}/W.npy"),
    (["bias", W_, "--domain", "data", "--data", X_, "--data-key", "x"], "--data-key", "--data {dir}/X.npy"),
    (["check", W_, "--bias", "0.5", "--bias-key", "a", "--data", X_], "--bias-key", "--bias 0.5"),
    (["check", W_, "--bias-key", "a", "--data", X_], "--bias-key", "no --bias or --affine-bias"),
    (["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--outputs-key", "y", "--out", "{dir}/r.npy"], "--outputs-key", "--outputs {dir}/Y.npy"),
    (["verify", W_, "--key", "hidden"], "--key", "weights {dir}/W.npy"),
    # PBE samples nothing and runs in one thread
    (["bias", W_, "--method", "pbe", "--samples", "100", "--out", "{dir}/a.npy"], "--samples", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--seed", "0"], "--seed", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--margin", "covering"], "--margin", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--checkpoint", "{dir}/c.npz"], "--checkpoint", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--checkpoint-interval", "1"], "--checkpoint-interval", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--local-cluster", "1"], "--local-cluster", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--jobs", "1"], "--jobs", "--method pbe"),
    (["bias", W_, "--method", "pbe", "--progress"], "--progress", "--method pbe"),
    # cluster and checkpoint options need what they configure
    (["bias", W_, "--scheduler-timeout", "10", "--out", "{dir}/a.npy"], "--scheduler-timeout", "--scheduler"),
    (["bias", W_, "--checkpoint-interval", "5"], "--checkpoint-interval", "--checkpoint"),
    (["bias", W_, "--jobs", "2", "--local-cluster", "1"], "--jobs", "--local-cluster"),
    (["verify", W_, "--checkpoint-interval", "1"], "--checkpoint-interval", "--checkpoint"),
    (["batch", "{dir}/spec.toml", "--out", "{dir}/res", "--scheduler-timeout", "10"], "--scheduler-timeout", "--scheduler"),
    (["batch", "{dir}/spec.toml", "--out", "{dir}/res", "--jobs", "1", "--local-cluster", "1"], "--jobs", "--local-cluster"),
    # check: --data replaces the sampled domain and everything that describes it
    (["check", W_, "--data", X_, "--points", "10", "--out", "{dir}/m.npy"], "--points", "--data"),
    (["check", W_, "--data", X_, "--seed", "0"], "--seed", "--data"),
    (["check", W_, "--data", X_, "--domain", "sphere"], "--domain", "--data"),
    (["check", W_, "--data", X_, "--radius", "2"], "--radius", "--data"),
    (["check", W_, "--data", X_, "--nonnegative"], "--nonnegative", "--data"),
    (["check", W_, "--data", X_, "--progress"], "--progress", "--data"),
    (["check", W_, "--domain", "ball", "--inner", "1"], "--inner", "--domain ball"),
    (["check", W_, "--out", "{dir}/m.npy"], "--out", "--data"),
    # reconstruct: the frame algorithm's options and the estimated condition numbers
    (["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--out", "{dir}/r.npy", "--max-iter", "10000"], "--max-iter", "--method dual (the default)"),
    (["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--out", "{dir}/r.npy", "--method", "basis", "--max-iter", "10"], "--max-iter", "--method basis"),
    (["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--out", "{dir}/r.npy", "--method", "frame", "--cond", "exact"], "--cond", "--method frame"),
    # svals: on data s_1 is exact; the fits exist for k >= 2 only
    (["svals", W_, "-k", "2", "--data", X_, "--starts", "10"], "--starts", "--data"),
    (["svals", W_, "-k", "1", "--data", X_, "--checkpoint", "{dir}/c.npz"], "--checkpoint", "--data"),
    (["svals", W_, "-k", "1", "--fit-steps", "200"], "--fit-steps", "-k 1"),
    (["svals", W_, "-k", "1", "--data", X_, "--seed", "0"], "--seed", "--data"),
    # width: the linear map takes no bias or data; --local draws nothing
    (["width", W_, "--linear", "--bias", "0.5"], "--bias", "--linear"),
    (["width", W_, "--linear", "--data", X_], "--data", "--linear"),
    (["width", W_, "--linear", "--starts", "8"], "--starts", "--linear"),
    (["width", W_, "--local", "--data", X_, "--draws", "10", "--out", "{dir}/l.npz"], "--draws", "--local"),
    (["width", W_, "--local", "--data", X_, "--seed", "1"], "--seed", "--local"),
    (["width", W_, "--local", "--data", X_, "--checkpoint", "{dir}/c.npz"], "--checkpoint", "--local"),
    (["width", W_, "--data", X_, "--starts", "4"], "--starts", "--data"),
    (["width", W_, "--out", "{dir}/l.npz"], "--out", "--local"),
    # --jobs: threads of this process, which a cluster's workers or exact NumPy work ignore
    (["verify", W_, "--jobs", "1", "--local-cluster", "1"], "--jobs", "--local-cluster"),
    (["svals", W_, "-k", "1", "--data", X_, "--jobs", "1"], "--jobs", "--data"),
    (["svals", W_, "-k", "1", "--jobs", "1", "--local-cluster", "1"], "--jobs", "--local-cluster 1 with -k 1"),
    (["width", W_, "--jobs", "1", "--local-cluster", "1"], "--jobs", "--local-cluster"),
    # report: the built-in model brings its own data
    (["report", "digits", "--labels", "{dir}/y.npy", "--out", "{dir}/rep"], "--labels", "digits"),
    (["report", "digits", "--fit-data", X_, "--out", "{dir}/rep"], "--fit-data", "digits"),
    (["report", "digits", "--data", X_, "--out", "{dir}/rep"], "--data", "digits"),
    (["report", "{dir}/W.npz", "--data", X_, "--data-key", "x", "--out", "{dir}/rep"], "--data-key", "--data {dir}/X.npy"),
    # experiment: figures are written only with --out
    (["experiment", "tetrahedron", "--quick", "--no-figures"], "--no-figures", "--out"),
]


@pytest.mark.parametrize("argv, option, other", REFUSED)
def test_options_that_do_not_apply_are_refused(inputs, capsys, argv, option, other):
    before = sorted(p.name for p in inputs.rglob("*"))
    assert main(_fill(argv, inputs)) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith(f"fastrelu {argv[0]}: error: {option} applies only ")
    assert other.format(dir=inputs) in err.split("; got ", 1)[1]  # the choice that excludes it
    assert captured.out == ""
    assert sorted(p.name for p in inputs.rglob("*")) == before  # nothing written


def test_refusal_says_when_the_excluding_choice_is_a_default(inputs, capsys):
    assert main(["bias", str(inputs / "W.npy"), "--inner", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--inner applies only to --domain shell; got --domain sphere (the default)" in err


@pytest.mark.parametrize("argv", [
    # given, and applicable: the same options where they do apply (defaults written out)
    ["bias", W_, "--domain", "sphere", "--radius", "1", "--samples", "2000", "--seed", "0", "--margin", "covering", "--json"],
    ["bias", W_, "--domain", "shell", "--inner", "0.5", "--outer", "2", "--nonnegative", "--samples", "2000", "--json"],
    ["bias", "{dir}/W.npz", "--key", "hidden", "--samples", "2000", "--checkpoint", "{dir}/c.npz", "--checkpoint-interval", "5", "--json"],
    ["bias", W_, "--domain", "data", "--data", X_, "--json"],
    ["check", W_, "--data", X_, "--rank-tol", "1e-6", "--json"],
    ["check", W_, "--domain", "sphere", "--radius", "1", "--points", "100", "--seed", "0", "--json"],
    ["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--out", "{dir}/r.npy", "--method", "frame", "--tol", "1e-12", "--max-iter", "10000", "--json"],
    ["reconstruct", W_, "--outputs", "{dir}/Y.npy", "--out", "{dir}/r.npy", "--method", "basis", "--cond", "estimate", "--tol", "1e-10", "--json"],
    ["svals", W_, "-k", "2", "--data", X_, "--seed", "0", "--fit-steps", "5", "--json"],
    ["width", W_, "--linear", "--draws", "100", "--seed", "0", "--json"],
    ["width", W_, "--data", X_, "--draws", "100", "--bias", "0.1", "--json"],
])
def test_options_where_they_apply_are_accepted(inputs, capsys, argv):
    assert main(_fill(argv, inputs)) == 0
    json.loads(capsys.readouterr().out)


def test_progress_and_no_progress_exclude_each_other(inputs, capsys):
    for command in (["bias", str(inputs / "W.npy")], ["batch", str(inputs / "spec.toml"), "--out", str(inputs / "r")],
                    ["report", "digits", "--out", str(inputs / "r")]):
        with pytest.raises(SystemExit) as stop:
            main(command + ["--progress", "--no-progress"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--no-progress" in err and "--progress" in err
    assert not (inputs / "r").exists()


def _subcommands():
    from fastrelu.cli import build_parser

    parser = build_parser()
    return parser, parser.commands


def test_every_option_of_every_command_has_a_help_text():
    import argparse

    parser, commands = _subcommands()
    assert set(commands) == {"bias", "check", "reconstruct", "verify", "svals", "width",
                             "batch", "report", "experiment", "demo"}
    undescribed = [f"fastrelu {a.dest}" for a in parser._actions
                   if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
                   and not (a.help or "").strip()]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    undescribed += [f"command {a.dest}" for a in sub._choices_actions if not (a.help or "").strip()]
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                undescribed.append(f"fastrelu {name} {'/'.join(action.option_strings) or action.dest}")
    assert undescribed == []


def test_applicability_rules_name_options_that_exist():
    from fastrelu.cli import _KEYS, APPLICABILITY, _option_names

    _, commands = _subcommands()
    assert set(APPLICABILITY) == set(commands)
    for name, rules in APPLICABILITY.items():
        names = _option_names(commands[name])
        for dests, _ in rules:
            for dest in (dests,) if isinstance(dests, str) else dests:
                assert dest in names, (name, dest)
    for name in ("bias", "check", "svals", "width"):
        assert {"key", "data_key"} <= set(_option_names(commands[name]))
    assert set(_KEYS) <= set().union(*(_option_names(c) for c in commands.values()))


def test_defaults_are_filled_in_after_the_check(inputs, capsys):
    # the deferred defaults still reach the functions when an option is not given
    assert main(["check", str(inputs / "W.npy"), "--points", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["domain"].startswith("Sphere(") and report["rank_tol"] == 1e-6
    assert main(["reconstruct", str(inputs / "W.npy"), "--outputs", str(inputs / "Y.npy"),
                 "--out", str(inputs / "r.npy"), "--method", "frame", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "frame"


# --------------------------------------------------------------------------- bias values


def test_bias_is_a_number_or_a_file(inputs, capsys):
    W, X = str(inputs / "W.npy"), str(inputs / "X.npy")
    np.save(inputs / "half.npy", np.full(9, 0.5))
    runs = {}
    for bias in (["--bias", "0.5"], ["--bias", str(inputs / "half.npy")], ["--affine-bias", "-0.5"]):
        assert main(["check", W, *bias, "--data", X, "--json"]) == 0
        runs[bias[1]] = json.loads(capsys.readouterr().out)["n_injective"]
    assert len(set(runs.values())) == 1
    layer = __import__("fastrelu").ReLULayer(np.load(W), 0.5)
    assert runs["0.5"] == int(__import__("fastrelu").injectivity_summary(layer, np.load(X)).injective.sum())
    assert main(["svals", W, "-k", "1", "--bias", "0.5", "--data", X, "--json"]) == 0
    capsys.readouterr()
    assert main(["check", W, "--bias", "half", "--data", X]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "The '--bias' option must be a number or a file" in err
    assert main(["check", W, "--bias", "nan", "--data", X]) == 2
    assert "'bias' parameter" in capsys.readouterr().err
    assert "a number (the same for every row) or a file" in " ".join(
        a.help for a in _subcommands()[1]["check"]._actions if a.dest == "bias")


def _unconstrained_layer():
    # rows 0..2 span the orthant; row 3 points away from it and is never in a most
    # correlated basis of a nonnegative point: MCBE leaves it at +inf
    rng = np.random.default_rng(2)
    return np.vstack([np.eye(3), -np.ones((1, 3)) / np.sqrt(3), np.abs(rng.standard_normal((5, 3)))])


def test_mcbe_output_with_inf_is_accepted_as_a_bias_file(tmp_path, capsys):
    np.save(tmp_path / "W.npy", _unconstrained_layer())
    domain = ["--domain", "shell", "--inner", "0.5", "--outer", "2", "--nonnegative"]
    assert main(["bias", str(tmp_path / "W.npy"), *domain, "--samples", "5000",
                 "--out", str(tmp_path / "a.npy")]) == 0
    alpha = np.load(tmp_path / "a.npy")
    assert np.isposinf(alpha[3]) and np.isfinite(np.delete(alpha, 3)).all()
    capsys.readouterr()
    assert main(["check", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.npy"), *domain,
                 "--points", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_points"] == 500
    np.savetxt(tmp_path / "a.txt", alpha)  # "inf" in a text file too
    assert main(["check", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.txt"), *domain,
                 "--points", "100", "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("where, bad", [("bias", np.nan), ("bias", -np.inf)] + [
    (where, bad) for where in ("weights", "data") for bad in (np.nan, np.inf, -np.inf)])
def test_non_finite_values_are_refused_except_inf_in_a_bias(tmp_path, capsys, where, bad):
    W = _unconstrained_layer()
    X = np.random.default_rng(3).standard_normal((20, 3))
    alpha = np.zeros(W.shape[0])
    target = {"bias": alpha, "weights": W, "data": X}[where]
    target.flat[4] = bad
    for name, value in (("W", W), ("X", X), ("a", alpha)):
        np.save(tmp_path / f"{name}.npy", value)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["check", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.npy"),
                 "--data", str(tmp_path / "X.npy"), "--out", str(tmp_path / "m.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("finite" in err or "NaN" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- files and arrays


@pytest.mark.parametrize("ext, content, message", [
    (".npy", b"this is not an array\n", "must be a NumPy .npy file (as written by numpy.save"),
    (".npy", b"", "Got an empty file"),
    (".npz", b"\x93NUMPY not a zip", "must be a NumPy .npz file (as written by numpy.savez"),
])
def test_garbage_numpy_files_are_named_as_such(tmp_path, capsys, ext, content, message):
    path = tmp_path / f"W{ext}"
    path.write_bytes(content)
    assert main(["bias", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "pickled" not in err


def test_object_arrays_are_refused_without_unpickling(tmp_path, capsys):
    np.save(tmp_path / "W.npy", np.array([[1.0, 2.0], [3.0, None]], dtype=object), allow_pickle=True)
    assert main(["bias", str(tmp_path / "W.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "array of Python objects (dtype object)" in err


@pytest.mark.parametrize("text", [
    np.array([["1", "0", "0"], ["0", "1", "0"], ["0", "0", "1"], ["-1", "-1", "-1"]]),
    np.array([[b"1", b"0"], [b"0", b"1"], [b"-1", b"-1"]]),
    np.array([[1.0, "0"], [0.0, 1.0], [-1.0, -1.0]], dtype=object),
])
def test_numeric_strings_are_refused_by_the_cli_and_the_api_alike(tmp_path, capsys, text):
    import fastrelu as fr

    np.save(tmp_path / "W.npy", text, allow_pickle=text.dtype == object)
    assert main(["bias", str(tmp_path / "W.npy")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(fr.FastReluError, match="'weight' parameter must hold real numbers. Got"):
        fr.ReLULayer(text)
    with pytest.raises(fr.FastReluError, match="'weight' parameter must hold real numbers"):
        fr.mcbe(text.tolist(), fr.Sphere(text.shape[1]), 100)
    with pytest.raises(fr.FastReluError, match="'bias' parameter must hold real numbers"):
        fr.ReLULayer(np.eye(2), "0.5")
    assert fr.ReLULayer(np.eye(2), np.array([0.5, 1], dtype=object)).bias.tolist() == [0.5, 1.0]


# --------------------------------------------------------------------------- demo


def test_demo_mentions_compiling_only_when_it_compiled(capsys, monkeypatch):
    import fastrelu.cli.demo as demo

    assert main(["demo", "--samples", "2000"]) == 0  # compiles or loads the kernels
    capsys.readouterr()
    assert main(["demo", "--samples", "2000"]) == 0  # nothing left to compile
    assert "compil" not in capsys.readouterr().out
    counts = iter([5, 16])
    monkeypatch.setattr(demo, "_compiled_kernels", lambda: next(counts))
    assert main(["demo", "--samples", "2000"]) == 0
    out = capsys.readouterr().out
    assert "the seconds above include compiling 11 Numba kernels" in out


def test_demo_counts_compiled_kernels_not_cached_ones():
    import fastrelu as fr
    import fastrelu.cli as cli
    from fastrelu._bias import kernels

    fr.mcbe(np.eye(3).tolist() + [[-1.0, -1.0, -1.0]], fr.Sphere(3), 100, seed=0)
    before = cli._compiled_kernels()
    fr.mcbe(np.eye(3).tolist() + [[-1.0, -1.0, -1.0]], fr.Sphere(3), 100, seed=1)
    assert cli._compiled_kernels() == before  # the same kernels again: nothing compiled
    tile = kernels.mcbe_tile
    loaded = sum(tile.stats.cache_hits.values())
    assert before >= len(tile.overloads) - loaded >= 0


def test_report_with_bad_input_leaves_no_empty_directory(inputs, capsys):
    np.save(inputs / "wide.npy", np.ones((5, 7)))
    out = inputs / "rep" / "sub"
    assert main(["report", "digits", "--samples", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'samples' parameter" in err
    assert not (inputs / "rep").exists()
    (inputs / "plain").write_text("a file")
    assert main(["report", "digits", "--out", str(inputs / "plain" / "sub")]) == 2
    assert "must be a directory that can be created" in capsys.readouterr().err


def test_verify_closed_form_reports_the_count_at_the_witness_not_a_minimum(tmp_path, capsys):
    path = tmp_path / "W50.npy"
    np.save(path, np.random.default_rng(4).standard_normal((50, 30)))
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "NOT injective" in out and "closed form, m < 2n" in out
    assert "over all directions" not in out


# --------------------------------------------------------------------------- report labels


@pytest.fixture
def labelled(tmp_path):
    """A one-hidden-layer classifier without classes (labels are the unit indices 0, 1),
    saved as net.npz, and 40 data points X.npy."""
    import fastrelu as fr

    rng = np.random.default_rng(21)
    network = fr.Network([fr.ReLULayer(rng.standard_normal((8, 3)), np.full(8, -0.3))],
                         fr.ReLULayer(rng.standard_normal((2, 8)), np.zeros(2)))
    network.save_npz(tmp_path / "net.npz")
    np.save(tmp_path / "X.npy", rng.standard_normal((40, 3)))
    return tmp_path


def _report(folder, labels, *extra):
    return ["report", str(folder / "net.npz"), "--data", str(folder / "X.npy"), "--labels",
            str(labels), "--out", str(folder / "rep"), "--samples", "1000", "--enlarge", "none",
            "--no-plots", "--json", *extra]


def test_report_warning_for_unknown_labels_is_one_line_naming_labels(labelled, capsys):
    y = np.where(np.arange(40) < 3, 5, np.arange(40) % 2)  # three labels are no class
    np.savetxt(labelled / "y.txt", y, fmt="%d")  # one column: loads as shape (40, 1)
    assert main(_report(labelled, labelled / "y.txt")) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["accuracy"] is not None
    lines = captured.err.splitlines()
    assert lines == ["fastrelu: warning: 3 of the 40 labels in --labels are not among the "
                     "network's output unit indices (the network has no classes) [0, 1] "
                     "(labels [5]): those points count as incorrectly classified."]


@pytest.mark.parametrize("labels, message", [
    (np.zeros((40, 2), dtype=int), "The '--labels' file must hold one label per point of --data (40): a 1-D array, one column or one row. Got an array of shape (40, 2)."),
    (np.zeros(7, dtype=int), "The '--labels' file must hold one label per point of --data (40)"),
    (np.full(40, 7), "The '--labels' file must hold labels among the network's output unit indices"),
])
def test_report_label_errors_name_labels(labelled, capsys, labels, message):
    np.save(labelled / "y.npy", labels)
    assert main(_report(labelled, labelled / "y.npy")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "'y'" not in err
    assert not (labelled / "rep").exists()


def test_report_accepts_labels_in_one_row(labelled, capsys):
    y = np.arange(40) % 2
    np.savetxt(labelled / "y.csv", y[None, :], fmt="%d", delimiter=",")  # shape (1, 40)
    assert main(_report(labelled, labelled / "y.csv")) == 0
    summary = json.loads(capsys.readouterr().out)
    np.save(labelled / "y.npy", y)
    assert main(_report(labelled, labelled / "y.npy")) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == summary["accuracy"]


def test_warnings_of_a_command_are_one_line(capsys, monkeypatch):
    import warnings

    import fastrelu.cli.demo as demo

    def noisy(args):
        warnings.warn("first line\nsecond line", RuntimeWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(demo, "run", noisy)  # build_parser looks it up when called
    assert main(["demo"]) == 0
    assert capsys.readouterr().err == "fastrelu: warning: first line second line\n"


def test_svals_jobs_on_a_cluster_apply_to_the_fits(inputs, capsys):
    # with -k 2 the low-rank fits run in this process, so --jobs applies beside a cluster
    from fastrelu.cli import _resolve_options, build_parser

    parser = build_parser()
    args = parser.parse_args(_fill(["svals", "{dir}/W.npy", "-k", "2", "--jobs", "1",
                                    "--local-cluster", "1"], inputs))
    assert _resolve_options(parser, args) is None


def test_verify_json_reports_the_closed_form_and_the_witness_margin(tmp_path, capsys):
    W = np.random.default_rng(11).standard_normal((5, 3))  # m < 2n
    np.save(tmp_path / "W.npy", W)
    assert main(["verify", str(tmp_path / "W.npy"), "--json"]) == 0
    scanned = json.loads(capsys.readouterr().out)
    assert scanned["closed_form"] is False and scanned["injective"] is False
    # past the subset budget the verdict comes from m < 2n alone
    assert main(["verify", str(tmp_path / "W.npy"), "--json", "--max-subsets", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["closed_form"] is True and report["injective"] is False
    assert report["subsets_checked"] == 0
    x = np.array(report["witness"])
    distances = np.abs(W @ x) / np.linalg.norm(W, axis=1)
    assert report["witness_margin"] > 0
    assert distances.min() >= report["witness_margin"] * (1 - 1e-9)
    np.save(tmp_path / "D.npy", np.vstack([np.eye(3), -np.eye(3)]))  # injective: no witness
    assert main(["verify", str(tmp_path / "D.npy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["injective"] is True and report["closed_form"] is False
    assert report["witness_margin"] is None and report["witness"] is None


def test_reconstruct_tells_outputs_that_do_not_determine_the_input_from_missed_solves(tmp_path, capsys):
    import fastrelu as fr

    rng = np.random.default_rng(8)
    W = rng.standard_normal((8, 4))
    alpha = rng.normal(0, 0.5, 8)
    X = rng.standard_normal((300, 4))
    Y = np.maximum(X @ W.T - alpha, 0)
    for name, array in (("W", W), ("a", alpha), ("Y", Y)):
        np.save(tmp_path / f"{name}.npy", array)
    argv = ["reconstruct", str(tmp_path / "W.npy"), "--bias", str(tmp_path / "a.npy"),
            "--outputs", str(tmp_path / "Y.npy"), "--out", str(tmp_path / "X.npy"),
            "--method", "frame", "--max-iter", "3"]
    assert main(argv + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    result = fr.reconstruct(fr.ReLULayer(W, alpha), Y, "frame", max_iter=3)
    assert summary["n_recovered"] == int(result.ok.sum())
    assert summary["n_spanning"] == int(result.spans.sum())
    assert summary["not_spanning"] == np.flatnonzero(~result.spans).tolist()
    assert summary["not_solved"] == np.flatnonzero(result.spans & ~result.ok).tolist()
    assert summary["not_spanning"] and summary["not_solved"]  # this case has both
    assert sorted(summary["not_spanning"] + summary["not_solved"]) == summary["failed"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "not recoverable (the active rows do not span R^n)" in text
    assert "not solved to the stated accuracy" in text
    assert main(argv + ["--strict"]) == 1


def test_memory_limit_option_sets_the_budget_for_the_run_only(inputs, capsys, monkeypatch):
    monkeypatch.delenv("FASTRELU_MEMORY_LIMIT", raising=False)
    W = str(inputs / "W.npy")
    assert main(["--memory-limit", "1000", "bias", W, "--samples", "1000", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fits in memory" in err and "FASTRELU_MEMORY_LIMIT=1000" in err
    assert "FASTRELU_MEMORY_LIMIT" not in os.environ  # restored after the run
    assert main(["--memory-limit", "8G", "bias", W, "--samples", "1000", "--json"]) == 0
    json.loads(capsys.readouterr().out)
    for bad in ("lots", "0.5", "0"):
        assert main(["--memory-limit", bad, "bias", W]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "'--memory-limit' option must be a number of bytes" in err
