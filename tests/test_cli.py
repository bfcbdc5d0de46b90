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
])
def test_bad_input_is_one_line_exit_2(weights, tmp_path, capsys, argv, match):
    _, path = weights
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((4, 2)))
    npz = tmp_path / "two.npz"
    np.savez(npz, a=np.eye(2), b=np.eye(2))
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("1,2,x\n3,4\n")
    argv = [a.format(W=path, BAD=bad, NPZ=npz, GARBAGE=garbage) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrelu: error: ") and err.count("\n") == 1
    assert match in err


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
