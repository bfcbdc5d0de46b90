"""``fastrelu check``: pointwise injectivity of a layer on data or on fresh points of a domain."""

import json
import sys

import numpy as np

from fastrelu._core.io import load_array, output_file, write_output
from fastrelu._injectivity.pointwise import DEFAULT_CHECK_POINTS, check_bias, injectivity_summary
from fastrelu.cli.common import (
    _bias_arguments,
    _domain_arguments,
    _domain_from_args,
    _layer_from_args,
    _load_weights,
    _progress,
    _run_arguments,
    _weights_arguments,
)


def add_parser(sub):
    """The ``check`` subcommand."""
    check = sub.add_parser("check", help="pointwise injectivity of a layer on data or on fresh points of a domain")
    _weights_arguments(check)
    _bias_arguments(check)
    _domain_arguments(check, data_domain=False)
    check.add_argument("--points", type=int, default=None, help=f"fresh points of the domain (default {DEFAULT_CHECK_POINTS})")
    check.add_argument("--seed", type=int, default=None, help="seed of the fresh points (default 0)")
    check.add_argument("--rank-tol", type=float, default=1e-6, help="rank tolerance (default 1e-6)")
    check.add_argument("--out", help="with --data: write the per-point boolean mask to this .npy file")
    check.add_argument("--strict", action="store_true", help="exit with status 1 when some point is not injective")
    _run_arguments(check)
    check.set_defaults(run=run)
    return check


def run(args):
    weight = _load_weights(args)
    layer = _layer_from_args(args, weight)
    n = layer.shape[1]
    out = None
    if args.data is not None:
        out = None if args.out is None else output_file(args.out, "--out", ".npy")
        X = load_array(args.data, "data", key=args.data_key, key_option="--data-key")
        report = injectivity_summary(layer, X, rank_tol=args.rank_tol, n_jobs=args.jobs)
        failed = report.failures
        summary = {"domain": f"Data(points=<{report.n_points} x {n}>)", "seed": None,
                   "n_points": report.n_points, "n_injective": int(report.injective.sum()),
                   "failures": failed.tolist(), "failed_n_active": report.n_active[failed].tolist(),
                   "failed_rank": report.rank[failed].tolist()}
        labels = [f"point {i}" for i in failed]
        if out:
            write_output(out, "--out", lambda path: np.save(path, report.injective))
    else:
        domain = _domain_from_args(args, n)
        points = DEFAULT_CHECK_POINTS if args.points is None else args.points
        report = check_bias(layer, domain, points, seed=0 if args.seed is None else args.seed,
                            rank_tol=args.rank_tol, n_jobs=args.jobs, progress=_progress(args))
        summary = {"domain": repr(domain), "seed": report.seed, "n_points": report.n_points,
                   "n_injective": report.n_injective,
                   "failed_points": report.failed_points.tolist(),
                   "failed_n_active": report.failed_n_active.tolist(),
                   "failed_rank": report.failed_rank.tolist()}
        labels = [np.array2string(x, precision=4, separator=", ") for x in report.failed_points]
        failed = report.failed_n_active
    summary.update(fraction=summary["n_injective"] / summary["n_points"] if summary["n_points"] else None,
                   rank_tol=report.rank_tol, elapsed=report.elapsed, out=out)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        n_failed = summary["n_points"] - summary["n_injective"]
        print(f"{summary['n_injective']} of {summary['n_points']} points injective "
              f"({100 * (summary['fraction'] or 0):.4f}%) on {summary['domain']}"
              + (f", seed {summary['seed']}" if summary["seed"] is not None else "")
              + f", rank tolerance {report.rank_tol:g}, {report.elapsed:.2f} s")
        for label, active, rank in list(zip(labels, summary["failed_n_active"], summary["failed_rank"]))[:10]:
            print(f"  not injective: {label} ({active} active rows, rank {rank})")
        if n_failed > 10:
            print(f"  ... and {n_failed - 10} more")
        if out:
            print(f"per-point mask written to {out}")
    if args.strict and summary["n_injective"] < summary["n_points"]:
        return 1
    return 0
