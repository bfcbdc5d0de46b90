"""What several commands share: the options of the weights, the bias, the domain, the
run and the cluster, and reading them back from the parsed arguments."""

import os
from contextlib import contextmanager

import numpy as np

from fastrelu._core.domains import Ball, Data, Shell, Sphere
from fastrelu._core.errors import FastReluError
from fastrelu._core.io import load_array
from fastrelu._core.layer import ReLULayer
from fastrelu._runtime.distributed import CONNECT_TIMEOUT, connect, import_distributed


def _domain_from_args(args, dim):
    if args.domain == "sphere":
        return Sphere(dim, 1.0 if args.radius is None else args.radius, args.nonnegative)
    if args.domain == "ball":
        return Ball(dim, 1.0 if args.radius is None else args.radius, args.nonnegative)
    if args.domain == "shell":
        if args.inner is None or args.outer is None:
            raise FastReluError("The shell domain needs both --inner and --outer radii.")
        return Shell(dim, args.inner, args.outer, args.nonnegative)
    if args.data is None:
        raise FastReluError("The data domain needs --data FILE (rows are the points).")
    return Data(load_array(args.data, "data", key=args.data_key, key_option="--data-key"))


def _json_float(x):
    return None if not np.isfinite(x) else float(x)


def _load_weights(args):
    weight = load_array(args.weights, "weights", key=args.key)
    if np.ndim(weight) != 2:
        raise FastReluError(f"The 'weights' file must hold a 2-D array. Got shape {np.shape(weight)}.")
    return weight


def _progress(args):
    return True if args.progress else (False if args.no_progress else None)


def _layer_from_args(args, weight):
    if args.bias is not None and args.affine_bias is not None:
        raise FastReluError("Give either --bias (alpha in ReLU(W x - alpha)) or --affine-bias (b in ReLU(W x + b)), not both.")
    if args.affine_bias is not None:
        return ReLULayer.from_affine(weight, _bias_value(args.affine_bias, "affine-bias", args.bias_key))
    bias = None if args.bias is None else _bias_value(args.bias, "bias", args.bias_key)
    return ReLULayer(weight, bias)


def _number(text):
    """``text`` as a float when it is written as one (``0.5``, ``-1e-3``, ``inf``), else
    ``None``. No file name that the loaders accept reads as a number: they end in .npy,
    .npz, .csv or .txt."""
    try:
        return float(text)
    except ValueError:
        return None


def _bias_value(text, name, key):
    """A bias option: a number (the same bias for every row) or a file of ``m`` values.
    A file may hold ``+inf`` (a row that is never active, as MCBE reports rows that no
    sample constrained); the layer refuses NaN."""
    number = _number(text)
    if number is not None:
        return number
    if not os.path.isfile(text):
        raise FastReluError(f"The '--{name}' option must be a number or a file of m values (.npy, .npz, .csv or .txt). Got {text!r}, which is neither a number nor a file.")
    bias = load_array(text, name, key=key, key_option="--bias-key")
    if np.ndim(bias) == 2 and 1 in np.shape(bias):
        return bias.ravel()  # a text file of one column (numpy.savetxt of a vector) or row
    return bias


def _weights_arguments(parser):
    parser.add_argument("weights", help="weight matrix W (m x n): .npy, .npz, .csv or .txt")
    parser.add_argument("--key", help="array name inside an .npz weights file")


def _bias_arguments(parser):
    parser.add_argument("--bias", metavar="NUMBER|FILE",
                        help="the subtracted bias alpha of ReLU(W x - alpha): a number (the same "
                             "for every row) or a file of m values, +inf for a row that is never "
                             "active (default 0)")
    parser.add_argument("--affine-bias", metavar="NUMBER|FILE",
                        help="instead: the b of ReLU(W x + b), a number or a file of m values")
    parser.add_argument("--bias-key", help="array name inside an .npz bias file")


def _domain_arguments(parser, *, data_domain):
    choices = ["sphere", "ball", "shell", "data"] if data_domain else ["sphere", "ball", "shell"]
    parser.add_argument("--domain", choices=choices, default="sphere", help="domain (default sphere)")
    parser.add_argument("--radius", type=float, help="radius of the sphere or ball (default 1)")
    parser.add_argument("--inner", type=float, help="inner radius of the shell")
    parser.add_argument("--outer", type=float, help="outer radius of the shell")
    parser.add_argument("--nonnegative", action="store_true", help="restrict the domain to the nonnegative orthant")
    parser.add_argument("--data", help="data points (N x n)" + (" for --domain data" if data_domain else " (instead of a sampled domain)"))
    parser.add_argument("--data-key", help="array name inside an .npz data file")


def add_progress_arguments(parser, always="always show a progress bar on stderr (default: when stderr is a terminal)"):
    """``--progress`` (help: ``always``) and ``--no-progress``, excluding each other
    (read by :func:`_progress`)."""
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help=always)
    bar.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def _run_arguments(parser, *, progress=True):
    parser.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    if progress:
        add_progress_arguments(parser)


def add_cluster_arguments(parser, *, checkpoint_path=True):
    """``--scheduler``, ``--local-cluster``, ``--checkpoint`` (unless not
    ``checkpoint_path``) and their options."""
    group = parser.add_argument_group("distributed runs and checkpoints")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler: an address "
                            "(tcp://host:8786) or a scheduler file (needs fastrelu[dask])")
    where.add_argument("--local-cluster", type=int, metavar="N",
                       help="run on a Dask LocalCluster of N worker processes on this machine")
    group.add_argument("--scheduler-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                       help=f"seconds to wait for the scheduler (default {CONNECT_TIMEOUT:g})")
    if checkpoint_path:
        group.add_argument("--checkpoint", metavar="PATH",
                           help="save progress to this file and resume from it when it exists")
    group.add_argument("--checkpoint-interval", type=float, default=None, metavar="SECONDS",
                       help="seconds between checkpoint writes (default 5)")


@contextmanager
def cluster_from_args(args):
    """The Dask client that the command line options ask for (None: run locally)."""
    scheduler = getattr(args, "scheduler", None)
    workers = getattr(args, "local_cluster", None)
    if workers is not None:
        if workers < 1:
            raise FastReluError(f"The '--local-cluster' option must be a number of worker processes >= 1. Got {workers} instead.")
        distributed = import_distributed()
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            yield client
    elif scheduler is not None:
        if not args.scheduler_timeout > 0:
            raise FastReluError(f"The '--scheduler-timeout' option must be a number of seconds > 0. Got {args.scheduler_timeout} instead.")
        with connect(scheduler, args.scheduler_timeout) as client:
            yield client
    else:
        yield None
