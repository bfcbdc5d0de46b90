"""``fastrelu experiment``: run one of the papers' experiments."""

import json
import sys

from fastrelu._core.errors import FastReluError
from fastrelu.cli.common import _progress, _run_arguments

#: Keyword arguments of run_experiment that are options of their own, never --set.
_EXPERIMENT_OPTIONS = {"name": "NAME", "out": "--out", "seed": "--seed", "quick": "--quick",
                       "n_jobs": "--jobs", "progress": "--progress", "figures": "--no-figures"}


def add_parser(sub):
    """The ``experiment`` subcommand."""
    experiment = sub.add_parser("experiment", help="run one of the papers' experiments (tetrahedron, evolution, redundancy, training): JSON and figures")
    experiment.add_argument("name", help="tetrahedron, evolution, redundancy or training (training needs torch; see docs/experiments.md)")
    experiment.add_argument("--out", help="directory for NAME.json and the figures NAME_*.png (nothing is written without it)")
    experiment.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    experiment.add_argument("--quick", action="store_true", help="the reduced size used by the tests")
    experiment.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="change a parameter, VALUE in JSON (e.g. --set repetitions=10); repeatable")
    experiment.add_argument("--no-figures", action="store_true", help="write the JSON only")
    _run_arguments(experiment)
    experiment.set_defaults(run=run)
    return experiment


def run(args):
    from fastrelu._experiments.experiments import describe_experiment, run_experiment

    overrides = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FastReluError(f"The '--set' option must be KEY=VALUE with VALUE in JSON (e.g. repetitions=10 or sample_counts=[10,100]). Got {item!r} instead.")
        if key in _EXPERIMENT_OPTIONS:
            raise FastReluError(f"The '--set' option must not set {key!r}: use {_EXPERIMENT_OPTIONS[key]}. Got {item!r} instead.")
        try:
            overrides[key] = json.loads(text)
        except ValueError:
            overrides[key] = text  # a bare word such as covering
    record = run_experiment(args.name, args.out, seed=args.seed, quick=args.quick,
                            n_jobs=args.jobs, progress=_progress(args),
                            figures=not args.no_figures, **overrides)
    if args.json:
        json.dump(record, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print("\n".join(describe_experiment(record)))
    if args.out:
        written = [record["json"], *record["figures"]]
        print(f"written to {args.out}: {', '.join(written)}")
    return 0
