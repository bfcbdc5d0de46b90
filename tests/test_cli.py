import json
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
    (["bias", "{W}", "--domain", "data", "--data", "{X}", "--samples", "10"], "'--samples' option does not apply to --domain data"),
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
    assert "'--samples' option does not apply to --method pbe" in capsys.readouterr().err


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
    (["--data", "X", "--points", "10"], "'--points' and '--seed' options apply to a sampled domain"),
    (["--out", "m.npy"], "'--out' option (the per-point mask) needs --data"),
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
    (["width", "{W}", "--linear", "--data", "{X}"], "takes no --bias, --affine-bias or --data"),
    (["width", "{W}", "--local"], "'--local' option needs --data"),
    (["width", "{W}", "--draws", "0"], "'n_draws' parameter must be an integer >= 1"),
    (["width", "{W}", "--out", "x.npz"], "'--out' option (per-point metrics) needs --local"),
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
    assert main(["verify", str(tmp_path / "W.npy"), "--max-subsets", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
