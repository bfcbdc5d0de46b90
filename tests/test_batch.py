"""``fastrelu batch``: lists and grids of jobs, results per job and a summary, reruns that
skip finished jobs, failed jobs, and spec errors that name the line or the key."""

import json
import os
import textwrap

import numpy as np
import pytest
from conftest import interrupt_after

import fastrelu as fr
from fastrelu._batch.jobs import load_spec
from fastrelu._bias.mcbe import _McbePlan
from fastrelu.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "W1.npy", rng.standard_normal((20, 4)))
    np.savez(tmp_path / "layers.npz", first=rng.standard_normal((15, 3)), second=TETRAHEDRON)
    np.save(tmp_path / "X.npy", rng.standard_normal((300, 4)))
    return tmp_path


def _spec(folder, text):
    path = folder / "spec.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


SPEC = """
    [defaults]
    samples = 5000
    seed = 3

    [[job]]
    name = "tetra-pbe"
    weights = "layers.npz"
    key = "second"
    method = "pbe"

    [[job]]
    weights = "W1.npy"
    domain = "data"
    data = "X.npy"

    [[grid]]
    name = "{weights}-{domain}-{samples}"
    weights = ["W1.npy", {random = "gaussian", m = 12, n = 4, seed = 1}]
    domain = ["sphere", "shell"]
    inner = 0.5
    outer = 2.0
    samples = [3000, 6000]
"""


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_batch_runs_list_and_grid_and_writes_results(files, capsys):
    spec = _spec(files, SPEC)
    out = files / "results"
    code, stdout, _ = _run(["batch", spec, "--out", str(out), "--json"], capsys)
    assert code == 0
    report = json.loads(stdout)
    names = [r["name"] for r in report["jobs"]]
    assert names[:2] == ["tetra-pbe", "job2"] and len(names) == 10
    assert "W1-sphere-3000" in names and "gaussian12x4s1-shell-6000" in names
    assert all(r["status"] == "ok" for r in report["jobs"]) and report["n_failed"] == 0
    W1 = np.load(files / "W1.npy")
    expected = {
        "tetra-pbe": fr.pbe(TETRAHEDRON, fr.Sphere(3)).alpha,
        "job2": fr.mcbe(W1, fr.Data(np.load(files / "X.npy"))).alpha,
        "W1-shell-6000": fr.mcbe(W1, fr.Shell(4, 0.5, 2.0), 6000, seed=3).alpha,
    }
    for name, alpha in expected.items():
        with np.load(out / f"{name}.npz") as result:
            np.testing.assert_array_equal(result["alpha"], alpha)
        record = json.loads((out / f"{name}.json").read_text())
        assert record["status"] == "ok" and record["result"] == f"{name}.npz"
    random_layer = np.random.default_rng(1).standard_normal((12, 4)) / 2.0
    with np.load(out / "gaussian12x4s1-sphere-3000.npz") as result:
        np.testing.assert_array_equal(result["alpha"], fr.mcbe(random_layer, fr.Sphere(4), 3000, seed=3).alpha)
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("name,status,method,domain,shape") and len(summary) == 11
    assert len(json.loads((out / "summary.json").read_text())) == 10
    assert not [f for f in os.listdir(out) if f.endswith((".tmp", ".checkpoint.npz"))]


def test_rerun_skips_finished_jobs_and_reruns_changed_ones(files, capsys, monkeypatch):
    spec = _spec(files, SPEC)
    out = str(files / "results")
    assert _run(["batch", spec, "--out", out], capsys)[0] == 0
    monkeypatch.setattr(_McbePlan, "compute", lambda *a, **k: pytest.fail("a finished job ran again"))
    code, stdout, _ = _run(["batch", spec, "--out", out], capsys)
    assert code == 0 and stdout.count("skipped") == 10
    monkeypatch.undo()
    np.save(files / "W1.npy", 2.0 * np.load(files / "W1.npy"))  # new inputs: those jobs rerun
    code, stdout, _ = _run(["batch", spec, "--out", out, "--json"], capsys)
    statuses = {r["name"]: r["status"] for r in json.loads(stdout)["jobs"]}
    assert statuses["W1-sphere-3000"] == "ok" and statuses["job2"] == "ok"
    assert statuses["gaussian12x4s1-sphere-3000"] == "skipped" and statuses["tetra-pbe"] == "skipped"


def test_failed_jobs_are_listed_and_give_exit_code_1(files, capsys):
    # faults that show only when a job loads its inputs: the others still run
    np.save(files / "flat.npy", np.ones((6, 4)))  # rank 1: not a frame
    np.save(files / "X3.npy", np.ones((10, 3)))
    spec = _spec(files, """
        [[job]]
        name = "fine"
        weights = "W1.npy"
        samples = 2000

        [[job]]
        name = "not-a-frame"
        weights = "flat.npy"

        [[job]]
        name = "wrong-width"
        weights = "W1.npy"
        domain = "data"
        data = "X3.npy"
    """)
    out = files / "results"
    code, stdout, err = _run(["batch", spec, "--out", str(out)], capsys)
    assert code == 1
    assert "2 of 3 jobs failed" in err
    assert "not-a-frame: The 'weight' parameter must be a frame" in err
    assert "wrong-width: The 'domain' parameter must have dimension 4" in err
    assert json.loads((out / "not-a-frame.json").read_text())["status"] == "failed"
    assert (out / "fine.npz").exists()
    code, stdout, err = _run(["batch", spec, "--out", str(out)], capsys)
    assert code == 1 and "skipped" in stdout  # the finished job is kept, the failed ones retried


def test_a_result_file_that_changed_is_not_taken_for_finished(files, capsys):
    spec = _spec(files, """
        [[job]]
        name = "one"
        weights = "W1.npy"
        samples = 2000
    """)
    out = files / "results"
    assert _run(["batch", spec, "--out", str(out)], capsys)[0] == 0
    record = json.loads((out / "one.json").read_text())
    assert len(record["result_sha256"]) == 64
    first = np.load(out / "one.npz")["alpha"]
    assert "skipped" in _run(["batch", spec, "--out", str(out)], capsys)[1]
    blob = (out / "one.npz").read_bytes()
    (out / "one.npz").write_bytes(blob[: len(blob) // 2])  # a truncated result
    code, stdout, _ = _run(["batch", spec, "--out", str(out)], capsys)
    assert code == 0 and "skipped" not in stdout
    np.testing.assert_array_equal(np.load(out / "one.npz")["alpha"], first)


def test_interrupted_job_resumes_from_its_checkpoint(files, capsys, monkeypatch):
    spec = _spec(files, """
        [[job]]
        name = "long"
        weights = "W1.npy"
        samples = 200_000
        seed = 1
    """)
    out = files / "results"
    interrupt_after(monkeypatch, _McbePlan, after=3)
    code, _, err = _run(["batch", spec, "--out", str(out), "--checkpoint-interval", "0"], capsys)
    assert code == 130 and "interrupted" in err
    checkpoints = [f for f in os.listdir(out) if f.endswith(".checkpoint.npz")]
    assert len(checkpoints) == 1 and checkpoints[0].startswith("long.")
    assert not (out / "long.json").exists()
    monkeypatch.undo()
    original, resumed = _McbePlan.compute, []
    monkeypatch.setattr(_McbePlan, "compute", lambda self, first, *a, **k: resumed.append(first) or original(self, first, *a, **k))
    assert _run(["batch", spec, "--out", str(out)], capsys)[0] == 0
    assert resumed and min(resumed) > 0  # the blocks done before were not computed again
    with np.load(out / "long.npz") as result:
        expected = fr.mcbe(np.load(files / "W1.npy"), fr.Sphere(4), 200_000, seed=1).alpha
        np.testing.assert_array_equal(result["alpha"], expected)
    assert not [f for f in os.listdir(out) if f.endswith(".checkpoint.npz")]


def test_stale_checkpoint_of_changed_job_is_replaced(files, capsys, monkeypatch):
    spec = _spec(files, """
        [[job]]
        name = "long"
        weights = "W1.npy"
        samples = 100_000
    """)
    out = files / "results"
    out.mkdir()
    stale = out / "long.0123456789abcdef.checkpoint.npz"
    fr.mcbe(np.load(files / "W1.npy"), fr.Sphere(4), 50_000, seed=0, checkpoint=stale)
    (out / "longer.0123456789abcdef.checkpoint.npz").write_bytes(b"another job's")
    assert _run(["batch", spec, "--out", str(out)], capsys)[0] == 0
    assert sorted(f for f in os.listdir(out) if "checkpoint" in f) == ["longer.0123456789abcdef.checkpoint.npz"]


@pytest.mark.parametrize("text, message", [
    ("[defaults]\nsamples = 10\nseed 3\n",
     r"must be valid TOML\. Got Expected '=' .*line 3: 'seed 3'"),
    ("[[job]]\nweights = \"W1.npy\"\nsamples = [1, 2\n",
     r"must be valid TOML\. Got .*line \d+"),
    ("[[job]]\nweights = \"W1.npy\"\nsampels = 10\n",
     r"The key 'sampels' in \[\[job\]\] number 1 of spec.toml is not known \(did you mean 'samples'\?\)\. Allowed keys: data, data_key, domain, inner, key, margin, method"),
    ("[job]\nweights = \"W1.npy\"\n", r"The key 'job' in spec.toml must be an array of tables"),
    ("[jobs]\n", r"The key 'jobs' at the top of spec.toml is not known \(did you mean 'job'\?\)\. Allowed keys: defaults, grid, job"),
    ("[[grid]]\nweights = [\"W1.npy\"]\ndomian = [\"ball\"]\n", r"The key 'domian' in \[\[grid\]\] number 1 .* \(did you mean 'domain'\?\)"),
    ("[[job]]\nweights = {random = \"gaussian\", m = 5, n = 2, sed = 1}\n", r"The key 'sed' of the random weights .* not known \(did you mean 'seed'\?\)\. Allowed keys: m, n, random, seed"),
    ("[[job]]\nweights = {random = \"cauchy\", m = 5, n = 2}\n", r"The key 'random' of the weights .* must be one of \['gaussian', 'sphere'\]"),
    ("[[job]]\nweights = {random = \"gaussian\", m = 5}\n", r"The random weights .* must give 'n'"),
    ("[[job]]\nweights = \"W1.npy\"\nsamples = 1.5e6\n", r"The key 'samples' in \[\[job\]\] number 1 of spec.toml must be an integer\. Got 1500000.0 instead"),
    ("[[job]]\nweights = \"W1.npy\"\nnonnegative = 1\n", r"The key 'nonnegative' .* must be a boolean"),
    ("[[job]]\nweights = \"W1.npy\"\nmethod = \"svd\"\n", r"The key 'method' .* must be one of \['mcbe', 'pbe'\]"),
    ("[[job]]\nweights = \"W1.npy\"\ndomain = \"cube\"\n", r"The key 'domain' .* must be one of \['sphere', 'ball', 'shell', 'data'\]"),
    ("[[grid]]\nweights = \"W1.npy\"\nsamples = []\n", r"The key 'samples' in \[\[grid\]\] number 1 .* must be a non-empty list"),
    ("[[job]]\nsamples = 10\n", r"The key 'weights' in \[\[job\]\] number 1 .* must be given"),
    ("[defaults]\nsamples = 10\n", r"must define at least one \[\[job\]\] or \[\[grid\]\]"),
    ("[[job]]\nname = \"a\"\nweights = \"W1.npy\"\n[[job]]\nname = \"a\"\nweights = \"W1.npy\"\n", r"The key 'name' in \[\[job\]\] number 2 .* must be unique"),
    ("[[job]]\nname = \"../up\"\nweights = \"W1.npy\"\n", r"must be a file name of letters"),
    ("[[grid]]\nname = \"{wieghts}\"\nweights = [\"W1.npy\"]\n", r"The key 'name' .* must be a template of the job's keys"),
    ("defaults = 3\n[[job]]\nweights = \"W1.npy\"\n", r"The key 'defaults' in spec.toml must be a table"),
    # values that the job's function would refuse, and missing files
    ("[[job]]\nname = \"gone\"\nweights = \"nowhere.npy\"\n",
     r"The job 'gone' in \[\[job\]\] number 1 of spec.toml cannot run: The 'weights' file must exist\. Got '.*nowhere.npy', which is not a file"),
    ("[[job]]\nweights = \"W1.npy\"\ndomain = \"data\"\ndata = \"none.npy\"\n", r"The 'data' file must exist"),
    ("[[job]]\nweights = \"W1.npy\"\ndomain = \"data\"\n", r"The data domain needs the key 'data'"),
    ("[[job]]\nweights = \"W1.npy\"\nseed = -1\n", r"cannot run: The 'seed' parameter must be a non-negative integer"),
    ("[[job]]\nweights = \"W1.npy\"\nsamples = 0\n", r"cannot run: The 'samples' parameter must be an integer >= 1"),
    ("[[job]]\nweights = \"W1.npy\"\nrank_tol = 2.0\n", r"cannot run: The 'rank_tol' parameter must be a float in"),
    ("[[job]]\nweights = \"W1.npy\"\nmargin = \"cover\"\n", r"cannot run: The 'margin' parameter must be None, 'covering' or a float >= 0"),
    ("[[job]]\nweights = \"W1.npy\"\nmargin = -0.1\n", r"cannot run: The 'margin' parameter must be"),
    ("[[job]]\nweights = \"W1.npy\"\ndomain = \"ball\"\nradius = 0\n", r"cannot run: The 'radius' parameter must be"),
    ("[[job]]\nweights = {random = \"gaussian\", m = 0, n = 2}\n", r"cannot run: The 'm' parameter must be an integer >= 1"),
    ("[[grid]]\nweights = \"W1.npy\"\ndomain = \"shell\"\ninner = [0.5, 3.0]\nouter = 1.0\n",
     r"The job 'grid1-3.0' in \[\[grid\]\] number 1 .* cannot run: The 'inner' radius of a Shell must not exceed"),
])
def test_bad_spec_is_refused_before_any_job_runs(files, capsys, text, message):
    # the spec, its values and its files are checked whole before any job runs
    spec = _spec(files, text)
    code, _, err = _run(["batch", spec, "--out", str(files / "results")], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert __import__("re").search(message, err), err
    assert not (files / "results").exists()


def test_missing_spec_file_and_bad_options(files, capsys):
    code, _, err = _run(["batch", str(files / "none.toml"), "--out", str(files / "r")], capsys)
    assert code == 2 and "The 'SPEC' file must exist and be readable" in err
    spec = _spec(files, SPEC)
    for option, message in ((["--jobs", "0"], "The 'n_jobs' parameter must be an integer >= 1"),
                            (["--checkpoint-interval", "-2"], "The 'checkpoint_interval' parameter must be")):
        code, _, err = _run(["batch", spec, "--out", str(files / "r"), *option], capsys)
        assert code == 2 and message in err
    (files / "blocker").write_text("a file, not a directory")
    code, _, err = _run(["batch", spec, "--out", str(files / "blocker" / "sub")], capsys)
    assert code == 2 and "The '--out' directory must be creatable" in err


def test_example_spec_in_the_docs_parses():
    jobs = load_spec(os.path.join(ROOT, "docs", "examples", "batch_sweep.toml"))
    names = [job["name"] for job in jobs]
    assert len(names) == len(set(names)) == 11
    assert "gaussian60x10s2-nonnegative-True-400000" in names
