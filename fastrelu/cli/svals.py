"""``fastrelu svals``: the ReLU singular values s_1..s_k on the unit ball or on data."""

import json
import sys

from fastrelu._core.io import load_array
from fastrelu._spectral.power import DEFAULT_STARTS, relu_singular_values
from fastrelu.cli.common import (
    _bias_arguments,
    _layer_from_args,
    _load_weights,
    _run_arguments,
    _weights_arguments,
    add_cluster_arguments,
)


def add_parser(sub):
    """The ``svals`` subcommand."""
    svals = sub.add_parser("svals", help="ReLU singular values s_1..s_k on the unit ball or on data, with what each number is")
    _weights_arguments(svals)
    svals.add_argument("-k", type=int, required=True, help="how many ReLU singular values (1 <= k <= min(m, n))")
    _bias_arguments(svals)
    svals.add_argument("--data", help="data points (N x n): the domain (default: the unit ball)")
    svals.add_argument("--data-key", help="array name inside an .npz data file")
    svals.add_argument("--starts", type=int, default=DEFAULT_STARTS, help=f"power-iteration starts for s_1 on the ball (default {DEFAULT_STARTS})")
    svals.add_argument("--fit-steps", type=int, default=200, help="optimiser steps per round of the low-rank fits (default 200)")
    svals.add_argument("--seed", type=int, default=None, help="random seed of the starts and of the fits' points (default 0)")
    _run_arguments(svals, progress=False)  # relu_singular_values shows no progress bar
    add_cluster_arguments(svals)
    svals.set_defaults(run=run)
    return svals


def run(args):
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    data = None if args.data is None else load_array(args.data, "data", key=args.data_key, key_option="--data-key")
    result = relu_singular_values(layer.weight, args.k, bias=layer.bias, data=data,
                                  n_starts=args.starts, fit_steps=args.fit_steps,
                                  seed=0 if args.seed is None else args.seed, n_jobs=args.jobs,
                                  client=args.client, checkpoint=args.checkpoint,
                                  checkpoint_interval=args.checkpoint_interval)
    domain = "unit ball" if data is None else repr(result.domain)
    summary = {"k": result.k, "domain": domain, "shape": list(layer.shape),
               "values": [float(v) for v in result.values], "kinds": list(result.kinds),
               "upper": [float(v) for v in result.upper], "sigma": [float(v) for v in result.sigma],
               "seed": result.seed, "n_starts": None if data is not None else args.starts,
               "elapsed": result.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
        return 0
    m, n = layer.shape
    print(f"ReLU singular values of a {m} x {n} layer on the {domain}, seed {result.seed}, "
          f"{result.elapsed:.2f} s")
    print(f"{'j':>3}{'s_j':>14}  {'what it is':<22}{'rigorous bound':>16}{'sigma_j':>14}")
    for j in range(result.k):
        print(f"{j + 1:>3}{result.values[j]:>14.6g}  {result.kinds[j]:<22}{result.upper[j]:>16.6g}"
              f"{result.sigma[j]:>14.6g}")
    return 0
