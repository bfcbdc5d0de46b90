"""Memory and time budgets: work that cannot fit in memory or would run past the time
limit is refused up front with the estimate; the frame check of large weights costs one
Gram product and decides exactly as the SVD rank rule."""

import textwrap

import numpy as np
import pytest

import fastrelu as fr
from fastrelu._batch.jobs import batch_weights_budget
from fastrelu._bias.mcbe import _McbePlan, mcbe_budget
from fastrelu._core import budget as _budget
from fastrelu._core import validation as _validation
from fastrelu._injectivity import pointwise as _pointwise
from fastrelu._injectivity.pointwise import check_budget
from fastrelu._spectral.power import _PowerPlan
from fastrelu._spectral.width import _WidthPlan

TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)


def _weight(seed=0, m=40, n=6):
    return np.random.default_rng(seed).standard_normal((m, n))


@pytest.fixture
def no_compute(monkeypatch):
    """Fail if any block is computed or any check geometry is built: a refusal must come
    before the work (and before any allocation that grows with it)."""
    for plan in (_McbePlan, _PowerPlan, _WidthPlan):
        monkeypatch.setattr(plan, "compute", lambda *a, **k: pytest.fail("computed"))
    monkeypatch.setattr(_pointwise, "RowGeometry", lambda *a, **k: pytest.fail("built the geometry"))


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv(_budget.MEMORY_ENV, "8G")
    assert _budget.memory_limit() == (8 << 30, "FASTRELU_MEMORY_LIMIT=8G")
    monkeypatch.setenv(_budget.MEMORY_ENV, "123456")
    assert _budget.memory_limit()[0] == 123456
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv(_budget.MEMORY_ENV, bad)
        with pytest.raises(fr.FastReluError, match="The 'FASTRELU_MEMORY_LIMIT' environment variable must be a number of bytes > 0"):
            fr.mcbe(TETRAHEDRON, fr.Sphere(3), 100, seed=0)
    monkeypatch.delenv(_budget.MEMORY_ENV)
    limit, source = _budget.memory_limit()
    assert limit > 0 and "MemAvailable" in source
    monkeypatch.setenv(_budget.TIME_ENV, "inf")
    assert _budget.time_limit() == np.inf
    monkeypatch.setenv(_budget.TIME_ENV, "0")
    assert _budget.time_limit() == np.inf
    monkeypatch.setenv(_budget.TIME_ENV, "soon")
    with pytest.raises(fr.FastReluError, match="The 'FASTRELU_MAX_SECONDS' environment variable must be a number of seconds >= 0"):
        _budget.time_limit()
    monkeypatch.delenv(_budget.TIME_ENV)
    assert _budget.time_limit() == _budget.DEFAULT_MAX_SECONDS


@pytest.mark.parametrize("run, name", [
    (lambda: fr.mcbe(TETRAHEDRON, fr.Sphere(3), 10**15, seed=0, n_jobs=1), "n_samples"),
    (lambda: fr.check_bias(fr.ReLULayer(_weight(0, 270, 30)), fr.Sphere(30), 10**15, seed=0, n_jobs=1), "n_points"),
    (lambda: fr.relu_power_iteration(_weight(), n_starts=10**15, seed=0, per_start=False, n_jobs=1), "n_starts"),
    (lambda: fr.gaussian_mean_width(_weight(), n_draws=10**15, seed=0, n_jobs=1), "n_draws"),
    (lambda: fr.gaussian_mean_width(fr.ReLULayer(_weight()), n_draws=10**13, seed=0, n_jobs=1), "n_draws"),
])
def test_years_of_work_are_refused_before_any_block(no_compute, run, name):
    with pytest.raises(fr.FastReluError, match=rf"The '{name}' parameter must give a run shorter than the time limit of 24 h \(FASTRELU_MAX_SECONDS\)\. Got {name}=1[0,]+: .* would take about [\d,.]+ (h|days|years) on 1 thread \(at least.*\)\. Use fewer .* give a checkpoint .* set FASTRELU_MAX_SECONDS=inf"):
        run()


def test_per_start_results_that_cannot_fit_are_refused(no_compute):
    with pytest.raises(fr.FastReluError, match=r"The 'n_starts' parameter must give a working set that fits in memory\. Got relu_power_iteration needing about [\d.]+ PiB \(per-start values.*\), but this machine has .* \(.*FASTRELU_MEMORY_LIMIT sets it in bytes\)\. Use fewer starts, per_start=False"):
        fr.relu_power_iteration(_weight(), n_starts=10**15, seed=0)


def test_a_small_memory_limit_refuses_every_sampled_function(monkeypatch, no_compute):
    monkeypatch.setenv(_budget.MEMORY_ENV, "100000")
    W = _weight(1, 270, 30)
    layer = fr.ReLULayer(W)
    message = r"must give a working set that fits in memory\. Got .* needing about .* this machine has 97\.7 KiB for it \(FASTRELU_MEMORY_LIMIT=100000"
    for run in (lambda: fr.mcbe(W, fr.Sphere(30), 10_000, seed=0),
                lambda: fr.check_bias(layer, fr.Sphere(30), 10_000, seed=0),
                lambda: fr.injectivity_summary(layer, np.ones((5, 30))),
                lambda: fr.relu_power_iteration(W, n_starts=1000, seed=0),
                lambda: fr.relu_singular_values(W, 2, seed=0),
                lambda: fr.gaussian_mean_width(layer, n_draws=1000, seed=0),
                lambda: fr.local_metrics(layer, np.ones((5, 30)))):
        with pytest.raises(fr.FastReluError, match=message):
            run()


def test_the_time_limit_is_measured_on_the_first_blocks(monkeypatch, tmp_path, capsys):
    W = _weight(2)
    N = 4096 * 200
    reference = fr.mcbe(W, fr.Sphere(6), N, seed=1)
    # a limit above the bound from the sizes (which a core cannot beat by a factor 4)
    # and below what the blocks take
    bound = max(mcbe_budget(40, 6, N, 1, data=False).lower_bound(200, 1),
                check_budget(40, 6, N, 1, what="", name="", outputs=False).lower_bound(200, 1))
    monkeypatch.setenv(_budget.TIME_ENV, repr(4 * bound))
    with pytest.raises(fr.FastReluError, match=r"The 'n_samples' parameter must give a run shorter than the time limit of .* s \(FASTRELU_MAX_SECONDS\)\. Got n_samples=819,200: mcbe would take about .* on 1 thread \(measured [\d.e+-]+ ms per block of 4096 samples on one thread\)"):
        fr.mcbe(W, fr.Sphere(6), N, seed=1, n_jobs=1)
    with pytest.raises(fr.FastReluError, match=r"Got n_points=819,200: check_bias would take about .* \(measured"):
        fr.check_bias(fr.ReLULayer(W, reference.alpha), fr.Sphere(6), N, seed=1, n_jobs=1)
    # a resumable run is not limited: it says how long it takes, and its result is the same
    monkeypatch.setenv(_budget.TIME_ENV, "1e-6")
    capsys.readouterr()
    resumed = fr.mcbe(W, fr.Sphere(6), N, seed=1, checkpoint=tmp_path / "c.npz")
    np.testing.assert_array_equal(resumed.alpha, reference.alpha)
    np.testing.assert_array_equal(resumed.counts, reference.counts)
    monkeypatch.setenv(_budget.TIME_ENV, "inf")
    again = fr.mcbe(W, fr.Sphere(6), N, seed=1, n_jobs=1)
    np.testing.assert_array_equal(again.alpha, reference.alpha)


def test_a_long_run_announces_its_estimate(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_budget, "ANNOUNCE_SECONDS", 0.0)
    monkeypatch.setenv(_budget.TIME_ENV, "1e-6")
    fr.mcbe(_weight(3), fr.Sphere(6), 4096 * 40, seed=1, checkpoint=tmp_path / "c.npz")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "fastrelu: mcbe of 163,840 samples will take about" in err
    assert "not limited: the run is resumable or distributed" in err
    monkeypatch.setenv(_budget.TIME_ENV, "inf")
    fr.check_bias(fr.ReLULayer(_weight(3)), fr.Sphere(6), 4096 * 40, seed=1, progress=True)
    assert "fastrelu: check_bias of 163,840 points will take about" in capsys.readouterr().err
    fr.check_bias(fr.ReLULayer(_weight(3)), fr.Sphere(6), 4096 * 40, seed=1)
    assert capsys.readouterr().err == ""  # progress off: silent


def test_results_do_not_depend_on_the_timed_first_blocks(monkeypatch):
    W = _weight(4, 30, 5)
    layer = fr.ReLULayer(W, np.full(30, 0.3))
    X = np.random.default_rng(5).standard_normal((4096 * 20 + 7, 5))
    runs = {}
    for probe_blocks in (10**9, 16):  # no timed blocks, and the default
        monkeypatch.setattr(_budget, "PROBE_MIN_BLOCKS", probe_blocks)
        for jobs in (1, 2):
            check = fr.check_bias(layer, fr.Ball(5), 4096 * 20 + 7, seed=2, n_jobs=jobs)
            summary = fr.injectivity_summary(layer, X, n_jobs=jobs)
            width = fr.gaussian_mean_width(W, n_draws=256 * 40, seed=2, n_jobs=jobs)
            power = fr.relu_power_iteration(W, n_starts=256 * 20, seed=2, max_iter=20, n_jobs=jobs)
            runs[probe_blocks, jobs] = (check.n_injective, check.failed_points.tobytes(),
                                        summary.rank.tobytes(), width.value, width.stderr,
                                        power.s1, power.best_start, power.values.tobytes())
    assert len(set(runs.values())) == 1


def test_cli_refuses_years_of_sampling_in_one_line(tmp_path, capsys):
    from fastrelu.cli import main

    np.save(tmp_path / "W.npy", _weight(0, 270, 30))
    assert main(["bias", str(tmp_path / "W.npy"), "--samples", "1000000000000000",
                 "--out", str(tmp_path / "a.npy")]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "The 'n_samples' parameter must give a run shorter than the time limit" in captured.err
    assert not (tmp_path / "a.npy").exists()


# --------------------------------------------------------------------------- frame check


def _with_singular_values(s, m, seed):
    rng = np.random.default_rng(seed)
    n = len(s)
    U = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (U * s) @ V.T


def _accepted(W):
    try:
        fr.mcbe(W, fr.Sphere(W.shape[1]), 10, seed=0)
    except fr.FastReluError as exc:
        assert "must be a frame" in str(exc)
        return False
    return True


@pytest.mark.parametrize("ratio", [1.0, 1e-3, 1e-6, 1e-9, 1e-12, 1e-13, 1e-15, 1e-17, 0.0])
def test_frame_check_agrees_with_the_svd_rank_rule(ratio):
    m, n = 60, 8
    s = np.linspace(2.0, 1.0, n)
    s[-1] = ratio
    W = _with_singular_values(s, m, 7)
    # the definition: numpy's rank rule on the same floats (never decided by rounding
    # here: the ratios stay far from the threshold of about 1.3e-14 or far below it)
    expected = np.linalg.matrix_rank(W) == n
    assert _accepted(W) == expected
    if ratio >= 1e-3:
        assert expected


def test_frame_check_of_well_conditioned_weights_makes_no_svd(monkeypatch):
    W = _weight(8, 500, 50)
    monkeypatch.setattr(np.linalg, "matrix_rank", lambda *a, **k: pytest.fail("full SVD"))
    assert _validation.as_frame(W) is W
    monkeypatch.undo()
    bad = W.copy()
    bad[:, -1] = bad[:, 0]  # rank 49: the Gram matrix cannot prove full rank, the SVD decides
    with pytest.raises(fr.FastReluError, match=r"rank\(weight\) = 49"):
        _validation.as_frame(bad)


def test_tiny_rows_are_not_zero_rows():
    W = _weight(9, 10, 3)
    W[0] = 1e-300
    assert _validation.as_frame(W).shape == (10, 3)
    assert _validation.as_frame(_weight(9, 10, 3) * 1e-300).shape == (10, 3)
    W[0] = 0.0
    with pytest.raises(fr.FastReluError, match=r"zero rows at indices \[0\]"):
        _validation.as_frame(W)


def test_frame_check_refuses_weights_whose_working_set_does_not_fit(monkeypatch):
    monkeypatch.setenv(_budget.MEMORY_ENV, "1M")
    with pytest.raises(fr.FastReluError, match=r"The 'weight' parameter must give a working set that fits in memory\. Got the frame check of the weights needing about 6\.1 MiB \(Gram matrix W\^T W and its Cholesky factor 3\.81 MiB"):
        _validation.as_frame(_weight(10, 600, 500))


def test_batch_job_with_random_weights_too_large_is_refused_before_drawing(tmp_path, monkeypatch, capsys):
    from fastrelu.cli import main

    monkeypatch.setenv(_budget.MEMORY_ENV, "8G")
    monkeypatch.setattr(np.random, "default_rng", lambda *a: pytest.fail("drew the weights"))
    spec = tmp_path / "spec.toml"
    spec.write_text(textwrap.dedent("""
        [[job]]
        name = "huge"
        weights = {random = "gaussian", m = 100000, n = 10000, seed = 1}
        samples = 1000
    """))
    # refused with the whole spec, before any job runs or writes
    assert main(["batch", str(spec), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "The 'weights' parameter must give a working set that fits in memory. Got the batch job needing about" in error
    assert "random weights (drawn and scaled) 14.9 GiB" in error
    assert not (tmp_path / "out" / "huge.json").exists()
    assert not (tmp_path / "out" / "huge.npz").exists()


def test_batch_memory_check_counts_the_threads_the_jobs_run_with(tmp_path, monkeypatch):
    # one check, before any job runs, with the per-thread scratch of n_jobs threads
    from fastrelu._batch.jobs import load_spec, run_batch
    from fastrelu._core import rows

    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 0)  # the working set must not depend on the limit
    one = sum(part[1] for part in batch_weights_budget(2000, 200, 1).memory)
    two = sum(part[1] for part in batch_weights_budget(2000, 200, 2).memory)
    assert two > one
    monkeypatch.setenv(_budget.MEMORY_ENV, str((one + two) // 2))
    spec = tmp_path / "spec.toml"
    spec.write_text(textwrap.dedent("""
        [[job]]
        name = "mid"
        weights = {random = "gaussian", m = 2000, n = 200, seed = 1}
        samples = 100
    """))
    assert len(load_spec(spec, n_jobs=1)) == 1
    with pytest.raises(fr.FastReluError, match="The 'weights' parameter must give a working set that fits in memory"):
        load_spec(spec, n_jobs=2)
    monkeypatch.setattr(np.random, "default_rng", lambda *a: pytest.fail("drew the weights"))
    with pytest.raises(fr.FastReluError, match="fits in memory"):
        run_batch(spec, tmp_path / "out", n_jobs=2, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_stored_gram_matrix_follows_the_memory_budget(monkeypatch, tmp_path):
    from fastrelu._core import rows

    monkeypatch.setenv(_budget.MEMORY_ENV, "1G")  # an eighth: 128 MiB, 4096 rows
    assert rows.stores_gram(4096) and not rows.stores_gram(4097)
    monkeypatch.setenv(_budget.MEMORY_ENV, "64G")
    assert rows.stores_gram(30_000)  # no fixed row count
    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 100)
    assert not rows.stores_gram(101)
    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", None)
    # a run decides once and records it: a resume under another decision is refused
    W = np.random.default_rng(3).standard_normal((40, 5))
    path = tmp_path / "run.ckpt"
    fr.mcbe(W, fr.Sphere(5), 5000, seed=1, checkpoint=path, n_jobs=1)
    assert fr.mcbe(W, fr.Sphere(5), 5000, seed=1, checkpoint=path, n_jobs=1).counts.sum() > 0
    monkeypatch.setattr(rows, "GRAM_MAX_ROWS", 10)
    with pytest.raises(fr.FastReluError, match="stored_gram is true there and false here"):
        fr.mcbe(W, fr.Sphere(5), 5000, seed=1, checkpoint=path, n_jobs=1)


def test_a_wide_layer_needs_scratch_for_bases_of_its_neurons_only():
    # 1024 neurons on 16384 inputs: a basis holds at most 1024 rows, so the scan's
    # scratch is 1024 x 1024 per thread, not 16384 x 16384 (which would be 2 GiB each)
    from fastrelu._core.basis import scan_scratch
    from fastrelu._injectivity.pointwise import check_budget

    budget = check_budget(1024, 16384, 64, 2, what="injectivity_summary", name="X", outputs=True)
    assert sum(item[1] for item in budget.memory) < 4 * 2**30  # was 37.9 GiB
    scan = scan_scratch(1024, 16384)
    assert scan.chol.shape == (1024, 1024) and scan.kept.shape == (1024,)
    rng = np.random.default_rng(2)
    layer = fr.ReLULayer(rng.standard_normal((30, 80)))
    summary = fr.injectivity_summary(layer, rng.standard_normal((20, 80)))
    assert not summary.injective.any() and (summary.rank == summary.n_active).all()


def test_points_of_a_data_set_are_not_counted_as_a_drawn_block():
    """The kernels read a data set's points in place; only drawn points fill a
    per-thread block, of at most as many rows as there are points."""
    m, n = 10, 4096
    data = _budget.basis_scratch(m, n, 2, 4, 0)[1]
    drawn = _budget.basis_scratch(m, n, 2, 4, 4096)[1]
    assert drawn - data == 2 * 8 * 4096 * n
    from fastrelu._bias.mcbe import mcbe_budget
    from fastrelu._injectivity.pointwise import check_budget

    assert mcbe_budget(m, n, 24, 2, data=True).total_bytes < 2 * 8 * 4096 * n
    assert mcbe_budget(m, n, 24, 2, data=False).total_bytes > 2 * 8 * 24 * n
    summary = check_budget(m, n, 24, 2, what="injectivity_summary", name="X", outputs=True)
    assert summary.total_bytes < 8 * 4096 * n
