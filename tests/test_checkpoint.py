"""Checkpoint and resume: a resumed run gives exactly the result of an uninterrupted one,
and checkpoints of other runs, or damaged ones, are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import interrupt_after

import fastrelu as fr
from fastrelu._bias.mcbe import _McbePlan
from fastrelu._injectivity.subsets import ScanPlan
from fastrelu._runtime.blockmap import BLOCK_FORMAT, BlockMap
from fastrelu._runtime.blocks import BlockPlan
from fastrelu._runtime.checkpoint import FORMAT
from fastrelu._runtime.seeds import BLOCK_SIZE
from fastrelu._spectral.power import _PowerPlan
from fastrelu._spectral.width import _WidthPlan


def _weight(seed=0, m=40, n=6):
    return np.random.default_rng(seed).standard_normal((m, n))


def _header(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["header"]))


def _assert_same_estimate(a, b):
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.alpha_sampled, b.alpha_sampled)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.n_incomplete == b.n_incomplete and a.seed == b.seed


def test_interrupted_mcbe_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    W = _weight()
    path = tmp_path / "run.ckpt"
    reference = fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=2)
    interrupt_after(monkeypatch, _McbePlan, after=3)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=2, checkpoint=path,
                checkpoint_interval=0)
    monkeypatch.undo()
    header = _header(path)
    n_blocks = -(-300_000 // BLOCK_SIZE)
    assert 0 < header["blocks_done"] < n_blocks
    assert header["fingerprint"]["seed"] == 3 and header["fingerprint"]["n_samples"] == 300_000
    resumed = fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=1, checkpoint=path)
    _assert_same_estimate(resumed, reference)
    assert _header(path)["blocks_done"] == n_blocks
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]  # no temporary files left behind


def _full_disk(monkeypatch, after=0):
    """Make every checkpoint write after the first ``after`` fail as on a full disk."""
    import errno

    original, calls = np.savez, [0]

    def savez(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)
    return calls


def test_a_resume_takes_the_checkpoints_certificate_path_and_gram_decision(tmp_path, monkeypatch):
    """The certificate path (by the L2 cache) and the stored Gram matrix (by memory and
    samples) are the machine's choices, not parameters: a resume where the machine would
    choose otherwise goes on as the run began, to the uninterrupted run's result."""
    import fastrelu._core.basis as basis
    import fastrelu._core.rows as rows

    n, m, total = 130, 300, 8 * BLOCK_SIZE + 5
    W = np.random.default_rng(8).standard_normal((m, n))
    path = tmp_path / "run.ckpt"
    monkeypatch.setattr(basis, "LANES_MAX_N", 0)  # one sample at a time
    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 0)  # no stored Gram matrix
    reference = fr.mcbe(W, fr.Sphere(n), total, seed=2, n_jobs=2)
    interrupt_after(monkeypatch, _McbePlan, after=3)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(n), total, seed=2, n_jobs=2, checkpoint=path,
                checkpoint_interval=0)
    monkeypatch.undo()  # this "machine" certifies in lanes and stores the Gram matrix
    monkeypatch.setattr(basis, "LANES_MAX_N", 10**9)
    recorded = _header(path)["fingerprint"]
    assert recorded["one_by_one"] is True and recorded["stored_gram"] is False
    assert 0 < _header(path)["blocks_done"] < 9
    resumed = fr.mcbe(W, fr.Sphere(n), total, seed=2, n_jobs=1, checkpoint=path)
    _assert_same_estimate(resumed, reference)
    finished = _header(path)["fingerprint"]
    assert finished["one_by_one"] is True and finished["stored_gram"] is False


def test_a_checkpoint_that_cannot_be_written_is_reported_as_such(tmp_path, monkeypatch):
    W = _weight()
    path = tmp_path / "run.ckpt"
    _full_disk(monkeypatch, after=2)
    with pytest.raises(fr.FastReluError, match=r"The 'checkpoint' file .*run.ckpt' must be writable\. Got OSError: .*No space left on device while saving \d+ of \d+ finished blocks; the file keeps the state it last saved"):
        fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=2, checkpoint=path,
                checkpoint_interval=0)
    monkeypatch.undo()
    assert 0 < _header(path)["blocks_done"]  # the last good save, whole
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]
    resumed = fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=1, checkpoint=path)
    _assert_same_estimate(resumed, fr.mcbe(W, fr.Sphere(6), 300_000, seed=3))


def test_a_failed_final_save_does_not_hide_the_interruption(tmp_path, monkeypatch):
    interrupt_after(monkeypatch, _McbePlan, after=2)
    _full_disk(monkeypatch)
    with pytest.raises(KeyboardInterrupt) as caught:
        fr.mcbe(_weight(), fr.Sphere(6), 300_000, seed=3, checkpoint=tmp_path / "run.ckpt")
    notes = getattr(caught.value, "__notes__", [])
    assert any("The checkpoint could not be saved either" in note and "must be writable" in note
               for note in notes)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_from_another_kind_of_machine_resumes_with_a_warning(tmp_path, monkeypatch):
    import fastrelu._runtime.checkpoint as checkpoint

    W = _weight()
    path = tmp_path / "run.ckpt"
    interrupt_after(monkeypatch, _McbePlan, after=3)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, n_jobs=2, checkpoint=path,
                checkpoint_interval=0)
    monkeypatch.undo()
    written = _header(path)["machine"]
    assert written == checkpoint.machine() and written["cpu"] and written["blas"]
    other = dict(written, cpu="elsewhere", blas=["openblas 0.0 Other"])
    monkeypatch.setattr(checkpoint, "machine", lambda: other)
    with pytest.warns(RuntimeWarning, match=r"written on another kind of machine \(blas .* there, .* here, cpu .* there, \"elsewhere\" here\)\. The resumed result is as valid"):
        resumed = fr.mcbe(W, fr.Sphere(6), 300_000, seed=3, checkpoint=path)
    _assert_same_estimate(resumed, fr.mcbe(W, fr.Sphere(6), 300_000, seed=3))


def test_interruption_inside_a_merge_never_counts_a_block_twice(tmp_path, monkeypatch):
    W = _weight(1)
    path = tmp_path / "run.npz"
    reference = fr.mcbe(W, fr.Sphere(6), 100_000, seed=4)
    original = _McbePlan.absorb
    calls = [0]

    def absorb(self, state, piece, first, stop):
        original(self, state, piece, first, stop)
        calls[0] += 1
        if calls[0] == 2:  # merged, but not yet marked done
            raise KeyboardInterrupt

    monkeypatch.setattr(_McbePlan, "absorb", absorb)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(6), 100_000, seed=4, checkpoint=path, checkpoint_interval=0)
    monkeypatch.undo()
    resumed = fr.mcbe(W, fr.Sphere(6), 100_000, seed=4, checkpoint=path)
    _assert_same_estimate(resumed, reference)


def test_finished_checkpoint_resumes_without_computing(tmp_path, monkeypatch):
    W = _weight(2)
    path = tmp_path / "done.npz"
    first = fr.mcbe(W, fr.Ball(6, 2.0), 50_000, seed=5, checkpoint=path)
    monkeypatch.setattr(_McbePlan, "compute", lambda *a, **k: pytest.fail("computed again"))
    again = fr.mcbe(W, fr.Ball(6, 2.0), 50_000, seed=5, checkpoint=path)
    _assert_same_estimate(again, first)
    # the margin is applied after the run: it may change on a resume
    margined = fr.mcbe(W, fr.Ball(6, 2.0), 50_000, seed=5, checkpoint=path, margin=0.01)
    np.testing.assert_allclose(margined.alpha, first.alpha - 0.02 * np.linalg.norm(W, axis=1))


def test_run_without_seed_records_its_seed_and_resumes_with_it(tmp_path, monkeypatch):
    W = _weight(3)
    path = tmp_path / "fresh.npz"
    interrupt_after(monkeypatch, _McbePlan, after=2)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(6), 200_000, n_jobs=1, checkpoint=path, checkpoint_interval=0)
    monkeypatch.undo()
    seed = _header(path)["fingerprint"]["seed"]
    resumed = fr.mcbe(W, fr.Sphere(6), 200_000, checkpoint=path)
    assert resumed.seed == seed
    _assert_same_estimate(resumed, fr.mcbe(W, fr.Sphere(6), 200_000, seed=seed))


def test_data_domain_resumes(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    W, X = rng.standard_normal((30, 5)), rng.standard_normal((60_000, 5))
    path = tmp_path / "data.npz"
    interrupt_after(monkeypatch, _McbePlan, after=2)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Data(X), checkpoint=path, checkpoint_interval=0, n_jobs=1)
    monkeypatch.undo()
    _assert_same_estimate(fr.mcbe(W, fr.Data(X), checkpoint=path), fr.mcbe(W, fr.Data(X)))
    with pytest.raises(fr.FastReluError, match=r"domain is .*sha256:.* there and .*sha256:.* here"):
        fr.mcbe(W, fr.Data(X + 1.0), checkpoint=path)


def _power(path=None, **kw):
    return fr.relu_power_iteration(_weight(7), n_starts=3000, seed=8, history=2, max_iter=200,
                                   checkpoint=path, **kw)


def _width(path=None, **kw):
    layer = fr.ReLULayer(_weight(9), 0.1)
    return fr.gaussian_mean_width(layer, n_draws=2000, n_starts=2, max_iter=40, seed=2,
                                  checkpoint=path, **kw)


def _verify(path=None, **kw):
    from fastrelu._injectivity.verify import _verify as verify

    return verify(np.random.default_rng(10).standard_normal((30, 4)), block_subsets=64,
                  checkpoint=path, **kw)


def _power_facts(r):
    return (r.s1, r.x, r.best_start, r.n_converged, r.n_max_iter, r.n_zero, r.n_stalled,
            r.mean_iter, r.values, r.n_iter, r.status, r.history)


def _width_facts(r):
    return (r.value, r.stderr, r.seed)


def _verify_facts(r):
    return (r.injective, r.min_active, r.subset, r.sign, r.vertex, r.subsets_checked, r.witness)


@pytest.mark.parametrize("run, plan_class, facts", [
    (_power, _PowerPlan, _power_facts),
    (_width, _WidthPlan, _width_facts),
    (_verify, ScanPlan, _verify_facts),
], ids=["power", "width", "verify"])
def test_other_sampled_kernels_resume_exactly(tmp_path, monkeypatch, run, plan_class, facts):
    path = tmp_path / "k.npz"
    reference = run()
    interrupt_after(monkeypatch, plan_class, after=2)
    with pytest.raises(KeyboardInterrupt):
        run(path, checkpoint_interval=0)
    monkeypatch.undo()
    assert 0 < _header(path)["blocks_done"]
    resumed = run(path)
    for a, b in zip(facts(reference), facts(resumed)):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, match", [
    (dict(seed=4), r"seed is 3 there and 4 here"),
    (dict(n_samples=20_000), r"n_samples is 10000 there and 20000 here"),
    (dict(domain=fr.Ball(6)), r"domain is \"Sphere\(.*\" there and \"Ball\(.*\" here"),
    (dict(rank_tol=1e-5), r"rank_tol is 1e-06 there and 1e-05 here"),
    (dict(weight=2.0 * _weight()), r"weight is sha256:[0-9a-f]{12}\.\.\. there and sha256:"),
])
def test_checkpoint_of_other_parameters_is_refused(tmp_path, change, match):
    path = tmp_path / "c.npz"
    args = dict(weight=_weight(), domain=fr.Sphere(6), n_samples=10_000, seed=3)
    fr.mcbe(checkpoint=path, **args)
    before = path.read_bytes()
    with pytest.raises(fr.FastReluError, match="written for other parameters: " + match):
        fr.mcbe(checkpoint=path, **{**args, **change})
    assert path.read_bytes() == before  # nothing lost


def test_checkpoint_of_another_kernel_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    fr.mcbe(_weight(), fr.Sphere(6), 5000, seed=1, checkpoint=path)
    with pytest.raises(fr.FastReluError, match=r"kernel is \"mcbe\" there and \"relu_power_iteration\" here"):
        fr.relu_power_iteration(_weight(), n_starts=100, seed=1, checkpoint=path)


def _damage(path, how):
    data = path.read_bytes()
    if how == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign npz":
        np.savez(path.open("wb"), alpha=np.zeros(3))
    elif how == "bad header":
        np.savez(path.open("wb"), header=np.array("{not json"), done=np.zeros(1, np.uint8))
    elif how == "wrong state":
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["state.alpha"] = np.zeros(3)
        np.savez(path.open("wb"), **arrays)
    elif how == "wrong map":
        with np.load(path) as archive:
            arrays = dict(archive)
        arrays["done"] = np.zeros(100, np.uint8)
        np.savez(path.open("wb"), **arrays)


@pytest.mark.parametrize("how, reason", [
    ("garbage", "not an .npz archive"), ("truncated", "BadZipFile|Error"),
    ("empty", "not an .npz archive"), ("foreign npz", "missing array|bad header"),
    ("bad header", "bad header"), ("wrong state", "state 'alpha' of shape \\(3,\\)"),
    ("wrong map", "block map of shape"),
])
def test_damaged_checkpoint_is_refused(tmp_path, how, reason):
    path = tmp_path / "c.npz"
    fr.mcbe(_weight(), fr.Sphere(6), 9000, seed=1, checkpoint=path)
    _damage(path, how)
    with pytest.raises(fr.FastReluError, match=f"cannot be read as a fastrelu checkpoint \\(.*({reason})"):
        fr.mcbe(_weight(), fr.Sphere(6), 9000, seed=1, checkpoint=path)


def test_checkpoint_parameters_are_validated(tmp_path):
    W = _weight()
    for bad in (tmp_path, tmp_path / "missing" / "c.npz", ""):
        with pytest.raises(fr.FastReluError, match="The 'checkpoint' parameter must be a file path in an existing directory"):
            fr.mcbe(W, fr.Sphere(6), 1000, seed=0, checkpoint=bad)
    with pytest.raises(fr.FastReluError, match="The 'checkpoint' parameter must be a file path"):
        fr.mcbe(W, fr.Sphere(6), 1000, seed=0, checkpoint=3.5)
    with pytest.raises(fr.FastReluError, match="The 'checkpoint_interval' parameter must be a finite real number >= 0"):
        fr.mcbe(W, fr.Sphere(6), 1000, seed=0, checkpoint=tmp_path / "c", checkpoint_interval=-1)
    with pytest.raises(fr.FastReluError, match="The 'checkpoint' parameter applies to the unit ball"):
        fr.relu_singular_values(W, 1, data=np.ones((3, 6)), checkpoint=tmp_path / "c")


def test_block_map_is_a_list_of_ranges():
    done = BlockMap(8)
    for first, stop in ((0, 1), (3, 4), (5, 7)):
        done.add(first, stop)
    assert done.todo() == [(1, 3), (4, 5), (7, 8)] and done.n_done == 4
    done.add(4, 5)  # joins its neighbours
    assert done.to_array().tolist() == [[0, 1], [3, 7]] and done.todo() == [(1, 3), (7, 8)]
    done.add(1, 3)
    done.add(7, 8)
    assert done.todo() == [] and done.to_array().tolist() == [[0, 8]] and done.n_done == 8
    assert BlockMap.from_array(done.to_array(), 8).todo() == []
    for bad in (np.array([[2, 1]]), np.array([[0, 3], [2, 5]]), np.array([[0, 9]]), np.zeros(3, np.int64)):
        with pytest.raises(ValueError):
            BlockMap.from_array(bad, 8)
    assert FORMAT == 2 and BLOCK_FORMAT == 2 and BlockPlan.max_task_blocks >= 1


def test_checkpoint_size_does_not_grow_with_the_number_of_blocks(tmp_path):
    """The map of finished blocks and the states are O(1) in the number of blocks (the
    map held one bit per block and the mean width one entry per block)."""
    sizes = {}
    for n_draws in (256 * 10, 256 * 4000):
        for name, run in (("width", lambda p, n_draws=n_draws: fr.gaussian_mean_width(_weight(), n_draws=n_draws, seed=1, checkpoint=p)),
                          ("power", lambda p, n_draws=n_draws: fr.relu_power_iteration(_weight(), n_starts=n_draws, seed=1, max_iter=2, per_start=False, checkpoint=p))):
            path = tmp_path / f"{name}{n_draws}.npz"
            run(path)
            with np.load(path) as archive:
                sizes[name, n_draws] = {key: archive[key].nbytes for key in archive.files if key != "header"}
    for name in ("width", "power"):
        assert sizes[name, 2560] == sizes[name, 1_024_000], name
    assert sizes["width", 2560]["done"] == 16  # one range


def test_width_state_merges_out_of_order_blocks_in_block_order():
    plan = _WidthPlan("linear", 256 * 9, 5, weight=_weight())
    whole = plan.empty()
    plan.absorb(whole, plan.compute(0, 9, 1), 0, 9)
    state = plan.empty()
    for first, stop in ((6, 9), (2, 4), (0, 1), (4, 6), (1, 2)):
        plan.absorb(state, plan.compute(first, stop, 2), first, stop)
        assert state["ahead_block"].size <= 7
    assert state["ahead_block"].size == 0 and int(state["merged"]) == 9
    assert plan.result(state) == plan.result(whole)
    reference = fr.gaussian_mean_width(_weight(), n_draws=256 * 9, seed=5, n_jobs=1)
    assert plan.result(state) == (reference.value, reference.stderr)


def test_checkpoint_of_an_earlier_format_is_refused_clearly(tmp_path):
    path = tmp_path / "old.npz"
    fr.mcbe(_weight(), fr.Sphere(6), 9000, seed=1, checkpoint=path)
    with np.load(path) as archive:
        arrays = dict(archive)
    header = json.loads(str(arrays["header"]))
    header["format"] = 1
    arrays["header"] = np.array(json.dumps(header))
    arrays["done"] = np.packbits(np.ones(3, dtype=bool))
    np.savez(path.open("wb"), **arrays)
    with pytest.raises(fr.FastReluError, match=r"\(format 1, written by an earlier version of fastrelu; this one reads format 2: finish the run with the version that wrote it\)\. Delete it"):
        fr.mcbe(_weight(), fr.Sphere(6), 9000, seed=1, checkpoint=path)


def _cli(*args, cwd, **kw):
    """``python -m fastrelu ARGS`` with the fastrelu that this test imported.

    ``python -m`` puts the working directory first on the path, so it runs elsewhere:
    from a source checkout it would import the uncompiled package instead."""
    where = os.path.dirname(os.path.dirname(os.path.abspath(fr.__file__)))
    env = {**os.environ, "PYTHONPATH": where + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "fastrelu", *map(str, args)], env=env,
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_cli_run_killed_by_sigkill_resumes_to_the_same_alpha(tmp_path, capsys):
    from fastrelu.cli import main

    W = _weight(11, 100, 10)
    np.save(tmp_path / "W.npy", W)
    samples = 400_000
    n_blocks = -(-samples // BLOCK_SIZE)
    path = tmp_path / "run.ckpt"
    command = ["bias", tmp_path / "W.npy", "--samples", samples, "--seed", 5, "--jobs", 1,
               "--checkpoint", path, "--checkpoint-interval", 0.05, "--out", tmp_path / "a.npy"]
    victim = _cli(*command, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and victim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read().decode()
    assert 0 < _header(path)["blocks_done"] < n_blocks
    assert not (tmp_path / "a.npy").exists()
    rerun = _cli(*command, cwd=tmp_path)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert _header(path)["blocks_done"] == n_blocks
    reference = fr.mcbe(W, fr.Sphere(10), samples, seed=5)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), reference.alpha)
    # the same command with another seed is refused in one line, exit code 2
    capsys.readouterr()
    assert main(list(map(str, command[:5] + [6] + command[6:]))) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "written for other parameters: seed is 5 there and 6 here" in err
