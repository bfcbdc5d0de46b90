"""``fastrelu width``: the Gaussian mean width of a layer's image, of W B, or per point."""

import json
import sys

import numpy as np

from fastrelu._core.errors import FastReluError
from fastrelu._core.io import load_array, output_file, write_output
from fastrelu._spectral.width import (
    DEFAULT_DRAWS,
    DEFAULT_STARTS_PER_DRAW,
    gaussian_mean_width,
    local_metrics,
)
from fastrelu.cli.common import (
    _bias_arguments,
    _json_float,
    _layer_from_args,
    _load_weights,
    _progress,
    _run_arguments,
    _weights_arguments,
    add_cluster_arguments,
)


def add_parser(sub):
    """The ``width`` subcommand."""
    width = sub.add_parser("width", help="Gaussian mean width of a layer's image (ball or data), of W B (--linear), or per point (--local)")
    _weights_arguments(width)
    _bias_arguments(width)
    width.add_argument("--data", help="data points (N x n): measure their image (default: the unit ball's)")
    width.add_argument("--data-key", help="array name inside an .npz data file")
    kind = width.add_mutually_exclusive_group()
    kind.add_argument("--linear", action="store_true", help="the width of W B, the linear map on the unit ball")
    kind.add_argument("--local", action="store_true", help="per point of --data: width and singular values of D_x W")
    width.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help=f"Gaussian draws (default {DEFAULT_DRAWS})")
    width.add_argument("--starts", type=int, default=DEFAULT_STARTS_PER_DRAW, help=f"ascent starts per draw, layer on the ball (default {DEFAULT_STARTS_PER_DRAW})")
    width.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    width.add_argument("--out", help="with --local: write the per-point metrics to this .npz file")
    _run_arguments(width)
    add_cluster_arguments(width)
    width.set_defaults(run=run)
    return width


def run(args):
    out = None if args.out is None else output_file(args.out, "--out", ".npz")
    weight = _load_weights(args)
    seed = 0 if args.seed is None else args.seed
    data = None if args.data is None else load_array(args.data, "data", key=args.data_key, key_option="--data-key")
    if args.linear:
        what = "W B (the linear map on the unit ball)"
        result = gaussian_mean_width(weight, n_draws=args.draws, seed=seed, n_jobs=args.jobs,
                                     progress=_progress(args),
                                     client=args.client, checkpoint=args.checkpoint,
                                     checkpoint_interval=args.checkpoint_interval)
    elif args.local:
        if data is None:
            raise FastReluError("The '--local' option needs --data FILE (the points at which D_x W is measured).")
        layer = _layer_from_args(args, weight)
        metrics = local_metrics(layer, data, n_jobs=args.jobs)
        if out:
            write_output(out, "--out", lambda path: np.savez(
                path, width=metrics.width, sigma_max=metrics.sigma_max,
                sigma_min=metrics.sigma_min, rank=metrics.rank, n_active=metrics.n_active))
        stats = {}
        for name in ("width", "sigma_max", "sigma_min"):
            values = getattr(metrics, name)
            stats[name] = {"min": _json_float(values.min()) if values.size else None,
                           "mean": _json_float(values.mean()) if values.size else None,
                           "max": _json_float(values.max()) if values.size else None}
        summary = {"local": True, "n_points": metrics.n_points,
                   "n_full_rank": int(np.count_nonzero(metrics.rank == layer.shape[1])),
                   "tol": metrics.tol, "elapsed": metrics.elapsed, "out": out, **stats}
        if args.json:
            json.dump(summary, sys.stdout)
            sys.stdout.write("\n")
            return 0
        print(f"local maps D_x W at {metrics.n_points} points ({metrics.elapsed:.2f} s): "
              f"{summary['n_full_rank']} of rank {layer.shape[1]} (tolerance {metrics.tol:.3g})")
        for name in ("width", "sigma_max", "sigma_min"):
            s = stats[name]
            if s["min"] is not None:
                print(f"  {name:<10} min {s['min']:.6g}  mean {s['mean']:.6g}  max {s['max']:.6g}")
        if out:
            print(f"per-point metrics written to {out}")
        return 0
    else:
        layer = _layer_from_args(args, weight)
        what = "the layer's image of " + ("the unit ball" if data is None else f"{np.shape(data)[0]} data points")
        result = gaussian_mean_width(layer, data=data, n_draws=args.draws, n_starts=args.starts,
                                     seed=seed, n_jobs=args.jobs, progress=_progress(args),
                                     client=args.client, checkpoint=args.checkpoint,
                                     checkpoint_interval=args.checkpoint_interval)
    summary = {"of": what, "value": result.value, "stderr": result.stderr,
               "n_draws": result.n_draws, "per_draw": result.per_draw, "method": result.method,
               "seed": result.seed, "elapsed": result.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"Gaussian mean width of {what}: {result.value:.6g} +- {result.stderr:.2g} "
              f"(standard error; {result.n_draws} draws, seed {result.seed}, {result.elapsed:.2f} s)")
        print(f"  supremum per draw: {result.per_draw} ({result.method})")
    return 0
