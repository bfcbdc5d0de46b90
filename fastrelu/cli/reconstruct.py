"""``fastrelu reconstruct``: recover the inputs of a layer from its outputs."""

import json
import sys

import numpy as np

from fastrelu._core.io import load_array, output_file, write_output
from fastrelu._reconstruct.driver import DEFAULT_MAX_ITER, DEFAULT_TOL, reconstruct
from fastrelu.cli.common import _bias_arguments, _layer_from_args, _load_weights, _weights_arguments


def add_parser(sub):
    """The ``reconstruct`` subcommand."""
    rec = sub.add_parser("reconstruct", help="recover the inputs of a layer from its outputs")
    _weights_arguments(rec)
    _bias_arguments(rec)
    rec.add_argument("--outputs", required=True, help="layer outputs Y (N x m, or one row)")
    rec.add_argument("--outputs-key", help="array name inside an .npz outputs file")
    rec.add_argument("--out", required=True, help="write the recovered inputs to this .npy file")
    rec.add_argument("--method", choices=["dual", "basis", "frame"], default="dual",
                     help="dual: canonical dual of the active rows (default); basis: n active rows; frame: frame algorithm")
    rec.add_argument("--cond", choices=["estimate", "exact"], default="estimate", help="condition numbers: LAPACK-style estimate (default) or exact")
    rec.add_argument("--tol", type=float, default=DEFAULT_TOL, help=f"relative residual an input must meet to count as recovered: the frame algorithm's stopping tolerance, the least accepted bound of the direct methods (default {DEFAULT_TOL:g})")
    rec.add_argument("--max-iter", type=int, default=DEFAULT_MAX_ITER, help=f"frame algorithm steps at most (default {DEFAULT_MAX_ITER})")
    rec.add_argument("--strict", action="store_true", help="exit with status 1 when some input is not recoverable")
    rec.add_argument("--jobs", type=int, default=None, help="threads (default: all cores)")
    rec.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    rec.set_defaults(run=run)
    return rec


def run(args):
    out = output_file(args.out, "--out", ".npy")
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    Y = load_array(args.outputs, "outputs", key=args.outputs_key, key_option="--outputs-key")
    result = reconstruct(layer, Y, args.method, cond=args.cond, tol=args.tol,
                         max_iter=args.max_iter, n_jobs=args.jobs)
    write_output(out, "--out", lambda path: np.save(path, result.x))
    ok = np.atleast_1d(result.ok)
    spans = np.atleast_1d(result.spans)
    failed = np.flatnonzero(~ok)
    not_spanning = np.flatnonzero(~spans)  # the outputs do not determine the input
    not_solved = np.flatnonzero(spans & ~ok)  # determined, but the solve missed its bound
    summary = {"method": result.method, "n_outputs": int(ok.size), "n_recovered": int(ok.sum()),
               "n_spanning": int(spans.sum()), "failed": failed.tolist(),
               "not_spanning": not_spanning.tolist(), "not_solved": not_solved.tolist(),
               "elapsed": result.elapsed, "out": out}
    cond = np.atleast_1d(result.cond)[ok]
    summary["cond_median"] = float(np.median(cond)) if cond.size else None
    summary["cond_max"] = float(cond.max()) if cond.size else None
    if result.iterations is not None:
        summary["converged"] = int(np.count_nonzero(result.converged))
        summary["iterations_max"] = int(np.max(result.iterations))
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(result.summary() + f" ({result.elapsed:.2f} s)")
        for indices, what in ((not_spanning, "not recoverable (the active rows do not span R^n)"),
                              (not_solved, "not solved to the stated accuracy (the active rows span; "
                                           "the residual stayed above its bound)")):
            if indices.size:
                shown = ", ".join(str(i) for i in indices[:10])
                print(f"  {what}: {shown}"
                      + (f" and {indices.size - 10} more" if indices.size > 10 else ""))
        print(f"inputs written to {out}")
    if args.strict and failed.size:
        return 1
    return 0
