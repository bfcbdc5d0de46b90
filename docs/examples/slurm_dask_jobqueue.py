"""MCBE with billions of samples on a SLURM cluster, through dask-jobqueue.

Needs ``pip install "fastrelu[dask]" dask-jobqueue`` in an environment that the compute
nodes see (a shared file system). Run this driver where it may stay up for the whole
run -- a login node if your site allows long processes there, better a small SLURM job
of its own (see the end of docs/distributed.md):

    python slurm_dask_jobqueue.py W.npy --samples 10000000000 --seed 0 \\
        --nodes 20 --checkpoint $SCRATCH/bias.ckpt --out alpha.npy

The driver asks SLURM for ``--nodes`` worker jobs and waits for the first workers; as
more arrive they take tasks too. It saves the merged partial result to ``--checkpoint``
every few seconds: if the driver, its job or the workers are pre-empted, rerunning the
same command resumes from there, and the result is the same bits as an uninterrupted
run (and as ``fastrelu.mcbe`` on one machine with the same seed). ``--print-job-script``
shows the worker job that would be submitted, without submitting anything.
"""

import argparse
import sys

import numpy as np

import fastrelu as fr


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="weight matrix W (m x n), .npy")
    parser.add_argument("--samples", type=int, default=10**9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (resumed when it exists)")
    parser.add_argument("--out", required=True, help="write alpha to this .npy file")
    parser.add_argument("--nodes", type=int, default=4, help="SLURM jobs of workers, one node each")
    # One node: 32 cores run as 8 worker processes of 4 threads. Each Dask thread runs one
    # task on one core (fastrelu runs its kernels with n_jobs=1 inside a task and holds
    # BLAS to one thread), so threads x processes = cores. A few threads per process keep
    # the Python parts of the tasks (drawing the samples, merging) off each other's GIL.
    parser.add_argument("--cores", type=int, default=32, help="cores per node")
    parser.add_argument("--processes", type=int, default=8, help="worker processes per node")
    parser.add_argument("--memory", default="64GB", help="memory per node")
    parser.add_argument("--walltime", default="04:00:00", help="of each worker job")
    parser.add_argument("--queue", default=None, help="SLURM partition")
    parser.add_argument("--account", default=None, help="SLURM account")
    parser.add_argument("--print-job-script", action="store_true")
    return parser.parse_args()


def main():
    args = parse_args()
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=args.cores,
        processes=args.processes,
        memory=args.memory,
        walltime=args.walltime,
        # the workers load the Numba kernels compiled once into a shared cache
        job_script_prologue=["export NUMBA_CACHE_DIR=${SCRATCH:-$HOME}/.fastrelu-numba-cache"],
        job_extra_directives=["--exclusive"],
    )
    if args.print_job_script:
        print(cluster.job_script())
        return 0
    weight = np.load(args.weights)
    cluster.scale(jobs=args.nodes)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=3600)  # the queue may take a while
        estimate = fr.mcbe(weight, fr.Sphere(weight.shape[1]), args.samples, seed=args.seed,
                           client=client, checkpoint=args.checkpoint, progress=True)
    cluster.close()
    np.save(args.out, estimate.alpha)
    finite = estimate.alpha[np.isfinite(estimate.alpha)]
    print(f"MCBE: {estimate.n_samples} samples, seed {estimate.seed}, {estimate.elapsed:.0f} s "
          f"(this session); alpha from {finite.min():.6g} to {finite.max():.6g}; "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
