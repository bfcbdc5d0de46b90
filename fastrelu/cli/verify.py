"""``fastrelu verify``: decide exactly whether ReLU(W x) (zero bias) is injective on R^n."""

import json
import sys

import numpy as np

from fastrelu._injectivity.verify import verify_injective
from fastrelu.cli.common import (
    _load_weights,
    _progress,
    _run_arguments,
    _weights_arguments,
    add_cluster_arguments,
)


def add_parser(sub):
    """The ``verify`` subcommand."""
    verify = sub.add_parser("verify", help="decide exactly whether ReLU(W x) (zero bias) is injective on R^n")
    _weights_arguments(verify)
    verify.add_argument("--max-subsets", type=int, default=None,
                        help="refuse inputs with more (n-1)-subsets than this (default: by dimension, see docs/injectivity.md)")
    verify.add_argument("--strict", action="store_true", help="exit with status 1 when the layer is not injective")
    _run_arguments(verify)
    add_cluster_arguments(verify)
    verify.set_defaults(run=run)
    return verify


def run(args):
    weight = _load_weights(args)
    verdict = verify_injective(weight, max_subsets=args.max_subsets, n_jobs=args.jobs,
                               progress=_progress(args), client=args.client,
                               checkpoint=args.checkpoint,
                               checkpoint_interval=args.checkpoint_interval)
    m, n = np.shape(weight)
    witness = None if verdict.witness is None else [float(v) for v in verdict.witness]
    active = None if verdict.witness_active is None else [int(i) for i in verdict.witness_active]
    summary = {"injective": bool(verdict.injective), "shape": [int(m), int(n)],
               "min_active": int(verdict.min_active), "witness": witness,
               "witness_active": active, "subsets_checked": int(verdict.subsets_checked),
               "n_subsets": int(verdict.n_subsets), "n_exact": int(verdict.n_exact),
               "n_hyperplanes": int(verdict.n_hyperplanes),
               "general_position": bool(verdict.general_position),
               "subset": [int(i) for i in verdict.subset], "sign": int(verdict.sign),
               "vertex": [float(v) for v in verdict.vertex],
               "closed_form": bool(verdict.closed_form),
               "witness_margin": None if verdict.witness_margin is None else float(verdict.witness_margin),
               "elapsed": verdict.elapsed}
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    else:
        answer = "injective" if verdict.injective else "NOT injective"
        print(f"ReLU(W x) with W of shape {m} x {n} is {answer} on R^{n} (exact; "
              f"{verdict.subsets_checked} of {verdict.n_subsets} subsets, {verdict.elapsed:.2f} s)")
        if verdict.closed_form:  # m < 2n: the count at the witness, not a minimum
            print(f"at most {verdict.min_active} active rows at the witness (n = {n}; closed form, m < 2n)")
        else:
            print(f"least number of active rows over all directions: {verdict.min_active} (n = {n})")
        if witness is not None:
            shown = np.array2string(np.asarray(witness), precision=6, separator=", ")
            print(f"witness x = {shown}: its {len(active)} active rows {active} do not span R^{n}")
            if summary["witness_margin"] is not None:
                print(f"witness margin {summary['witness_margin']:.3g}: the distance of x to the "
                      f"nearest hyperplane <w_i, x> = 0 (every point that close has the same active rows)")
        if not verdict.general_position:
            print("rows not in general position: every cell was enumerated exactly")
        if verdict.n_exact:
            print(f"{verdict.n_exact} subsets re-decided beyond the floating-point filter")
    if args.strict and not verdict.injective:
        return 1
    return 0
