"""The ``fastrelu`` command line: ``fastrelu bias ...``, ``fastrelu demo``."""

import argparse
import json
import sys
import time

import numpy as np

from ._domains import Ball, Data, Shell, Sphere
from ._errors import FastReluError
from ._io import load_array
from ._mcbe import mcbe


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
    return Data(load_array(args.data, "data", key=args.data_key))


def _json_float(x):
    return None if not np.isfinite(x) else float(x)


def _cmd_bias(args):
    weight = load_array(args.weights, "weights", key=args.key)
    if np.ndim(weight) != 2:
        raise FastReluError(f"The 'weights' file must hold a 2-D array. Got shape {np.shape(weight)}.")
    domain = _domain_from_args(args, np.shape(weight)[1])
    samples = None if args.domain == "data" else args.samples
    margin = args.margin
    if margin is not None and margin != "covering":
        try:
            margin = float(margin)
        except ValueError:
            raise FastReluError(f"The '--margin' option must be 'covering' or a number. Got {margin!r}.") from None
    progress = True if args.progress else (False if args.no_progress else None)
    result = mcbe(weight, domain, samples, seed=args.seed, margin=margin, n_jobs=args.jobs,
                  progress=progress)
    if args.out:
        np.save(args.out, result.alpha)
    summary = {
        "method": result.method,
        "domain": repr(result.domain),
        "shape": list(np.shape(weight)),
        "n_samples": result.n_samples,
        "seed": result.seed,
        "margin": result.margin,
        "elapsed": result.elapsed,
        "unconstrained": int(result.unconstrained.sum()),
        "n_incomplete": result.n_incomplete,
        "out": args.out,
    }
    if args.json:
        summary["alpha"] = [_json_float(a) for a in result.alpha]
        summary["counts"] = result.counts.tolist()
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        finite = result.alpha[np.isfinite(result.alpha)]
        print(f"MCBE on {summary['domain']}: {result.n_samples} samples, seed {result.seed}, "
              f"{result.elapsed:.2f} s")
        if finite.size:
            print(f"alpha: min {finite.min():.6g}, median {np.median(finite):.6g}, max {finite.max():.6g}; "
                  f"{summary['unconstrained']} rows unconstrained")
        if args.out:
            print(f"alpha written to {args.out}")
    return 0


def _cmd_demo(args):
    rng = np.random.default_rng(0)
    tetrahedron = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3.0)
    cases = [
        ("tetrahedron 4x3", tetrahedron, -1.0 / np.sqrt(3.0)),
        ("Gaussian 270x30", rng.standard_normal((270, 30)) / np.sqrt(30.0), None),
    ]
    rows = []
    for name, W, exact in cases:
        start = time.perf_counter()
        result = mcbe(W, Sphere(W.shape[1]), args.samples, seed=args.seed, n_jobs=args.jobs)
        wall = time.perf_counter() - start
        rows.append((name, result, exact, wall))
    if args.json:
        json.dump([{"layer": name, "n_samples": r.n_samples, "seed": r.seed,
                    "alpha_min": float(r.alpha.min()), "alpha_max": float(r.alpha.max()),
                    "exact": exact, "elapsed": r.elapsed} for name, r, exact, _ in rows], sys.stdout)
        sys.stdout.write("\n")
        return 0
    print("MCBE maximal-bias estimates on the unit sphere (THEORY §3)")
    print(f"{'layer':<18}{'samples':>10}{'min alpha':>12}{'max alpha':>12}{'exact':>12}{'seconds':>10}{'us/sample':>11}")
    for name, r, exact, wall in rows:
        exact_text = f"{exact:.6f}" if exact is not None else "-"
        print(f"{name:<18}{r.n_samples:>10}{r.alpha.min():>12.6f}{r.alpha.max():>12.6f}"
              f"{exact_text:>12}{r.elapsed:>10.2f}{1e6 * r.elapsed / r.n_samples:>11.2f}")
    print("(first run includes compiling the kernels; they are cached for the next one)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastrelu", description="Frame-theoretic analysis of ReLU layers ReLU(W x - alpha).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    bias = sub.add_parser("bias", help="estimate a bias under which the layer is injective on a domain (MCBE)")
    bias.add_argument("weights", help="weight matrix W (m x n): .npy, .npz, .csv or .txt")
    bias.add_argument("--key", help="array name inside an .npz weights file")
    bias.add_argument("--domain", choices=["sphere", "ball", "shell", "data"], default="sphere")
    bias.add_argument("--radius", type=float, help="radius of the sphere or ball (default 1)")
    bias.add_argument("--inner", type=float, help="inner radius of the shell")
    bias.add_argument("--outer", type=float, help="outer radius of the shell")
    bias.add_argument("--nonnegative", action="store_true", help="restrict the domain to the nonnegative orthant")
    bias.add_argument("--data", help="data points (N x n) for --domain data")
    bias.add_argument("--data-key", help="array name inside an .npz data file")
    bias.add_argument("--samples", type=int, default=1_000_000, help="number of sampled directions (default 1000000)")
    bias.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    bias.add_argument("--margin", help="covering-radius correction: 'covering' or a radius")
    bias.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    bias.add_argument("--out", help="write alpha to this .npy file")
    bias.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    bias.add_argument("--progress", action="store_true", help="always show a progress bar on stderr")
    bias.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    bias.set_defaults(run=_cmd_bias)

    demo = sub.add_parser("demo", help="run MCBE on built-in layers and print a short table")
    demo.add_argument("--samples", type=int, default=200_000, help="samples per layer (default 200000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--jobs", type=int, default=None)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except FastReluError as exc:
        if args.debug:
            raise
        print(f"fastrelu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastrelu: interrupted", file=sys.stderr)
        return 130
