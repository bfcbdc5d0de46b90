"""MCBE on a Dask LocalCluster vs the local threads, and the cost of a task.

Run with ``pytest bench/test_distributed_speed.py -s`` (needs ``fastrelu[dask]``). On
``(n, m) = (30, 270)`` (Gaussian weights, the unit sphere) it measures in the same run:

- ``local``: :func:`fastrelu.mcbe` on the local threads (all cores), and on one thread;
- ``cluster``: the same call with ``client=`` a LocalCluster of 1 and of 2 single-thread
  worker processes (adaptive task sizes, as a user gets them);
- ``overhead``: on one worker, the same blocks cut into 1-block tasks against the
  default tasks: the difference per extra task is the cost of a task (scheduling,
  transfers, the task's own set-up).

Every distributed result is checked to equal the local one bit for bit. Microseconds per
sample go to ``extra_info``; the last test prints the table and a paper estimate for a
cluster of 100 nodes from the measured per-block cost and per-task overhead.
"""

import math

import numpy as np
import pytest
from _recording import record

import fastrelu as fr
from fastrelu._runtime import distributed as _distributed
from fastrelu._runtime.seeds import BLOCK_SIZE

distributed = pytest.importorskip("distributed")

N, M = 30, 270
SAMPLES = 2_000_000
OVERHEAD_SAMPLES = 400_000
SEED = 1
RESULTS = {}
#: The paper cluster: nodes, cores per node (one single-thread worker process per core).
NODES, CORES = 100, 32


def _weight():
    return np.random.default_rng(0).standard_normal((M, N))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        with distributed.Client(local) as client:
            yield local, client


@pytest.fixture(scope="module")
def reference():
    return fr.mcbe(_weight(), fr.Sphere(N), SAMPLES, seed=SEED)


def _scale(cluster, n):
    """Grow the cluster to ``n`` workers (the tests only ever add workers: retiring one
    while the cluster watches its workers can trip LocalCluster's shutdown)."""
    local, client = cluster
    local.scale(n)
    client.wait_for_workers(n, timeout=120)
    while len(client.scheduler_info()["workers"]) != n:
        client.wait_for_workers(n, timeout=1)
    return client


def _record(benchmark, key, samples):
    record(benchmark, "distributed", "-".join(map(str, key)), samples, "sample")
    RESULTS[key] = benchmark.stats.stats.min


@pytest.mark.parametrize("jobs", [None, 1], ids=["all-cores", "one-thread"])
def test_local(benchmark, jobs):
    W = _weight()
    benchmark.pedantic(fr.mcbe, args=(W, fr.Sphere(N), SAMPLES), kwargs={"seed": SEED, "n_jobs": jobs},
                       rounds=2, warmup_rounds=1, iterations=1)
    _record(benchmark, ("local", jobs), SAMPLES)


@pytest.mark.parametrize("task_blocks", [None, 1], ids=["adaptive", "one-block"])
def test_overhead(benchmark, cluster, task_blocks, monkeypatch):
    client = _scale(cluster, 1)
    monkeypatch.setattr(_distributed, "FIXED_TASK_BLOCKS", task_blocks)
    W = _weight()
    benchmark.pedantic(fr.mcbe, args=(W, fr.Sphere(N), OVERHEAD_SAMPLES),
                       kwargs={"seed": SEED, "client": client},
                       rounds=3, warmup_rounds=1, iterations=1)
    _record(benchmark, ("overhead", task_blocks), OVERHEAD_SAMPLES)


@pytest.mark.parametrize("workers", [1, 2])
def test_cluster(benchmark, cluster, reference, workers):
    client = _scale(cluster, workers)
    W = _weight()
    result = benchmark.pedantic(fr.mcbe, args=(W, fr.Sphere(N), SAMPLES),
                                kwargs={"seed": SEED, "client": client},
                                rounds=2, warmup_rounds=1, iterations=1)
    np.testing.assert_array_equal(result.alpha, reference.alpha)
    np.testing.assert_array_equal(result.counts, reference.counts)
    _record(benchmark, ("cluster", workers), SAMPLES)


def test_summary():
    needed = [("local", None), ("local", 1), ("cluster", 1), ("cluster", 2),
              ("overhead", None), ("overhead", 1)]
    if any(key not in RESULTS for key in needed):
        pytest.skip("run the whole file")
    us = {key: RESULTS[key] / SAMPLES * 1e6 for key in needed[:4]}
    lines = [f"MCBE on S^{N - 1}, (n, m) = ({N}, {M}), {SAMPLES:,} samples; microseconds per sample",
             f"{'run':<34}{'us/sample':>10}{'samples/s':>13}"]
    for label, key in [("local threads, all cores", ("local", None)), ("local, one thread", ("local", 1)),
                       ("LocalCluster, 1 worker process", ("cluster", 1)),
                       ("LocalCluster, 2 worker processes", ("cluster", 2))]:
        lines.append(f"{label:<34}{us[key]:>10.3f}{1e6 / us[key]:>13,.0f}")
    blocks = -(-OVERHEAD_SAMPLES // BLOCK_SIZE)
    per_block = RESULTS[("cluster", 1)] / -(-SAMPLES // BLOCK_SIZE)
    # adaptive tasks on one thread (bounded by the balance rule at this size); one-block:
    # a task per block
    sizes = _distributed._Tasks(type("Plan", (), {"max_task_blocks": 64}), [(0, blocks)])
    adaptive_tasks = sum(1 for _ in iter(lambda: sizes.next(1), None))
    extra_tasks = blocks - adaptive_tasks
    per_task = (RESULTS[("overhead", 1)] - RESULTS[("overhead", None)]) / extra_tasks
    lines.append(f"cost of a block on one worker: {per_block * 1e3:.2f} ms; cost of a task: "
                 f"{per_task * 1e3:.2f} ms ({per_task / per_block:.1%} of a block)")
    workers = NODES * CORES
    task_blocks = max(1, round(_distributed.TASK_SECONDS / per_block))
    task_seconds = task_blocks * per_block + per_task
    rate = workers * task_blocks * BLOCK_SIZE / task_seconds
    lines.append(f"paper estimate, {NODES} nodes x {CORES} cores ({workers} single-thread workers), "
                 f"tasks of {task_blocks} blocks: {rate:.3g} samples/s, 10^9 samples in "
                 f"{1e9 / rate:.2g} s, 10^11 in {1e11 / rate / 60:.2g} min; the scheduler then "
                 f"receives {workers / task_seconds:.0f} tasks/s")
    print("\n" + "\n".join(lines))
    assert math.isfinite(rate)
