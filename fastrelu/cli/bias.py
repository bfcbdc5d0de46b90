"""``fastrelu bias``: a bias under which the layer is injective on a domain (MCBE or PBE)."""

import json
import sys

import numpy as np

from fastrelu._bias.mcbe import DEFAULT_SAMPLES, mcbe
from fastrelu._bias.pbe import pbe
from fastrelu._core.errors import FastReluError
from fastrelu._core.io import output_file, write_output
from fastrelu.cli.common import (
    _domain_arguments,
    _domain_from_args,
    _json_float,
    _load_weights,
    _progress,
    _run_arguments,
    _weights_arguments,
    add_cluster_arguments,
)


def add_parser(sub):
    """The ``bias`` subcommand."""
    bias = sub.add_parser("bias", help="estimate a bias under which the layer is injective on a domain (MCBE or PBE)")
    _weights_arguments(bias)
    bias.add_argument("--method", choices=["mcbe", "pbe"], default="mcbe",
                      help="mcbe: Monte Carlo most correlated bases (default); pbe: polytope facets (n <= 8, exact)")
    _domain_arguments(bias, data_domain=True)
    bias.add_argument("--samples", type=int, default=None, help=f"number of sampled directions (mcbe; default {DEFAULT_SAMPLES})")
    bias.add_argument("--seed", type=int, default=None, help="random seed (mcbe; default 0)")
    bias.add_argument("--margin", help="covering-radius correction (mcbe): 'covering' or a radius")
    bias.add_argument("--out", help="write alpha to this .npy file")
    _run_arguments(bias)
    add_cluster_arguments(bias)
    bias.set_defaults(run=run)
    return bias


def run(args):
    out = None if args.out is None else output_file(args.out, "--out", ".npy")
    weight = _load_weights(args)
    domain = _domain_from_args(args, np.shape(weight)[1])
    if args.method == "pbe":
        result = pbe(weight, domain)
    else:
        samples = None if args.domain == "data" else (DEFAULT_SAMPLES if args.samples is None else args.samples)
        margin = args.margin
        if margin is not None and margin != "covering":
            try:
                margin = float(margin)
            except ValueError:
                raise FastReluError(f"The '--margin' option must be 'covering' or a number. Got {margin!r}.") from None
        result = mcbe(weight, domain, samples, seed=0 if args.seed is None else args.seed,
                      margin=margin, n_jobs=args.jobs, progress=_progress(args),
                      client=args.client, checkpoint=args.checkpoint,
                      checkpoint_interval=args.checkpoint_interval)
    if out:
        write_output(out, "--out", lambda path: np.save(path, result.alpha))
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
        "n_facets": None if result.facets is None else int(result.facets.shape[0]),
        "out": out,
    }
    if args.json:
        summary["alpha"] = [_json_float(a) for a in result.alpha]
        summary["counts"] = result.counts.tolist()
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        finite = result.alpha[np.isfinite(result.alpha)]
        if result.method == "pbe":
            print(f"PBE on {summary['domain']}: {summary['n_facets']} facets (exact, nothing "
                  f"sampled), {result.elapsed:.2f} s")
        else:
            print(f"MCBE on {summary['domain']}: {result.n_samples} samples, seed {result.seed}, "
                  f"{result.elapsed:.2f} s")
        if finite.size:
            print(f"alpha: min {finite.min():.6g}, median {np.median(finite):.6g}, max {finite.max():.6g}; "
                  f"{summary['unconstrained']} rows unconstrained")
        if out:
            print(f"alpha written to {out}")
    return 0
