"""Runs on a Dask LocalCluster of worker processes: the same bits as the local run for
any number of workers, a worker killed mid-run, unreachable schedulers."""

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from conftest import interrupt_after

import fastrelu as fr
from fastrelu._runtime import distributed as _distributed

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        # not the default client: fastrelu must use the client it is given
        with distributed.Client(local, set_as_default=False) as client:
            yield local, client


def _scale(cluster, n):
    """At least ``n`` workers: the cluster only grows (retiring workers while the cluster
    watches them can trip LocalCluster's shutdown)."""
    local, client = cluster
    n = max(n, len(local.worker_spec))
    local.scale(n)
    client.wait_for_workers(n, timeout=60)
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) != n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(client.scheduler_info()["workers"]) == n
    return client


def _weight(seed=0, m=40, n=6):
    return np.random.default_rng(seed).standard_normal((m, n))


def _same(a, b):
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.n_incomplete == b.n_incomplete and a.seed == b.seed


def test_mcbe_equals_local_on_one_two_and_three_workers(cluster):
    W = _weight()
    X = np.random.default_rng(1).standard_normal((10_000, 6))
    cases = [(fr.Sphere(6), 100_000), (fr.Shell(6, 0.5, 2.0, nonnegative=True), 40_000),
             (fr.Data(X), None)]
    local = [fr.mcbe(W, domain, n, seed=7) for domain, n in cases]
    for workers in (1, 2, 3):
        client = _scale(cluster, workers)
        for (domain, n), expected in zip(cases, local):
            _same(fr.mcbe(W, domain, n, seed=7, client=client), expected)


def test_other_sampled_kernels_equal_local(cluster):
    client = _scale(cluster, 2)
    W = _weight(2)
    power = fr.relu_power_iteration(W, n_starts=2000, seed=1, history=2, max_iter=300)
    remote = fr.relu_power_iteration(W, n_starts=2000, seed=1, history=2, max_iter=300, client=client)
    for name in ("s1", "x", "best_start", "n_converged", "mean_iter", "values", "n_iter", "status", "history"):
        np.testing.assert_array_equal(getattr(remote, name), getattr(power, name))
    layer = fr.ReLULayer(W, 0.2)
    for obj, kw in ((layer, dict(n_starts=2, max_iter=40)), (W, {}),
                    (fr.Data(W), {}), (layer, dict(data=W[:, :6]))):
        here = fr.gaussian_mean_width(obj, n_draws=1500, seed=3, **kw)
        there = fr.gaussian_mean_width(obj, n_draws=1500, seed=3, client=client, **kw)
        assert (here.value, here.stderr) == (there.value, there.stderr)
    from fastrelu._injectivity.verify import _verify

    V = np.random.default_rng(4).standard_normal((28, 4))
    here, there = _verify(V, block_subsets=32), _verify(V, block_subsets=32, client=client)
    assert (here.injective, here.min_active, here.subsets_checked, here.sign) == \
        (there.injective, there.min_active, there.subsets_checked, there.sign)
    np.testing.assert_array_equal(here.subset, there.subset)
    svals = fr.relu_singular_values(W, 1, n_starts=500, seed=2)
    assert fr.relu_singular_values(W, 1, n_starts=500, seed=2, client=client).values[0] == svals.values[0]


def test_killed_worker_does_not_change_the_result(cluster, tmp_path, monkeypatch):
    client = _scale(cluster, 2)
    W = _weight(3)
    n_samples = 800_000
    expected = fr.mcbe(W, fr.Sphere(6), n_samples, seed=9)
    monkeypatch.setattr(_distributed, "TASKS_PER_THREAD", 12)  # many small tasks in flight
    path = tmp_path / "run.npz"
    outcome = {}

    def run():
        try:
            outcome["result"] = fr.mcbe(W, fr.Sphere(6), n_samples, seed=9, client=client,
                                        checkpoint=path, checkpoint_interval=0)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not path.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = [address for address, keys in client.processing().items() if keys]
    pids = client.run(os.getpid)
    victim = pids[busy[0] if busy else next(iter(pids))]
    os.kill(victim, signal.SIGKILL)
    killed_mid_run = thread.is_alive()
    thread.join(120)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert killed_mid_run
    assert victim not in client.run(os.getpid).values()
    _same(outcome["result"], expected)
    # the checkpoint of the distributed run resumes locally to the same result
    _same(fr.mcbe(W, fr.Sphere(6), n_samples, seed=9, checkpoint=path), expected)


def test_local_checkpoint_resumes_on_the_cluster(cluster, tmp_path, monkeypatch):
    from fastrelu._bias.mcbe import _McbePlan

    client = _scale(cluster, 2)
    W = _weight(4)
    path = tmp_path / "run.npz"
    interrupt_after(monkeypatch, _McbePlan, after=3)
    with pytest.raises(KeyboardInterrupt):
        fr.mcbe(W, fr.Sphere(6), 200_000, seed=2, checkpoint=path, checkpoint_interval=0)
    monkeypatch.undo()
    resumed = fr.mcbe(W, fr.Sphere(6), 200_000, seed=2, checkpoint=path, client=client)
    _same(resumed, fr.mcbe(W, fr.Sphere(6), 200_000, seed=2))


def test_a_checkpoint_write_failure_is_not_a_cluster_failure(cluster, tmp_path, monkeypatch):
    import errno

    client = _scale(cluster, 1)

    def savez(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(fr.FastReluError, match="The 'checkpoint' file .* must be writable") as caught:
        fr.mcbe(_weight(), fr.Sphere(6), 100_000, seed=2, checkpoint=tmp_path / "run.npz",
                checkpoint_interval=0, client=client)
    assert "cluster" not in str(caught.value)


def test_unreachable_scheduler_fails_within_the_timeout_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    W = _weight(5)
    path = tmp_path / "run.npz"
    fr.mcbe(W, fr.Sphere(6), 10_000, seed=1, checkpoint=path)
    before = path.read_bytes()
    monkeypatch.setattr(_distributed, "CONNECT_TIMEOUT", 1.0)
    start = time.monotonic()
    with pytest.raises(fr.FastReluError, match=r"The 'client' parameter must be .* reachable Dask scheduler\. Got 'tcp://127\.0\.0\.1:9', which could not be reached within 1 s"):
        fr.mcbe(W, fr.Sphere(6), 10_000, seed=1, checkpoint=path, client="tcp://127.0.0.1:9")
    assert time.monotonic() - start < 15
    assert path.read_bytes() == before


def test_client_values_are_validated(cluster, monkeypatch):
    W = _weight(6)
    with pytest.raises(fr.FastReluError, match="The 'client' parameter must be a dask.distributed.Client or a scheduler address .* Got int instead"):
        fr.mcbe(W, fr.Sphere(6), 1000, seed=0, client=42)
    closed = distributed.Client(cluster[0].scheduler_address, set_as_default=False)
    closed.close()
    with pytest.raises(fr.FastReluError, match="The 'client' parameter must be a connected dask.distributed.Client. Got a client with status 'closed'"):
        fr.mcbe(W, fr.Sphere(6), 1000, seed=0, client=closed)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were missing
    with pytest.raises(fr.FastReluError, match=r'pip install "fastrelu\[dask\]"'):
        fr.relu_power_iteration(W, n_starts=10, seed=0, client="tcp://127.0.0.1:9")
    with pytest.raises(fr.FastReluError, match="The 'client' parameter applies to the unit ball"):
        fr.relu_singular_values(W, 1, data=W, client="tcp://127.0.0.1:9")


def test_cli_scheduler_options(cluster, tmp_path, capsys):
    from fastrelu.cli import main

    client = _scale(cluster, 2)
    W = _weight(7)
    np.save(tmp_path / "W.npy", W)
    address = cluster[0].scheduler_address
    assert main(["bias", str(tmp_path / "W.npy"), "--samples", "30000", "--seed", "2",
                 "--scheduler", address, "--out", str(tmp_path / "a.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), fr.mcbe(W, fr.Sphere(6), 30_000, seed=2).alpha)
    assert main(["verify", str(tmp_path / "W.npy"), "--scheduler", address, "--json"]) == 0
    assert main(["width", str(tmp_path / "W.npy"), "--linear", "--draws", "600",
                 "--scheduler", address, "--json"]) == 0
    (tmp_path / "spec.toml").write_text('[[grid]]\nweights = "W.npy"\nsamples = [5000, 9000]\n')
    assert main(["batch", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "out"),
                 "--scheduler", address]) == 0
    with np.load(tmp_path / "out" / "grid1-9000.npz") as result:
        np.testing.assert_array_equal(result["alpha"], fr.mcbe(W, fr.Sphere(6), 9000, seed=0).alpha)
    capsys.readouterr()
    for argv, message in [
        (["--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "1"], "could not be reached within 1 s"),
        (["--local-cluster", "0"], "The '--local-cluster' option must be a number of worker processes >= 1"),
        (["--scheduler", address, "--scheduler-timeout", "0"], "The '--scheduler-timeout' option must be"),
        (["--method", "pbe", "--scheduler", address], "--method pbe"),  # refused: --scheduler does not apply
    ]:
        assert main(["bias", str(tmp_path / "W.npy"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert client.status == "running"


def test_cli_local_cluster(tmp_path, capsys):
    from fastrelu.cli import main

    W = _weight(8)
    np.save(tmp_path / "W.npy", W)
    assert main(["bias", str(tmp_path / "W.npy"), "--samples", "20000", "--seed", "4",
                 "--local-cluster", "1", "--checkpoint", str(tmp_path / "c.npz"),
                 "--out", str(tmp_path / "a.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), fr.mcbe(W, fr.Sphere(6), 20_000, seed=4).alpha)


def test_task_sizes():
    class Plan:
        max_task_blocks = 64

    assert _distributed.task_size(Plan, 1000, 2) == 64
    assert _distributed.task_size(Plan, 40, 2) == 5
    assert _distributed.task_size(Plan, 3, 100) == 1
    assert _distributed.task_size(Plan, 3, 0) == 1
    tasks = _distributed._Tasks(Plan, [(0, 10_000), (20_000, 20_003)])
    assert tasks.next(10) == (0, 64)
    tasks.measured(0.64, 64)  # 10 ms per block: 500 blocks make TASK_SECONDS
    assert tasks.next(1) == (64, 64 + 500)
    # many threads: small tasks, to finish together, but none under MIN_TASK_SECONDS (50)
    assert tasks.next(1000) == (564, 614)
    assert tasks.next(10) == (614, 614 + 235)  # 9386 blocks left: 4 tasks per thread
    rest = []
    while (task := tasks.next(1)) is not None:
        rest.append(task)
    covered = [b for first, stop in rest for b in range(first, stop)]
    assert covered == list(range(849, 10_000)) + [20_000, 20_001, 20_002]
    sizes = [stop - first for first, stop in rest]
    assert min(sizes[:-2]) >= 50 and sizes[-1] == 3  # only a range's end is shorter


def test_a_cluster_without_workers_is_refused_within_a_timeout(monkeypatch):
    from distributed import Client, LocalCluster

    import fastrelu._runtime.distributed as distributed_module

    monkeypatch.setattr(distributed_module, "WORKER_WAIT", 2.0)
    W = np.random.default_rng(0).standard_normal((20, 4))
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(fr.FastReluError, match="a cluster with workers"):
            fr.mcbe(W, fr.Sphere(4), 10_000, seed=1, client=client)


@pytest.mark.parametrize("address", ["notanaddress", "tcp://127.0.0.1:9"])
def test_cli_unreachable_scheduler_is_one_line_without_a_late_traceback(tmp_path, address):
    """A client whose connection failed is closed at once: no "Exception ignored in
    Client.__del__" traceback after the message, and no wait for it."""
    import subprocess

    np.save(tmp_path / "W.npy", _weight(12))
    where = os.path.dirname(os.path.dirname(os.path.abspath(fr.__file__)))
    env = {**os.environ, "PYTHONPATH": where + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "fastrelu", "bias", str(tmp_path / "W.npy"),
                           "--samples", "100", "--scheduler", address, "--scheduler-timeout", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "The 'client' parameter must be a dask.distributed.Client or the address of a reachable Dask scheduler" in done.stderr
    assert done.stdout == ""
