"""``fastrelu demo``: MCBE on built-in layers, in a short table."""

import json
import sys
import time

import numpy as np

from fastrelu._bias.mcbe import mcbe
from fastrelu._core.domains import Sphere


def add_parser(sub):
    """The ``demo`` subcommand."""
    demo = sub.add_parser("demo", help="run MCBE on built-in layers and print a short table")
    demo.add_argument("--samples", type=int, default=200_000, help="samples per layer (default 200000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the samples (default 0)")
    demo.add_argument("--jobs", type=int, default=None, help="worker threads (default: all cores)")
    demo.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    demo.set_defaults(run=run)
    return demo


def run(args):
    compiled_before = _compiled_kernels()
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
    compiled = _compiled_kernels() - compiled_before
    if args.json:
        json.dump([{"layer": name, "n_samples": r.n_samples, "seed": r.seed,
                    "alpha_min": float(r.alpha.min()), "alpha_max": float(r.alpha.max()),
                    "exact": exact, "elapsed": r.elapsed} for name, r, exact, _ in rows], sys.stdout)
        sys.stdout.write("\n")
        return 0
    print("MCBE maximal-bias estimates on the unit sphere (THEORY §3)")
    print(f"{'layer':<18}{'samples':>10}{'min alpha':>12}{'max alpha':>12}{'exact':>12}{'seconds':>10}{'us/sample':>11}")
    for name, r, exact, _ in rows:
        exact_text = f"{exact:.6f}" if exact is not None else "-"
        print(f"{name:<18}{r.n_samples:>10}{r.alpha.min():>12.6f}{r.alpha.max():>12.6f}"
              f"{exact_text:>12}{r.elapsed:>10.2f}{1e6 * r.elapsed / r.n_samples:>11.2f}")
    note = _compile_note(compiled)
    if note:
        print(note)
    return 0


def _compiled_kernels():
    """How many Numba kernel versions of fastrelu this process has compiled so far (the
    versions it loaded from the on-disk cache are not counted)."""
    from numba.core.dispatcher import Dispatcher

    seen, compiled = set(), 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fastrelu" or name.startswith("fastrelu.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and id(value) not in seen:
                seen.add(id(value))
                compiled += len(value.overloads) - sum(value.stats.cache_hits.values())
    return compiled


def _compile_note(compiled):
    """The line that says that the timings include compiling (None when nothing was)."""
    from fastrelu._core.jit import CACHE

    if not compiled:
        return None
    where = ("they are now cached on disk, so the next run skips this" if CACHE else
             "the disk cache is off (FASTRELU_NUMBA_CACHE=0), so every run compiles them")
    return f"(the seconds above include compiling {compiled} Numba kernels; {where})"
